/*-------------------------------------------------------------------------
 *
 * poll_transport.c
 *	  Engine.IO's HTTP long-polling transport: the handshake, polls (GET)
 *	  and posts (POST) of a session, as the protocol has them.
 *
 * A session on long-polling has one PollTransport, from its handshake
 * until it ends or upgrades, whatever series of HTTP requests reaches it.
 * A GET takes the packets queued for the session, joined by \x1e, or waits
 * until one is queued (at the latest the next ping, after
 * collab.ping_interval); a POST hands the session the packets of its body
 * and is answered "ok".  At most one GET and one POST may be in flight: a
 * second one is answered 400 and the session closed, as the protocol says.
 * The answers to errors are those of the reference server: HTTP 400 with
 * {"code": n, "message": "..."}.
 *
 * The session never writes to a request: it asks the request's carrier
 * to come back (PollRequestOps.wake) and then hands it what is queued at
 * that moment, so that a burst of events leaves in one answer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libwebsockets.h>

#include "utils/memutils.h"

#include "collab.h"
#include "eio.h"
#include "metrics.h"
#include "poll_transport.h"
#include "sio_codec.h"

#define TEXT_PLAIN		"text/plain; charset=UTF-8"

/* A session's long-polling transport. */
struct PollTransport
{
	Transport	base;
	PollRequest *get;			/* the GET that waits, or NULL */
	PollRequest *post;			/* the POST whose body is being read, or NULL */
	bool		woken;			/* get was asked to come back */
};

/* ----------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------- */

static void
answer_init(PollAnswer *out, int status, const char *content_type)
{
	out->status = status;
	out->content_type = content_type;
	initStringInfo(&out->body);
}

/* An error answer: {"code": code, "message": message}. */
void
poll_answer_error(PollAnswer *out, int status, PollError code, const char *message)
{
	answer_init(out, status, "application/json");
	appendStringInfo(&out->body, "{\"code\":%d,\"message\":", (int) code);
	sio_json_escape(&out->body, message);
	appendStringInfoChar(&out->body, '}');
}

void
poll_answer_free(PollAnswer *a)
{
	if (a->body.data)
		pfree(a->body.data);
	a->body.data = NULL;
}

static void
answer_text(PollAnswer *out, const char *text)
{
	answer_init(out, 200, TEXT_PLAIN);
	appendStringInfoString(&out->body, text);
}

/*
 * The packets queued for the session, joined by \x1e, as many as fit
 * POLL_MAX_ANSWER (at least one).  A session that closes sends its close
 * packet alone, in the answer to the poll after its last packets, and then
 * ends: socket.io-client handles a close packet at once but the packets
 * before it in the same answer only on its next tick, after it has
 * dropped the session, and would lose them.  A poll with nothing to take
 * gets a noop, which ends it without news (an upgrade in progress).
 */
static void
take_packets(PollTransport *pt, PollAnswer *out)
{
	EioSession *eio = pt->base.eio;
	StringInfo	body = &out->body;

	answer_init(out, 200, TEXT_PLAIN);
	while (eio->out_head != NULL && eio_may_flush(eio) &&
		   (body->len == 0 || eio->out_head->frame == NULL ||
			body->len + eio->out_head->frame->len < POLL_MAX_ANSWER))
	{
		OutFrame   *f = eio_queue_pop(eio);

		if (f == NULL)
			continue;
		if (body->len > 0)
			appendStringInfoChar(body, '\x1e');
		appendBinaryStringInfo(body, (const char *) f->data + LWS_PRE, f->len);
		outframe_release(f);
		collab_metrics->messages_out++;
	}
	if (body->len == 0 && eio->close_after_flush)
	{
		appendStringInfoChar(body, '1');
		eio_end_soon(eio, EIO_END_CLOSED);
	}
	if (body->len == 0)
		appendStringInfoChar(body, '6');
}

/* ----------------------------------------------------------------
 * The TransportOps of long-polling
 * ---------------------------------------------------------------- */

