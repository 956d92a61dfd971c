/*-------------------------------------------------------------------------
 *
 * ws_session.c
 *	  One WebSocket connection: Engine.IO session, Socket.IO CONNECT with
 *	  JWT authentication, heartbeats, client events and outgoing frames.
 *
 * Everything here runs inside libwebsockets callbacks, each wrapped in a
 * PG_TRY boundary (ws_callback): an error closes that one connection and
 * the worker lives on.  Client commands become SQL jobs (jobs.c), whose
 * done callbacks here send the replies.  Outgoing frames go straight to
 * the socket when it takes them, and otherwise are queued per connection and
 * written from WRITEABLE callbacks, so a slow client only delays itself; one
 * whose queue grows past a limit is disconnected.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <openssl/rand.h>

#include "miscadmin.h"
#include "pgtime.h"
#include "utils/memutils.h"

#include "collab.h"
#include "json_object.h"
#include "metrics.h"
#include "static_files.h"
#include "resource_id.h"
#include "sio_codec.h"
#include "conn.h"
#include "jobs.h"
#include "rooms.h"
#include "worker.h"
#include "ws_session.h"

/* Time to send CONNECT after the WebSocket opens (socket.io's default). */
#define CONNECT_TIMEOUT_US		(45 * 1000 * 1000LL)
/* Time a refused client gets to read its CONNECT_ERROR. */
#define REJECT_LINGER_US		(5 * 1000 * 1000LL)

static MemoryContext conns_cxt = NULL;

/*
 * Messages that arrive in pieces are assembled here, not in the
 * connection's own context: a buffer freed there would stay with that
 * connection for good, and every connection that once sent a long message
 * would keep one.
 */
static MemoryContext rx_cxt = NULL;

/* ----------------------------------------------------------------
 * Connection lifecycle
 * ---------------------------------------------------------------- */

Conn *
ws_conn_of(struct lws *wsi)
{
	Conn	  **slot = (Conn **) lws_wsi_user(wsi);

	return slot ? *slot : NULL;
}

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

/* Is origin in collab.allowed_origins?  No list, or no Origin header: yes. */
static bool
origin_allowed(const char *origin)
{
	const char *p = collab_allowed_origins;
	size_t		olen;

	if (p == NULL || *p == '\0' || origin == NULL)
		return true;
	olen = strlen(origin);
	while (*p)
	{
		const char *start;
		const char *end;

		while (*p == ' ' || *p == ',')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && end[-1] == ' ')
			end--;
		if ((size_t) (end - start) == olen && strncmp(start, origin, olen) == 0)
			return true;
	}
	return false;
}

static void
schedule_timer(Conn *conn)
{
	int64		now = lws_now_usecs();
	int64		next = INT64_MAX;

	if (conn->state == CONN_OPEN || conn->state == CONN_REJECTED)
		next = conn->connect_deadline;
	if (conn->pong_deadline > 0)
		next = Min(next, conn->pong_deadline);
	else if (conn->next_ping > 0)
		next = Min(next, conn->next_ping);
	if (conn->state == CONN_CONNECTED && conn->token_exp > 0)
	{
		int64		exp_us = now + (conn->token_exp + collab_jwt_leeway - worker_now_unix()) * 1000000LL;

		next = Min(next, exp_us);
	}
	ev_timer_stop(worker_loop, &conn->timer);
	if (next == INT64_MAX)
		return;
	ev_timer_set(&conn->timer, Max(next - now, 1000) / 1e6, 0.0);
	ev_timer_start(worker_loop, &conn->timer);
}

static int	conn_timer(struct lws *wsi, Conn *conn);

