/*-------------------------------------------------------------------------
 *
 * session.c
 *	  A client's Socket.IO session: CONNECT with JWT authentication, client
 *	  events and the replies to them, DISCONNECT, and the end of the session
 *	  with the Engine.IO session that carries it.
 *
 * The Engine.IO layer (eio.c) hands each message packet here, from inside
 * its transport's PG_TRY boundary: an error closes that one connection and
 * the worker lives on.  A CONNECT of the main namespace begins a Socket.IO
 * session (conn.c) on the Engine.IO session; a DISCONNECT ends it like a
 * clean leave and leaves the Engine.IO session open, for a new CONNECT.
 * Client commands become SQL jobs (jobs.c), whose done callbacks here send
 * the replies after their batch has committed.  Nothing here runs SQL or
 * knows which transport carries a session.
 *
 * Connection state recovery (socket.io 4.6+): the CONNECT reply carries the
 * session's pid, and session:ready, right after it, an offset.  A session
 * lost uncleanly stays detached (conn.h) for collab.recovery_window; a
 * CONNECT whose auth adds {pid, offset} of it, with a valid token of the
 * same user, takes it up again once collab.ws_resume has checked the
 * token's revocation and the access to every room: the same socket.id,
 * rooms, roles and locks, and the events it missed.  Any other outcome is
 * a new session, as for a CONNECT without pid.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pgtime.h"
#include "utils/memutils.h"

#include "access_live.h"
#include "collab.h"
#include "conn.h"
#include "eio.h"
#include "jobs.h"
#include "json_object.h"
#include "jwt.h"
#include "metrics.h"
#include "resource_id.h"
#include "rooms.h"
#include "relay.h"
#include "session.h"
#include "sio_codec.h"

/* Time a refused client gets to read its CONNECT_ERROR. */
#define REJECT_LINGER_US		(5 * 1000 * 1000LL)

static struct ev_loop *session_loop = NULL;
static const char *session_worker_name = NULL;
static const JwtConfig *session_jwt = NULL;

static void session_opened(EioSession *eio);
static void end_detached(Conn *conn);
static void migrate_out(const char *pid, const char *request, size_t len, PollAnswer *a);
static void session_message(EioSession *eio, const char *data, size_t len, bool within);
static void session_ended(EioSession *eio);

static const EioCallbacks session_callbacks = {
	.opened = session_opened,
	.message = session_message,
	.ended = session_ended,
};

/*
 * The loop that serves the sessions' timers, and what sessions report;
 * Engine.IO sessions hand their messages here from now on.
 */
void
session_init(struct ev_loop *loop, const char *worker_name, int worker_slot, const JwtConfig *jwt)
{
	session_loop = loop;
	session_worker_name = worker_name;
	session_jwt = jwt;
	eio_init(loop, worker_slot, &session_callbacks);
	relay_set_migrate_handler(migrate_out);
}

/* Token times are unix seconds of the server's clock. */
static int64
now_unix(void)
{
	return (int64) time(NULL);
}

/* ----------------------------------------------------------------
 * Deadlines and the end of a session
 * ---------------------------------------------------------------- */

/*
 * When an Engine.IO session without a Socket.IO session (a new one, or one
 * after a DISCONNECT) is dropped unless it CONNECTs.
 */
static int64
connect_deadline(void)
{
	return lws_now_usecs() + (int64) collab_connect_timeout_ms * 1000;
}

/* A new Engine.IO session: it must CONNECT within collab.connect_timeout. */
static void
session_opened(EioSession *eio)
{
	eio_set_deadline(eio, connect_deadline());
}

/* Arms the timer of the token's expiry (plus collab.jwt_leeway). */
static void
schedule_expiry(Conn *conn)
{
	ev_timer_stop(session_loop, &conn->timer);
	if (conn->state != CONN_CONNECTED || conn->token_exp <= 0)
		return;
	ev_timer_set(&conn->timer,
				 Max(conn->token_exp + collab_jwt_leeway - now_unix(), 0) + 0.001, 0.0);
	ev_timer_start(session_loop, &conn->timer);
}

/*
 * The token expired: the client is told (AUTH_TOKEN_EXPIRED, then a
 * DISCONNECT) and the connection closed.
 */
static void
token_expired(Conn *conn)
{
	StringInfoData buf;

	if (conn->state != CONN_CONNECTED || conn->token_exp <= 0)
		return;
	if (now_unix() < conn->token_exp + collab_jwt_leeway)
	{
		schedule_expiry(conn);
		return;
	}
	conn_send_error(conn, SIO_NO_ACK, CE_AUTH_TOKEN_EXPIRED,
					"your token expired; reconnect with a new one (or send auth:refresh before it expires)",
					NULL);
	initStringInfo(&buf);
	sio_encode_disconnect(&buf, NULL);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
	conn->token_exp = 0;
	conn_close_after_flush(conn, LWS_CLOSE_STATUS_NORMAL);
}

/* A token's expiry; runs in the event loop, outside lws callbacks. */
static void
expiry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Conn	   *conn = (Conn *) w->data;
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		token_expired(conn);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		conn_kill(conn);
	}
	PG_END_TRY();
}

/* The connection's rows are gone from the database (or could not be removed). */
static void
disconnect_done(Job *job)
{
	if (job->failed)
		ereport(LOG, (errmsg("collab worker could not clean up connection %s: %s",
							 job->conn->id, job->err_message)));
}

/* The lost session is detached in the database: another worker may take it up. */
static void
detach_done(Job *job)
{
	if (!job->failed)
		job->conn->detach_committed = true;
	disconnect_done(job);
}

/*
 * The Socket.IO session is over: it leaves its rooms (conn->close_reason
 * says why to the others).  A session that ended on purpose
 * (conn->ended_cleanly: a DISCONNECT, a close packet, or closed by the
 * server) releases what it held in the database at once; one whose
 * transport was lost (closed without a close packet or DISCONNECT, or
 * silent past the ping timeout) is detached there, its locks kept for
 * collab.disconnect_grace.
 */
static void
end_session(Conn *conn)
{
	bool		lost = !conn->ended_cleanly && collab_disconnect_grace_ms > 0;

	ev_timer_stop(session_loop, &conn->timer);
	rooms_leave_all(conn);
	/* nobody will read the answers to its parked requests */
	jobs_abandon(conn);
	if (conn->registered || conn->state == CONN_CONNECTING)
	{
		Job		   *job = job_new(sizeof(Job),
								  lost ? "SELECT collab.ws_detach($1, $2)::text"
								  : "SELECT collab.ws_disconnect($1, $2)::text",
								  conn, disconnect_done);

		/* the locks of a closed session are released (or kept), however late */
		job->retry = JOB_RETRY_ALWAYS;
		job->nargs = 2;
		job->args[0] = job_strdup(conn->id);
		job->args[1] = job_strdup(conn->close_reason);
		jobs_queue(job);
	}
	conn_end(conn);
}

