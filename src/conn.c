/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  A client's connection to the worker: its life, its outgoing frames
 *	  and the locks it holds.
 *
 * Outgoing frames go to the transport at once when it takes them, and
 * otherwise are queued per connection and written when the transport asks
 * for them, so a slow client only delays itself; one whose queue grows past
 * a limit is disconnected.  The transport is reached only through its
 * TransportOps (see conn.h).
 *
 * The worker's memory for slow readers is bounded too, whatever carries
 * them: every byte queued here, or held by a transport that could not
 * write a frame whole (it reports that with conn_transport_holds()), counts
 * against collab.max_output_buffer.  When the sum passes it, the
 * connections that have waited longest for their data to go out (then
 * those with most of it) are shed: their queues are dropped and they are
 * closed with code 1013 and a reason, once what the transport holds has
 * gone out; if those transports' own bytes keep the sum too high, the
 * oldest of them are dropped at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/rand.h>

#include "utils/memutils.h"

#include "collab.h"
#include "conn.h"
#include "metrics.h"
#include "sio_codec.h"

/* A client further behind than this is too slow to keep. */
#define OUT_QUEUE_MAX_FRAMES	4096
#define OUT_QUEUE_MAX_BYTES		(16 * 1024 * 1024)

/* A shed connection's close frame waits this long for its socket. */
#define SHED_LINGER_S			10

/* WebSocket close code 1013, "Try Again Later" (RFC 6455, IANA registry) */
#define CLOSE_TRY_AGAIN_LATER	1013

#define SHED_REASON "collab.max_output_buffer reached: this connection read too slowly"

static dlist_head all_conns = DLIST_STATIC_INIT(all_conns);
static int	nconns = 0;
static MemoryContext conns_cxt = NULL;

/* Bytes queued and held by transports, over every connection. */
static int64 output_bytes = 0;

static void release_held(Conn *conn);
static void account(Conn *conn, int64 queued, int64 held);

/* ----------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------- */

static void
make_conn_id(char *out)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[CONN_ID_LEN];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		elog(ERROR, "could not generate a connection id");
	for (int i = 0; i < CONN_ID_LEN; i++)
		out[i] = alphabet[raw[i] & 63];
	out[CONN_ID_LEN] = '\0';
}

/* A new connection with a fresh random id, in a memory context of its own. */
Conn *
conn_create(void)
{
	MemoryContext cxt;
	Conn	   *conn;

	if (conns_cxt == NULL)
		conns_cxt = AllocSetContextCreate(TopMemoryContext, "collab connections",
										  ALLOCSET_DEFAULT_SIZES);
	cxt = AllocSetContextCreate(conns_cxt, "collab connection", ALLOCSET_SMALL_SIZES);
	conn = MemoryContextAllocZero(cxt, sizeof(Conn));
	conn->cxt = cxt;
	conn->state = CONN_OPEN;
	make_conn_id(conn->id);
	dlist_push_tail(&all_conns, &conn->all_node);
	nconns++;
	collab_metrics->connections_total++;
	return conn;
}

/* t carries conn from now on. */
void
conn_attach(Conn *conn, Transport *t)
{
	conn->transport = t;
	t->conn = conn;
}

/* conn's transport is gone. */
void
conn_detach(Conn *conn)
{
	if (conn->transport)
		conn->transport->conn = NULL;
	conn->transport = NULL;
}

/* Frees conn once it has ended and nothing refers to it. */
static void
free_if_done(Conn *conn)
{
	if (conn->state != CONN_CLOSED || conn->pending_jobs > 0 || conn->transport != NULL)
		return;
	MemoryContextDelete(conn->cxt);
}

/*
 * The session is over: what it had not sent is dropped, and it is freed as
 * soon as no job refers to it any more.
 */