/* A connection's deadline passed; runs in the event loop, outside lws callbacks. */
static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Conn	   *conn = (Conn *) w->data;
	MemoryContext oldcxt = CurrentMemoryContext;

	if (conn->wsi == NULL)
		return;
	PG_TRY();
	{
		if (conn_timer(conn->wsi, conn) < 0)
			lws_set_timeout(conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		lws_set_timeout(conn->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
	PG_END_TRY();
}

static int
conn_established(struct lws *wsi)
{
	Conn	  **slot = (Conn **) lws_wsi_user(wsi);
	MemoryContext cxt;
	Conn	   *conn;
	char		origin[256];
	StringInfoData buf;

	if (ws_conn_count >= collab_max_connections)
	{
		ereport(LOG, (errmsg("collab worker refuses a connection: collab.max_connections (%d) reached",
							 collab_max_connections)));
		return -1;
	}
	if (conns_cxt == NULL)
	{
		conns_cxt = AllocSetContextCreate(TopMemoryContext, "collab connections",
										  ALLOCSET_DEFAULT_SIZES);
		rx_cxt = AllocSetContextCreate(TopMemoryContext, "collab receive buffers",
									   ALLOCSET_DEFAULT_SIZES);
	}
	cxt = AllocSetContextCreate(conns_cxt, "collab connection", ALLOCSET_SMALL_SIZES);
	conn = MemoryContextAllocZero(cxt, sizeof(Conn));
	conn->cxt = cxt;
	conn->wsi = wsi;
	ev_init(&conn->timer, conn_timer_cb);
	conn->timer.data = conn;
	conn->state = CONN_OPEN;
	make_conn_id(conn->id);
	lws_get_peer_simple(wsi, conn->address, sizeof(conn->address));
	conn->plain = !lws_is_ssl(wsi);
	if (lws_hdr_copy(wsi, origin, sizeof(origin), WSI_TOKEN_ORIGIN) > 0)
		conn->origin = MemoryContextStrdup(cxt, origin);
	conn->origin_ok = origin_allowed(conn->origin);
	conn->rx.data = NULL;
	conn->rate_tokens = collab_rate_limit;
	conn->rate_stamp = lws_now_usecs();
	conn->close_reason = "disconnected";
	*slot = conn;
	dlist_push_tail(&ws_all_conns, &conn->all_node);
	ws_conn_count++;
	collab_metrics->connections_total++;

	initStringInfo(&buf);
	sio_encode_open(&buf, conn->id, collab_ping_interval_ms, collab_ping_timeout_ms,
					collab_max_message_size);
	conn_send_buf(conn, &buf);
	pfree(buf.data);

	conn->connect_deadline = lws_now_usecs() + CONNECT_TIMEOUT_US;
	conn->next_ping = lws_now_usecs() + (int64) collab_ping_interval_ms * 1000;
	schedule_timer(conn);
	return 0;
}

/* The connection's rows are gone from the database (or could not be removed). */
static void
disconnect_done(Job *job)
{
	if (job->err_code)
		ereport(LOG, (errmsg("collab worker could not clean up connection %s: %s",
							 job->conn->id, job->err_message)));
}

static void
conn_closed(struct lws *wsi)
{
	Conn	  **slot = (Conn **) lws_wsi_user(wsi);
	Conn	   *conn = slot ? *slot : NULL;
	OutItem    *item;

	if (conn == NULL)
		return;
	*slot = NULL;
	ev_timer_stop(worker_loop, &conn->timer);
	rooms_leave_all(conn);
	for (item = conn->out_head; item; item = item->next)
		outframe_release(item->frame);
	conn->out_head = conn->out_tail = NULL;
	conn->out_count = 0;
	dlist_delete(&conn->all_node);
	ws_conn_count--;
	conn->wsi = NULL;

	if (conn->registered || conn->state == CONN_CONNECTING)
	{
		Job		   *job = job_new(sizeof(Job), "SELECT collab.ws_disconnect($1, $2)::text",
								  conn, disconnect_done);

		job->nargs = 2;
		job->args[0] = job_strdup(conn->id);
		job->args[1] = job_strdup(conn->close_reason);
		jobs_queue(job);
	}
	conn->state = CONN_CLOSED;
	conn_free_if_done(conn);
}

/* ----------------------------------------------------------------
 * Socket.IO CONNECT and authentication
 * ---------------------------------------------------------------- */

static void
reject_connect(Conn *conn, const char *nsp, const char *code, const char *message)
{
	StringInfoData buf;

	if (code != NULL && strncmp(code, "AUTH_", 5) == 0)
		collab_metrics->auth_failures++;
	initStringInfo(&buf);
	sio_encode_connect_error(&buf, nsp, message, code);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
	if (strcmp(nsp, "/") == 0)
	{
		conn->state = CONN_REJECTED;
		conn->connect_deadline = lws_now_usecs() + REJECT_LINGER_US;
		schedule_timer(conn);
	}
}

/* Verifies a token; on success fills conn's identity (when set) and returns NULL. */
static const char *
check_token(Conn *conn, const char *token, size_t len, char **message, JwtClaims *claims)
{
	JwtError	err;
	char	   *perr = NULL;

	err = jwt_verify(&worker_jwt, token, len, worker_now_unix(), claims, &perr);
	if (err != JWT_OK)
	{
		*message = perr ? perr : pstrdup("authentication failed");
		return jwt_error_code(err);
	}
	return NULL;
}

/* The connection is registered (collab.ws_connect): the session is live. */
static void
connect_done(Job *job)
{
	Conn	   *conn = job->conn;
	StringInfoData buf;

	if (job->err_code == NULL)
		conn->registered = true;
	if (conn->state != CONN_CONNECTING)
		return;
	if (job->err_code)
	{
		reject_connect(conn, "/", "INTERNAL", "the server could not register the connection");
		return;
	}
	conn->state = CONN_CONNECTED;
	initStringInfo(&buf);
	sio_encode_connect(&buf, NULL, conn->id);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
	schedule_timer(conn);
}

static void
handle_connect(Conn *conn, SioFrame *f)
{
	JsonObject	auth;
	char	   *perr = NULL;
	const char *token = NULL;
	size_t		token_len = 0;
	const char *code;
	char	   *message;
	JwtClaims	claims;
	Job		   *job;

	if (strcmp(f->nsp, "/") != 0)
	{
		reject_connect(conn, f->nsp, NULL, "Invalid namespace");
		return;
	}
	if (conn->state != CONN_OPEN)
	{
		ws_close_after_flush(conn, LWS_CLOSE_STATUS_PROTOCOL_ERR);
		return;
	}
	if (!conn->origin_ok)
	{
		reject_connect(conn, "/", "FORBIDDEN", "this origin is not allowed to connect");
		return;
	}
	if (f->data != NULL && f->data_len > 0)
	{
		const JsonMember *m;

		if (!json_object_parse(f->data, f->data_len, &auth, &perr))
		{
			reject_connect(conn, "/", "AUTH_TOKEN_INVALID", "the auth payload is not a JSON object");
			return;
		}
		m = json_object_get(&auth, "token");
		if (m != NULL && m->kind != JSON_KIND_NULL)
		{
			if (m->kind != JSON_KIND_STRING)
			{
				reject_connect(conn, "/", "AUTH_TOKEN_INVALID", "auth.token must be a string");
				return;
			}
			token = m->value;
			token_len = m->len;
		}
	}
	if (token == NULL || token_len == 0)
	{
		reject_connect(conn, "/", "AUTH_TOKEN_MISSING", "no token: pass auth: { token } when connecting");
		return;
	}
	code = check_token(conn, token, token_len, &message, &claims);
	if (code != NULL)
	{
		reject_connect(conn, "/", code, message);
		return;
	}
	conn->user_id = MemoryContextStrdup(conn->cxt, claims.sub);
	conn->username = MemoryContextStrdup(conn->cxt, claims.display_name);
	conn->token_exp = claims.exp;
	jwt_claims_free(&claims);

	conn->state = CONN_CONNECTING;
	job = job_new(sizeof(Job), "SELECT collab.ws_connect($1, $2, $3::integer, $4, $5, $6, $7)::text",
				  conn, connect_done);
	job->timed = true;
	job->nargs = 7;
	job->args[0] = job_strdup(conn->id);
	job->args[1] = job_strdup(worker_name);
	job->args[2] = job_strdup(psprintf("%d", MyProcPid));
	job->args[3] = job_strdup(conn->user_id);
	job->args[4] = job_strdup(conn->username);
	job->args[5] = job_strdup(conn->address);
	job->args[6] = conn->origin ? job_strdup(conn->origin) : NULL;
	jobs_queue(job);
}

/* auth:refresh {token}: a new token for the same user extends the session. */
static void
handle_refresh(Conn *conn, int64 ack_id, JsonObject *args)
{
	const char *token;
	size_t		len;
	const char *code;
	char	   *message;
	JwtClaims	claims;
	StringInfoData buf;
	pg_time_t	exp;

	if (json_object_get_string(args, "token", &token, &len) != JSON_GET_OK || len == 0)
	{
		ws_send_error(conn, ack_id, "AUTH_TOKEN_MISSING", "auth:refresh needs { token }", NULL);
		return;
	}
	code = check_token(conn, token, len, &message, &claims);
	if (code != NULL)
	{
		ws_send_error(conn, ack_id, code, message, NULL);
		return;
	}
	if (strcmp(claims.sub, conn->user_id) != 0)
	{
		jwt_claims_free(&claims);
		ws_send_error(conn, ack_id, "AUTH_CLAIM_INVALID",
					  "the new token is for another user", NULL);
		return;
	}
	conn->token_exp = claims.exp;
	jwt_claims_free(&claims);
	schedule_timer(conn);
	if (ack_id < 0)
		return;
	initStringInfo(&buf);
	exp = (pg_time_t) conn->token_exp;
	appendStringInfoString(&buf, "{\"ok\":true,\"expiresAt\":");
	{
		char		ts[64];

		pg_strftime(ts, sizeof(ts), "\"%Y-%m-%dT%H:%M:%S.000Z\"", pg_gmtime(&exp));
		appendStringInfoString(&buf, ts);
	}
	appendStringInfoChar(&buf, '}');
	conn_send_ack_raw(conn, ack_id, buf.data, buf.len);
	pfree(buf.data);
}

/* ----------------------------------------------------------------
 * Client events
 * ---------------------------------------------------------------- */

/* What a client event changes in the worker once its job has committed. */
typedef enum JobAfter
{
	AFTER_NOTHING,
	AFTER_JOIN,
	AFTER_LEAVE
} JobAfter;

typedef struct EventSpec
{
	const char *name;
	const char *sql;
	JobAfter	after;
	bool		needs_mode;
	bool		is_save;
} EventSpec;

/* The job of a client event. */
typedef struct RequestJob
{
	Job			job;
	const EventSpec *spec;
	int64		ack_id;			/* SIO_NO_ACK for none */
	char	   *resource_id;
	/* presence:join: the places of its ack and presence:state in the queue */
	OutItem    *ack_slot;
	OutItem    *state_slot;
} RequestJob;

static void request_done(Job *job);

static const EventSpec event_specs[] = {
	{"presence:join", "SELECT ack, token::text FROM collab.ws_join($1, $2, $3, false)", AFTER_JOIN, true, false},
	{"presence:leave", "SELECT collab.ws_leave($1, $2)::text", AFTER_LEAVE, false, false},
	{"lock:acquire", "SELECT collab.ws_acquire($1, $2)::text", AFTER_NOTHING, false, false},
	{"lock:renew", "SELECT collab.ws_renew($1, $2)::text", AFTER_NOTHING, false, false},
	{"lock:release", "SELECT collab.ws_release($1, $2)::text", AFTER_NOTHING, false, false},
	{"lock:request", "SELECT collab.ws_request($1, $2)::text", AFTER_NOTHING, false, false},
	{"doc:save", "SELECT collab.ws_save($1, $2, $3, $4::bigint, $5::bigint)::text", AFTER_NOTHING, false, true},
};

/* Reads an optional non-negative integer member; false (and an error sent) if ill-typed. */
static bool
optional_int(Conn *conn, int64 ack_id, JsonObject *args, const char *key,
			 char **out, const char *resource_id)
{
	int64		v;
	JsonGetResult r = json_object_get_int64(args, key, &v);

	*out = NULL;
	if (r == JSON_GET_MISSING || r == JSON_GET_NULL)
		return true;
	if (r != JSON_GET_OK || v < 0)
	{
		ws_send_error(conn, ack_id, "BAD_REQUEST",
					  psprintf("%s must be a non-negative integer", key), resource_id);
		return false;
	}
	*out = job_strdup(psprintf(INT64_FORMAT, v));
	return true;
}

static bool
rate_allows(Conn *conn)
{
	int64		now;

	if (collab_rate_limit <= 0)
		return true;
	now = lws_now_usecs();
	conn->rate_tokens = Min((double) collab_rate_limit,
							conn->rate_tokens + (now - conn->rate_stamp) * collab_rate_limit / 1e6);
	conn->rate_stamp = now;
	if (conn->rate_tokens < 1.0)
		return false;
	conn->rate_tokens -= 1.0;
	return true;
}

static void
handle_event(Conn *conn, SioFrame *f)
{
	const EventSpec *spec = NULL;
	JsonObject	args;
	char	   *perr = NULL;
	const char *rid;
	size_t		rid_len;
	size_t		offset;
	ResourceIdError rerr;
	RequestJob *rj;
	Job		   *job;
	int64		ack_id = f->has_ack ? f->ack_id : SIO_NO_ACK;

	if (!rate_allows(conn))
	{
		ws_send_error(conn, ack_id, "RATE_LIMITED",
					  psprintf("more than %d messages per second", collab_rate_limit), NULL);
		return;
	}
	if (f->nargs < 1 || f->arg0 == NULL)
	{
		ws_send_error(conn, ack_id, "BAD_REQUEST", "the event needs a payload object", NULL);
		return;
	}
	if (!json_object_parse(f->arg0, f->arg0_len, &args, &perr))
	{
		ws_send_error(conn, ack_id, "BAD_REQUEST", "the payload must be a JSON object", NULL);
		return;
	}
	if (strcmp(f->event, "auth:refresh") == 0)
	{
		handle_refresh(conn, ack_id, &args);
		return;
	}
	for (int i = 0; i < lengthof(event_specs); i++)
		if (strcmp(event_specs[i].name, f->event) == 0)
			spec = &event_specs[i];
	if (spec == NULL)
	{
		ws_send_error(conn, ack_id, "BAD_REQUEST",
					  psprintf("unknown event \"%s\"", f->event), NULL);
		return;
	}

	if (json_object_get_string(&args, "resourceId", &rid, &rid_len) != JSON_GET_OK)
	{
		ws_send_error(conn, ack_id, "BAD_REQUEST", "resourceId must be a string", NULL);
		return;
	}
	rerr = resource_id_check(rid, rid_len, &offset);
	if (rerr != RID_OK)
	{
		ws_send_error(conn, ack_id, "RESOURCE_ID_INVALID",
					  psprintf("invalid resource id: %s", resource_id_error_message(rerr)), NULL);
		return;
	}

	rj = (RequestJob *) job_new(sizeof(RequestJob), spec->sql, conn, request_done);
	job = &rj->job;
	job->timed = true;
	rj->spec = spec;
	rj->ack_id = ack_id;
	rj->resource_id = job_strdup(rid);
	job->args[0] = job_strdup(conn->id);
	job->args[1] = rj->resource_id;
	job->nargs = 2;
	if (spec->needs_mode)
	{
		const char *mode;
		size_t		mlen;

		if (json_object_get_string(&args, "mode", &mode, &mlen) != JSON_GET_OK ||
			(strcmp(mode, "editor") != 0 && strcmp(mode, "viewer") != 0))
		{
			ws_send_error(conn, ack_id, "BAD_REQUEST", "mode must be \"editor\" or \"viewer\"", rid);
			return;
		}
		job->args[2] = job_strdup(mode);
		job->nargs = 3;
	}
	if (spec->is_save)
	{
		const JsonMember *m = json_object_get(&args, "content");

		if (m == NULL || m->kind != JSON_KIND_STRING)
		{
			ws_send_error(conn, ack_id, "BAD_REQUEST", "content must be a string", rid);
			return;
		}
		if (m->len > (size_t) collab_max_content_size)
		{
			ws_send_error(conn, ack_id, "PAYLOAD_TOO_LARGE",
						  psprintf("content of %zu bytes exceeds collab.max_content_size (%d bytes)",
								   m->len, collab_max_content_size), rid);
			return;
		}
		job->args[2] = job_strdup(m->value);
		if (!optional_int(conn, ack_id, &args, "baseVersion", &job->args[3], rid) ||
			!optional_int(conn, ack_id, &args, "token", &job->args[4], rid))
			return;
		job->nargs = 5;
	}
	jobs_queue(job);
}

static void
handle_message(Conn *conn, const char *data, size_t len)
{
	SioFrame	f;
	SioParseError err;
	StringInfoData buf;

	err = sio_parse_frame(data, len, &f);
	if (err != SIO_OK)
	{
		if (err == SIO_ERR_BINARY_UNSUPPORTED && f.has_ack && conn->state == CONN_CONNECTED)
		{
			ws_send_error(conn, f.ack_id, "BAD_REQUEST", "binary attachments are not supported", NULL);
			return;
		}
		ereport(DEBUG1, (errmsg("collab worker closes connection %s: %s", conn->id, sio_error_message(err))));
		ws_close_after_flush(conn, LWS_CLOSE_STATUS_PROTOCOL_ERR);
		return;
	}
	switch (f.eio_type)
	{
		case SIO_EIO_PONG:
			conn->pong_deadline = 0;
			conn->next_ping = lws_now_usecs() + (int64) collab_ping_interval_ms * 1000;
			schedule_timer(conn);
			return;
		case SIO_EIO_PING:
			initStringInfo(&buf);
			sio_encode_pong(&buf, f.eio_data, f.eio_data_len);
			conn_send_buf(conn, &buf);
			pfree(buf.data);
			return;
		case SIO_EIO_CLOSE:
			ws_close_after_flush(conn, LWS_CLOSE_STATUS_NORMAL);
			return;
		case SIO_EIO_MESSAGE:
			break;
		default:
			return;				/* noop, upgrade: nothing to do on websocket */
	}
	switch (f.sio_type)
	{
		case SIO_CONNECT:
			handle_connect(conn, &f);
			break;
		case SIO_DISCONNECT:
			ws_close_after_flush(conn, LWS_CLOSE_STATUS_NORMAL);
			break;
		case SIO_EVENT:
			if (conn->state != CONN_CONNECTED || strcmp(f.nsp, "/") != 0)
			{
				ws_close_after_flush(conn, LWS_CLOSE_STATUS_PROTOCOL_ERR);
				break;
			}
			handle_event(conn, &f);
			break;
		case SIO_ACK:
			break;				/* we never ask clients for acks */
		default:
			ws_close_after_flush(conn, LWS_CLOSE_STATUS_PROTOCOL_ERR);
			break;
	}
}

static int
conn_receive(struct lws *wsi, Conn *conn, const char *in, size_t len)
{
	bool		complete = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

	if (conn->close_after_flush)
		return 0;
	if (lws_frame_is_binary(wsi))
	{
		ws_close_after_flush(conn, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE);
		return 0;
	}
	if ((size_t) conn->rx.len + len > (size_t) collab_max_message_size)
	{
		ws_send_error(conn, SIO_NO_ACK, "PAYLOAD_TOO_LARGE",
					  psprintf("messages are limited to %d bytes (collab.max_message_size)",
							   collab_max_message_size), NULL);
		ws_close_after_flush(conn, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE);
		return 0;
	}

	/*
	 * Most messages arrive whole in one callback: parse them where lws put
	 * them.  Only a message in pieces is assembled, in a buffer given back
	 * once it is handled, so that an idle connection holds no buffer at all.
	 */
	if (complete && conn->rx.data == NULL)
	{
		collab_metrics->messages_in++;
		handle_message(conn, in, len);
		return 0;
	}
	if (conn->rx.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(rx_cxt);

		initStringInfo(&conn->rx);
		MemoryContextSwitchTo(old);
	}
	appendBinaryStringInfo(&conn->rx, in, len);
	if (!complete)
		return 0;
	collab_metrics->messages_in++;
	handle_message(conn, conn->rx.data, conn->rx.len);
	pfree(conn->rx.data);
	conn->rx.data = NULL;
	conn->rx.len = 0;
	return 0;
}

/*
 * Writes queued frames while the socket takes them: one syscall per frame,
 * but one trip through the event loop for the whole queue.
 */
static int
conn_writeable(struct lws *wsi, Conn *conn)
{
	while (conn->out_head != NULL)
	{
		OutFrame   *f = conn_queue_pop(conn);
		bool		whole = true;

		if (f != NULL)
		{
			whole = lws_write(wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) >= (int) f->len;
			collab_metrics->messages_out++;
			outframe_release(f);
		}
		if (!whole)
			return -1;
		/* lws keeps what the kernel did not take; wait until it is out */
		if (conn->out_head != NULL && lws_send_pipe_choked(wsi))
		{
			lws_callback_on_writable(wsi);
			return 0;
		}
	}
	if (conn->close_after_flush)
	{
		lws_close_reason(wsi, conn->close_status, NULL, 0);
		return -1;
	}
	return 0;
}

static int
conn_timer(struct lws *wsi, Conn *conn)
{
	int64		now = lws_now_usecs();

	if ((conn->state == CONN_OPEN || conn->state == CONN_REJECTED) && now >= conn->connect_deadline)
		return -1;
	if (conn->pong_deadline > 0 && now >= conn->pong_deadline)
	{
		conn->close_reason = "timeout";
		return -1;
	}
	if (conn->state == CONN_CONNECTED && conn->token_exp > 0 &&
		worker_now_unix() >= conn->token_exp + collab_jwt_leeway)
	{
		StringInfoData buf;

		ws_send_error(conn, SIO_NO_ACK, "AUTH_TOKEN_EXPIRED",
					  "your token expired; reconnect with a new one (or send auth:refresh before it expires)",
					  NULL);
		initStringInfo(&buf);
		sio_encode_disconnect(&buf, NULL);
		conn_send_buf(conn, &buf);
		pfree(buf.data);
		conn->token_exp = 0;
		ws_close_after_flush(conn, LWS_CLOSE_STATUS_NORMAL);
		return 0;
	}
	if (conn->pong_deadline == 0 && conn->next_ping > 0 && now >= conn->next_ping)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		sio_encode_ping(&buf);
		conn_send_buf(conn, &buf);
		pfree(buf.data);
		conn->pong_deadline = now + (int64) collab_ping_timeout_ms * 1000;
	}
	schedule_timer(conn);
	return 0;
}

/*
 * Upgrade requests must be Engine.IO v4 over the WebSocket transport;
 * others get an HTTP error instead of the switch of protocols.
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
		why = "transport unknown: collab serves the websocket transport only";
	if (why)
	{
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, why);
		return 1;
	}
	return 0;
}

static int
http_request(struct lws *wsi, const char *uri)
{
	int			rc = metrics_http(wsi, uri);

	if (rc == -2)
		rc = static_http(wsi, uri);
	if (rc != -2)
		return rc;
	if (strncmp(uri, "/socket.io/", 11) == 0)
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST,
							   "collab serves Engine.IO v4 over the WebSocket transport only: "
							   "use transports: ['websocket']");
	else
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
	return -1;
}

static int
ws_callback_inner(struct lws *wsi, enum lws_callback_reasons reason,
				  void *user, void *in, size_t len)
{
	Conn	   *conn;

	switch (reason)
	{
		case LWS_CALLBACK_HTTP:
			return http_request(wsi, (const char *) in);
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			return filter_upgrade(wsi);
		case LWS_CALLBACK_ESTABLISHED:
			return conn_established(wsi);
		case LWS_CALLBACK_RECEIVE:
			conn = ws_conn_of(wsi);
			return conn ? conn_receive(wsi, conn, (const char *) in, len) : -1;
		case LWS_CALLBACK_SERVER_WRITEABLE:
			conn = ws_conn_of(wsi);
			return conn ? conn_writeable(wsi, conn) : -1;
		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			/* lws answers the close: nothing may follow it on the socket */
			conn = ws_conn_of(wsi);
			if (conn)
				conn->plain = false;
			return 0;
		case LWS_CALLBACK_CLOSED:
			conn_closed(wsi);
			return 0;
		default:
			return 0;
	}
}

