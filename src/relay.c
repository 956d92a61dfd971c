/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The channel between the workers: long-polling requests that reach a
 *	  worker other than their session's are answered by the session's
 *	  worker, which the session id names.
 *
 * With collab.workers > 1 the kernel spreads connections over the workers
 * (SO_REUSEPORT), and each HTTP request of a long-polling session may
 * reach any of them.  The worker that receives a poll or a post for a
 * session it does not own reads it whole (TLS ends there), sends it to the
 * owner, and writes the owner's answer back to its client; a poll may wait
 * at the owner, and is withdrawn when its client goes away.  The same
 * channel moves a detached Socket.IO session (connection state recovery)
 * to the worker that its client's recovering CONNECT reached: a request of
 * method M names its pid, and the answer carries the session, which the
 * owner's handler (relay_set_migrate_handler) encodes and gives up.
 *
 * Each worker listens on a Unix stream socket in the abstract namespace,
 * named after the postmaster's pid and the worker's slot, so that the
 * workers of one server find each other and those of another server on the
 * same host do not; both ends check that the peer runs as the same user
 * (SO_PEERCRED).  A worker keeps one connection to each worker it forwards
 * to.  Messages are length-prefixed:
 *
 *   REQUEST  id, method (G, P or M), sid, body   forwarder -> owner
 *   ANSWER   id, status, content type, body      owner -> forwarder
 *   CANCEL   id                                  forwarder -> owner
 *
 * and are read and written in the worker's libev loop, never blocking.
 * With one worker nothing of this runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "collab.h"
#include "metrics.h"
#include "poll_transport.h"
#include "relay.h"

#define MSG_REQUEST		1
#define MSG_ANSWER		2
#define MSG_CANCEL		3

/* Queued bytes beyond which a peer that does not read is dropped. */
#define RELAY_MAX_BUFFERED	(64 * 1024 * 1024)

/* A connection to another worker, either way. */
typedef struct RelayPeer
{
	int			fd;
	uint32		serial;			/* tells peers apart in the keys of calls */
	bool		outgoing;		/* we forward to it (else it forwards to us) */
	int			slot;			/* outgoing: the worker it reaches */
	ev_io		rio;
	ev_io		wio;
	StringInfoData in;
	int			in_off;
	StringInfoData out;
	int			out_off;
	uint32		next_id;
	dlist_head	calls;			/* outgoing: RelayCall; incoming: Served */
	dlist_node	node;
} RelayPeer;

/* A request forwarded to its owner, waiting for the answer. */
struct RelayCall
{
	RelayPeer  *peer;
	uint32		id;
	RelayDone	done;
	void	   *arg;
	dlist_node	node;
};

/* A forwarded request being served here, by its session's transport. */
typedef struct Served
{
	PollRequest req;
	RelayPeer  *peer;
	uint32		id;
	bool		woken;
	dlist_node	node;			/* in peer->calls */
	dlist_node	wake_node;		/* in woken_requests while woken */
} Served;

typedef struct CallKey
{
	uint64		key;			/* serial << 32 | id */
	void	   *entry;			/* RelayCall or Served */
} CallKey;

static struct ev_loop *relay_loop = NULL;
static int	relay_slot = -1;
static int	listen_fd = -1;
static ev_io listen_io;
static ev_timer wake_timer;
static MemoryContext relay_cxt = NULL;
static HTAB *calls_by_key = NULL;
static dlist_head all_peers = DLIST_STATIC_INIT(all_peers);
static dlist_head woken_requests = DLIST_STATIC_INIT(woken_requests);
static dlist_head dead_peers = DLIST_STATIC_INIT(dead_peers);
static ev_timer reap_timer;
static RelayPeer *outgoing[COLLAB_MAX_WORKERS];
static uint32 next_serial = 1;
static RelayMigrateHandler migrate_handler = NULL;

static void served_wake(PollRequest *r);
static void drop_peer(RelayPeer *peer);
static RelayCall *send_call(int slot, uint32 method, const char *sid, const char *body,
							size_t len, RelayDone done, void *arg);

static const PollRequestOps served_ops = {
	.wake = served_wake,
};

