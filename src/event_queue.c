/*-------------------------------------------------------------------------
 *
 * event_queue.c
 *	  A shared-memory queue that carries committed events to the worker.
 *
 * NOTIFY holds a cluster-wide lock from before commit until the commit
 * record is flushed, so notifying transactions cannot share a WAL flush,
 * and saves, which all publish, would commit one after the other.  While
 * the worker runs, events travel instead through this byte ring: a
 * committing backend reserves room just before commit, copies its payloads
 * in after commit (still holding its advisory locks, so the events of one
 * resource are in lock order), and wakes the worker through an eventfd the
 * worker polls.  A stream of saves would wake it once per commit, a context
 * switch each on the cores the saves run on: so after a backend's wake-up
 * the worker is "held", and further backends' appends leave it to come back
 * by itself (the worker's hold timer, EVENT_HOLD_MS) until it finds nothing
 * new.  The first event after a quiet spell still wakes it at once, and a
 * worker's own appends always do: they answer its clients.
 * Every worker (collab.workers of them) reads the whole ring with its own
 * read position and eventfd, and fans the events out to its own
 * connections; the lowest-numbered running worker also forwards them to
 * NOTIFY listeners in its batched transactions, keeping channel
 * collab_events complete.  The ring keeps a record until the slowest
 * worker has read it.  Without a worker, in another database than the
 * workers', or with the ring full, backends NOTIFY directly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "collab.h"
#include "event_queue.h"

#define EVENT_RING_BYTES	(8 * 1024 * 1024)

/* One reader of the ring: a worker process. */
typedef struct EventConsumer
{
	pid_t		pid;			/* 0: no worker in this slot */
	uint64		read_pos;		/* bytes this worker has consumed */
	bool		overflowed;		/* events bypassed the ring while it read */
	bool		held;			/* a backend woke it; it comes back by itself */
} EventConsumer;

typedef struct EventRing
{
	LWLock	   *lock;
	Oid			consumer_db;	/* the database the workers serve */
	uint64		write_pos;		/* bytes ever written */
	uint64		reserved;		/* promised to committing transactions */
	EventConsumer consumers[COLLAB_MAX_WORKERS];
	char		data[FLEXIBLE_ARRAY_MEMBER];
} EventRing;

static EventRing *ring = NULL;
/* one eventfd per worker slot, created in the postmaster */
static int	wake_fds[COLLAB_MAX_WORKERS];
static int	my_slot = -1;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
ring_size(void)
{
	return add_size(offsetof(EventRing, data), EVENT_RING_BYTES);
}

static void
event_queue_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(ring_size());
	RequestNamedLWLockTranche("collab_events", 1);
}

static void
event_queue_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ring = ShmemInitStruct("collab event ring", ring_size(), &found);
	if (!found)
	{
		ring->lock = &(GetNamedLWLockTranche("collab_events"))->lock;
		ring->consumer_db = InvalidOid;
		ring->write_pos = ring->reserved = 0;
		memset(ring->consumers, 0, sizeof(ring->consumers));
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init in the postmaster. */
void
event_queue_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = event_queue_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = event_queue_shmem_startup;
	/* inherited by every backend through fork */
	for (int i = 0; i < COLLAB_MAX_WORKERS; i++)
	{
		wake_fds[i] = -1;
		if (i >= collab_workers)
			continue;
		wake_fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (wake_fds[i] < 0)
			ereport(LOG, (errmsg("collab could not create an eventfd: %m; events will use NOTIFY")));
	}
}

static inline Size
record_bytes(Size len)
{
	return sizeof(uint32) + len;
}

/* Where the slowest worker reads; write_pos when none does.  Lock held. */
static uint64
oldest_read_pos(bool *any)
{
	uint64		oldest = ring->write_pos;

	*any = false;
	for (int i = 0; i < COLLAB_MAX_WORKERS; i++)
	{
		if (ring->consumers[i].pid == 0)
			continue;
		*any = true;
		if (ring->consumers[i].read_pos < oldest)
			oldest = ring->consumers[i].read_pos;
	}
	return oldest;
}

Size
event_queue_reserve(List *payloads)
{
	Size		need = 0;
	ListCell   *lc;
	bool		ok = false;
	bool		any;
	uint64		oldest;

	if (ring == NULL)
		return 0;
	foreach(lc, payloads)
		need += record_bytes(strlen((char *) lfirst(lc)));
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	oldest = oldest_read_pos(&any);
	/* only events of the workers' database concern them */
	if (any && ring->consumer_db == MyDatabaseId)
	{
		if (ring->write_pos - oldest + ring->reserved + need <= EVENT_RING_BYTES)
		{
			ring->reserved += need;
			ok = true;
		}
		else
		{
			/* every worker misses these events: all must resynchronize */
			for (int i = 0; i < COLLAB_MAX_WORKERS; i++)
				if (ring->consumers[i].pid != 0)
					ring->consumers[i].overflowed = true;
		}
	}
	LWLockRelease(ring->lock);
	return ok ? need : 0;
}

void
event_queue_unreserve(Size reserved)
{
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->reserved -= reserved;
	LWLockRelease(ring->lock);
}

static void
ring_copy_in(uint64 pos, const char *src, Size len)
{
	Size		off = pos % EVENT_RING_BYTES;
	Size		first = Min(len, EVENT_RING_BYTES - off);

	memcpy(ring->data + off, src, first);
	if (first < len)
		memcpy(ring->data, src + first, len - first);
}

static void
ring_copy_out(uint64 pos, char *dst, Size len)
{
	Size		off = pos % EVENT_RING_BYTES;
	Size		first = Min(len, EVENT_RING_BYTES - off);

	memcpy(dst, ring->data + off, first);
	if (first < len)
		memcpy(dst + first, ring->data, len - first);
}

