/*-------------------------------------------------------------------------
 *
 * event_queue.c
 *	  A shared-memory queue that carries committed events to the worker.
 *
 * NOTIFY holds a cluster-wide lock from before commit until the commit
 * record is flushed, so notifying transactions cannot share a WAL flush:
 * on a hot path such as saving, it halves throughput.  While the worker
 * runs, events travel instead through this byte ring: a committing backend
 * reserves room just before commit, copies its payloads in after commit
 * (still holding its advisory locks, so the events of one resource are in
 * lock order), and wakes the worker through an eventfd the worker polls.
 * The worker fans the events out and forwards them to NOTIFY listeners in
 * its own batched transactions, keeping channel collab_events complete.
 * Without a worker, in another database than the worker's, or with the
 * ring full, backends NOTIFY directly.
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

typedef struct EventRing
{
	LWLock	   *lock;
	pid_t		consumer_pid;	/* 0: no worker consumes the ring */
	Oid			consumer_db;	/* the database the worker serves */
	uint64		write_pos;		/* bytes ever written */
	uint64		read_pos;		/* bytes ever consumed */
	uint64		reserved;		/* promised to committing transactions */
	bool		overflowed;		/* events bypassed the ring while consumed */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} EventRing;

static EventRing *ring = NULL;
static int	wake_fd = -1;
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
		ring->consumer_pid = 0;
		ring->write_pos = ring->read_pos = ring->reserved = 0;
		ring->overflowed = false;
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
	wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (wake_fd < 0)
		ereport(LOG, (errmsg("collab could not create an eventfd: %m; events will use NOTIFY")));
}

static inline Size
record_bytes(Size len)
{
	return sizeof(uint32) + len;
}

Size
event_queue_reserve(List *payloads)
{
	Size		need = 0;
	ListCell   *lc;
	bool		ok = false;

	if (ring == NULL || wake_fd < 0)
		return 0;
	foreach(lc, payloads)
		need += record_bytes(strlen((char *) lfirst(lc)));
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	/* only events of the worker's database concern it */
	if (ring->consumer_pid != 0 && ring->consumer_db == MyDatabaseId)
	{
		if (ring->write_pos - ring->read_pos + ring->reserved + need <= EVENT_RING_BYTES)
		{
			ring->reserved += need;
			ok = true;
		}
		else
			ring->overflowed = true;	/* the worker must resynchronize */
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
 * Appends payloads for which room was reserved.  Runs after commit, so it
 * must not fail: nothing here can raise an error.
 */
void
event_queue_append(List *payloads, Size reserved)
{
	ListCell   *lc;
	uint64		one = 1;

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
	LWLockRelease(ring->lock);
	if (write(wake_fd, &one, sizeof(one)) < 0)
	{
		/* the counter is saturated or the worker reads it: it will look anyway */
	}
}

int
event_queue_wake_fd(void)
{
	return wake_fd;
}

void
event_queue_attach(void)
{
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	ring->consumer_pid = MyProcPid;
	ring->consumer_db = MyDatabaseId;
	LWLockRelease(ring->lock);
}

void
event_queue_detach(void)
{
	if (ring == NULL)
		return;
	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	if (ring->consumer_pid == MyProcPid)
		ring->consumer_pid = 0;
	LWLockRelease(ring->lock);
}

/*
 * Did events bypass the ring since the last call (because it was full)?
 * The consumer has then missed them and must resynchronize its clients.
 */
bool
event_queue_take_overflow(void)
{
	bool		o;

	LWLockAcquire(ring->lock, LW_EXCLUSIVE);
	o = ring->overflowed;
	ring->overflowed = false;
	LWLockRelease(ring->lock);
	return o;
}

/*
 * Takes every complete record out of the ring, calling cb for each, in
 * order.  Payloads are copied out before cb runs, so cb may take its time.
 */
int
event_queue_drain(void (*cb) (const char *payload, void *arg), void *arg)
{
	uint64		read_pos;
	uint64		write_pos;
	uint64		one;
	int			n = 0;
	char	   *buf = NULL;
	Size		bufsize = 0;

	/* clear the wake-up counter first: a later append wakes us again */
	if (read(wake_fd, &one, sizeof(one)) < 0)
	{
		/* EAGAIN: nothing new signalled, but look anyway */
	}
	LWLockAcquire(ring->lock, LW_SHARED);
	read_pos = ring->read_pos;
	write_pos = ring->write_pos;
	LWLockRelease(ring->lock);

	while (read_pos < write_pos)
	{
		uint32		len;

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
		ring->read_pos = read_pos;
		LWLockRelease(ring->lock);

		cb(buf, arg);
		n++;
	}
	if (buf)
		pfree(buf);
	return n;
}