/* ----------------------------------------------------------------
 * Encoding: big-endian lengths and numbers, raw bytes (relay.h); the
 * messages between workers and the sessions they move use it alike.
 * ---------------------------------------------------------------- */

void
relay_put_u32(StringInfo buf, uint32 v)
{
	uint32		n = pg_hton32(v);

	appendBinaryStringInfo(buf, (const char *) &n, 4);
}

void
relay_put_u64(StringInfo buf, uint64 v)
{
	uint64		n = pg_hton64(v);

	appendBinaryStringInfo(buf, (const char *) &n, 8);
}

void
relay_put_bytes(StringInfo buf, const char *data, size_t len)
{
	relay_put_u32(buf, (uint32) len);
	if (len > 0)
		appendBinaryStringInfo(buf, data, len);
}

uint32
relay_get_u32(RelayReader *r)
{
	uint32		n;

	if (!r->ok || r->end - r->p < 4)
	{
		r->ok = false;
		return 0;
	}
	memcpy(&n, r->p, 4);
	r->p += 4;
	return pg_ntoh32(n);
}

uint64
relay_get_u64(RelayReader *r)
{
	uint64		n;

	if (!r->ok || r->end - r->p < 8)
	{
		r->ok = false;
		return 0;
	}
	memcpy(&n, r->p, 8);
	r->p += 8;
	return pg_ntoh64(n);
}

/* Bytes written by relay_put_bytes(), in place: NULL (and !r->ok) if cut short. */
const char *
relay_get_bytes(RelayReader *r, uint32 *len)
{
	const char *v;

	*len = relay_get_u32(r);
	if (!r->ok || (size_t) (r->end - r->p) < *len)
	{
		r->ok = false;
		*len = 0;
		return NULL;
	}
	v = r->p;
	r->p += *len;
	return v;
}

/* The longest message a peer may send: a post's body or a poll's answer. */
static uint32
max_message(void)
{
	return (uint32) Max(collab_max_message_size, POLL_MAX_ANSWER) + 64 * 1024;
}

/* ----------------------------------------------------------------
 * Calls by key
 * ---------------------------------------------------------------- */

static uint64
call_key(RelayPeer *peer, uint32 id)
{
	return ((uint64) peer->serial << 32) | id;
}

static void
key_add(RelayPeer *peer, uint32 id, void *entry)
{
	uint64		key = call_key(peer, id);
	CallKey    *k = hash_search(calls_by_key, &key, HASH_ENTER, NULL);

	k->entry = entry;
}

static void *
key_find(RelayPeer *peer, uint32 id)
{
	uint64		key = call_key(peer, id);
	CallKey    *k = hash_search(calls_by_key, &key, HASH_FIND, NULL);

	return k ? k->entry : NULL;
}

static void
key_remove(RelayPeer *peer, uint32 id)
{
	uint64		key = call_key(peer, id);

	hash_search(calls_by_key, &key, HASH_REMOVE, NULL);
}

/* ----------------------------------------------------------------
 * Peers: sending and receiving
 * ---------------------------------------------------------------- */

/* Does the peer run as our user? */
static bool
same_user(int fd)
{
	struct ucred cred;
	socklen_t	len = sizeof(cred);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == geteuid();
}

static void
flush_out(RelayPeer *peer)
{
	while (peer->out_off < peer->out.len)
	{
		ssize_t		n = send(peer->fd, peer->out.data + peer->out_off,
							 peer->out.len - peer->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0)
		{
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				break;
			drop_peer(peer);
			return;
		}
		peer->out_off += n;
	}
	if (peer->out_off == peer->out.len)
	{
		resetStringInfo(&peer->out);
		peer->out_off = 0;
		ev_io_stop(relay_loop, &peer->wio);
	}
	else
		ev_io_start(relay_loop, &peer->wio);
}

/*
 * Sends one message (msg, without its length): written at once as far as
 * the socket takes it, the rest when it is writable.  False if the peer
 * was dropped.
 */
static bool
send_message(RelayPeer *peer, StringInfo msg)
{
	if (peer->fd < 0)
		return false;
	if (peer->out.len - peer->out_off + msg->len > RELAY_MAX_BUFFERED)
	{
		ereport(LOG, (errmsg("collab worker drops its relay connection to a worker that does not read")));
		drop_peer(peer);
		return false;
	}
	relay_put_u32(&peer->out, (uint32) msg->len);
	appendBinaryStringInfo(&peer->out, msg->data, msg->len);
	flush_out(peer);
	return true;
}