void
conn_end(Conn *conn)
{
	for (OutItem *item = conn->out_head; item; item = item->next)
		outframe_release(item->frame);
	conn->out_head = conn->out_tail = NULL;
	conn->out_count = 0;
	account(conn, -(int64) conn->out_bytes, -(int64) conn->transport_bytes);
	dlist_delete(&conn->all_node);
	nconns--;
	conn->state = CONN_CLOSED;
	free_if_done(conn);
}

/* A job refers to conn: it is not freed until conn_unpin(). */
void
conn_pin(Conn *conn)
{
	conn->pending_jobs++;
}

/* The end of a job's reference: releases the hold, may free conn. */
void
conn_unpin(Conn *conn)
{
	/* may free an ended connection once nothing refers to it */
	conn->pending_jobs--;
	release_held(conn);
}

int
conn_count(void)
{
	return nconns;
}

/* Closes every connection once its queue is written (they reconnect). */
void
conn_close_all(int status)
{
	dlist_iter	it;

	dlist_foreach(it, &all_conns)
		conn_close_after_flush(dlist_container(Conn, all_node, it.cur), status);
}

/* Calls fn for every connection; fn may close it, but not end it. */
void
conn_foreach(void (*fn) (Conn *conn, void *arg), void *arg)
{
	dlist_iter	it;

	dlist_foreach(it, &all_conns)
		fn(dlist_container(Conn, all_node, it.cur), arg);
}

/* ----------------------------------------------------------------
 * Outgoing frames
 * ---------------------------------------------------------------- */

OutFrame *
outframe_make(const char *data, size_t len)
{
	OutFrame   *f = MemoryContextAlloc(TopMemoryContext, sizeof(OutFrame));

	f->refcount = 0;
	f->len = len;
	f->data = MemoryContextAlloc(TopMemoryContext, LWS_PRE + len);
	memcpy(f->data + LWS_PRE, data, len);
	return f;
}

void
outframe_release(OutFrame *frame)
{
	if (frame == NULL)			/* an unfilled place (conn_queue_slot) */
		return;
	if (--frame->refcount <= 0)
	{
		pfree(frame->data);
		pfree(frame);
	}
}

/* Drops the transport at once (the session then ends). */
void
conn_kill(Conn *conn)
{
	if (conn->transport)
		conn->transport->ops->kill(conn->transport);
}

/* May a frame go to the transport now, outside its own callbacks? */
static bool
can_write_now(Conn *conn)
{
	return conn->transport != NULL && conn->state != CONN_CLOSED && !conn->close_after_flush &&
		conn->transport->ops->ready(conn->transport);
}

static void
write_now(Conn *conn, OutFrame *frame)
{
	if (!conn->transport->ops->write(conn->transport, frame))
	{
		/* the transport failed: it closes on the event loop's next pass */
		conn->close_after_flush = true;
		conn->close_status = LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
		conn_kill(conn);
	}
}

/*
 * Takes the first item off the connection's queue and returns its frame
 * (NULL for an unfilled place, see conn_queue_slot), which the caller releases.
 */
OutFrame *
conn_queue_pop(Conn *conn)
{
	OutItem    *item = conn->out_head;
	OutFrame   *f = item->frame;

	conn->out_head = item->next;
	if (conn->out_head == NULL)
		conn->out_tail = NULL;
	conn->out_count--;
	if (f != NULL)
		account(conn, -(int64) f->len, 0);
	pfree(item);
	return f;
}

/*
 * Holds conn's outgoing frames in its queue until the job that holds it
 * lets go (conn_unpin): the replies of a batch wait there while the batch's
 * events go out (jobs.c).
 */
void
conn_hold(Conn *conn)
{
	conn->held = true;
}

/*
 * Ends a hold: writes what was queued meanwhile, replies first, as far as
 * the transport takes it; the transport asks for the rest when it can.
 */