/* The end of collab.recovery_window of a detached session. */
static void
recovery_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	Conn	   *conn = (Conn *) w->data;
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		if (conn->state == CONN_DETACHED)
			end_detached(conn);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
}

/* A new Socket.IO session on eio, its timers ready, not yet authenticated. */
static Conn *
new_session(EioSession *eio)
{
	Conn	   *conn = conn_create(eio);

	ev_init(&conn->timer, expiry_cb);
	conn->timer.data = conn;
	ev_init(&conn->recovery_timer, recovery_timeout_cb);
	conn->recovery_timer.data = conn;
	conn->close_reason = "disconnected";
	return conn;
}

/*
 * A detached session is over (its window passed, its recovery was refused,
 * or the worker lost events): it leaves its rooms and is freed.  Its row,
 * detached, and its suspended leases are the sweep's (collab._end_graces).
 */
static void
end_detached(Conn *conn)
{
	ev_timer_stop(session_loop, &conn->recovery_timer);
	rooms_leave_all(conn);
	conn_end(conn);
}

/*
 * The session was lost uncleanly: detached in the database (its leases
 * suspended, as end_session() does), it stays here, in its rooms, keeping
 * its events, until a recovering CONNECT takes it up or
 * collab.recovery_window passes.
 */
static void
detach_session(Conn *conn)
{
	Job		   *job;

	ev_timer_stop(session_loop, &conn->timer);
	jobs_abandon(conn);
	job = job_new(sizeof(Job), "SELECT collab.ws_detach($1, $2)::text", conn, detach_done);
	job->retry = JOB_RETRY_ALWAYS;
	job->nargs = 2;
	job->args[0] = job_strdup(conn->id);
	job->args[1] = job_strdup(conn->close_reason);
	jobs_queue(job);
	/* its Engine.IO session is ending: nothing holds its replies any more */
	conn->held = false;
	conn_detach(conn);
	conn->state = CONN_DETACHED;
	conn->hist_detached = 0;
	ev_timer_set(&conn->recovery_timer, collab_recovery_window_ms / 1000.0, 0.0);
	ev_timer_start(session_loop, &conn->recovery_timer);
}

/* May this lost session be recovered (rather than ended)? */
static bool
recoverable(Conn *conn)
{
	return !conn->ended_cleanly && conn->pid[0] != '\0' && !conn->hist_overflowed &&
		collab_disconnect_grace_ms > 0 && collab_recovery_window_ms > 0 &&
		conn->registered && (conn->state == CONN_CONNECTED || conn->state == CONN_RESUMING);
}

/* The Engine.IO session ended, and with it the Socket.IO session it carried. */
static void
session_ended(EioSession *eio)
{
	Conn	   *conn = (Conn *) eio->conn;

	if (conn == NULL)
		return;
	if (eio->end_reason == EIO_END_TIMEOUT && strcmp(conn->close_reason, "disconnected") == 0)
		conn->close_reason = "timeout";
	if (eio->end_reason == EIO_END_CLOSED)
		conn->ended_cleanly = true;
	if (recoverable(conn))
		detach_session(conn);
	else
		end_session(conn);
}

static void
end_detached_one(Conn *conn, void *arg)
{
	List	  **list = (List **) arg;

	if (conn->state == CONN_DETACHED)
		*list = lappend(*list, conn);
}

/*
 * The worker missed events (the event queue overflowed): no detached
 * session can be given what it missed, so they all end.
 */
void
session_end_detached(void)
{
	List	   *list = NIL;
	ListCell   *lc;

	conn_foreach(end_detached_one, &list);
	foreach(lc, list)
		end_detached((Conn *) lfirst(lc));
	list_free(list);
}

/* ----------------------------------------------------------------
 * Socket.IO CONNECT and authentication
 * ---------------------------------------------------------------- */

/* A CONNECT to a namespace we do not serve: refused, the connection stays. */
static void
reject_namespace(EioSession *eio, const char *nsp)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_encode_connect_error(&buf, nsp, "Invalid namespace", NULL);
	eio_send_text(eio, buf.data, buf.len);
	pfree(buf.data);
}

/* A refused CONNECT: the client gets REJECT_LINGER_US to read why. */
static void
reject_connect(Conn *conn, CollabErrorCode code, const char *message)
{
	const char *name = collab_errors[code].code;
	StringInfoData buf;

	if (strncmp(name, "AUTH_", 5) == 0)
		collab_metrics->auth_failures++;
	initStringInfo(&buf);
	sio_encode_connect_error(&buf, "/", message, name);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
	conn->state = CONN_REJECTED;
	if (conn->eio)
		eio_set_deadline(conn->eio, lws_now_usecs() + REJECT_LINGER_US);
}

/* Verifies a token; false, with the error's code and message, if it fails. */
static bool
check_token(const char *token, size_t len, JwtClaims *claims,
			CollabErrorCode *code, char **message)
{
	JwtError	err;
	char	   *perr = NULL;

	err = jwt_verify(session_jwt, token, len, now_unix(), claims, &perr);
	if (err != JWT_OK)
	{
		*code = jwt_collab_error(err);
		*message = perr ? perr : pstrdup("authentication failed");
		return false;
	}
	return true;
}

/*
 * The CONNECT reply, {"sid", "pid"} (pid only with recovery on), then
 * session:ready {connectionId, recovered} with offset: socket.io-client
 * sends the offset of the last event it saw when it recovers, so it must
 * see one first.  For a new session the offset is that of the last event
 * the worker has read, before anything this session can receive; for a
 * recovered one, the client's own, the events after it following.
 */
static void
send_connected(Conn *conn, bool recovered, uint64 offset)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "40{\"sid\":");
	sio_json_escape(&buf, conn->id);
	if (conn->pid[0] != '\0')
	{
		appendStringInfoString(&buf, ",\"pid\":");
		sio_json_escape(&buf, conn->pid);
	}
	appendStringInfoChar(&buf, '}');
	conn_send_buf(conn, &buf);
	resetStringInfo(&buf);
	sio_event_begin(&buf, NULL, "session:ready", SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "{\"connectionId\":");
	sio_json_escape(&buf, conn->id);
	appendStringInfoString(&buf, ",\"recovered\":");
	appendStringInfoString(&buf, recovered ? "true" : "false");
	appendStringInfoChar(&buf, '}');
	conn_append_offset(&buf, offset);
	sio_packet_end(&buf);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
	if (offset > conn->last_offset)
		conn->last_offset = offset;
}

/*
 * The connection is registered (collab.ws_connect): the session is live.
 * A refusal of the database (AUTH_TOKEN_REVOKED, ...) is the client's
 * CONNECT_ERROR, with its message.
 */
static void
connect_done(Job *job)
{
	Conn	   *conn = job->conn;

	if (!job->failed)
		conn->registered = true;
	if (conn->state != CONN_CONNECTING)
		return;
	if (job->failed)
	{
		/* a refusal of the database's (too many connections, BUSY), or not */
		if (job->err_code == CE_INTERNAL)
			reject_connect(conn, CE_INTERNAL, "the server could not register the connection");
		else
			reject_connect(conn, job->err_code, job->err_message);
		return;
	}
	if (conn->revoked)
	{
		/* revoked while it registered (access_live.c) */
		reject_connect(conn, CE_AUTH_TOKEN_REVOKED, "your sessions were revoked: sign in again");
		return;
	}
	conn->state = CONN_CONNECTED;
	send_connected(conn, false, rooms_last_offset());
	schedule_expiry(conn);
}