static void
send_answer(RelayPeer *peer, uint32 id, PollAnswer *a)
{
	StringInfoData msg;

	if (peer->fd < 0)
		return;

	initStringInfo(&msg);
	appendStringInfoChar(&msg, MSG_ANSWER);
	relay_put_u32(&msg, id);
	relay_put_u32(&msg, (uint32) a->status);
	relay_put_bytes(&msg, a->content_type, strlen(a->content_type));
	relay_put_bytes(&msg, a->body.data, a->body.len);
	(void) send_message(peer, &msg);
	pfree(msg.data);
}

/* A request served here is done with: forgotten. */
static void
served_free(Served *s)
{
	key_remove(s->peer, s->id);
	dlist_delete(&s->node);
	if (s->woken)
		dlist_delete(&s->wake_node);
	pfree(s);
}

/* A request forwarded here (REQUEST): served by its session's transport. */
static void
handle_request(RelayPeer *peer, RelayReader *r)
{
	uint32		id = relay_get_u32(r);
	uint32		method = relay_get_u32(r);
	uint32		sid_len;
	const char *sid_p = relay_get_bytes(r, &sid_len);
	uint32		body_len;
	const char *body = relay_get_bytes(r, &body_len);
	char		sid[64];
	Served	   *s;
	PollAnswer	a;

	if (!r->ok || sid_len >= sizeof(sid) || key_find(peer, id) != NULL)
	{
		drop_peer(peer);
		return;
	}
	memcpy(sid, sid_p, sid_len);
	sid[sid_len] = '\0';
	s = MemoryContextAllocZero(relay_cxt, sizeof(Served));
	s->req.ops = &served_ops;
	s->peer = peer;
	s->id = id;
	dlist_push_tail(&peer->calls, &s->node);
	key_add(peer, id, s);
	if (method == 'M')
	{
		if (migrate_handler)
			migrate_handler(sid, body, body_len, &a);
		else
			poll_answer_error(&a, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
	}
	else if (method == 'G')
	{
		if (poll_get(&s->req, sid, &a) == POLL_WAITING)
			return;
	}
	else if (poll_post_begin(&s->req, sid, &a))
		poll_post_end(&s->req, body, body_len, &a);
	served_free(s);
	send_answer(peer, id, &a);
}

/* The forwarder's client went away (CANCEL). */
static void
handle_cancel(RelayPeer *peer, RelayReader *r)
{
	uint32		id = relay_get_u32(r);
	Served	   *s = r->ok ? key_find(peer, id) : NULL;

	if (s == NULL)
		return;					/* answered meanwhile */
	poll_request_gone(&s->req);
	served_free(s);
}

/* The owner's answer to a request we forwarded (ANSWER). */
static void
handle_answer(RelayPeer *peer, RelayReader *r)
{
	uint32		id = relay_get_u32(r);
	uint32		status = relay_get_u32(r);
	uint32		ct_len;
	const char *ct = relay_get_bytes(r, &ct_len);
	uint32		body_len;
	const char *body = relay_get_bytes(r, &body_len);
	RelayCall  *call;
	PollAnswer	a;

	if (!r->ok)
	{
		drop_peer(peer);
		return;
	}
	call = key_find(peer, id);
	if (call == NULL)
		return;					/* cancelled meanwhile */
	key_remove(peer, id);
	dlist_delete(&call->node);
	a.status = (int) status;
	a.content_type = (ct_len == 16 && memcmp(ct, "application/json", 16) == 0)
		? "application/json" : "text/plain; charset=UTF-8";
	initStringInfo(&a.body);
	appendBinaryStringInfo(&a.body, body, body_len);
	call->done(call->arg, &a);
	pfree(a.body.data);
	pfree(call);
}

/* Handles every whole message in the peer's input. */
static void
handle_input(RelayPeer *peer)
{
	while (peer->in.len - peer->in_off >= 4)
	{
		RelayReader r;
		uint32		len;
		int			type;

		r.p = peer->in.data + peer->in_off;
		r.end = peer->in.data + peer->in.len;
		r.ok = true;
		len = relay_get_u32(&r);
		if (len == 0 || len > max_message())
		{
			ereport(LOG, (errmsg("collab worker drops a relay connection: malformed message")));
			drop_peer(peer);
			return;
		}
		if ((uint32) (r.end - r.p) < len)
			break;
		r.end = r.p + len;
		type = (unsigned char) *r.p++;
		peer->in_off += 4 + len;
		if (type == MSG_REQUEST && !peer->outgoing)
			handle_request(peer, &r);
		else if (type == MSG_CANCEL && !peer->outgoing)
			handle_cancel(peer, &r);
		else if (type == MSG_ANSWER && peer->outgoing)
			handle_answer(peer, &r);
		else
		{
			drop_peer(peer);
			return;
		}
		/* the peer may have been dropped by what the message did */
		if (peer->fd < 0)
			return;
	}
	if (peer->in_off > 0 && peer->in_off == peer->in.len)
	{
		resetStringInfo(&peer->in);
		peer->in_off = 0;
	}
	else if (peer->in_off > 64 * 1024)
	{
		memmove(peer->in.data, peer->in.data + peer->in_off, peer->in.len - peer->in_off);
		peer->in.len -= peer->in_off;
		peer->in_off = 0;
	}
}

static void
read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	RelayPeer  *peer = (RelayPeer *) w->data;
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		for (;;)
		{
			ssize_t		n;

			enlargeStringInfo(&peer->in, 64 * 1024);
			n = recv(peer->fd, peer->in.data + peer->in.len, 64 * 1024, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			if (n <= 0)
			{
				drop_peer(peer);
				break;
			}
			peer->in.len += n;
			peer->in.data[peer->in.len] = '\0';
			if (peer->in.len - peer->in_off > (int) max_message() + 4)
				break;			/* handle what is whole before reading on */
		}
		if (peer->fd >= 0)
			handle_input(peer);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
}

static void
write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	RelayPeer  *peer = (RelayPeer *) w->data;

	if (peer->fd >= 0)
		flush_out(peer);
}