/* Frames always queue: they leave with the next answer to a GET. */
static bool
poll_ready(Transport *t)
{
	return false;
}

static bool
poll_write(Transport *t, OutFrame *frame)
{
	return false;
}

/* Something is queued (or the session closes): a GET that waits comes back. */
static void
poll_want_writable(Transport *t)
{
	PollTransport *pt = (PollTransport *) t;

	if (pt->get != NULL && !pt->woken)
	{
		pt->woken = true;
		pt->get->ops->wake(pt->get);
	}
}

/* Long-polling is never a probe: it has no packets of its own. */
static void
poll_send_own(Transport *t, const char *data, size_t len)
{
}

/*
 * The session ended, or moved to a WebSocket: a GET that waits gets a
 * close packet (a noop when the client itself closed or upgraded, as the
 * reference server sends), a POST being read is answered as for an
 * unknown session, and the transport is freed.
 */
static void
poll_release(Transport *t)
{
	PollTransport *pt = (PollTransport *) t;
	EioSession *eio = t->eio;
	PollRequest *get = pt->get;

	t->eio = NULL;
	collab_metrics->polling_sessions--;
	if (pt->post)
		pt->post->pt = NULL;
	if (get)
	{
		get->pt = NULL;
		get->final = (eio && (eio->client_closed || eio->upgraded)) ? '6' : '1';
		get->ops->wake(get);
	}
	pfree(pt);
}

static const TransportOps poll_ops = {
	.name = "polling",
	.ready = poll_ready,
	.write = poll_write,
	.want_writable = poll_want_writable,
	.send_own = poll_send_own,
	.release = poll_release,
};

/* ----------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------- */

/*
 * The handshake (a GET without sid): a new session on long-polling,
 * answered with its open packet; 503 when the worker has no room.
 */
void
poll_open(PollRequest *r, const char *address, const char *origin, PollAnswer *out)
{
	PollTransport *pt = MemoryContextAllocZero(TopMemoryContext, sizeof(PollTransport));
	EioSession *eio;
	const char *refusal = NULL;

	pt->base.ops = &poll_ops;
	eio = eio_open(&pt->base, address, origin, &refusal);
	if (eio == NULL)
	{
		pfree(pt);
		poll_answer_error(out, 503, POLL_ERR_BAD_REQUEST,
						  refusal ? refusal : "the server cannot open a session now");
		return;
	}
	collab_metrics->polling_sessions++;
	take_packets(pt, out);
}

/*
 * The session of sid if it is on long-polling; NULL, with the error answer,
 * if it is unknown, or carried by a WebSocket.
 */
