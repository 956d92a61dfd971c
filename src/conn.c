/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  A worker connection's outgoing frames, its end, and the locks it holds.
 *
 * Outgoing frames go straight to the socket when it takes them, and
 * otherwise are queued per connection and written from WRITEABLE callbacks,
 * so a slow client only delays itself; one whose queue grows past a limit
 * is disconnected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "utils/memutils.h"

#include "conn.h"
#include "metrics.h"
#include "sio_codec.h"

/* A client further behind than this is too slow to keep. */
#define OUT_QUEUE_MAX_FRAMES	4096
#define OUT_QUEUE_MAX_BYTES		(16 * 1024 * 1024)

dlist_head	ws_all_conns = DLIST_STATIC_INIT(ws_all_conns);
int			ws_conn_count = 0;

/* Inside a libwebsockets callback (where frames are only queued)? */
int			ws_in_callback = 0;

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

/*
 * Writes a whole frame to a plain (not TLS) connection's socket with one
 * send(), framing it in the frame's headroom: a server's text frame is the
 * same header for every recipient, so a frame shared by a fan-out can be
 * framed in place.  Going past lws_write() saves, per member of a fan-out,
 * the poll() that lws 4.1 needs before each write it did not ask for (see
 * ws_send_frame) and its own bookkeeping.  What the kernel does not take is
 * handed to lws as raw bytes, which it sends before anything else.
 * Returns false if the socket failed.
 */
static bool
send_plain(Conn *conn, OutFrame *frame)
{
	unsigned char *payload = frame->data + LWS_PRE;
	size_t		len = frame->len;
	size_t		hlen = len < 126 ? 2 : (len < 65536 ? 4 : 10);
	unsigned char *h = payload - hlen;
	ssize_t		n;

	h[0] = 0x81;				/* FIN, text */
	if (len < 126)
		h[1] = (unsigned char) len;
	else if (len < 65536)
	{
		h[1] = 126;
		h[2] = (unsigned char) (len >> 8);
		h[3] = (unsigned char) len;
	}
	else
	{
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char) ((uint64) len >> (56 - 8 * i));
	}
	n = send(lws_get_socket_fd(conn->wsi), h, hlen + len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n < 0)
	{
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return false;
		n = 0;
	}
	if ((size_t) n < hlen + len)
	{
		size_t		rest = hlen + len - n;
		unsigned char *buf = palloc(LWS_PRE + rest);
		int			m;

		memcpy(buf + LWS_PRE, h + n, rest);
		/* clears lws's back-to-back guard (the answer is known: choked) */
		if (lws_send_pipe_choked(conn->wsi))
		{
			/* lws keeps what the socket does not take */
		}
		m = lws_write(conn->wsi, buf + LWS_PRE, rest, LWS_WRITE_HTTP);
		pfree(buf);
		if (m < (int) rest)
			return false;
	}
	return true;
}

/* May a frame go to the socket now, outside lws's WRITEABLE callback? */
static bool
can_write_now(Conn *conn)
{
	return conn->wsi != NULL && conn->state != CONN_CLOSED && !conn->close_after_flush &&
		(conn->plain ? !lws_partial_buffered(conn->wsi) : !lws_send_pipe_choked(conn->wsi));
}