/*
 * The PG_TRY boundary around every callback: a PostgreSQL error (out of
 * memory, say) must not longjmp through libwebsockets' frames.
 */
static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	volatile int rc = 0;
	MemoryContext oldcxt = CurrentMemoryContext;
	int			outer = ws_in_callback;

	ws_in_callback = outer + 1;
	PG_TRY();
	{
		rc = ws_callback_inner(wsi, reason, user, in, len);
	}
	PG_CATCH();
	{
		ws_in_callback = outer;
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		/* close only connections, never the listening socket */
		rc = (reason == LWS_CALLBACK_CLOSED) ? 0 : -1;
	}
	PG_END_TRY();
	ws_in_callback = outer;
	return rc;
}

/*
 * lws gives every connection a receive buffer of rx_buffer_size: small, so
 * that idle connections stay cheap; longer messages arrive in pieces and are
 * assembled in conn->rx.  Without tx_packet_size, lws would also write at
 * most rx_buffer_size bytes per pass of the event loop: a joiner's list of
 * 1000 users would take 300 passes.
 */
#define WS_TX_PACKET_SIZE	(256 * 1024)

static struct lws_protocols protocols[] = {
	{"collab", ws_callback, sizeof(Conn *), 512, 0, NULL, WS_TX_PACKET_SIZE},
	{"collab-fd", NULL, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

const struct lws_protocols *
ws_protocols(void)
{
	protocols[1].callback = collab_fd_callback;
	return protocols;
}

/* ----------------------------------------------------------------
 * Replies to SQL jobs
 * ---------------------------------------------------------------- */

static void join_users_done(Job *job);

/*
 * presence:join, after its commit: the joiner is in the room from now on,
 * and its ack and presence:state get their places in its (held) queue, in
 * front of the events of the batch.  They are written once the room's users
 * have been read (join_users_done), after the room has heard of the join.
 */
static void
join_done(RequestJob *rj)
{
	Job		   *job = &rj->job;
	Conn	   *conn = job->conn;
	int64		token;

	if (job->result == NULL || !conn->held)
	{
		ws_send_error(conn, rj->ack_id, "INTERNAL", "internal error: malformed reply", rj->resource_id);
		return;
	}
	if (job->result2 && collab_parse_int64(job->result2, &token))
		conn_store_token(conn, rj->resource_id, token);
	rooms_join(conn, rj->resource_id);
	rj->ack_slot = rj->ack_id >= 0 ? conn_queue_slot(conn) : NULL;
	rj->state_slot = conn_queue_slot(conn);
	job_follow_up(job, "SELECT collab._room_users($1)", rj->resource_id, join_users_done);
}

/*
 * The join's ack (the acknowledgement from collab.ws_join, to which the
 * users are added as its last member) and presence:state, into their
 * places.  Without the users (their query failed), the client is closed: it
 * reconnects and joins again.
 */
static void
join_users_done(Job *job)
{
	RequestJob *rj = (RequestJob *) job;
	Conn	   *conn = job->conn;
	const char *users = job->then_result;
	StringInfoData buf;
	size_t		alen = strlen(job->result);

	if (users == NULL || alen < 2 || job->result[alen - 1] != '}')
	{
		conn_fill_slot(conn, rj->ack_slot, NULL);
		conn_fill_slot(conn, rj->state_slot, NULL);
		ereport(LOG, (errmsg("collab worker closes connection %s: the room's users could not be read",
							 conn->id)));
		ws_close_after_flush(conn, LWS_CLOSE_STATUS_GOINGAWAY);
		return;
	}
	initStringInfo(&buf);
	if (rj->ack_slot)
	{
		StringInfoData ack;

		initStringInfo(&ack);
		appendBinaryStringInfo(&ack, job->result, alen - 1);
		appendStringInfoString(&ack, ",\"users\":");
		appendStringInfoString(&ack, users);
		appendStringInfoChar(&ack, '}');
		sio_encode_ack(&buf, NULL, rj->ack_id, ack.data, ack.len);
		pfree(ack.data);
		conn_fill_slot(conn, rj->ack_slot, outframe_make(buf.data, buf.len));
		resetStringInfo(&buf);
	}
	sio_event_begin(&buf, NULL, "presence:state", SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "{\"resourceId\":");
	sio_json_escape(&buf, rj->resource_id);
	appendStringInfoString(&buf, ",\"users\":");
	appendStringInfoString(&buf, users);
	appendStringInfoChar(&buf, '}');
	sio_packet_end(&buf);
	conn_fill_slot(conn, rj->state_slot, outframe_make(buf.data, buf.len));
	pfree(buf.data);
}

/* A client event's job committed, or failed: the ack, or an error event. */
static void
request_done(Job *job)
{
	RequestJob *rj = (RequestJob *) job;
	Conn	   *conn = job->conn;
	JsonObject	result;
	JsonObject	ack;
	const JsonMember *ackm;
	const JsonMember *tokm;
	char	   *perr = NULL;
	bool		ok = false;
	int64		token;

	if (conn->state != CONN_CONNECTED)
		return;
	if (job->err_code)
	{
		if (rj->spec->is_save)
			collab_metrics->saves_rejected++;
		ws_send_error(conn, rj->ack_id, job->err_code, job->err_message, rj->resource_id);
		return;
	}
	if (rj->spec->after == AFTER_JOIN)
	{
		join_done(rj);
		return;
	}
	if (job->result == NULL || !json_object_parse(job->result, strlen(job->result), &result, &perr) ||
		(ackm = json_object_get(&result, "ack")) == NULL || ackm->kind != JSON_KIND_OBJECT ||
		!json_object_parse(ackm->value, ackm->len, &ack, &perr))
	{
		ws_send_error(conn, rj->ack_id, "INTERNAL", "internal error: malformed reply", rj->resource_id);
		return;
	}
	(void) json_object_get_bool(&ack, "ok", &ok);
	tokm = json_object_get(&result, "token");
	if (tokm && json_member_int64(tokm, &token) == JSON_GET_OK)
		conn_store_token(conn, rj->resource_id, token);

	if (ok && rj->spec->after == AFTER_LEAVE)
		rooms_leave(conn, rj->resource_id);

	if (rj->ack_id >= 0)
		conn_send_ack_raw(conn, rj->ack_id, ackm->value, ackm->len);
	else if (!ok)
	{
		const JsonMember *e = json_object_get(&ack, "error");
		JsonObject	err;
		const char *code = "INTERNAL";
		const char *message = "request failed";
		size_t		l;

		if (e && e->kind == JSON_KIND_OBJECT && json_object_parse(e->value, e->len, &err, &perr))
		{
			(void) json_object_get_string(&err, "code", &code, &l);
			(void) json_object_get_string(&err, "message", &message, &l);
		}
		ws_send_error(conn, SIO_NO_ACK, code, message, rj->resource_id);
	}
}

/* A lookup of the token of a lock granted on a connection's behalf. */
typedef struct HolderEventJob
{
	Job			job;
	char	   *resource_id;
	char	   *event_name;
	char	   *event_payload;	/* without its closing brace */
} HolderEventJob;

static void holder_event_done(Job *job);

/* Looks up the token of a lock granted on conn's behalf, then sends it the event. */
void
ws_queue_holder_event(Conn *conn, const char *resource_id, const char *name,
					  const char *payload, int len)
{
	HolderEventJob *hj;

	hj = (HolderEventJob *) job_new(sizeof(HolderEventJob),
									"SELECT token::text FROM collab.leases WHERE holder_id = $1 AND resource_id = $2",
									conn, holder_event_done);
	hj->job.nargs = 2;
	hj->job.args[0] = job_strdup(conn->id);
	hj->job.args[1] = job_strdup(resource_id);
	hj->resource_id = hj->job.args[1];
	hj->event_name = job_strdup(name);
	hj->event_payload = job_strndup(payload, len);
	jobs_queue(&hj->job);
}

/*
 * Sends the holder's own copy of an event: payload is the shared payload
 * without its closing brace, and the token (if >= 0) is added.
 */
void
ws_send_holder_event(Conn *conn, const char *name, const char *payload, int len, int64 token)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_event_begin(&buf, NULL, name, SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendBinaryStringInfo(&buf, payload, len);
	if (token >= 0)
	{
		appendStringInfoString(&buf, ",\"token\":");
		sio_append_int64(&buf, token);
	}
	appendStringInfoChar(&buf, '}');
	sio_packet_end(&buf);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

static void
holder_event_done(Job *job)
{
	HolderEventJob *hj = (HolderEventJob *) job;
	int64		token = -1;

	if (job->conn->state != CONN_CONNECTED)
		return;
	if (job->result && collab_parse_int64(job->result, &token))
		conn_store_token(job->conn, hj->resource_id, token);
	else
		token = -1;
	ws_send_holder_event(job->conn, hj->event_name, hj->event_payload,
						 strlen(hj->event_payload), token);
}