static RelayPeer *
new_peer(int fd, bool is_outgoing, int slot)
{
	RelayPeer  *peer = MemoryContextAllocZero(relay_cxt, sizeof(RelayPeer));
	MemoryContext old = MemoryContextSwitchTo(relay_cxt);

	peer->fd = fd;
	peer->serial = next_serial++;
	peer->outgoing = is_outgoing;
	peer->slot = slot;
	initStringInfo(&peer->in);
	initStringInfo(&peer->out);
	MemoryContextSwitchTo(old);
	peer->next_id = 1;
	dlist_init(&peer->calls);
	ev_io_init(&peer->rio, read_cb, fd, EV_READ);
	ev_io_init(&peer->wio, write_cb, fd, EV_WRITE);
	peer->rio.data = peer;
	peer->wio.data = peer;
	ev_io_start(relay_loop, &peer->rio);
	dlist_push_tail(&all_peers, &peer->node);
	if (is_outgoing)
		outgoing[slot] = peer;
	return peer;
}

/*
 * The connection is gone: calls we forwarded on it are answered as for an
 * unknown session (their clients start again), and requests we served for
 * it lose their sessions, as a poll whose client went away does.
 */
static void
drop_peer(RelayPeer *peer)
{
	dlist_mutable_iter it;

	if (peer->fd < 0)
		return;
	ev_io_stop(relay_loop, &peer->rio);
	ev_io_stop(relay_loop, &peer->wio);
	close(peer->fd);
	peer->fd = -1;
	dlist_delete(&peer->node);
	if (peer->outgoing && outgoing[peer->slot] == peer)
		outgoing[peer->slot] = NULL;
	dlist_foreach_modify(it, &peer->calls)
	{
		if (peer->outgoing)
		{
			RelayCall  *call = dlist_container(RelayCall, node, it.cur);
			PollAnswer	a;

			key_remove(peer, call->id);
			dlist_delete(&call->node);
			poll_answer_error(&a, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
			call->done(call->arg, &a);
			pfree(call);
		}
		else
		{
			Served	   *s = dlist_container(Served, node, it.cur);

			poll_request_gone(&s->req);
			served_free(s);
		}
	}
	/* freed from the event loop: a callback of its own may be running */
	dlist_push_tail(&dead_peers, &peer->node);
	if (!ev_is_active(&reap_timer))
	{
		ev_timer_set(&reap_timer, 0., 0.);
		ev_timer_start(relay_loop, &reap_timer);
	}
}

static void
reap_peers(struct ev_loop *loop, ev_timer *w, int revents)
{
	while (!dlist_is_empty(&dead_peers))
	{
		RelayPeer  *peer = dlist_container(RelayPeer, node, dlist_pop_head_node(&dead_peers));

		pfree(peer->in.data);
		pfree(peer->out.data);
		pfree(peer);
	}
}

/* ----------------------------------------------------------------
 * Forwarding (this worker is not the session's)
 * ---------------------------------------------------------------- */

static void
socket_name(int slot, struct sockaddr_un *addr, socklen_t *len)
{
	int			n;

	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	/* abstract namespace: a leading NUL, no file */
	n = snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, "collab-relay/%d/%d",
				 (int) PostmasterPid, slot);
	*len = offsetof(struct sockaddr_un, sun_path) + 1 + n;
}