/*
 * What the SQL functions need of a token beyond its user: {"groups": [...],
 * "iat": n} (iat null when the token has none), in one job argument.
 */
static char *
token_access_json(const JwtClaims *claims)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"groups\":[");
	for (int i = 0; i < claims->ngroups; i++)
	{
		if (i > 0)
			appendStringInfoChar(&buf, ',');
		sio_json_escape(&buf, claims->groups[i]);
	}
	appendStringInfoString(&buf, "],\"iat\":");
	if (claims->has_iat)
		sio_append_int64(&buf, claims->iat);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* What conn keeps of a token's groups and issue time. */
static void
keep_token_access(Conn *conn, const JwtClaims *claims)
{
	MemoryContext old = MemoryContextSwitchTo(conn->cxt);

	for (int i = 0; i < conn->ngroups; i++)
		pfree(conn->groups[i]);
	if (conn->groups)
		pfree(conn->groups);
	conn->groups = palloc0(sizeof(char *) * Max(claims->ngroups, 1));
	for (int i = 0; i < claims->ngroups; i++)
		conn->groups[i] = pstrdup(claims->groups[i]);
	conn->ngroups = claims->ngroups;
	/* as collab._issued_at(): an iat in the future counts from now */
	conn->token_iat = claims->has_iat ? Min(claims->iat, now_unix()) : -1;
	MemoryContextSwitchTo(old);
}

/* Registers the authenticated connection (collab.ws_connect). */
static void
queue_connect(Conn *conn, const char *access_json)
{
	EioSession *eio = conn->eio;
	Job		   *job = job_new(sizeof(Job),
							  "SELECT collab.ws_connect($1, $2, $3::integer, $4, $5, $6, $7,"
							  " ARRAY(SELECT jsonb_array_elements_text(($8::jsonb)->'groups')),"
							  " (($8::jsonb)->>'iat')::bigint)::text",
							  conn, connect_done);

	conn->state = CONN_CONNECTING;
	eio_set_deadline(eio, 0);
	eio_authenticated(eio);
	job->timed = true;
	job->nargs = 8;
	job->args[0] = job_strdup(conn->id);
	job->args[1] = job_strdup(session_worker_name);
	job->args[2] = job_strdup(psprintf("%d", MyProcPid));
	job->args[3] = job_strdup(conn->user_id);
	job->args[4] = job_strdup(conn->username);
	job->args[5] = job_strdup(eio->address);
	job->args[6] = eio->origin ? job_strdup(eio->origin) : NULL;
	job->args[7] = job_strdup(access_json);
	jobs_queue(job);
}

/* ----------------------------------------------------------------
 * Connection state recovery
 * ---------------------------------------------------------------- */

/* A recovering CONNECT's collab.ws_resume. */
typedef struct ResumeJob
{
	Job			job;
	char	   *access_json;	/* for a new session if it is refused */
} ResumeJob;

static void resume_done(Job *job);
static void queue_resume(Conn *conn, const char *access_json);

/* An offset as sent back by a client: a decimal string. */
static bool
parse_offset(const char *s, size_t len, uint64 *out)
{
	uint64		v = 0;

	if (len == 0 || len > 19)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64) (s[i] - '0');
	}
	*out = v;
	return true;
}

/*
 * A CONNECT whose auth has {pid, offset}, with claims verified: if pid
 * names a session of this worker lost by the same user, which still has
 * every event after offset, it is carried by eio again (its
 * collab.ws_resume queued) and *conn, the new session, is dropped: true.
 * Otherwise false, and *conn goes on as a new session; a detached session
 * of the user that cannot be recovered ends.
 */
static bool
try_recover(EioSession *eio, Conn *conn, const JwtClaims *claims,
			const JsonMember *pidm, const JsonMember *offm)
{
	char		pid[CONN_PID_LEN + 1];
	uint64		after;
	Conn	   *old;

	if (pidm == NULL || pidm->kind != JSON_KIND_STRING || pidm->len != CONN_PID_LEN)
		return false;
	memcpy(pid, pidm->value, CONN_PID_LEN);
	pid[CONN_PID_LEN] = '\0';
	old = conn_find_detached(pid);
	/* a pid recovers only its own user's session */
	if (old == NULL || strcmp(old->user_id, claims->sub) != 0)
		return false;
	if (offm == NULL || offm->kind != JSON_KIND_STRING ||
		!parse_offset(offm->value, offm->len, &after) ||
		old->hist_overflowed || after < old->hist_evicted || after > old->last_offset)
	{
		end_detached(old);
		return false;
	}
	conn_end(conn);
	ev_timer_stop(session_loop, &old->recovery_timer);
	old->eio = eio;
	eio->conn = old;
	old->state = CONN_RESUMING;
	old->resume_offset = after;
	old->ended_cleanly = false;
	old->close_reason = "disconnected";
	old->token_exp = claims->exp;
	keep_token_access(old, claims);
	eio_set_deadline(eio, 0);
	eio_authenticated(eio);
	queue_resume(old, token_access_json(claims));
	return true;
}

/*
 * The session, carried again, is resumed in the database
 * (collab.ws_resume, with the new token's groups and iat).
 */
static void
queue_resume(Conn *conn, const char *access_json)
{
	ResumeJob  *rj;

	rj = (ResumeJob *) job_new(sizeof(ResumeJob),
							   "SELECT collab.ws_resume($1, $2,"
							   " ARRAY(SELECT jsonb_array_elements_text(($3::jsonb)->'groups')),"
							   " (($3::jsonb)->>'iat')::bigint, $4, $5::integer)::text",
							   conn, resume_done);
	rj->job.timed = true;
	rj->job.nargs = 5;
	rj->job.args[0] = job_strdup(conn->id);
	rj->job.args[1] = job_strdup(conn->user_id);
	rj->access_json = job_strdup(access_json);
	rj->job.args[2] = rj->access_json;
	rj->job.args[3] = job_strdup(session_worker_name);
	rj->job.args[4] = job_strdup(psprintf("%d", MyProcPid));
	jobs_queue(&rj->job);
}

/*
 * The database refused the recovery (nothing to return to, or a revoked
 * token): the detached session ends, and a new one begins on its Engine.IO
 * session, as for a CONNECT without pid (ws_connect then refuses a revoked
 * token as it always does).
 */