static void
release_held(Conn *conn)
{
	conn->held = false;
	while (conn->out_head != NULL && can_write_now(conn))
	{
		OutFrame   *f = conn_queue_pop(conn);

		if (f != NULL)
		{
			write_now(conn, f);
			outframe_release(f);
		}
	}
	if (conn->out_head != NULL && conn->transport != NULL)
		conn->transport->ops->want_writable(conn->transport);
	if (conn->state == CONN_CLOSED)
		free_if_done(conn);
}

/* A new, empty item at the end of the connection's queue. */
static OutItem *
queue_item(Conn *conn)
{
	OutItem    *item = MemoryContextAlloc(conn->cxt, sizeof(OutItem));

	item->frame = NULL;
	item->queued_at = lws_now_usecs();
	item->next = NULL;
	if (conn->out_tail)
		conn->out_tail->next = item;
	else
		conn->out_head = item;
	conn->out_tail = item;
	conn->out_count++;
	return item;
}

void
conn_send_frame(Conn *conn, OutFrame *frame)
{
	OutItem    *item;

	/* a shed connection gets nothing more: it is closing for what it had */
	if (conn->transport == NULL || conn->state == CONN_CLOSED || conn->shed)
		return;
	if (conn->out_count >= OUT_QUEUE_MAX_FRAMES ||
		conn->out_bytes + frame->len > OUT_QUEUE_MAX_BYTES)
	{
		/* too slow: stop feeding it and close */
		if (!conn->close_after_flush)
		{
			ereport(LOG, (errmsg("collab worker closes connection %s: outgoing queue full", conn->id)));
			conn->close_after_flush = true;
			conn->close_status = LWS_CLOSE_STATUS_POLICY_VIOLATION;
			conn_kill(conn);
		}
		return;
	}

	/*
	 * Outside the transport's callbacks (replies after a commit, fan-out), a
	 * frame for a connection with nothing pending goes straight to the
	 * transport: no writable request, no extra pass of the event loop per
	 * member.  A held connection's frames queue until it is released.
	 */
	if (!conn->held && conn->out_head == NULL && can_write_now(conn))
	{
		write_now(conn, frame);
		return;
	}
	item = queue_item(conn);
	item->frame = frame;
	frame->refcount++;
	if (!conn->held)
		conn->transport->ops->want_writable(conn->transport);
	account(conn, (int64) frame->len, 0);
}

/*
 * A place in a held connection's queue for a frame that is not built yet
 * (see join_done in session.c); conn_fill_slot() puts the frame there, or
 * with NULL removes the place.  Nothing writes a held queue, so no empty
 * place is ever seen.
 */
OutItem *
conn_queue_slot(Conn *conn)
{
	Assert(conn->held);
	return queue_item(conn);
}

void
conn_fill_slot(Conn *conn, OutItem *slot, OutFrame *frame)
{
	OutItem   **link;
	OutItem    *prev = NULL;

	if (slot == NULL)
		return;
	if (frame != NULL)
	{
		frame->refcount++;
		slot->frame = frame;
		account(conn, (int64) frame->len, 0);
		return;
	}
	for (link = &conn->out_head; *link != slot; link = &(*link)->next)
		prev = *link;
	*link = slot->next;
	if (conn->out_tail == slot)
		conn->out_tail = prev;
	conn->out_count--;
	pfree(slot);
}

void
conn_send_text(Conn *conn, const char *data, size_t len)
{
	OutFrame   *f = outframe_make(data, len);

	f->refcount++;
	conn_send_frame(conn, f);
	outframe_release(f);
}

void
conn_send_buf(Conn *conn, StringInfo buf)
{
	conn_send_text(conn, buf->data, buf->len);
}

/*
 * Closes the connection once what is queued has been written.  The session
 * ends on purpose, the client's (a close packet, a DISCONNECT) or the
 * server's: its locks are released at once, unlike those of a session
 * whose transport is lost (session_transport_lost).
 */
void
conn_close_after_flush(Conn *conn, int status)
{
	if (conn->transport == NULL)
		return;
	conn->ended_cleanly = true;
	conn->close_after_flush = true;
	conn->close_status = status;
	conn->transport->ops->want_writable(conn->transport);
}