/* The connection to the worker of that slot, made if need be; NULL if it cannot be reached. */
static RelayPeer *
peer_for(int slot)
{
	struct sockaddr_un addr;
	socklen_t	len;
	int			fd;

	if (outgoing[slot] != NULL)
		return outgoing[slot];
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	socket_name(slot, &addr, &len);
	if (connect(fd, (struct sockaddr *) &addr, len) != 0 || !same_user(fd))
	{
		ereport(DEBUG1, (errmsg("collab worker cannot reach worker %d to relay a request: %m", slot + 1)));
		close(fd);
		return NULL;
	}
	return new_peer(fd, true, slot);
}

/*
 * Sends a poll (post false) or a post of session sid to the worker of
 * slot, which owns it; done gets the answer.  NULL when that worker cannot
 * be reached (then done is never called).
 */
RelayCall *
relay_forward(int slot, bool post, const char *sid, const char *body, size_t len,
			  RelayDone done, void *arg)
{
	return send_call(slot, post ? 'P' : 'G', sid, body, len, done, arg);
}

/* Who serves a migration request here (the Socket.IO sessions). */
void
relay_set_migrate_handler(RelayMigrateHandler handler)
{
	migrate_handler = handler;
}

/*
 * Asks worker slot for its detached session of pid (request: what the
 * handler there needs to accept); done gets its answer, status 200 with the
 * session, another status if refused or if the worker is gone.  NULL (and
 * done not called) when slot cannot be reached.
 */
RelayCall *
relay_migrate(int slot, const char *pid, const char *request, size_t len,
			  RelayDone done, void *arg)
{
	return send_call(slot, 'M', pid, request, len, done, arg);
}

/* Sends a request to worker slot; NULL if it cannot be reached. */
static RelayCall *
send_call(int slot, uint32 method, const char *sid, const char *body, size_t len,
		  RelayDone done, void *arg)
{
	RelayPeer  *peer;
	RelayCall  *call;
	StringInfoData msg;

	if (listen_fd < 0 || slot < 0 || slot >= COLLAB_MAX_WORKERS || slot == relay_slot)
		return NULL;
	peer = peer_for(slot);
	if (peer == NULL)
		return NULL;
	collab_metrics->relayed_requests++;
	call = MemoryContextAllocZero(relay_cxt, sizeof(RelayCall));
	call->peer = peer;
	call->id = peer->next_id++;
	call->done = done;
	call->arg = arg;
	initStringInfo(&msg);
	appendStringInfoChar(&msg, MSG_REQUEST);
	relay_put_u32(&msg, call->id);
	relay_put_u32(&msg, method);
	relay_put_bytes(&msg, sid, strlen(sid));
	relay_put_bytes(&msg, body, body ? len : 0);
	dlist_push_tail(&peer->calls, &call->node);
	key_add(peer, call->id, call);
	if (!send_message(peer, &msg))
	{
		/* dropped: its calls, this one too, were answered */
		pfree(msg.data);
		return NULL;
	}
	pfree(msg.data);
	return call;
}