static void
recover_refused(Conn *old, const char *access_json)
{
	EioSession *eio = old->eio;
	Conn	   *conn;
	MemoryContext mcxt;

	end_detached(old);
	if (eio == NULL)
		return;
	conn = new_session(eio);
	mcxt = MemoryContextSwitchTo(conn->cxt);
	conn->user_id = pstrdup(old->user_id);
	conn->username = pstrdup(old->username);
	conn->token_exp = old->token_exp;
	conn->token_iat = old->token_iat;
	conn->ngroups = old->ngroups;
	conn->groups = palloc0(sizeof(char *) * Max(old->ngroups, 1));
	for (int i = 0; i < old->ngroups; i++)
		conn->groups[i] = pstrdup(old->groups[i]);
	MemoryContextSwitchTo(mcxt);
	queue_connect(conn, access_json);
}

/*
 * collab.ws_resume answered {"rooms": [{resourceId, role, permissions}],
 * "locks": [{resourceId, token, expiresAt}], "left": [resourceId]}: the
 * session is live again.  Its client gets the CONNECT reply with the same
 * sid and pid (socket.recovered), session:ready, the events after its
 * offset in order (those kept since, and those of the resumption itself),
 * and for each room it may no longer view what a live revocation sends.
 */
static void
resume_done(Job *job)
{
	ResumeJob  *rj = (ResumeJob *) job;
	Conn	   *conn = job->conn;
	JsonObject	res;
	JsonArray	rooms;
	JsonArray	locks;
	JsonArray	left;
	const JsonMember *m;
	char	   *perr = NULL;
	char	  **skip;
	int			nskip = 0;

	if (conn->state != CONN_RESUMING)
		return;
	if (job->failed || job->result == NULL ||
		!json_object_parse(job->result, strlen(job->result), &res, &perr) ||
		(m = json_object_get(&res, "rooms")) == NULL || m->kind != JSON_KIND_ARRAY ||
		!json_array_parse(m->value, m->len, &rooms, &perr) ||
		(m = json_object_get(&res, "locks")) == NULL || m->kind != JSON_KIND_ARRAY ||
		!json_array_parse(m->value, m->len, &locks, &perr) ||
		(m = json_object_get(&res, "left")) == NULL || m->kind != JSON_KIND_ARRAY ||
		!json_array_parse(m->value, m->len, &left, &perr))
	{
		if (job->failed && job->err_code == CE_INTERNAL)
			ereport(LOG, (errmsg("collab worker could not resume connection %s: %s",
								 conn->id, job->err_message)));
		recover_refused(conn, rj->access_json);
		return;
	}

	/* its rooms, with what it may do there now */
	for (int i = 0; i < rooms.nelems; i++)
	{
		JsonObject	room;
		const char *rid;
		size_t		l;
		const JsonMember *perms;

		if (rooms.elems[i].kind != JSON_KIND_OBJECT ||
			!json_object_parse(rooms.elems[i].value, rooms.elems[i].len, &room, &perr))
			continue;
		if (json_object_get_string(&room, "resourceId", &rid, &l) == JSON_GET_OK &&
			(perms = json_object_get(&room, "permissions")) != NULL)
		{
			rooms_join(conn, rid);
			access_live_resumed(conn, rid, perms->value, perms->len);
		}
		json_object_free(&room);
	}
	skip = palloc0(sizeof(char *) * Max(left.nelems, 1));
	for (int i = 0; i < left.nelems; i++)
	{
		const char *rid;
		size_t		l;

		if (json_member_string(&left.elems[i], &rid, &l) != JSON_GET_OK)
			continue;
		skip[nskip++] = pnstrdup(rid, l);
		rooms_leave(conn, skip[nskip - 1]);
	}
	/* the locks it holds again, with their tokens */
	while (conn->locks)
		conn_forget_lock(conn, conn->locks->resource_id);
	for (int i = 0; i < locks.nelems; i++)
	{
		JsonObject	lock;
		const char *rid;
		size_t		l;
		int64		token;

		if (locks.elems[i].kind != JSON_KIND_OBJECT ||
			!json_object_parse(locks.elems[i].value, locks.elems[i].len, &lock, &perr))
			continue;
		if (json_object_get_string(&lock, "resourceId", &rid, &l) == JSON_GET_OK &&
			json_object_get_int64(&lock, "token", &token) == JSON_GET_OK)
			conn_store_token(conn, pnstrdup(rid, l), token);
		json_object_free(&lock);
	}

	conn->state = CONN_CONNECTED;
	send_connected(conn, true, conn->resume_offset);
	(void) conn_replay(conn, conn->resume_offset, skip, nskip);
	for (int i = 0; i < nskip; i++)
		access_live_lost_view(conn, skip[i]);
	schedule_expiry(conn);
	json_array_free(&rooms);
	json_array_free(&locks);
	json_array_free(&left);
	json_object_free(&res);
}

/* ----------------------------------------------------------------
 * Recovery on another worker: the session moves over the relay
 * ---------------------------------------------------------------- */

/*
 * With collab.workers > 1 a recovering CONNECT may reach another worker
 * than the one that kept the session (its pid names that one).  That
 * worker asks the owner for it (relay_migrate); the owner reads the event
 * queue to its end, so that the session has every event it is due, and
 * answers with the session (id, pid, user, rooms with their permissions,
 * locks with their tokens, the kept events after the client's offset, and
 * how far it had read the queue), which it gives up.  Meanwhile the asking
 * worker reads no events: afterwards it skips those it reads again up to
 * where the owner had read (Conn.last_offset), and sends those after.  The
 * session is then resumed here as one of its own.
 */

/* A migration under way, on the new session that waits for it (pinned). */
typedef struct Migration
{
	Conn	   *conn;
	char	   *access_json;
	uint64		after;
} Migration;

static int	migrations_pending = 0;
static void (*drain_event_queue) (void) = NULL;

/* While a session moves here, the worker reads no events (see above). */
bool
session_holds_events(void)
{
	return migrations_pending > 0;
}

/* How the worker reads the event queue to its end (before a session leaves). */
void
session_set_event_drain(void (*drain) (void))
{
	drain_event_queue = drain;
}

/* A string of the move's encoding (relay.c), NUL-terminated, in CurrentMemoryContext. */
static char *
get_str(RelayReader *r, uint32 *len)
{
	uint32		l;
	const char *v = relay_get_bytes(r, &l);

	if (len)
		*len = l;
	return v == NULL ? NULL : pnstrdup(v, l);
}

/*
 * The owner's side: request is "<user id>\n<offset>".  A detached session
 * of that pid and user, detached in the database already, with every event
 * after offset, is encoded into the answer and ends here; otherwise 404.
 */