static void
write_now(Conn *conn, OutFrame *frame)
{
	bool		sent;

	if (conn->plain)
		sent = send_plain(conn, frame);
	else
		sent = lws_write(conn->wsi, frame->data + LWS_PRE, frame->len,
						 LWS_WRITE_TEXT) >= (int) frame->len;
	collab_metrics->messages_out++;
	if (!sent)
	{
		/* the socket failed: lws closes it on its next pass */
		conn->close_after_flush = true;
		conn->close_status = LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
		lws_set_timeout(conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
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
		conn->out_bytes -= f->len;
	pfree(item);
	return f;
}

/* A job refers to conn: it is not freed until conn_unpin(). */
void
conn_pin(Conn *conn)
{
	conn->pending_jobs++;
}

/*
 * Holds conn's outgoing frames in its queue until ws_release_held(): the
 * replies of a batch wait there while the batch's events go out (jobs.c).
 */
void
conn_hold(Conn *conn)
{
	conn->held = true;
}

/*
 * Ends a hold (see reply in jobs.c): writes what was queued meanwhile,
 * replies first, as far as the socket takes it; lws's WRITEABLE callback
 * writes the rest.
 */
void
ws_release_held(Conn *conn)
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
	if (conn->out_head != NULL && conn->wsi != NULL)
		lws_callback_on_writable(conn->wsi);
	if (conn->state == CONN_CLOSED)
		conn_free_if_done(conn);
}

/* The end of a job's reference: releases the hold, may free conn. */
void
conn_unpin(Conn *conn)
{
	conn->pending_jobs--;
	ws_release_held(conn);
}

/* A new, empty item at the end of the connection's queue. */
static OutItem *
queue_item(Conn *conn)
{
	OutItem    *item = MemoryContextAlloc(conn->cxt, sizeof(OutItem));

	item->frame = NULL;
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
ws_send_frame(Conn *conn, OutFrame *frame)
{
	OutItem    *item;

	if (conn->wsi == NULL || conn->state == CONN_CLOSED)
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
			lws_set_timeout(conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		}
		return;
	}
	/*
	 * Outside lws callbacks (replies after a commit, fan-out), a frame for a
	 * connection with nothing pending goes straight to the socket: no
	 * writable request, no extra pass of the event loop per member.  What
	 * the kernel does not take, lws keeps and sends when it can; until then
	 * frames queue here.  (lws 4.1 must not be given a frame while it still
	 * holds part of an earlier one, and refuses a second write that no
	 * lws_send_pipe_choked() or pass of its loop came before, as an
	 * "illegal back-to-back write": so that call, with its poll(), stays,
	 * except where send_plain() writes the socket itself.)  A held
	 * connection's frames queue until ws_release_held().
	 */
	if (!ws_in_callback && !conn->held && conn->out_head == NULL && can_write_now(conn))
	{
		write_now(conn, frame);
		return;
	}
	item = queue_item(conn);
	item->frame = frame;
	frame->refcount++;
	conn->out_bytes += frame->len;
	if (!conn->held)
		lws_callback_on_writable(conn->wsi);
}

/*
 * A place in a held connection's queue for a frame that is not built yet
 * (see join_done); conn_fill_slot() puts the frame there, or with NULL removes
 * the place.  Nothing writes a held queue, so no empty place is ever seen.
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
		conn->out_bytes += frame->len;
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
ws_send_text(Conn *conn, const char *data, size_t len)
{
	OutFrame   *f = outframe_make(data, len);

	f->refcount++;
	ws_send_frame(conn, f);
	outframe_release(f);
}

void
conn_send_buf(Conn *conn, StringInfo buf)
{
	ws_send_text(conn, buf->data, buf->len);
}

void
ws_close_after_flush(Conn *conn, int status)
{
	if (conn->wsi == NULL)
		return;
	conn->close_after_flush = true;
	conn->close_status = status;
	lws_callback_on_writable(conn->wsi);
}

/* An ack {ok:false,error:{code,message}} or, without ack, an error event. */
void
ws_send_error(Conn *conn, int64 ack_id, const char *code, const char *message,
			  const char *resource_id)
{
	StringInfoData buf;

	collab_metrics->requests_failed++;
	initStringInfo(&buf);
	if (ack_id >= 0)
	{
		sio_ack_begin(&buf, NULL, ack_id);
		sio_arg_begin(&buf);
		appendStringInfoString(&buf, "{\"ok\":false,\"error\":{\"code\":");
		sio_json_escape(&buf, code);
		appendStringInfoString(&buf, ",\"message\":");
		sio_json_escape(&buf, message);
		appendStringInfoString(&buf, "}}");
	}
	else
	{
		sio_event_begin(&buf, NULL, "error", SIO_NO_ACK);
		sio_arg_begin(&buf);
		appendStringInfoString(&buf, "{\"code\":");
		sio_json_escape(&buf, code);
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

void
conn_send_ack_raw(Conn *conn, int64 ack_id, const char *json, size_t len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_encode_ack(&buf, NULL, ack_id, json, len);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

void
conn_free_if_done(Conn *conn)
{
	if (conn->state != CONN_CLOSED || conn->pending_jobs > 0 || conn->wsi != NULL)
		return;
	if (conn->rx.data != NULL)
		pfree(conn->rx.data);
	MemoryContextDelete(conn->cxt);
}

/* ----------------------------------------------------------------
 * Locks held
 * ---------------------------------------------------------------- */

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

int64
conn_held_token(Conn *conn, const char *resource_id)
{
	for (HeldLock *h = conn->locks; h; h = h->next)
		if (strcmp(h->resource_id, resource_id) == 0)
			return h->token;
	return -1;
}

