/*-------------------------------------------------------------------------
 *
 * poll_http.c
 *	  Long-polling requests as they arrive over HTTP (libwebsockets): the
 *	  query and headers they are checked on, their bodies, CORS, and the
 *	  writing of their answers, now or once a waiting GET is woken.
 *
 * A request for a session of this worker goes to poll_transport.c; one for
 * a session of another worker (its sid says which) goes there through the
 * relay (relay.c), and its answer comes back here to be written.  Errors
 * are answered as the reference server does, 400 with a JSON body, never
 * with a dropped connection: a POST that is refused is read to its end
 * first, so that the answer reaches the client on a connection it can
 * keep.
 *
 * CORS: collab.allowed_origins decides for polling as for WebSocket
 * upgrades (eio_allows_origin).  An allowed Origin is echoed with
 * credentials allowed; a refused one gets no CORS headers (a browser then
 * hides the answer) and its CONNECT is refused FORBIDDEN, as on a
 * WebSocket.  A preflight (OPTIONS) is answered 204 for an allowed origin
 * and 403 for a refused one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <libwebsockets.h>

#include "lib/ilist.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "collab.h"
#include "eio.h"
#include "metrics.h"
#include "poll_http.h"
#include "poll_transport.h"
#include "relay.h"
#include "role.h"

/* A declared body beyond this is refused without being read. */
#define POLL_DRAIN_MAX		(16 * 1024 * 1024)

/* How long a keep-alive connection may idle between requests, as lws's own default. */
#define POLL_IDLE_SECONDS	5.0

typedef enum HttpPollState
{
	HP_WAITING,					/* a GET waits for its session, or for the relay */
	HP_BODY,					/* a POST's body is being read */
	HP_ANSWER					/* the answer is ready, waiting to be written */
} HttpPollState;

/* One long-polling request on an HTTP connection. */
typedef struct HttpPoll
{
	uint32		kind;			/* POLL_HTTP_KIND: what the connection's user data is */
	PollRequest req;			/* when handled here */
	struct lws *wsi;
	HttpPollState state;
	bool		post;
	bool		local;			/* req is with a session of this worker */
	bool		refused;		/* the body is read only to answer the refusal */
	bool		woken;			/* a waiting GET may be answered */
	bool		flush_due;		/* in woken_requests */
	dlist_node	in_woken;
	int			owner;			/* the worker that owns the sid */
	RelayCall  *call;			/* forwarded, waiting for the owner's answer */
	char		sid[EIO_SID_LEN + 1];
	char		address[64];
	char	   *origin;			/* NULL: no Origin header */
	bool		origin_ok;
	StringInfoData body;		/* a POST's body */
	ev_timer	timer;			/* the body must be whole, or the wait over, by then */
	ev_io		gone_io;		/* a waiting request's socket: has its client left? */
	bool		tls;
	PollAnswer	answer;			/* HP_ANSWER: what to write */
} HttpPoll;

#define POLL_HTTP_KIND	0x706f6c6c	/* "poll" */

/*
 * Timeouts are kept here, in libev's timer heap, rather than by
 * libwebsockets: lws keeps the timeouts of all connections in one sorted
 * list that each new timeout walks from its head, and a long-polling
 * client would set one per request on each of its two connections, each
 * insertion then costing as much as there are connections.  A waiting GET
 * has its own deadline (HttpPoll.timer); a keep-alive connection that
 * answered a long-polling request waits for its next one as an IdleConn,
 * found by its wsi, closed after POLL_IDLE_SECONDS.  The wsi's opaque user
 * data points at its IdleConn, so that a timer never acts on a connection
 * that has gone and whose memory or descriptor came back for another.
 */
typedef struct IdleConn
{
	struct lws *wsi;			/* the hash key */
	struct lws_context *context;
	int			fd;
	ev_timer	timer;
} IdleConn;

static HTAB *idle_conns = NULL;

static MemoryContext requests_cxt = NULL;
static struct ev_loop *requests_loop = NULL;

