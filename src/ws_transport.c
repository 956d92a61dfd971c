/*-------------------------------------------------------------------------
 *
 * ws_transport.c
 *	  The worker's port under libwebsockets: HTTP requests (/healthz,
 *	  /metrics, the demo UI, long-polling under /socket.io/), and WebSocket
 *	  connections as a transport of Engine.IO sessions.
 *
 * Every libwebsockets callback runs inside a PG_TRY boundary
 * (ws_transport_callback): an error closes that one connection and the
 * worker lives on.  Requests under /socket.io/ go by their transport: a
 * WebSocket upgrade opens a session here, or, with the sid of a
 * long-polling session, offers itself as that session's upgrade (a probe);
 * HTTP requests are long-polling (poll_http.c).  A WebSocket carries one
 * Engine.IO session (eio.c): what arrives is reassembled into whole
 * messages and handed to it, and what it sends is written through the
 * TransportOps below, straight to the socket where the connection is
 * plain.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "utils/memutils.h"

#include "collab.h"
#include "conn.h"
#include "eio.h"
#include "metrics.h"
#include "poll_http.h"
#include "role.h"
#include "rooms.h"
#include "sio_codec.h"
#include "static_files.h"
#include "ws_transport.h"

#define WS_KIND		0x77736b74	/* "wskt": what the connection's user data is */

/* A WebSocket carrying a session, or offered to one as its upgrade. */
typedef struct WsTransport
{
	uint32		kind;			/* WS_KIND */
	Transport	base;
	struct lws *wsi;
	bool		plain;			/* not TLS, not closing: send_plain() may write */
	bool		closing;		/* its close frame is lws's to send */
	size_t		held;			/* bytes of a frame that lws keeps to send */
	StringInfoData rx;			/* reassembly of a fragmented message */
	OutItem    *own_head;		/* packets of its own (a probe's answer), first */
	OutItem    *own_tail;
} WsTransport;

#define ws_of(t)	((WsTransport *) ((char *) (t) - offsetof(WsTransport, base)))

/* WebSocket close code 1013, "Try Again Later" (RFC 6455, IANA registry) */
#define CLOSE_TRY_AGAIN_LATER	1013

/* Inside a libwebsockets callback (where frames are only queued)? */
static int	in_callback = 0;

static MemoryContext transports_cxt = NULL;

/*
 * Messages that arrive in pieces are assembled here, not in the
 * connection's own context: a buffer freed there would stay with that
 * connection for good, and every connection that once sent a long message
 * would keep one.
 */
static MemoryContext rx_cxt = NULL;

static WsTransport *
transport_of(struct lws *wsi)
{
	WsTransport **slot = (WsTransport **) lws_wsi_user(wsi);

	return slot && *slot && (*slot)->kind == WS_KIND ? *slot : NULL;
}

/* ----------------------------------------------------------------
 * Writing (the TransportOps of a WebSocket)
 * ---------------------------------------------------------------- */

/* The session this WebSocket carries (not one it is only a probe of), or NULL. */
static EioSession *
carried(WsTransport *t)
{
	EioSession *eio = t->base.eio;

	return eio && eio->transport == &t->base ? eio : NULL;
}

/*
 * lws keeps what the kernel did not take of a frame (at most one frame, see
 * ws_ready), and those bytes count against the worker's output budget
 * (eio.c) until they are out: at most bytes, which we learn in its next
 * writable callback, asked for here.
 */
static void
hold(WsTransport *t, size_t bytes)
{
	t->held = bytes;
	if (carried(t))
		eio_transport_holds(carried(t), bytes);
	lws_callback_on_writable(t->wsi);
}

/* Has lws written what it held? */
static void
check_held(WsTransport *t)
{
	if (t->held > 0 && !lws_partial_buffered(t->wsi))
	{
		t->held = 0;
		if (carried(t))
			eio_transport_holds(carried(t), 0);
	}
}