static void
migrate_out(const char *pid, const char *request, size_t len, PollAnswer *a)
{
	const char *nl = memchr(request, '\n', len);
	char	   *user = nl ? pnstrdup(request, nl - request) : NULL;
	uint64		after;
	Conn	   *conn;
	uint32		n = 0;

	a->content_type = "text/plain; charset=UTF-8";
	initStringInfo(&a->body);
	a->status = 404;
	if (nl == NULL || !parse_offset(nl + 1, request + len - nl - 1, &after))
		return;
	/* every event the session is due is read first */
	if (drain_event_queue)
		drain_event_queue();
	conn = conn_find_detached(pid);
	if (conn == NULL || strcmp(conn->user_id, user) != 0 || !conn->detach_committed ||
		conn->hist_overflowed || after < conn->hist_evicted || after > conn->last_offset)
		return;

	appendStringInfoString(&a->body, "collab-session-1");
	relay_put_bytes(&a->body, conn->id, strlen(conn->id));
	relay_put_bytes(&a->body, conn->pid, strlen(conn->pid));
	relay_put_u64(&a->body, Max(conn->last_offset, rooms_last_offset()));
	relay_put_u64(&a->body, conn->hist_evicted);
	for (RoomMember *m = conn->rooms; m; m = m->next_of_conn)
		n++;
	relay_put_u64(&a->body, n);
	for (RoomMember *m = conn->rooms; m; m = m->next_of_conn)
	{
		const char *rid = rooms_member_resource(m);

		relay_put_bytes(&a->body, rid, strlen(rid));
		relay_put_u64(&a->body, m->perms);
		relay_put_u64(&a->body, m->viewable_ancestors);
	}
	n = 0;
	for (HeldLock *h = conn->locks; h; h = h->next)
		n++;
	relay_put_u64(&a->body, n);
	for (HeldLock *h = conn->locks; h; h = h->next)
	{
		relay_put_bytes(&a->body, h->resource_id, strlen(h->resource_id));
		relay_put_u64(&a->body, (uint64) h->token);
	}
	n = 0;
	for (int i = 0; i < conn->hist_len; i++)
		if (conn->history[(conn->hist_start + i) % CONN_HISTORY_EVENTS].offset > after)
			n++;
	relay_put_u64(&a->body, n);
	for (int i = 0; i < conn->hist_len; i++)
	{
		HistoryEntry *e = &conn->history[(conn->hist_start + i) % CONN_HISTORY_EVENTS];

		if (e->offset <= after)
			continue;
		relay_put_u64(&a->body, e->offset);
		relay_put_bytes(&a->body, e->room ? e->room : "", e->room ? strlen(e->room) : 0);
		relay_put_bytes(&a->body, (const char *) e->frame->data + LWS_PRE, e->frame->len);
	}
	a->status = 200;
	end_detached(conn);
}

/*
 * The session from its owner, into conn, which waited for it: false if the
 * encoding is not one.
 */
static bool
migrate_in(Conn *conn, StringInfo body)
{
	RelayReader c;
	const char *magic = "collab-session-1";
	char	   *id;
	char	   *pid;
	uint64		n;
	MemoryContext old;

	if (body->len < (int) strlen(magic) || memcmp(body->data, magic, strlen(magic)) != 0)
		return false;
	c.p = body->data + strlen(magic);
	c.end = body->data + body->len;
	c.ok = true;
	id = get_str(&c, NULL);
	pid = get_str(&c, NULL);
	if (!c.ok || strlen(id) != CONN_ID_LEN || strlen(pid) != CONN_PID_LEN)
		return false;
	strlcpy(conn->id, id, sizeof(conn->id));
	strlcpy(conn->pid, pid, sizeof(conn->pid));
	/* what it was sent, or passed over, up to where the owner read */
	conn->last_offset = relay_get_u64(&c);
	conn->hist_evicted = relay_get_u64(&c);
	n = relay_get_u64(&c);
	for (uint64 i = 0; i < n && c.ok; i++)
	{
		char	   *rid = get_str(&c, NULL);
		uint64		perms = relay_get_u64(&c);
		uint64		ancestors = relay_get_u64(&c);
		RoomMember *m;

		if (!c.ok)
			break;
		m = rooms_join(conn, rid);
		m->perms = (uint8) perms;
		m->viewable_ancestors = (uint8) ancestors;
	}
	n = relay_get_u64(&c);
	for (uint64 i = 0; i < n && c.ok; i++)
	{
		char	   *rid = get_str(&c, NULL);
		uint64		token = relay_get_u64(&c);

		if (c.ok)
			conn_store_token(conn, rid, (int64) token);
	}
	n = relay_get_u64(&c);
	old = MemoryContextSwitchTo(conn->cxt);
	for (uint64 i = 0; i < n && c.ok; i++)
	{
		uint64		offset = relay_get_u64(&c);
		uint32		rlen;
		char	   *room = get_str(&c, &rlen);
		uint32		flen;
		char	   *frame = get_str(&c, &flen);

		if (c.ok)
		{
			OutFrame   *f = outframe_make(frame, flen);

			/* kept, not sent: the session is not live here yet */
			f->refcount++;
			conn_send_event(conn, f, offset, rlen > 0 ? room : NULL);
			outframe_release(f);
		}
	}
	MemoryContextSwitchTo(old);
	conn->registered = true;
	return c.ok;
}

/* The owner answered (or the relay failed): resumed here, or a new session. */
static void
migrated(void *arg, PollAnswer *answer)
{
	Migration  *mg = (Migration *) arg;
	Conn	   *conn = mg->conn;
	char		id[CONN_ID_LEN + 1];
	char		pid[CONN_PID_LEN + 1];

	migrations_pending--;
	strlcpy(id, conn->id, sizeof(id));
	strlcpy(pid, conn->pid, sizeof(pid));
	if (conn->state == CONN_CLOSED)
	{
		/* its client went away meanwhile */
	}
	else if (answer->status == 200 && migrate_in(conn, &answer->body))
	{
		conn->state = CONN_RESUMING;
		conn->resume_offset = mg->after;
		queue_resume(conn, mg->access_json);
	}
	else
	{
		/* a new session after all; what migrate_in() took is dropped */
		rooms_leave_all(conn);
		while (conn->locks)
			conn_forget_lock(conn, conn->locks->resource_id);
		conn_forget_history(conn);
		conn->registered = false;
		strlcpy(conn->id, id, sizeof(conn->id));
		strlcpy(conn->pid, pid, sizeof(conn->pid));
		conn->last_offset = 0;
		conn->hist_evicted = 0;
		queue_connect(conn, mg->access_json);
	}
	conn_unpin(conn);
}

/*
 * A recovering CONNECT for a session of another worker (pid names it):
 * conn, authenticated, waits while the owner hands the session over.
 * False if that cannot be asked (conn then goes on as a new session).
 */
static bool
start_migration(EioSession *eio, Conn *conn, const JsonMember *pidm, const JsonMember *offm,
				const char *access_json)
{
	char		pid[CONN_PID_LEN + 1];
	int			owner;
	uint64		after;
	Migration  *mg;
	StringInfoData req;

	if (collab_workers < 2 || pidm->kind != JSON_KIND_STRING || pidm->len != CONN_PID_LEN ||
		offm == NULL || offm->kind != JSON_KIND_STRING ||
		!parse_offset(offm->value, offm->len, &after))
		return false;
	memcpy(pid, pidm->value, CONN_PID_LEN);
	pid[CONN_PID_LEN] = '\0';
	owner = eio_sid_owner(pid);
	if (owner < 0 || owner == eio_local_slot() || owner >= collab_workers)
		return false;
	mg = MemoryContextAllocZero(conn->cxt, sizeof(Migration));
	mg->conn = conn;
	mg->after = after;
	mg->access_json = MemoryContextStrdup(conn->cxt, access_json);
	initStringInfo(&req);
	appendStringInfoString(&req, conn->user_id);
	appendStringInfoChar(&req, '\n');
	appendBinaryStringInfo(&req, offm->value, offm->len);
	conn_pin(conn);
	migrations_pending++;
	eio_set_deadline(eio, 0);
	eio_authenticated(eio);
	if (relay_migrate(owner, pid, req.data, req.len, migrated, mg) == NULL)
	{
		migrations_pending--;
		conn_unpin(conn);
		pfree(req.data);
		return false;
	}
	pfree(req.data);
	return true;
}