/* Woken GETs that poll_http_flush() has yet to hand to lws. */
static dlist_head woken_requests = DLIST_STATIC_INIT(woken_requests);

static void http_wake(PollRequest *r);

static const PollRequestOps http_request_ops = {
	.wake = http_wake,
};

/* The request a connection's user data holds, or NULL. */
static HttpPoll *
request_of(void **slot)
{
	HttpPoll   *hp = slot ? (HttpPoll *) *slot : NULL;

	return hp && hp->kind == POLL_HTTP_KIND ? hp : NULL;
}

static HttpPoll *
request_of_req(PollRequest *r)
{
	return (HttpPoll *) ((char *) r - offsetof(HttpPoll, req));
}

void
poll_http_init(struct ev_loop *loop)
{
	HASHCTL		ctl;

	requests_loop = loop;
	requests_cxt = AllocSetContextCreate(TopMemoryContext, "collab polling requests",
										 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(struct lws *);
	ctl.entrysize = sizeof(IdleConn);
	ctl.hcxt = requests_cxt;
	idle_conns = hash_create("collab idle polling connections", 1024, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* An idle connection's time is up: closed, if it is still the one it was. */
static void
idle_expired(struct ev_loop *loop, ev_timer *w, int revents)
{
	IdleConn   *ic = (IdleConn *) w->data;
	struct lws *wsi = ic->wsi;
	bool		same = wsi_from_fd(ic->context, ic->fd) == wsi &&
		lws_get_opaque_user_data(wsi) == ic;

	ev_timer_stop(loop, &ic->timer);
	hash_search(idle_conns, &wsi, HASH_REMOVE, NULL);
	if (same)
	{
		lws_set_opaque_user_data(wsi, NULL);
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
}

/* wsi answered a long-polling request and waits for its next one. */
static void
idle_begin(struct lws *wsi)
{
	IdleConn   *ic;
	bool		found;

	lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
	ic = hash_search(idle_conns, &wsi, HASH_ENTER, &found);
	if (found)
		ev_timer_stop(requests_loop, &ic->timer);
	ic->context = lws_get_context(wsi);
	ic->fd = lws_get_socket_fd(wsi);
	ev_timer_init(&ic->timer, idle_expired, POLL_IDLE_SECONDS, 0.);
	ic->timer.data = ic;
	ev_timer_start(requests_loop, &ic->timer);
	lws_set_opaque_user_data(wsi, ic);
}

/* A request arrives on wsi, or wsi closes: it is not idle. */
void
poll_http_busy(struct lws *wsi)
{
	IdleConn   *ic = hash_search(idle_conns, &wsi, HASH_FIND, NULL);

	if (ic == NULL)
		return;
	ev_timer_stop(requests_loop, &ic->timer);
	hash_search(idle_conns, &wsi, HASH_REMOVE, NULL);
	lws_set_opaque_user_data(wsi, NULL);
}

/* ----------------------------------------------------------------
 * Writing answers
 * ---------------------------------------------------------------- */

static int
add_header(struct lws *wsi, const char *name, const char *value,
		   unsigned char **p, unsigned char *end)
{
	return lws_add_http_header_by_name(wsi, (const unsigned char *) name,
									   (const unsigned char *) value, (int) strlen(value), p, end);
}

/* The CORS headers of an answer to an allowed Origin. */
static int
add_cors(struct lws *wsi, const char *origin, bool origin_ok, unsigned char **p, unsigned char *end)
{
	if (origin == NULL || !origin_ok)
		return 0;
	return add_header(wsi, "access-control-allow-origin:", origin, p, end) ||
		add_header(wsi, "access-control-allow-credentials:", "true", p, end) ||
		add_header(wsi, "vary:", "Origin", p, end);
}

/*
 * Writes an answer and ends the HTTP transaction: -1 when the connection
 * must be closed.  Headers and body go out in one write (one send(), one
 * segment for the client to read): the port speaks HTTP/1.1 only, where
 * the body simply follows the headers.
 */
#define ANSWER_HEADERS_MAX	2048

static int
write_answer(struct lws *wsi, const char *origin, bool origin_ok, PollAnswer *a,
			 const char *extra_name, const char *extra_value)
{
	int			len = a->body.data ? a->body.len : 0;
	unsigned char *buf = palloc(LWS_PRE + ANSWER_HEADERS_MAX + len);
	unsigned char *start = buf + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = start + ANSWER_HEADERS_MAX - 1;
	int			n;

	if (lws_add_http_common_headers(wsi, (unsigned int) a->status, a->content_type,
									(lws_filepos_t) len, &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
									 (const unsigned char *) "no-store", 8, &p, end) ||
		add_cors(wsi, origin, origin_ok, &p, end) ||
		(extra_name && add_header(wsi, extra_name, extra_value, &p, end)) ||
		lws_finalize_http_header(wsi, &p, end))
	{
		pfree(buf);
		return -1;
	}
	if (len > 0)
		memcpy(p, a->body.data, len);
	n = (int) (p - start) + len;
	if (lws_write(wsi, start, n, LWS_WRITE_HTTP_HEADERS) < n)
	{
		pfree(buf);
		return -1;
	}
	pfree(buf);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void
free_request(HttpPoll *hp)
{
	if (hp->flush_due)
		dlist_delete(&hp->in_woken);
	hp->kind = 0;
	ev_timer_stop(requests_loop, &hp->timer);
	ev_io_stop(requests_loop, &hp->gone_io);
	if (hp->origin)
		pfree(hp->origin);
	if (hp->body.data)
		pfree(hp->body.data);
	poll_answer_free(&hp->answer);
	pfree(hp);
}

/*
 * Writes hp's answer and forgets hp: the connection serves its next
 * request, or closes (-1).
 */
static int
finish(struct lws *wsi, void **slot, HttpPoll *hp, PollAnswer *a)
{
	int			rc;

	/* forgotten first: ending the transaction may call back for the next one */
	*slot = NULL;
	rc = write_answer(wsi, hp->origin, hp->origin_ok, a, NULL, NULL);
	free_request(hp);
	if (rc == 0)
		idle_begin(wsi);
	return rc;
}

/* An answer that cannot be written now: kept, and written when the socket is writable. */
static void
answer_later(HttpPoll *hp, PollAnswer *a)
{
	MemoryContext old = MemoryContextSwitchTo(requests_cxt);

	hp->answer.status = a->status;
	hp->answer.content_type = a->content_type;
	initStringInfo(&hp->answer.body);
	appendBinaryStringInfo(&hp->answer.body, a->body.data, a->body.len);
	MemoryContextSwitchTo(old);
	hp->state = HP_ANSWER;
	lws_callback_on_writable(hp->wsi);
}

/*
 * A waiting GET of ours may be answered (poll_transport.c asks): it is, in
 * its writable callback, which poll_http_flush() brings forward.
 */
static void
http_wake(PollRequest *r)
{
	HttpPoll   *hp = request_of_req(r);

	hp->woken = true;
	lws_callback_on_writable(hp->wsi);
	if (!hp->flush_due)
	{
		hp->flush_due = true;
		dlist_push_tail(&woken_requests, &hp->in_woken);
	}
}

/*
 * Serves the writable callbacks of the GETs woken since the last call now,
 * rather than when the event loop next polls: a fan-out then answers its
 * long-polling members one after the other, as it writes its WebSocket
 * members' frames, before the rest of its batch (the WAL flush, the
 * joiner's list of users) and before the requests those members send next.
 * A waiting GET's socket has nothing queued (its client waits for the
 * answer), so it is writable; lws_service_fd() is the interface through
 * which an application's own loop hands lws a ready descriptor, and lws
 * answers as from its own poll.  Called by the worker's loop only, never
 * inside a libwebsockets callback.
 */
void
poll_http_flush(void)
{
	while (!dlist_is_empty(&woken_requests))
	{
		HttpPoll   *hp = dlist_container(HttpPoll, in_woken,
										 dlist_pop_head_node(&woken_requests));
		struct lws_pollfd pfd;

		hp->flush_due = false;
		pfd.fd = lws_get_socket_fd(hp->wsi);
		pfd.events = LWS_POLLIN | LWS_POLLOUT;
		pfd.revents = LWS_POLLOUT;
		/* hp may be freed from here on */
		(void) lws_service_fd(lws_get_context(hp->wsi), &pfd);
	}
}

/* The owner's answer to a forwarded request. */
static void
relay_done(void *arg, PollAnswer *answer)
{
	HttpPoll   *hp = (HttpPoll *) arg;

	hp->call = NULL;
	answer_later(hp, answer);
}

/*
 * A body that has not arrived whole within collab.ping_timeout, or a GET
 * still waiting long after its session should have answered it: its
 * connection is dropped (lws's own timeout for a body is its context's,
 * for every request alike).
 */
static void
body_late(struct ev_loop *loop, ev_timer *w, int revents)
{
	HttpPoll   *hp = (HttpPoll *) w->data;

	lws_set_timeout(hp->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void
await_body(HttpPoll *hp)
{
	hp->state = HP_BODY;
	ev_timer_init(&hp->timer, body_late, collab_ping_timeout_ms / 1000.0, 0.);
	hp->timer.data = hp;
	ev_timer_start(requests_loop, &hp->timer);
}

/*
 * The socket of a waiting request became readable.  lws reads nothing
 * from a connection whose request it has not answered, so it would not see
 * the client go away; a request that waits for minutes needs to, as the
 * reference server does (the session is then lost, and a relayed request
 * withdrawn).  A peek tells: the end of the stream, an error, or, on TLS,
 * an alert (the client closing) mean gone; other bytes are the client's
 * next request, which lws reads once this one is answered.
 */
static void
socket_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	HttpPoll   *hp = (HttpPoll *) w->data;
	struct lws *wsi = hp->wsi;
	void	  **slot = (void **) lws_wsi_user(wsi);
	unsigned char b;
	ssize_t		n = recv(w->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	MemoryContext oldcxt = CurrentMemoryContext;

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	ev_io_stop(loop, w);
	if (n > 0 && !(hp->tls && b == 0x15))
		return;
	PG_TRY();
	{
		if (slot && *slot == hp)
			*slot = NULL;
		if (hp->call)
			relay_cancel(hp->call);
		else if (hp->local)
			poll_request_gone(&hp->req);
		hp->call = NULL;
		free_request(hp);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* A request waits (for its session, or for the relay): its client is watched. */
static void
wait_for_answer(struct lws *wsi, HttpPoll *hp)
{
	hp->state = HP_WAITING;
	/* a ping answers it within collab.ping_interval: this is only a backstop */
	lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
	ev_timer_init(&hp->timer, body_late,
				  (collab_ping_interval_ms + collab_ping_timeout_ms) / 1000.0 + 5, 0.);
	hp->timer.data = hp;
	ev_timer_start(requests_loop, &hp->timer);
	hp->tls = lws_is_ssl(wsi);
	ev_io_init(&hp->gone_io, socket_readable, lws_get_socket_fd(wsi), EV_READ);
	hp->gone_io.data = hp;
	ev_io_start(requests_loop, &hp->gone_io);
}

/* ----------------------------------------------------------------
 * Requests
 * ---------------------------------------------------------------- */

/* A URL argument, "" when absent. */
static const char *
url_arg(struct lws *wsi, const char *name, char *buf, int len)
{
	const char *v = lws_get_urlarg_by_name(wsi, name, buf, len);

	return v ? v : "";
}

/*
 * The answer to a CORS preflight: the methods and the header a polling
 * client uses, for an allowed origin.
 */
static int
preflight(struct lws *wsi, const char *origin, bool origin_ok)
{
	PollAnswer	a;

	if (origin != NULL && !origin_ok)
	{
		poll_answer_error(&a, 403, POLL_ERR_FORBIDDEN, "Forbidden");
		return write_answer(wsi, NULL, false, &a, NULL, NULL);
	}
	a.status = 204;
	a.content_type = "text/plain; charset=UTF-8";
	a.body.data = NULL;
	a.body.len = 0;
	if (origin == NULL)
		return write_answer(wsi, NULL, false, &a, "allow:", "GET, POST, OPTIONS");
	{
		unsigned char hdr[LWS_PRE + 2048];
		unsigned char *start = hdr + LWS_PRE;
		unsigned char *p = start;
		unsigned char *end = hdr + sizeof(hdr) - 1;

		if (lws_add_http_common_headers(wsi, 204, "text/plain; charset=UTF-8", 0, &p, end) ||
			add_cors(wsi, origin, true, &p, end) ||
			add_header(wsi, "access-control-allow-methods:", "GET, POST", &p, end) ||
			add_header(wsi, "access-control-allow-headers:", "content-type", &p, end) ||
			add_header(wsi, "access-control-max-age:", "86400", &p, end) ||
			lws_finalize_write_http_header(wsi, start, &p, end))
			return -1;
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	}
}

/* An error answered at once, to a request with no body to read. */
static int
refuse(struct lws *wsi, const char *origin, bool origin_ok, int status, PollError code,
	   const char *message)
{
	PollAnswer	a;

	poll_answer_error(&a, status, code, message);
	return write_answer(wsi, origin, origin_ok, &a, NULL, NULL);
}

/*
 * A POST is refused: its body (if not too long) is read to the end, and
 * the refusal answered then.
 */
static int
refuse_post(struct lws *wsi, void **slot, HttpPoll *hp, PollAnswer *a, int64 content_length)
{
	if (content_length <= 0 || content_length > POLL_DRAIN_MAX)
	{
		int			rc = finish(wsi, slot, hp, a);

		/* a body left unread: the connection cannot go on */
		return content_length == 0 ? rc : -1;
	}
	hp->refused = true;
	await_body(hp);
	{
		MemoryContext old = MemoryContextSwitchTo(requests_cxt);

		hp->answer.status = a->status;
		hp->answer.content_type = a->content_type;
		initStringInfo(&hp->answer.body);
		appendBinaryStringInfo(&hp->answer.body, a->body.data, a->body.len);
		MemoryContextSwitchTo(old);
	}
	return 0;
}

/*
 * LWS_CALLBACK_HTTP for /socket.io/: a handshake, poll or post (or a
 * preflight).  *slot, the connection's user data, keeps the request while
 * it waits or reads its body.
 */
int
poll_http_request(struct lws *wsi, void **slot)
{
	char		eio_arg[16];
	char		transport[32];
	char		sidbuf[64];
	char		origin[512];
	char		address[64];
	char		clen[32];
	char		ctype[128];
	const char *eio_v;
	const char *transport_v;
	const char *sid;
	bool		has_origin;
	bool		origin_ok;
	bool		get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
	bool		post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	bool		options = lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0;
	int64		content_length = -1;
	HttpPoll   *hp;
	PollAnswer	a;

	has_origin = lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0;
	origin_ok = eio_allows_origin(has_origin ? origin : NULL);

	/* the query is checked first, so that every request with a bad one, a preflight too, is a 400 */
	eio_v = url_arg(wsi, "EIO=", eio_arg, sizeof(eio_arg));
	transport_v = url_arg(wsi, "transport=", transport, sizeof(transport));
	sid = url_arg(wsi, "sid=", sidbuf, sizeof(sidbuf));
	if (strcmp(eio_v, "4") != 0)
		return refuse(wsi, has_origin ? origin : NULL, origin_ok, 400,
					  POLL_ERR_UNSUPPORTED_PROTOCOL_VERSION,
					  "Unsupported protocol version: collab speaks Engine.IO v4 (EIO=4)");
	if (strcmp(transport_v, "websocket") == 0)
		return refuse(wsi, has_origin ? origin : NULL, origin_ok, 400, POLL_ERR_BAD_REQUEST,
					  "Bad request: transport=websocket needs a WebSocket upgrade");
	if (strcmp(transport_v, "polling") != 0)
		return refuse(wsi, has_origin ? origin : NULL, origin_ok, 400, POLL_ERR_UNKNOWN_TRANSPORT,
					  "Transport unknown");
	if (options)
		return preflight(wsi, has_origin ? origin : NULL, origin_ok);
	if (!get && !post)
		return refuse(wsi, has_origin ? origin : NULL, origin_ok, 400,
					  *sid ? POLL_ERR_BAD_REQUEST : POLL_ERR_BAD_HANDSHAKE_METHOD,
					  *sid ? "Bad request: polling takes GET and POST" : "Bad handshake method");
	if (post && *sid == '\0')
		return refuse(wsi, has_origin ? origin : NULL, origin_ok, 400,
					  POLL_ERR_BAD_HANDSHAKE_METHOD, "Bad handshake method");
	if (*sid == '\0' && role_is_standby())
	{
		int			rc;

		/* no session on a standby (role.c) */
		a.status = ROLE_STANDBY_STATUS;
		a.content_type = "application/json";
		initStringInfo(&a.body);
		role_refusal_body(&a.body);
		rc = write_answer(wsi, has_origin ? origin : NULL, origin_ok, &a, NULL, NULL);
		poll_answer_free(&a);
		return rc;
	}

	lws_get_peer_simple(wsi, address, sizeof(address));
	if (post && lws_hdr_copy(wsi, clen, sizeof(clen), WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
	{
		char	   *endp;
		long long	v = strtoll(clen, &endp, 10);

		content_length = (*endp == '\0' && v >= 0) ? (int64) v : -1;
	}

	hp = MemoryContextAllocZero(requests_cxt, sizeof(HttpPoll));
	hp->req.ops = &http_request_ops;
	hp->wsi = wsi;
	hp->post = post;
	hp->origin = has_origin ? MemoryContextStrdup(requests_cxt, origin) : NULL;
	hp->origin_ok = origin_ok;
	strlcpy(hp->address, address, sizeof(hp->address));
	strlcpy(hp->sid, sid, sizeof(hp->sid));
	hp->kind = POLL_HTTP_KIND;
	hp->owner = *sid ? eio_sid_owner(sid) : eio_local_slot();
	hp->local = hp->owner == eio_local_slot();
	*slot = hp;

	if (get && *sid == '\0')
	{
		poll_open(&hp->req, address, hp->origin, &a);
		return finish(wsi, slot, hp, &a);
	}
	if (hp->owner < 0 || hp->owner >= collab_workers || strlen(sid) != EIO_SID_LEN)
	{
		poll_answer_error(&a, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
		return post ? refuse_post(wsi, slot, hp, &a, content_length) : finish(wsi, slot, hp, &a);
	}
	if (get)
	{
		if (!hp->local)
		{
			hp->call = relay_forward(hp->owner, false, sid, NULL, 0, relay_done, hp);
			if (hp->call == NULL)
			{
				poll_answer_error(&a, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
				return finish(wsi, slot, hp, &a);
			}
		}
		else if (poll_get(&hp->req, sid, &a) == POLL_ANSWERED)
			return finish(wsi, slot, hp, &a);
		/* it waits: no header table held meanwhile, and no idle timeout before its answer */
		lws_http_headers_detach(wsi);
		wait_for_answer(wsi, hp);
		return 0;
	}

	/* a POST */
	if (hp->local && !poll_post_begin(&hp->req, sid, &a))
		return refuse_post(wsi, slot, hp, &a, content_length);
	if (lws_hdr_copy(wsi, ctype, sizeof(ctype), WSI_TOKEN_HTTP_CONTENT_TYPE) > 0 &&
		pg_strncasecmp(ctype, "application/octet-stream", 24) == 0)
	{
		/* binary payloads travel base64 in text on Engine.IO v4 */
		if (hp->local)
			poll_post_refuse(&hp->req, 400, "Bad request: binary content", &a);
		else
			poll_answer_error(&a, 400, POLL_ERR_BAD_REQUEST, "Bad request: binary content");
		return refuse_post(wsi, slot, hp, &a, content_length);
	}
	if (content_length < 0)
	{
		if (hp->local)
			poll_post_refuse(&hp->req, 411, "Length required: a POST needs a Content-Length", &a);
		else
			poll_answer_error(&a, 411, POLL_ERR_BAD_REQUEST, "Length required: a POST needs a Content-Length");
		(void) finish(wsi, slot, hp, &a);
		return -1;				/* whatever follows is not a request */
	}
	if (content_length > collab_max_message_size)
	{
		char	   *msg = psprintf("Payload too large: a POST body is limited to maxPayload (%d bytes)",
								   collab_max_message_size);

		if (hp->local)
			poll_post_refuse(&hp->req, 413, msg, &a);
		else
			poll_answer_error(&a, 413, POLL_ERR_BAD_REQUEST, msg);
		return refuse_post(wsi, slot, hp, &a, content_length);
	}
	{
		MemoryContext old = MemoryContextSwitchTo(requests_cxt);

		initStringInfo(&hp->body);
		MemoryContextSwitchTo(old);
	}
	/* the body must arrive within collab.ping_timeout */
	await_body(hp);
	if (content_length == 0)
		return poll_http_body_done(wsi, slot);
	return 0;
}

/* LWS_CALLBACK_HTTP_BODY: a piece of a POST's body. */
int
poll_http_body(struct lws *wsi, void **slot, const char *in, size_t len)
{
	HttpPoll   *hp = request_of(slot);

	if (hp == NULL || hp->state != HP_BODY)
		return 0;
	if (hp->refused)
		return 0;				/* read only to be answered */
	if ((size_t) hp->body.len + len > (size_t) collab_max_message_size)
	{
		/* more than its Content-Length said: lws would not pass that on */
		return -1;
	}
	appendBinaryStringInfo(&hp->body, in, len);
	return 0;
}

/* LWS_CALLBACK_HTTP_BODY_COMPLETION: the body is whole. */
int
poll_http_body_done(struct lws *wsi, void **slot)
{
	HttpPoll   *hp = request_of(slot);
	PollAnswer	a;

	if (hp == NULL || hp->state != HP_BODY)
		return 0;
	ev_timer_stop(requests_loop, &hp->timer);
	if (hp->refused)
	{
		hp->state = HP_ANSWER;
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (!hp->local)
	{
		wait_for_answer(wsi, hp);
		hp->call = relay_forward(hp->owner, true, hp->sid, hp->body.data, hp->body.len,
								 relay_done, hp);
		if (hp->call == NULL)
		{
			poll_answer_error(&a, 400, POLL_ERR_UNKNOWN_SID, "Session ID unknown");
			answer_later(hp, &a);
		}
		return 0;
	}
	poll_post_end(&hp->req, hp->body.data, hp->body.len, &a);
	answer_later(hp, &a);
	return 0;
}

/* LWS_CALLBACK_HTTP_WRITEABLE: an answer that waited is written. */
int
poll_http_writeable(struct lws *wsi, void **slot)
{
	HttpPoll   *hp = request_of(slot);
	PollAnswer	a;

	if (hp == NULL)
		return 0;
	if (hp->state == HP_ANSWER)
		return finish(wsi, slot, hp, &hp->answer);
	if (hp->state == HP_WAITING && hp->local && hp->woken)
	{
		poll_answer(&hp->req, &a);
		return finish(wsi, slot, hp, &a);
	}
	return 0;
}

/*
 * LWS_CALLBACK_CLOSED_HTTP: the connection is gone.  A GET that waited, or
 * a POST being read, loses its session, as with the reference server; one
 * that was forwarded is withdrawn from its owner.
 */
void
poll_http_closed(struct lws *wsi, void **slot)
{
	HttpPoll   *hp = request_of(slot);

	poll_http_busy(wsi);
	if (hp == NULL)
		return;
	*slot = NULL;
	if (hp->call)
		relay_cancel(hp->call);
	else if (hp->local)
		poll_request_gone(&hp->req);
	free_request(hp);
}