/*
 * Writes a whole frame to a plain (not TLS) connection's socket with one
 * send(), framing it in the frame's headroom: a server's text frame is the
 * same header for every recipient, so a frame shared by a fan-out can be
 * framed in place.  Going past lws_write() saves, per member of a fan-out,
 * the poll() that lws 4.1 needs before each write it did not ask for (see
 * ws_ready) and its own bookkeeping.  What the kernel does not take is
 * handed to lws as raw bytes, which it sends before anything else.
 * Returns false if the socket failed.
 */
static bool
send_plain(WsTransport *t, OutFrame *frame)
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
	n = send(lws_get_socket_fd(t->wsi), h, hlen + len, MSG_NOSIGNAL | MSG_DONTWAIT);
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
		if (lws_send_pipe_choked(t->wsi))
		{
			/* lws keeps what the socket does not take */
		}
		m = lws_write(t->wsi, buf + LWS_PRE, rest, LWS_WRITE_HTTP);
		pfree(buf);
		if (m < (int) rest)
			return false;
		hold(t, rest);
	}
	return true;
}

/*
 * May a frame go to the socket now?  Not inside an lws callback, where
 * frames only queue.  What the kernel does not take, lws keeps and sends
 * when it can; until then frames queue in the session.  (lws 4.1 must not
 * be given a frame while it still holds part of an earlier one, and refuses
 * a second write that no lws_send_pipe_choked() or pass of its loop came
 * before, as an "illegal back-to-back write": so that call, with its
 * poll(), stays, except where send_plain() writes the socket itself.)
 */
static bool
ws_ready(Transport *base)
{
	WsTransport *t = ws_of(base);

	if (in_callback != 0 || t->closing)
		return false;
	if (lws_partial_buffered(t->wsi))
		return false;
	check_held(t);
	return t->plain || !lws_send_pipe_choked(t->wsi);
}

static bool
ws_write(Transport *base, OutFrame *frame)
{
	WsTransport *t = ws_of(base);
	bool		sent;

	if (t->plain)
		sent = send_plain(t, frame);
	else
	{
		sent = lws_write(t->wsi, frame->data + LWS_PRE, frame->len,
						 LWS_WRITE_TEXT) >= (int) frame->len;
		if (sent && lws_partial_buffered(t->wsi))
			hold(t, frame->len);
	}
	collab_metrics->messages_out++;
	return sent;
}

static void
ws_want_writable(Transport *base)
{
	lws_callback_on_writable(ws_of(base)->wsi);
}

/* A packet of the WebSocket's own ("3probe"), written before the session's. */
static void
ws_send_own(Transport *base, const char *data, size_t len)
{
	WsTransport *t = ws_of(base);
	OutItem    *item = MemoryContextAlloc(transports_cxt, sizeof(OutItem));

	item->frame = outframe_make(data, len);
	item->frame->refcount++;
	item->next = NULL;
	if (t->own_tail)
		t->own_tail->next = item;
	else
		t->own_head = item;
	t->own_tail = item;
	lws_callback_on_writable(t->wsi);
}