/* The client of a forwarded request went away: the owner is told, done is not called. */
void
relay_cancel(RelayCall *call)
{
	RelayPeer  *peer = call->peer;
	StringInfoData msg;
	uint32		id = call->id;

	key_remove(peer, id);
	dlist_delete(&call->node);
	pfree(call);
	initStringInfo(&msg);
	appendStringInfoChar(&msg, MSG_CANCEL);
	relay_put_u32(&msg, id);
	(void) send_message(peer, &msg);
	pfree(msg.data);
}

/* ----------------------------------------------------------------
 * Serving (this worker owns the session)
 * ---------------------------------------------------------------- */

/*
 * A poll served here may be answered: it is, once the event loop has
 * finished what it is doing, with everything queued by then.
 */
static void
served_wake(PollRequest *r)
{
	Served	   *s = (Served *) r;

	if (s->woken)
		return;
	s->woken = true;
	dlist_push_tail(&woken_requests, &s->wake_node);
	if (!ev_is_active(&wake_timer))
	{
		ev_timer_set(&wake_timer, 0., 0.);
		ev_timer_start(relay_loop, &wake_timer);
	}
}

static void
answer_woken(struct ev_loop *loop, ev_timer *w, int revents)
{
	MemoryContext oldcxt = CurrentMemoryContext;

	while (!dlist_is_empty(&woken_requests))
	{
		Served	   *s = dlist_container(Served, wake_node, dlist_pop_head_node(&woken_requests));
		RelayPeer  *peer = s->peer;
		uint32		id = s->id;
		PollAnswer	a;

		s->woken = false;
		PG_TRY();
		{
			poll_answer(&s->req, &a);
			served_free(s);
			send_answer(peer, id, &a);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(oldcxt);
			EmitErrorReport();
			FlushErrorState();
		}
		PG_END_TRY();
	}
}

static void
accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	for (int n = 0; n < 64; n++)
	{
		int			fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
		if (!same_user(fd))
		{
			ereport(LOG, (errmsg("collab worker refuses a relay connection from another user")));
			close(fd);
			continue;
		}
		new_peer(fd, false, -1);
	}
}

/*
 * Listens for the other workers (collab.workers > 1).  A worker that
 * cannot listen still serves its own sessions; requests for them that
 * reach another worker are then answered as for an unknown session.
 */
void
relay_start(struct ev_loop *loop, int worker_slot)
{
	struct sockaddr_un addr;
	socklen_t	len;
	HASHCTL		ctl;

	relay_loop = loop;
	relay_slot = worker_slot;
	relay_cxt = AllocSetContextCreate(TopMemoryContext, "collab relay", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(CallKey);
	ctl.hcxt = relay_cxt;
	calls_by_key = hash_create("collab relayed requests", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ev_init(&wake_timer, answer_woken);
	ev_init(&reap_timer, reap_peers);

	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	socket_name(worker_slot, &addr, &len);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *) &addr, len) != 0 ||
		listen(listen_fd, SOMAXCONN) != 0)
	{
		ereport(WARNING,
				(errcode_for_socket_access(),
				 errmsg("collab worker %d cannot listen for the other workers: %m", worker_slot + 1),
				 errdetail("Long-polling requests for its sessions that reach another worker are refused.")));
		if (listen_fd >= 0)
			close(listen_fd);
		listen_fd = -1;
		return;
	}
	ev_io_init(&listen_io, accept_cb, listen_fd, EV_READ);
	ev_io_start(loop, &listen_io);
}

/* Closes every relay connection and the listening socket (shutdown). */
void
relay_stop(void)
{
	if (relay_loop == NULL)
		return;
	while (!dlist_is_empty(&all_peers))
		drop_peer(dlist_container(RelayPeer, node, dlist_head_node(&all_peers)));
	if (listen_fd >= 0)
	{
		ev_io_stop(relay_loop, &listen_io);
		close(listen_fd);
		listen_fd = -1;
	}
	ev_timer_stop(relay_loop, &wake_timer);
	ev_timer_stop(relay_loop, &reap_timer);
	reap_peers(relay_loop, &reap_timer, 0);
	relay_loop = NULL;
}