/*
 * A CONNECT: to the main namespace, it begins a Socket.IO session on eio,
 * authenticated by the token of its auth payload, or takes up a lost one
 * (try_recover, start_migration).
 */
static void
handle_connect(EioSession *eio, SioFrame *f)
{
	Conn	   *conn;
	JsonObject	auth;
	char	   *perr = NULL;
	const char *token = NULL;
	size_t		token_len = 0;
	const JsonMember *pidm = NULL;
	const JsonMember *offm = NULL;
	CollabErrorCode code;
	char	   *message;
	JwtClaims	claims;

	if (strcmp(f->nsp, "/") != 0)
	{
		reject_namespace(eio, f->nsp);
		return;
	}
	if (eio->conn != NULL)
	{
		/* one session of the main namespace at a time */
		eio_close_after_flush(eio, LWS_CLOSE_STATUS_PROTOCOL_ERR);
		return;
	}
	conn = new_session(eio);
	if (!eio->origin_ok)
	{
		reject_connect(conn, CE_FORBIDDEN, "this origin is not allowed to connect");
		return;
	}
	if (f->data != NULL && f->data_len > 0)
	{
		const JsonMember *m;

		if (!json_object_parse(f->data, f->data_len, &auth, &perr))
		{
			reject_connect(conn, CE_AUTH_TOKEN_INVALID, "the auth payload is not a JSON object");
			return;
		}
		m = json_object_get(&auth, "token");
		if (m != NULL && m->kind != JSON_KIND_NULL)
		{
			if (m->kind != JSON_KIND_STRING)
			{
				reject_connect(conn, CE_AUTH_TOKEN_INVALID, "auth.token must be a string");
				return;
			}
			token = m->value;
			token_len = m->len;
		}
		pidm = json_object_get(&auth, "pid");
		offm = json_object_get(&auth, "offset");
	}
	if (token == NULL || token_len == 0)
	{
		reject_connect(conn, CE_AUTH_TOKEN_MISSING, "no token: pass auth: { token } when connecting");
		return;
	}
	if (!check_token(token, token_len, &claims, &code, &message))
	{
		reject_connect(conn, code, message);
		return;
	}
	if (pidm != NULL && collab_recovery_window_ms > 0 &&
		try_recover(eio, conn, &claims, pidm, offm))
	{
		jwt_claims_free(&claims);
		return;
	}
	conn->user_id = MemoryContextStrdup(conn->cxt, claims.sub);
	conn->username = MemoryContextStrdup(conn->cxt, claims.display_name);
	conn->token_exp = claims.exp;
	keep_token_access(conn, &claims);
	if (pidm == NULL || collab_recovery_window_ms <= 0 ||
		!start_migration(eio, conn, pidm, offm, token_access_json(&claims)))
		queue_connect(conn, token_access_json(&claims));
	jwt_claims_free(&claims);
}

/*
 * A DISCONNECT of the main namespace: the Socket.IO session ends like a
 * clean leave; the Engine.IO session stays open, and pinging, for a new
 * CONNECT within collab.connect_timeout, and counts as unauthenticated
 * again until then.  One of another namespace, which we never connected,
 * changes nothing.
 */
static void
handle_disconnect(EioSession *eio, SioFrame *f)
{
	Conn	   *conn = (Conn *) eio->conn;

	if (strcmp(f->nsp, "/") != 0 || conn == NULL)
		return;
	conn->ended_cleanly = true;
	end_session(conn);
	eio_unauthenticated(eio);
	eio_set_deadline(eio, connect_deadline());
}

/* auth:refresh: the new token's groups and issue time, for collab.ws_refresh. */
typedef struct RefreshJob
{
	Job			job;
	int64		ack_id;
	int64		exp;
	JwtClaims	claims;			/* groups and iat only, in conn->cxt */
} RefreshJob;

/*
 * The database took the new token (collab.ws_refresh), or refused it
 * (AUTH_TOKEN_REVOKED): the session is extended, with the new groups, and
 * when they changed, every room is checked again.
 */
static void
refresh_done(Job *job)
{
	RefreshJob *rj = (RefreshJob *) job;
	Conn	   *conn = job->conn;
	StringInfoData buf;
	pg_time_t	exp;
	char		ts[64];

	if (conn->state != CONN_CONNECTED)
		return;
	if (job->failed)
	{
		conn_send_error(conn, rj->ack_id, job->err_code,
						job->err_code == CE_INTERNAL ? "internal error" : job->err_message, NULL);
		return;
	}
	conn->token_exp = rj->exp;
	keep_token_access(conn, &rj->claims);
	schedule_expiry(conn);
	if (job->result && strcmp(job->result, "true") == 0)
		access_live_recheck_rooms(conn);
	if (rj->ack_id < 0)
		return;
	initStringInfo(&buf);
	exp = (pg_time_t) conn->token_exp;
	appendStringInfoString(&buf, "{\"ok\":true,\"expiresAt\":");
	pg_strftime(ts, sizeof(ts), "\"%Y-%m-%dT%H:%M:%S.000Z\"", pg_gmtime(&exp));
	appendStringInfoString(&buf, ts);
	appendStringInfoChar(&buf, '}');
	conn_send_ack(conn, rj->ack_id, buf.data, buf.len);
	pfree(buf.data);
}

/*
 * auth:refresh {token}: a new token for the same user extends the session;
 * the database checks it against revocations and takes its groups.
 */