/*
 * Appends payloads for which room was reserved, and wakes every worker that
 * is not held (a worker's appends wake every one).  Runs after commit, so it
 * must not fail: nothing here can raise an error.
 */
void
event_queue_append(List *payloads, Size reserved)
{
	ListCell   *lc;
	uint64		one = 1;
	bool		wake[COLLAB_MAX_WORKERS];

	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	foreach(lc, payloads)
	{
		const char *p = lfirst(lc);
		uint32		len = strlen(p);

		ring_copy_in(ring->write_pos, (const char *) &len, sizeof(len));
		ring_copy_in(ring->write_pos + sizeof(len), p, len);
		ring->write_pos += record_bytes(len);
	}
	ring->reserved -= reserved;
	for (int i = 0; i < COLLAB_MAX_WORKERS; i++)
	{
		EventConsumer *c = &ring->consumers[i];

		wake[i] = c->pid != 0 && (my_slot >= 0 || !c->held);
		if (wake[i] && my_slot < 0)
			c->held = true;
	}
	LWLockRelease(ring->lock);
	for (int i = 0; i < COLLAB_MAX_WORKERS; i++)
	{
		if (wake[i] && wake_fds[i] >= 0 && write(wake_fds[i], &one, sizeof(one)) < 0)
		{
			/* the counter is saturated or the worker reads it: it will look anyway */
		}
	}
}

/* The descriptor that wakes worker slot (0-based); -1 without one. */
int
event_queue_wake_fd(int slot)
{
	return (slot >= 0 && slot < COLLAB_MAX_WORKERS) ? wake_fds[slot] : -1;
}

/* Starts reading the ring from now on, as the worker of this slot. */
bool
event_queue_attach(int slot)
{
	if (ring == NULL || event_queue_wake_fd(slot) < 0)
		return false;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->consumers[slot].pid = MyProcPid;
	ring->consumers[slot].read_pos = ring->write_pos;
	ring->consumers[slot].overflowed = false;
	ring->consumers[slot].held = false;
	ring->consumer_db = MyDatabaseId;
	LWLockRelease(ring->lock);
	my_slot = slot;
	return true;
}

void
event_queue_detach(void)
{
	if (ring == NULL || my_slot < 0)
		return;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	if (ring->consumers[my_slot].pid == MyProcPid)
		ring->consumers[my_slot].pid = 0;
	LWLockRelease(ring->lock);
	my_slot = -1;
}

/*
 * Is this worker the one that forwards events to NOTIFY listeners and
 * counts them?  The running worker of the lowest slot is, so that exactly
 * one does while any runs.
 */
static bool
is_forwarder_locked(void)
{
	for (int i = 0; i < COLLAB_MAX_WORKERS; i++)
		if (ring->consumers[i].pid != 0)
			return i == my_slot;
	return false;
}

bool
event_queue_is_forwarder(void)
{
	bool		first;

	if (my_slot < 0)
		return false;
	LWLockAcquire(ring->lock, LW_SHARED);
	first = is_forwarder_locked();
	LWLockRelease(ring->lock);
	return first;
}

/*
 * Did events bypass the ring since the last call (because it was full)?
 * The consumer has then missed them and must resynchronize its clients.
 */
bool
event_queue_take_overflow(void)
{
	bool		o;

	if (my_slot < 0)
		return false;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	o = ring->consumers[my_slot].overflowed;
	ring->consumers[my_slot].overflowed = false;
	LWLockRelease(ring->lock);
	return o;
}

/*
 * Takes every complete record out of the ring, calling cb for each, in
 * order, with whether this worker forwards them (event_queue_is_forwarder,
 * read under the same lock as the positions) and the record's position in
 * the ring, the same for every worker (events' offsets are made of it).  Payloads are copied out
 * before cb runs, so cb may take its time.
 *
 * *held tells whether the worker must come back by itself (backends no
 * longer wake it).  When the worker comes back (release), finding nothing
 * new ends the hold, under the lock that appends take, so that the next
 * append wakes it.
 */
int
event_queue_drain(void (*cb) (const char *payload, bool forward, uint64 pos, void *arg),
				  void *arg, bool release, bool *held)
{
	uint64		read_pos;
	uint64		write_pos;
	uint64		one;
	bool		forward;
	int			n = 0;
	char	   *buf = NULL;
	Size		bufsize = 0;

	*held = false;
	if (my_slot < 0)
		return 0;
	/* clear the wake-up counter first: a later append wakes us again */
	if (read(wake_fds[my_slot], &one, sizeof(one)) < 0)
	{
		/* EAGAIN: nothing new signalled, but look anyway */
	}
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	read_pos = ring->consumers[my_slot].read_pos;
	write_pos = ring->write_pos;
	forward = is_forwarder_locked();
	if (release && read_pos == write_pos)
		ring->consumers[my_slot].held = false;
	*held = ring->consumers[my_slot].held;
	LWLockRelease(ring->lock);

	while (read_pos < write_pos)
	{
		uint32		len;
		uint64		pos = read_pos;

		ring_copy_out(read_pos, (char *) &len, sizeof(len));
		if (bufsize < (Size) len + 1)
		{
			bufsize = Max((Size) len + 1, 8192);
			buf = buf ? repalloc(buf, bufsize) : palloc(bufsize);
		}
		ring_copy_out(read_pos + sizeof(len), buf, len);
		buf[len] = '\0';
		read_pos += record_bytes(len);

		/* give the room back before the callback, which may be slow */
		LWLockAcquire(ring->lock, LW_EXCLUSIVE);
		ring->consumers[my_slot].read_pos = read_pos;
		LWLockRelease(ring->lock);

		cb(buf, forward, pos, arg);
		n++;
	}
	if (buf)
		pfree(buf);
	return n;
}