/* The session lets go of the WebSocket: it is closed, without more ado. */
static void
ws_release(Transport *base)
{
	WsTransport *t = ws_of(base);

	base->eio = NULL;
	t->plain = false;
	lws_set_timeout(t->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static const TransportOps ws_ops = {
	.name = "websocket",
	.ready = ws_ready,
	.write = ws_write,
	.want_writable = ws_want_writable,
	.send_own = ws_send_own,
	.release = ws_release,
};

/*
 * WRITEABLE: writes the WebSocket's own packets, then the session's queued
 * frames (a probe has none until the upgrade), while the socket takes
 * them: one syscall per frame, but one trip through the event loop for the
 * whole queue.
 */
static int
ws_writeable(WsTransport *t)
{
	EioSession *eio = t->base.eio;
	struct lws *wsi = t->wsi;

	/* lws sends the close frame once the socket takes it, then closes */
	if (t->closing)
		return 0;
	check_held(t);
	/* lws writes what it holds before it calls here: wait until it is out */
	if (t->held > 0)
		return 0;
	while (t->own_head != NULL)
	{
		OutItem    *item = t->own_head;
		bool		whole;

		t->own_head = item->next;
		if (t->own_head == NULL)
			t->own_tail = NULL;
		whole = lws_write(wsi, item->frame->data + LWS_PRE, item->frame->len,
						  LWS_WRITE_TEXT) >= (int) item->frame->len;
		collab_metrics->messages_out++;
		outframe_release(item->frame);
		pfree(item);
		if (!whole)
			return -1;
		if (lws_send_pipe_choked(wsi))
		{
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	if (eio == NULL || eio->transport != &t->base || !eio_may_flush(eio))
		return 0;
	while (eio->out_head != NULL)
	{
		OutFrame   *f = eio_queue_pop(eio);
		bool		whole = true;
		size_t		len = 0;

		if (f != NULL)
		{
			len = f->len;
			whole = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) >= (int) f->len;
			collab_metrics->messages_out++;
			outframe_release(f);
		}
		if (!whole)
			return -1;
		/* lws keeps what the kernel did not take; wait until it is out */
		if (lws_partial_buffered(wsi))
		{
			hold(t, len);
			return 0;
		}
		if (eio->out_head != NULL && lws_send_pipe_choked(wsi))
		{
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	if (eio->close_after_flush)
	{
		const char *text = eio->close_text;

		lws_close_reason(wsi, eio->close_status, (unsigned char *) text, text ? strlen(text) : 0);
		t->closing = true;
		t->plain = false;
		return -1;
	}
	return 0;
}

/* ----------------------------------------------------------------
 * A WebSocket's life
 * ---------------------------------------------------------------- */

/*
 * ESTABLISHED: a new WebSocket, and a new session on it; or, with the sid
 * of a long-polling session (checked in filter_upgrade), that session's
 * probe.
 */
static int
ws_established(struct lws *wsi)
{
	WsTransport **slot = (WsTransport **) lws_wsi_user(wsi);
	WsTransport *t;
	char		address[64];
	char		origin[256];
	char		sidbuf[64];
	const char *sid;
	bool		has_origin;
	const char *refusal = NULL;

	if (transports_cxt == NULL)
	{
		transports_cxt = AllocSetContextCreate(TopMemoryContext, "collab WebSocket transports",
											   ALLOCSET_DEFAULT_SIZES);
		rx_cxt = AllocSetContextCreate(TopMemoryContext, "collab receive buffers",
									   ALLOCSET_DEFAULT_SIZES);
	}
	t = MemoryContextAllocZero(transports_cxt, sizeof(WsTransport));
	t->kind = WS_KIND;
	t->base.ops = &ws_ops;
	t->wsi = wsi;
	t->plain = !lws_is_ssl(wsi);
	t->rx.data = NULL;
	*slot = t;
	sid = lws_get_urlarg_by_name(wsi, "sid=", sidbuf, sizeof(sidbuf));
	if (sid != NULL)
	{
		EioSession *eio = eio_lookup(sid);

		if (eio != NULL && eio_attach_probe(eio, &t->base))
			return 0;
	}
	else
	{
		lws_get_peer_simple(wsi, address, sizeof(address));
		has_origin = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0;
		if (eio_open(&t->base, address, has_origin ? origin : NULL, &refusal) != NULL)
			return 0;
	}
	*slot = NULL;
	t->kind = 0;
	pfree(t);
	if (refusal)
		lws_close_reason(wsi, CLOSE_TRY_AGAIN_LATER, (unsigned char *) refusal, strlen(refusal));
	return -1;
}

/*
 * A message longer than collab.max_message_size: the client is told, as
 * the error event that socket.io-client shows, and the session closed.
 */
static void
too_large(EioSession *eio)
{
	StringInfoData buf;

	initStringInfo(&buf);
	conn_encode_error_event(&buf, CE_PAYLOAD_TOO_LARGE,
							psprintf("messages are limited to %d bytes (collab.max_message_size)",
									 collab_max_message_size),
							NULL);
	eio_send_text(eio, buf.data, buf.len);
	pfree(buf.data);
	eio_close_after_flush(eio, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
}

/* RECEIVE: a whole message goes to the session, pieces are assembled first. */
static int
ws_receive(WsTransport *t, const char *in, size_t len)
{
	struct lws *wsi = t->wsi;
	EioSession *eio = t->base.eio;
	bool		probe = eio->probe == &t->base;
	bool		complete = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

	if (eio->close_after_flush && !probe)
		return 0;
	if (lws_frame_is_binary(wsi))
	{
		if (probe)
			return -1;
		eio_close_after_flush(eio, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE);
		return 0;
	}
	if ((size_t) t->rx.len + len > (size_t) collab_max_message_size)
	{
		if (probe)
			return -1;
		too_large(eio);
		return 0;
	}

	/*
	 * Most messages arrive whole in one callback: parse them where lws put
	 * them.  Only a message in pieces is assembled, in a buffer given back
	 * once it is handled, so that an idle connection holds no buffer at all.
	 */
	if (complete && t->rx.data == NULL)
	{
		collab_metrics->messages_in++;
		eio_receive(eio, &t->base, in, len);
		return 0;
	}
	if (t->rx.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(rx_cxt);

		initStringInfo(&t->rx);
		MemoryContextSwitchTo(old);
	}
	appendBinaryStringInfo(&t->rx, in, len);
	if (!complete)
		return 0;
	collab_metrics->messages_in++;
	eio_receive(eio, &t->base, t->rx.data, t->rx.len);
	pfree(t->rx.data);
	t->rx.data = NULL;
	t->rx.len = 0;
	return 0;
}

/* CLOSED: the socket is gone, and with it the session's transport. */
static void
ws_closed(struct lws *wsi)
{
	WsTransport **slot = (WsTransport **) lws_wsi_user(wsi);
	WsTransport *t = transport_of(wsi);

	if (t == NULL)
		return;
	*slot = NULL;
	t->kind = 0;
	if (t->rx.data != NULL)
		pfree(t->rx.data);
	while (t->own_head != NULL)
	{
		OutItem    *item = t->own_head;

		t->own_head = item->next;
		outframe_release(item->frame);
		pfree(item);
	}
	if (t->base.eio)
		eio_transport_closed(t->base.eio, &t->base);
	pfree(t);
}

/* ----------------------------------------------------------------
 * HTTP
 * ---------------------------------------------------------------- */

/*
 * A new session's upgrade on a standby (role.c): 503 and the JSON body
 * that a polling handshake gets, instead of the switch of protocols.
 * Returns what the filter returns: the connection closes.
 */
static int
refuse_on_standby(struct lws *wsi)
{
	unsigned char buf[LWS_PRE + 1024];
	unsigned char *start = buf + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = buf + sizeof(buf) - 1;
	StringInfoData body;

	initStringInfo(&body);
	role_refusal_body(&body);
	if (lws_add_http_common_headers(wsi, ROLE_STANDBY_STATUS, "application/json", body.len, &p, end) == 0 &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
									 (unsigned char *) "no-store", 8, &p, end) == 0 &&
		lws_finalize_http_header(wsi, &p, end) == 0 && end - p > body.len)
	{
		memcpy(p, body.data, body.len);
		p += body.len;
		(void) lws_write(wsi, start, lws_ptr_diff(p, start), LWS_WRITE_HTTP);
	}
	pfree(body.data);
	return 1;
}

/*
 * Upgrade requests must be Engine.IO v4 over the WebSocket transport;
 * others get an HTTP error instead of the switch of protocols.  One with a
 * sid must name a long-polling session of this worker that may upgrade: a
 * session of another worker stays on long-polling (the client carries on
 * polling when its probe is refused), as does one already upgrading.
 */
static int
filter_upgrade(struct lws *wsi)
{
	char		uri[256];
	char		arg[64];
	const char *v;
	const char *why = NULL;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		strcmp(uri, "/socket.io/") != 0)
	{
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
		return 1;
	}
	/* the returned pointer is to the value, inside arg */
	v = lws_get_urlarg_by_name(wsi, "EIO=", arg, sizeof(arg));
	if (v == NULL || strcmp(v, "4") != 0)
		why = "unsupported protocol version: collab speaks Engine.IO v4 (EIO=4)";
	else if ((v = lws_get_urlarg_by_name(wsi, "transport=", arg, sizeof(arg))) == NULL ||
			 strcmp(v, "websocket") != 0)
		why = "transport unknown: a WebSocket upgrade needs transport=websocket";
	else if ((v = lws_get_urlarg_by_name(wsi, "sid=", arg, sizeof(arg))) != NULL)
	{
		EioSession *eio = eio_lookup(v);

		if (eio_sid_owner(v) >= 0 && eio_sid_owner(v) != eio_local_slot())
			why = "the session lives on another worker: it stays on long-polling";
		else if (eio == NULL || eio->ending)
			why = "Session ID unknown";
		else if (eio->transport == NULL || strcmp(eio->transport->ops->name, "polling") != 0 ||
				 eio->probe != NULL || eio->upgraded || eio->close_after_flush)
			why = "the session cannot upgrade now";
	}
	if (why)
	{
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, why);
		return 1;
	}
	/* a new session, not the upgrade of one */
	if (role_is_standby() && lws_get_urlarg_by_name(wsi, "sid=", arg, sizeof(arg)) == NULL)
		return refuse_on_standby(wsi);
	return 0;
}

static int
http_request(struct lws *wsi, const char *uri)
{
	int			rc;

	if (strcmp(uri, "/socket.io/") == 0)
		return poll_http_request(wsi, (void **) lws_wsi_user(wsi));
	metrics_set_gauges(eio_count(), rooms_count());
	rc = metrics_http(wsi, uri);
	if (rc == -2)
		rc = static_http(wsi, uri);
	if (rc != -2)
		return rc;
	lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
	return -1;
}

static int
callback(struct lws *wsi, enum lws_callback_reasons reason, void *in, size_t len)
{
	WsTransport *t;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			poll_http_busy(wsi);
			return http_request(wsi, (const char *) in);
		case LWS_CALLBACK_HTTP_BODY:
			return poll_http_body(wsi, (void **) lws_wsi_user(wsi), (const char *) in, len);
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			return poll_http_body_done(wsi, (void **) lws_wsi_user(wsi));
		case LWS_CALLBACK_HTTP_WRITEABLE:
			return poll_http_writeable(wsi, (void **) lws_wsi_user(wsi));
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		case LWS_CALLBACK_CLOSED_HTTP:
			/* lws frees the user data with the protocol: the request is over */
			poll_http_closed(wsi, (void **) lws_wsi_user(wsi));
			return 0;
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			poll_http_busy(wsi);
			return filter_upgrade(wsi);
		case LWS_CALLBACK_ESTABLISHED:
			return ws_established(wsi);
		case LWS_CALLBACK_RECEIVE:
			t = transport_of(wsi);
			return t && t->base.eio ? ws_receive(t, (const char *) in, len) : -1;
		case LWS_CALLBACK_SERVER_WRITEABLE:
			t = transport_of(wsi);
			return t && (t->base.eio || t->own_head) ? ws_writeable(t) : -1;
		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			/* lws answers the close: nothing may follow it on the socket */
			t = transport_of(wsi);
			if (t)
				t->plain = false;
			return 0;
		case LWS_CALLBACK_CLOSED:
			ws_closed(wsi);
			return 0;
		default:
			return 0;
	}
}

/*
 * The PG_TRY boundary around every callback: a PostgreSQL error (out of
 * memory, say) must not longjmp through libwebsockets' frames.
 */
int
ws_transport_callback(struct lws *wsi, enum lws_callback_reasons reason,
					  void *user, void *in, size_t len)
{
	volatile int rc = 0;
	MemoryContext oldcxt = CurrentMemoryContext;
	int			outer = in_callback;

	in_callback = outer + 1;
	PG_TRY();
	{
		rc = callback(wsi, reason, in, len);
	}
	PG_CATCH();
	{
		in_callback = outer;
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		/* close only connections, never the listening socket */
		rc = (reason == LWS_CALLBACK_CLOSED || reason == LWS_CALLBACK_CLOSED_HTTP ||
			  reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL) ? 0 : -1;
	}
	PG_END_TRY();
	in_callback = outer;
	return rc;
}