static void
handle_refresh(Conn *conn, int64 ack_id, JsonObject *args)
{
	const char *token;
	size_t		len;
	CollabErrorCode code;
	char	   *message;
	JwtClaims	claims;
	RefreshJob *rj;
	MemoryContext old;

	if (json_object_get_string(args, "token", &token, &len) != JSON_GET_OK || len == 0)
	{
		conn_send_error(conn, ack_id, CE_AUTH_TOKEN_MISSING, "auth:refresh needs { token }", NULL);
		return;
	}
	if (!check_token(token, len, &claims, &code, &message))
	{
		conn_send_error(conn, ack_id, code, message, NULL);
		return;
	}
	if (strcmp(claims.sub, conn->user_id) != 0)
	{
		jwt_claims_free(&claims);
		conn_send_error(conn, ack_id, CE_AUTH_CLAIM_INVALID,
						"the new token is for another user", NULL);
		return;
	}
	rj = (RefreshJob *) job_new(sizeof(RefreshJob),
								"SELECT collab.ws_refresh($1, ARRAY(SELECT jsonb_array_elements_text(($2::jsonb)->'groups')),"
								" (($2::jsonb)->>'iat')::bigint)::text",
								conn, refresh_done);
	rj->job.timed = true;
	rj->ack_id = ack_id;
	rj->exp = claims.exp;
	rj->job.nargs = 2;
	rj->job.args[0] = job_strdup(conn->id);
	rj->job.args[1] = job_strdup(token_access_json(&claims));
	/* kept with the job, until refresh_done copies them to conn */
	old = MemoryContextSwitchTo(GetMemoryChunkContext(rj));
	rj->claims.iat = claims.iat;
	rj->claims.has_iat = claims.has_iat;
	rj->claims.ngroups = claims.ngroups;
	rj->claims.groups = palloc0(sizeof(char *) * Max(claims.ngroups, 1));
	for (int i = 0; i < claims.ngroups; i++)
		rj->claims.groups[i] = pstrdup(claims.groups[i]);
	MemoryContextSwitchTo(old);
	jwt_claims_free(&claims);
	jobs_queue(&rj->job);
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

/* Arguments a client event has beyond its resource, other than a join's and a save's. */
typedef enum EventArgs
{
	ARGS_NONE,
	ARGS_HISTORY,				/* doc:history: before?, limit? */
	ARGS_REVISION				/* doc:revision: version */
} EventArgs;

typedef struct EventSpec
{
	const char *name;
	const char *sql;
	JobAfter	after;
	bool		needs_mode;
	bool		is_save;
	EventArgs	args;
	bool		is_grant;		/* a lock decision alone (jobs.c) */
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
	uint64		state_offset;	/* of the last event before presence:state */
} RequestJob;

static void request_done(Job *job);

static const EventSpec event_specs[] = {
	{"presence:join", "SELECT ack, token::text FROM collab.ws_join($1, $2, $3, false)", AFTER_JOIN, true, false},
	{"presence:leave", "SELECT collab.ws_leave($1, $2)::text", AFTER_LEAVE, false, false},
	{"lock:acquire", "SELECT collab.ws_acquire($1, $2)::text", AFTER_NOTHING, false, false, ARGS_NONE, true},
	{"lock:renew", "SELECT collab.ws_renew($1, $2)::text", AFTER_NOTHING, false, false},
	{"lock:release", "SELECT collab.ws_release($1, $2)::text", AFTER_NOTHING, false, false},
	{"lock:request", "SELECT collab.ws_request($1, $2)::text", AFTER_NOTHING, false, false, ARGS_NONE, true},
	{"doc:save", "SELECT collab.ws_save($1, $2, $3, $4::bigint, $5::bigint, $6::bigint)::text", AFTER_NOTHING, false, true},
	{"doc:history", "SELECT collab.ws_history($1, $2, $3::bigint, $4::bigint)::text", AFTER_NOTHING, false, false, ARGS_HISTORY},
	{"doc:revision", "SELECT collab.ws_revision($1, $2, $3::bigint)::text", AFTER_NOTHING, false, false, ARGS_REVISION},
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
		conn_send_error(conn, ack_id, CE_BAD_REQUEST,
						psprintf("%s must be a non-negative integer", key), resource_id);
		return false;
	}
	*out = job_strdup(psprintf(INT64_FORMAT, v));
	return true;
}

/*
 * Reads an integer member, of any sign: its range is the SQL function's to
 * judge (doc:history's paging, doc:revision's version).  A missing or null
 * one is NULL, or, when required, an error.  False (and an error sent) if
 * ill-typed.
 */
static bool
integer_arg(Conn *conn, int64 ack_id, JsonObject *args, const char *key, bool required,
			char **out, const char *resource_id)
{
	int64		v;
	JsonGetResult r = json_object_get_int64(args, key, &v);

	*out = NULL;
	if (!required && (r == JSON_GET_MISSING || r == JSON_GET_NULL))
		return true;
	if (r != JSON_GET_OK)
	{
		conn_send_error(conn, ack_id, CE_BAD_REQUEST,
						psprintf("%s must be an integer", key), resource_id);
		return false;
	}
	*out = job_strdup(psprintf(INT64_FORMAT, v));
	return true;
}

static void
rate_limited(Conn *conn, int64 ack_id)
{
	conn_send_error(conn, ack_id, CE_RATE_LIMITED,
					psprintf("more than %d messages per second", collab_rate_limit), NULL);
}

/*
 * The arguments of a client event beyond the connection and the resource:
 * presence:join's mode, doc:save's content, base version, token and
 * restored version, doc:history's before and limit, doc:revision's version.
 * False, with an error sent, when one is missing or ill-typed.
 */
static bool
event_args(Conn *conn, const EventSpec *spec, JsonObject *args, RequestJob *rj)
{
	Job		   *job = &rj->job;
	const char *rid = rj->resource_id;

	if (spec->needs_mode)
	{
		const char *mode;
		size_t		mlen;

		if (json_object_get_string(args, "mode", &mode, &mlen) != JSON_GET_OK ||
			(strcmp(mode, "editor") != 0 && strcmp(mode, "viewer") != 0))
		{
			conn_send_error(conn, rj->ack_id, CE_BAD_REQUEST, "mode must be \"editor\" or \"viewer\"", rid);
			return false;
		}
		job->args[2] = job_strdup(mode);
		job->nargs = 3;
		/* a viewer's join writes only its access-trail entry (jobs.c) */
		job->events_first = strcmp(mode, "viewer") == 0;
	}
	if (spec->is_save)
	{
		const JsonMember *m = json_object_get(args, "content");

		if (m == NULL || m->kind != JSON_KIND_STRING)
		{
			conn_send_error(conn, rj->ack_id, CE_BAD_REQUEST, "content must be a string", rid);
			return false;
		}
		if (m->len > (size_t) collab_max_content_size)
		{
			conn_send_error(conn, rj->ack_id, CE_PAYLOAD_TOO_LARGE,
							psprintf("content of %zu bytes exceeds collab.max_content_size (%d bytes)",
									 m->len, collab_max_content_size), rid);
			return false;
		}
		job->args[2] = job_strdup(m->value);
		if (!optional_int(conn, rj->ack_id, args, "baseVersion", &job->args[3], rid) ||
			!optional_int(conn, rj->ack_id, args, "token", &job->args[4], rid) ||
			!optional_int(conn, rj->ack_id, args, "restoredFrom", &job->args[5], rid))
			return false;
		job->nargs = 6;
	}
	if (spec->args == ARGS_HISTORY)
	{
		if (!integer_arg(conn, rj->ack_id, args, "before", false, &job->args[2], rid) ||
			!integer_arg(conn, rj->ack_id, args, "limit", false, &job->args[3], rid))
			return false;
		job->nargs = 4;
	}
	if (spec->args == ARGS_REVISION)
	{
		if (!integer_arg(conn, rj->ack_id, args, "version", true, &job->args[2], rid))
			return false;
		job->nargs = 3;
	}
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
	int64		ack_id = f->has_ack ? f->ack_id : SIO_NO_ACK;

	if (f->nargs < 1 || f->arg0 == NULL)
	{
		conn_send_error(conn, ack_id, CE_BAD_REQUEST, "the event needs a payload object", NULL);
		return;
	}
	if (!json_object_parse(f->arg0, f->arg0_len, &args, &perr))
	{
		conn_send_error(conn, ack_id, CE_BAD_REQUEST, "the payload must be a JSON object", NULL);
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
		conn_send_error(conn, ack_id, CE_BAD_REQUEST,
						psprintf("unknown event \"%s\"", f->event), NULL);
		return;
	}

	if (json_object_get_string(&args, "resourceId", &rid, &rid_len) != JSON_GET_OK)
	{
		conn_send_error(conn, ack_id, CE_BAD_REQUEST, "resourceId must be a string", NULL);
		return;
	}
	rerr = resource_id_check(rid, rid_len, &offset);
	if (rerr != RID_OK)
	{
		conn_send_error(conn, ack_id, CE_RESOURCE_ID_INVALID,
						psprintf("invalid resource id: %s", resource_id_error_message(rerr)), NULL);
		return;
	}

	rj = (RequestJob *) job_new(sizeof(RequestJob), spec->sql, conn, request_done);
	rj->job.timed = true;
	rj->spec = spec;
	rj->ack_id = ack_id;
	rj->resource_id = job_strdup(rid);
	rj->job.args[0] = job_strdup(conn->id);
	rj->job.args[1] = rj->resource_id;
	rj->job.nargs = 2;
	rj->job.grant = spec->is_grant;
	if (event_args(conn, spec, &args, rj))
		jobs_queue(&rj->job);
}