/* An acknowledgement whose argument is the JSON value json. */
void
conn_send_ack(Conn *conn, int64 ack_id, const char *json, size_t len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_encode_ack(&buf, NULL, ack_id, json, len);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

/* An ack {ok:false,error:{code,message}} or, without ack, an error event. */
void
conn_send_error(Conn *conn, int64 ack_id, CollabErrorCode code, const char *message,
				const char *resource_id)
{
	const char *name = collab_errors[code].code;
	StringInfoData buf;

	collab_metrics->requests_failed++;
	initStringInfo(&buf);
	if (ack_id >= 0)
	{
		sio_ack_begin(&buf, NULL, ack_id);
		sio_arg_begin(&buf);
		appendStringInfoString(&buf, "{\"ok\":false,\"error\":{\"code\":");
		sio_json_escape(&buf, name);
		appendStringInfoString(&buf, ",\"message\":");
		sio_json_escape(&buf, message);
		appendStringInfoString(&buf, "}}");
	}
	else
	{
		sio_event_begin(&buf, NULL, "error", SIO_NO_ACK);
		sio_arg_begin(&buf);
		appendStringInfoString(&buf, "{\"code\":");
		sio_json_escape(&buf, name);
		appendStringInfoString(&buf, ",\"message\":");
		sio_json_escape(&buf, message);
		if (resource_id)
		{
			appendStringInfoString(&buf, ",\"resourceId\":");
			sio_json_escape(&buf, resource_id);
		}
		appendStringInfoChar(&buf, '}');
	}
	sio_packet_end(&buf);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

/* ----------------------------------------------------------------
 * Locks held
 * ---------------------------------------------------------------- */

/* conn holds the lock of resource_id with token (again). */
void
conn_store_token(Conn *conn, const char *resource_id, int64 token)
{
	HeldLock   *h;

	for (h = conn->locks; h; h = h->next)
		if (strcmp(h->resource_id, resource_id) == 0)
		{
			h->token = token;
			return;
		}
	h = MemoryContextAlloc(conn->cxt, sizeof(HeldLock));
	h->resource_id = MemoryContextStrdup(conn->cxt, resource_id);
	h->token = token;
	h->next = conn->locks;
	conn->locks = h;
}

/* conn's lock of resource_id was released or expired. */
void
conn_forget_lock(Conn *conn, const char *resource_id)
{
	HeldLock  **link = &conn->locks;

	while (*link)
	{
		if (strcmp((*link)->resource_id, resource_id) == 0)
		{
			HeldLock   *h = *link;

			*link = h->next;
			pfree(h->resource_id);
			pfree(h);
			return;
		}
		link = &(*link)->next;
	}
}

/* The token of conn's lock of resource_id, or -1. */
int64
conn_held_token(Conn *conn, const char *resource_id)
{
	for (HeldLock *h = conn->locks; h; h = h->next)
		if (strcmp(h->resource_id, resource_id) == 0)
			return h->token;
	return -1;
}

/* ----------------------------------------------------------------
 * The output budget (collab.max_output_buffer)
 * ---------------------------------------------------------------- */

/* Bytes queued and held by transports, over every connection. */
int64
conn_output_bytes(void)
{
	return output_bytes;
}

/*
 * conn's transport now holds bytes of a frame it could not write whole
 * (0: it has written them).
 */
void
conn_transport_holds(Conn *conn, size_t bytes)
{
	if (bytes > 0 && conn->transport_bytes == 0)
		conn->transport_since = lws_now_usecs();
	account(conn, 0, (int64) bytes - (int64) conn->transport_bytes);
}

/* Since when conn has been waiting for its data to go out (INT64_MAX: it is not). */
static int64
waiting_since(const Conn *conn)
{
	int64		since = INT64_MAX;

	if (conn->out_head != NULL)
		since = conn->out_head->queued_at;
	if (conn->transport_bytes > 0)
		since = Min(since, conn->transport_since);
	return since;
}

typedef struct ShedCandidate
{
	Conn	   *conn;
	int64		since;
	size_t		bytes;
} ShedCandidate;

/* The slowest reader first: waiting longest, then with most to send. */
static int
slowest_first(const void *a, const void *b)
{
	const ShedCandidate *x = a;
	const ShedCandidate *y = b;

	if (x->since != y->since)
		return x->since < y->since ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return 0;
}

/*
 * Sheds conn: what it had queued is dropped, and it is closed with 1013
 * and a reason once its transport has written what it holds, or after
 * SHED_LINGER_S.
 */
static void
shed_conn(Conn *conn)
{
	OutItem    *next;

	for (OutItem *item = conn->out_head; item; item = next)
	{
		next = item->next;
		outframe_release(item->frame);
		pfree(item);
	}
	conn->out_head = conn->out_tail = NULL;
	conn->out_count = 0;
	account(conn, -(int64) conn->out_bytes, 0);
	conn->shed = true;
	conn->close_after_flush = true;
	conn->close_status = CLOSE_TRY_AGAIN_LATER;
	conn->close_text = SHED_REASON;
	collab_metrics->connections_shed++;
	if (conn->transport)
	{
		conn->transport->ops->want_writable(conn->transport);
		conn->transport->ops->kill_after(conn->transport, SHED_LINGER_S);
	}
}

/*
 * The sum passed collab.max_output_buffer: sheds the slowest readers until
 * it is a tenth below it (so that the next shedding is not the next
 * frame's), then, if what shed connections' transports still hold keeps
 * it above, drops the oldest of those at once.
 */
static void
shed_slowest(void)
{
	int64		cap = (int64) collab_max_output_buffer_kb * 1024;
	int64		target = cap - cap / 10;
	ShedCandidate *cands;
	int			n = 0;
	int			nshed = 0;
	dlist_iter	it;

	cands = palloc(sizeof(ShedCandidate) * Max(nconns, 1));
	dlist_foreach(it, &all_conns)
	{
		Conn	   *c = dlist_container(Conn, all_node, it.cur);

		if (c->out_bytes + c->transport_bytes == 0 || c->transport == NULL)
			continue;
		cands[n].conn = c;
		cands[n].since = waiting_since(c);
		cands[n].bytes = c->out_bytes + c->transport_bytes;
		n++;
	}
	qsort(cands, n, sizeof(ShedCandidate), slowest_first);
	for (int i = 0; i < n && output_bytes > target; i++)
		if (!cands[i].conn->shed)
		{
			shed_conn(cands[i].conn);
			nshed++;
		}
	for (int i = 0; i < n && output_bytes > target; i++)
	{
		Conn	   *c = cands[i].conn;

		if (!c->shed || c->transport_bytes == 0)
			continue;
		/* its transport lets go of the bytes as it closes, on the next pass */
		account(c, 0, -(int64) c->transport_bytes);
		conn_kill(c);
	}
	pfree(cands);
	if (nshed > 0)
		ereport(LOG,
				(errmsg("collab worker closes %d connection(s) that read too slowly: collab.max_output_buffer (%d kB) reached",
						nshed, collab_max_output_buffer_kb)));
}

/*
 * Adds to conn's queued and transport-held bytes and to the worker's sum;
 * past collab.max_output_buffer, the slowest readers are shed.
 */
static void
account(Conn *conn, int64 queued, int64 held)
{
	conn->out_bytes = (size_t) ((int64) conn->out_bytes + queued);
	conn->transport_bytes = (size_t) ((int64) conn->transport_bytes + held);
	output_bytes += queued + held;
	collab_metrics->output_bytes = output_bytes;
	if ((queued > 0 || held > 0) &&
		output_bytes > (int64) collab_max_output_buffer_kb * 1024)
		shed_slowest();
}
