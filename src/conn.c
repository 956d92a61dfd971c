/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  A client's Socket.IO session: its life, what it sends and the locks
 *	  it holds.
 *
 * What a session sends goes to the Engine.IO session that carries it
 * (eio.c), which writes it to whichever transport it has; a session that
 * has ended sends nothing.  A session is freed once it has ended and no
 * job refers to it any more.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/rand.h>

#include "utils/memutils.h"

#include "collab.h"
#include "conn.h"
#include "eio.h"
#include "metrics.h"
#include "sio_codec.h"

static dlist_head all_conns = DLIST_STATIC_INIT(all_conns);
static int	nconns = 0;
static MemoryContext conns_cxt = NULL;

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

/*
 * A new Socket.IO session with a fresh random id, carried by eio, in a
 * memory context of its own.
 */
Conn *
conn_create(EioSession *eio)
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
	conn->eio = eio;
	eio->conn = conn;
	dlist_push_tail(&all_conns, &conn->all_node);
	nconns++;
	return conn;
}

/* conn is no longer carried by its Engine.IO session. */
void
conn_detach(Conn *conn)
{
	if (conn->eio && conn->eio->conn == conn)
		conn->eio->conn = NULL;
	conn->eio = NULL;
}

/* Frees conn once it has ended and nothing refers to it. */
static void
free_if_done(Conn *conn)
{
	if (conn->state != CONN_CLOSED || conn->pending_jobs > 0)
		return;
	MemoryContextDelete(conn->cxt);
}

/*
 * The session is over: it sends nothing more, and it is freed as soon as
 * no job refers to it any more.
 */
void
conn_end(Conn *conn)
{
	conn_detach(conn);
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

/*
 * The end of a job's reference: ends a hold of its replies (conn_hold),
 * and may free an ended session once nothing refers to it.
 */
void
conn_unpin(Conn *conn)
{
	conn->pending_jobs--;
	if (conn->held)
	{
		conn->held = false;
		if (conn->eio)
			eio_release(conn->eio);
	}
	free_if_done(conn);
}

int
conn_count(void)
{
	return nconns;
}

/* Closes every session's connection once its queue is written (they reconnect). */
void
conn_close_all(int status)
{
	dlist_iter	it;

	dlist_foreach(it, &all_conns)
		conn_close_after_flush(dlist_container(Conn, all_node, it.cur), status);
}

/* Calls fn for every session; fn may close it, but not end it. */
void
conn_foreach(void (*fn) (Conn *conn, void *arg), void *arg)
{
	dlist_iter	it;

	dlist_foreach(it, &all_conns)
		fn(dlist_container(Conn, all_node, it.cur), arg);
}

/* ----------------------------------------------------------------
 * Sending
 * ---------------------------------------------------------------- */

/* Drops the connection at once (the session then ends). */
void
conn_kill(Conn *conn)
{
	if (conn->eio)
		eio_kill(conn->eio);
}

/*
 * Holds conn's outgoing frames in the queue of its Engine.IO session until
 * the job that holds it lets go (conn_unpin): the replies of a batch wait
 * there while the batch's events go out (jobs.c).
 */
void
conn_hold(Conn *conn)
{
	if (conn->eio == NULL || conn->state == CONN_CLOSED)
		return;
	conn->held = true;
	eio_hold(conn->eio);
}

void
conn_send_frame(Conn *conn, OutFrame *frame)
{
	if (conn->eio == NULL || conn->state == CONN_CLOSED)
		return;
	eio_send_frame(conn->eio, frame);
}

/*
 * A place in a held session's queue for a frame that is not built yet
 * (see join_done in session.c); conn_fill_slot() puts the frame there, or
 * with NULL removes the place.
 */
OutItem *
conn_queue_slot(Conn *conn)
{
	Assert(conn->held);
	return conn->eio ? eio_queue_slot(conn->eio) : NULL;
}

void
conn_fill_slot(Conn *conn, OutItem *slot, OutFrame *frame)
{
	if (slot == NULL || conn->eio == NULL)
	{
		if (frame != NULL && frame->refcount == 0)
			outframe_release(frame);
		return;
	}
	eio_fill_slot(conn->eio, slot, frame);
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
	if (conn->eio == NULL)
		return;
	conn->ended_cleanly = true;
	eio_close_after_flush(conn->eio, status);
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

/*
 * The error event {code, message, resourceId?} as one Socket.IO packet
 * (ErrorEvent in types/collab.d.ts), for a request without an ack or for
 * what is not a request's fault.
 */
void
conn_encode_error_event(StringInfo buf, CollabErrorCode code, const char *message,
						const char *resource_id)
{
	sio_event_begin(buf, NULL, "error", SIO_NO_ACK);
	sio_arg_begin(buf);
	appendStringInfoString(buf, "{\"code\":");
	sio_json_escape(buf, collab_errors[code].code);
	appendStringInfoString(buf, ",\"message\":");
	sio_json_escape(buf, message);
	if (resource_id)
	{
		appendStringInfoString(buf, ",\"resourceId\":");
		sio_json_escape(buf, resource_id);
	}
	appendStringInfoChar(buf, '}');
	sio_packet_end(buf);
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
		sio_packet_end(&buf);
	}
	else
		conn_encode_error_event(&buf, code, message, resource_id);
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