static PollTransport *
polling_session(const char *sid, PollAnswer *out)
{
	EioSession *eio = eio_lookup(sid);

	if (eio == NULL || eio->ending)
	{
		poll_answer_error(out, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
		return NULL;
	}
	if (eio->transport == NULL || eio->transport->ops != &poll_ops)
	{
		poll_answer_error(out, 400, POLL_ERR_BAD_REQUEST, "Bad request");
		return NULL;
	}
	return (PollTransport *) eio->transport;
}

/*
 * A GET of session sid: answered at once with what is queued, or waiting
 * for it.  A second GET while one waits is answered 400, and the session
 * is closed (the first one gets the close packet).
 */
PollResult
poll_get(PollRequest *r, const char *sid, PollAnswer *out)
{
	PollTransport *pt = polling_session(sid, out);
	EioSession *eio;

	if (pt == NULL)
		return POLL_ANSWERED;
	eio = pt->base.eio;
	if (pt->get != NULL)
	{
		ereport(DEBUG1, (errmsg("collab worker closes session %s: two polls at once", eio->sid)));
		eio_end_soon(eio, EIO_END_LOST);
		poll_answer_error(out, 400, POLL_ERR_BAD_REQUEST, "Bad request");
		return POLL_ANSWERED;
	}
	if (eio_may_flush(eio) && (eio->out_head != NULL || eio->probed || eio->close_after_flush))
	{
		take_packets(pt, out);
		return POLL_ANSWERED;
	}
	pt->get = r;
	pt->woken = false;
	r->pt = pt;
	r->final = 0;
	return POLL_WAITING;
}

/* A woken GET (see poll_get) is answered: with what is queued now. */
void
poll_answer(PollRequest *r, PollAnswer *out)
{
	PollTransport *pt = r->pt;

	if (pt == NULL)
	{
		char		packet[2] = {r->final ? r->final : '1', '\0'};

		answer_text(out, packet);
		return;
	}
	pt->get = NULL;
	pt->woken = false;
	r->pt = NULL;
	take_packets(pt, out);
}

/*
 * A POST of session sid begins: false, with the error answer, when the
 * session is unknown or already reads a POST (it is then closed).
 */
bool
poll_post_begin(PollRequest *r, const char *sid, PollAnswer *out)
{
	PollTransport *pt = polling_session(sid, out);

	if (pt == NULL)
		return false;
	if (pt->post != NULL)
	{
		ereport(DEBUG1, (errmsg("collab worker closes session %s: two posts at once", pt->base.eio->sid)));
		eio_end_soon(pt->base.eio, EIO_END_LOST);
		poll_answer_error(out, 400, POLL_ERR_BAD_REQUEST, "Bad request");
		return false;
	}
	pt->post = r;
	r->pt = pt;
	return true;
}

/*
 * The body of a POST (poll_post_begin), read whole: its packets go to the
 * session, and it is answered "ok", or 400 if one of them closed the
 * session (a malformed packet, say).  The packets are handled in order
 * until the session closes; what follows a packet that closes it is
 * ignored, so no body costs more than one pass over its bytes.
 */
void
poll_post_end(PollRequest *r, const char *body, size_t len, PollAnswer *out)
{
	PollTransport *pt = r->pt;
	EioSession *eio;
	const char *p = body;
	const char *end = body + len;

	if (pt == NULL)
	{
		/* the session ended while the body arrived */
		poll_answer_error(out, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
		return;
	}
	pt->post = NULL;
	r->pt = NULL;
	eio = pt->base.eio;
	for (;;)
	{
		const char *sep = memchr(p, '\x1e', end - p);
		size_t		plen = (sep ? sep : end) - p;

		collab_metrics->messages_in++;
		eio_receive(eio, &pt->base, p, plen);
		if (sep == NULL || eio->ending || eio->close_after_flush || eio->transport != &pt->base)
			break;
		p = sep + 1;
	}
	/* a packet that closed the session on a protocol error: as the reference server */
	if ((eio->ending || eio->close_after_flush) && !eio->client_closed)
		poll_answer_error(out, 400, POLL_ERR_BAD_REQUEST, "Bad request");
	else
		answer_text(out, "ok");
}

/*
 * A POST refused by its carrier before its body was handed over (too
 * large, binary): answered with status and message, and the session is
 * closed, as the reference server does.
 */
void
poll_post_refuse(PollRequest *r, int status, const char *message, PollAnswer *out)
{
	PollTransport *pt = r->pt;

	if (pt != NULL)
	{
		pt->post = NULL;
		r->pt = NULL;
		ereport(DEBUG1, (errmsg("collab worker closes session %s: %s", pt->base.eio->sid, message)));
		eio_end_soon(pt->base.eio, EIO_END_LOST);
	}
	poll_answer_error(out, status, POLL_ERR_BAD_REQUEST, message);
}

/*
 * The client of a waiting GET, or of a POST being read, went away: the
 * session is lost, as with the reference server.
 */
void
poll_request_gone(PollRequest *r)
{
	PollTransport *pt = r->pt;

	if (pt == NULL)
		return;
	if (pt->get == r)
	{
		pt->get = NULL;
		pt->woken = false;
	}
	if (pt->post == r)
		pt->post = NULL;
	r->pt = NULL;
	eio_end_soon(pt->base.eio, EIO_END_LOST);
}