/*
 * One message packet ("4...") of eio: a Socket.IO packet.  A malformed one
 * closes the connection.
 *
 * Over collab.rate_limit (within false), an event is answered
 * RATE_LIMITED, and a CONNECT to another namespace or an ACK is dropped
 * unanswered; a CONNECT to "/" or a DISCONNECT is still handled, since
 * dropping it would only cost the client its connection.
 */
static void
session_message(EioSession *eio, const char *data, size_t len, bool within)
{
	Conn	   *conn = (Conn *) eio->conn;
	SioFrame	f;
	SioParseError err;

	err = sio_parse_frame(data, len, &f);
	if (err != SIO_OK)
	{
		if (err == SIO_ERR_BINARY_UNSUPPORTED && f.has_ack && conn && conn->state == CONN_CONNECTED)
		{
			if (within)
				conn_send_error(conn, f.ack_id, CE_BAD_REQUEST, "binary attachments are not supported", NULL);
			else
				rate_limited(conn, f.ack_id);
			return;
		}
		ereport(DEBUG1, (errmsg("collab worker closes session %s: %s", eio->sid, sio_error_message(err))));
		eio_close_after_flush(eio, LWS_CLOSE_STATUS_PROTOCOL_ERR);
		return;
	}
	switch (f.sio_type)
	{
		case SIO_CONNECT:
			if (!within && strcmp(f.nsp, "/") != 0)
			{
				collab_metrics->frames_dropped++;
				return;
			}
			handle_connect(eio, &f);
			break;
		case SIO_DISCONNECT:
			handle_disconnect(eio, &f);
			break;
		case SIO_EVENT:
			if (conn == NULL || conn->state != CONN_CONNECTED || strcmp(f.nsp, "/") != 0)
			{
				eio_close_after_flush(eio, LWS_CLOSE_STATUS_PROTOCOL_ERR);
				break;
			}
			if (!within)
				rate_limited(conn, f.has_ack ? f.ack_id : SIO_NO_ACK);
			else
				handle_event(conn, &f);
			break;
		case SIO_ACK:
			if (!within)
				collab_metrics->frames_dropped++;
			break;				/* we never ask clients for acks */
		default:
			eio_close_after_flush(eio, LWS_CLOSE_STATUS_PROTOCOL_ERR);
			break;
	}
}

/* ----------------------------------------------------------------
 * Replies to client events
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
		conn_send_error(conn, rj->ack_id, CE_INTERNAL, "internal error: malformed reply", rj->resource_id);
		return;
	}
	if (job->result2 && collab_parse_int64(job->result2, &token))
		conn_store_token(conn, rj->resource_id, token);
	rooms_join(conn, rj->resource_id);
	access_live_joined(conn, rj->resource_id, job->result);
	rj->ack_slot = rj->ack_id >= 0 ? conn_queue_slot(conn) : NULL;
	rj->state_slot = conn_queue_slot(conn);
	rj->state_offset = conn->last_offset;
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
		conn_close_after_flush(conn, LWS_CLOSE_STATUS_GOINGAWAY);
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
	/* it follows the events queued before it (a reply, it is not replayed) */
	conn_append_offset(&buf, rj->state_offset);
	sio_packet_end(&buf);
	conn_fill_slot(conn, rj->state_slot, outframe_make(buf.data, buf.len));
	pfree(buf.data);
}

/*
 * An acknowledgement {"ok": false, "error": {...}} of a SQL function sent
 * without an ack id: the client hears of the failure as an error event.
 */
static void
send_failure_event(Conn *conn, JsonObject *ack, const char *resource_id)
{
	const JsonMember *e = json_object_get(ack, "error");
	JsonObject	err;
	char	   *perr = NULL;
	const char *name;
	const char *message = "request failed";
	size_t		l;
	CollabErrorCode code = CE_INTERNAL;

	if (e && e->kind == JSON_KIND_OBJECT && json_object_parse(e->value, e->len, &err, &perr))
	{
		if (json_object_get_string(&err, "code", &name, &l) == JSON_GET_OK &&
			!collab_error_of_name(name, &code))
			code = CE_INTERNAL;
		(void) json_object_get_string(&err, "message", &message, &l);
	}
	conn_send_error(conn, SIO_NO_ACK, code, message, resource_id);
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
	if (job->failed)
	{
		if (rj->spec->is_save)
			collab_metrics->saves_rejected++;
		conn_send_error(conn, rj->ack_id, job->err_code, job->err_message, rj->resource_id);
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
		conn_send_error(conn, rj->ack_id, CE_INTERNAL, "internal error: malformed reply", rj->resource_id);
		return;
	}
	(void) json_object_get_bool(&ack, "ok", &ok);
	tokm = json_object_get(&result, "token");
	if (tokm && json_member_int64(tokm, &token) == JSON_GET_OK)
		conn_store_token(conn, rj->resource_id, token);

	if (ok && rj->spec->after == AFTER_LEAVE)
		rooms_leave(conn, rj->resource_id);

	if (rj->ack_id >= 0)
		conn_send_ack(conn, rj->ack_id, ackm->value, ackm->len);
	else if (!ok)
		send_failure_event(conn, &ack, rj->resource_id);
}
