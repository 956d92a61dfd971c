/*-------------------------------------------------------------------------
 *
 * access_live.c
 *	  The worker's side of access control: what its connections may do in
 *	  their rooms, kept current while grants, revocations and tokens change.
 *
 * Every decision is the database's (docs/access-control.md); the worker
 * keeps a copy of its outcome per room member (RoomMember.perms, and
 * .viewable_ancestors for the fan-out filter of rooms.c), taken from the
 * join's acknowledgement and refreshed by a SQL job after each change:
 *
 * - internal:grant, internal:revoke: the members of the rooms of the
 *   resource and of its descendants whose user the subject names;
 *   internal:access_changed: all of them.  A grant only adds, so its job
 *   only reads (collab.ws_permissions); the others run collab.ws_recheck,
 *   which releases the lock of a member that lost edit and removes from
 *   the room one that lost view, publishing what the room hears.
 * - auth:refresh with other groups: every room of that connection.
 * - internal:revoke_sessions: the user's connections whose token was
 *   issued at or before the revocation (or has no iat) get an error event
 *   AUTH_TOKEN_REVOKED and are closed; their rows go with reason "revoked".
 *
 * Every worker reads every event and acts for its own connections only.
 * When a member's permissions change it gets access:changed, and when it
 * lost view it leaves the room here too and gets access:revoked.  The
 * events that the re-check published (lock:released, presence:left) are
 * fanned out before the job's answer is handled, so they still reach it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "access_live.h"
#include "collab.h"
#include "conn.h"
#include "jobs.h"
#include "json_object.h"
#include "rooms.h"
#include "sio_codec.h"

/*
 * Whether the connection may view each proper ancestor of the room, root
 * first, as a string of '0' and '1' (NULL for a room without ancestors).
 */
#define ANCESTORS_SQL \
	"(SELECT string_agg(CASE WHEN cardinality(collab.ws_permissions($1, x.a)) > 0 THEN '1' ELSE '0' END, '' ORDER BY x.n)" \
	" FROM unnest(collab.ancestors($2)) WITH ORDINALITY x(a, n))"

static const char recheck_sql[] =
"SELECT to_json(r.permissions)::text, " ANCESTORS_SQL " FROM collab.ws_recheck($1, $2) r";
static const char permissions_sql[] =
"SELECT to_json(collab.ws_permissions($1, $2))::text, " ANCESTORS_SQL;
static const char ancestors_sql[] =
"SELECT " ANCESTORS_SQL;

/* A job about one connection's place in one room. */
typedef struct RoomJob
{
	Job			job;
	char	   *resource_id;
	uint8		perms;			/* the answer of a re-check */
	uint8		viewable_ancestors;
} RoomJob;

static void recheck_done(Job *job);
static void recheck_apply(Job *job);
static void ancestors_done(Job *job);

/* ROOM_PERM_* of a JSON array of permission names; false if malformed. */
static bool
parse_permissions(const char *json, size_t len, uint8 *perms)
{
	JsonArray	arr;
	char	   *perr = NULL;

	*perms = 0;
	if (!json_array_parse(json, len, &arr, &perr))
		return false;
	for (int i = 0; i < arr.nelems; i++)
	{
		const char *p;
		size_t		l;

		if (json_member_string(&arr.elems[i], &p, &l) != JSON_GET_OK)
			continue;
		if (strcmp(p, "view") == 0)
			*perms |= ROOM_PERM_VIEW;
		else if (strcmp(p, "edit") == 0)
			*perms |= ROOM_PERM_EDIT;
		else if (strcmp(p, "admin") == 0)
			*perms |= ROOM_PERM_ADMIN;
	}
	json_array_free(&arr);
	return true;
}

/* The bits of ANCESTORS_SQL's answer (NULL: no ancestors). */
static uint8
parse_ancestors(const char *flags)
{
	uint8		mask = 0;

	for (int i = 0; flags && flags[i] && i < 8; i++)
		if (flags[i] == '1')
			mask |= (uint8) (1 << i);
	return mask;
}

static void
queue_room_job(Conn *conn, const char *resource_id, const char *sql, JobCallback done)
{
	RoomJob    *rj = (RoomJob *) job_new(sizeof(RoomJob), sql, conn, done);

	rj->job.nargs = 2;
	rj->job.args[0] = job_strdup(conn->id);
	rj->job.args[1] = job_strdup(resource_id);
	rj->resource_id = rj->job.args[1];
	jobs_queue(&rj->job);
}

/* access:changed {resourceId, permissions}: permissions is a JSON array. */
static void
send_access_changed(Conn *conn, const char *resource_id, const char *permissions)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_event_begin(&buf, NULL, "access:changed", SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "{\"resourceId\":");
	sio_json_escape(&buf, resource_id);
	appendStringInfoString(&buf, ",\"permissions\":");
	appendStringInfoString(&buf, permissions);
	appendStringInfoChar(&buf, '}');
	sio_packet_end(&buf);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

/* access:revoked {resourceId}: the connection left the room. */
static void
send_access_revoked(Conn *conn, const char *resource_id)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_event_begin(&buf, NULL, "access:revoked", SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "{\"resourceId\":");
	sio_json_escape(&buf, resource_id);
	appendStringInfoChar(&buf, '}');
	sio_packet_end(&buf);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

/*
 * presence:join committed and conn is in the room: its permissions are
 * those of the acknowledgement (collab.ws_join puts them before the
 * content, so the first occurrence is theirs), and whether it may view the
 * room's ancestors is asked next.
 */
void
access_live_joined(Conn *conn, const char *resource_id, const char *ack)
{
	RoomMember *m = rooms_member(conn, resource_id);
	const char *p = strstr(ack, ",\"permissions\":[");
	const char *end;

	if (m == NULL)
		return;
	if (p && (end = strchr(p, ']')) != NULL)
	{
		p += strlen(",\"permissions\":");
		(void) parse_permissions(p, end + 1 - p, &m->perms);
	}
	if (strchr(resource_id, '/') != NULL)
		queue_room_job(conn, resource_id, ancestors_sql, ancestors_done);
}

/*
 * A recovered session is in the room again (collab.ws_resume): its
 * permissions are those given (a JSON array), and whether it may view the
 * room's ancestors is asked again.
 */
void
access_live_resumed(Conn *conn, const char *resource_id, const char *permissions, size_t len)
{
	RoomMember *m = rooms_member(conn, resource_id);

	if (m == NULL)
		return;
	(void) parse_permissions(permissions, len, &m->perms);
	m->viewable_ancestors = 0;
	if (strchr(resource_id, '/') != NULL)
		queue_room_job(conn, resource_id, ancestors_sql, ancestors_done);
}

/*
 * A recovered session may no longer view a room it was in (it has left
 * it): it hears so as a live connection that loses view does.
 */
void
access_live_lost_view(Conn *conn, const char *resource_id)
{
	send_access_changed(conn, resource_id, "[]");
	send_access_revoked(conn, resource_id);
}

static void
ancestors_done(Job *job)
{
	RoomJob    *rj = (RoomJob *) job;
	RoomMember *m;

	if (job->failed || job->conn->state != CONN_CONNECTED)
		return;
	m = rooms_member(job->conn, rj->resource_id);
	if (m)
		m->viewable_ancestors = parse_ancestors(job->result);
}

/*
 * A re-check answered.  What it changed is applied once the events of its
 * batch have gone out (recheck_apply), so that the member, still in the
 * room, hears its lock released and its own departure first.
 */
static void
recheck_done(Job *job)
{
	RoomJob    *rj = (RoomJob *) job;
	Conn	   *conn = job->conn;

	if (conn->state != CONN_CONNECTED)
		return;
	if (job->failed)
	{
		/* a revoked session is closed by its own event */
		if (job->err_code != CE_AUTH_TOKEN_REVOKED)
			ereport(LOG,
					(errmsg("collab worker could not re-check the access of connection %s to \"%s\": %s",
							conn->id, rj->resource_id, job->err_message)));
		return;
	}
	if (job->result == NULL || !parse_permissions(job->result, strlen(job->result), &rj->perms))
		return;
	rj->viewable_ancestors = parse_ancestors(job->result2);
	if ((rj->perms & ROOM_PERM_VIEW) == 0 && job->sql == permissions_sql)
	{
		/* a read-only job saw view gone: the re-check takes it out */
		queue_room_job(conn, rj->resource_id, recheck_sql, recheck_done);
		return;
	}
	job_follow_up(job, NULL, "", recheck_apply);
}

/* The member's permissions now, and what it is told. */
static void
recheck_apply(Job *job)
{
	RoomJob    *rj = (RoomJob *) job;
	Conn	   *conn = job->conn;
	RoomMember *m;
	uint8		perms = rj->perms;

	if (conn->state != CONN_CONNECTED)
		return;
	m = rooms_member(conn, rj->resource_id);
	if (m == NULL)
		return;					/* it left meanwhile */
	m->viewable_ancestors = rj->viewable_ancestors;
	if (perms != m->perms)
		send_access_changed(conn, rj->resource_id, job->result);
	m->perms = perms;
	if ((perms & ROOM_PERM_VIEW) == 0)
	{
		rooms_leave(conn, rj->resource_id);
		send_access_revoked(conn, rj->resource_id);
	}
}

/* auth:refresh changed the connection's groups: every room is checked again. */
void
access_live_recheck_rooms(Conn *conn)
{
	for (RoomMember *m = conn->rooms; m; m = m->next_of_conn)
		queue_room_job(conn, rooms_member_resource(m), recheck_sql, recheck_done);
}

/* ----------------------------------------------------------------
 * The internal events
 * ---------------------------------------------------------------- */

/* Does a grant's subject ("*", "user:<id>", "group:<name>") name conn's user? */
static bool
subject_names(const char *subject, const Conn *conn)
{
	if (subject == NULL || strcmp(subject, "*") == 0)
		return true;
	if (strncmp(subject, "user:", 5) == 0)
		return conn->user_id && strcmp(subject + 5, conn->user_id) == 0;
	if (strncmp(subject, "group:", 6) == 0)
	{
		for (int i = 0; i < conn->ngroups; i++)
			if (strcmp(subject + 6, conn->groups[i]) == 0)
				return true;
	}
	return false;
}

typedef struct RecheckScope
{
	const char *subject;		/* NULL: every member */
	const char *sql;
} RecheckScope;

static void
queue_member_recheck(RoomMember *m, void *arg)
{
	RecheckScope *scope = (RecheckScope *) arg;

	if (m->conn->state != CONN_CONNECTED || !subject_names(scope->subject, m->conn))
		return;
	queue_room_job(m->conn, rooms_member_resource(m), scope->sql, recheck_done);
}

typedef struct Revocation
{
	const char *user_id;
	TimestampTz before;
} Revocation;

/* Ends conn if its token is one that the revocation refuses. */
static void
end_if_revoked(Conn *conn, void *arg)
{
	Revocation *r = (Revocation *) arg;
	StringInfoData buf;

	if ((conn->state != CONN_CONNECTED && conn->state != CONN_CONNECTING) ||
		conn->user_id == NULL || strcmp(conn->user_id, r->user_id) != 0 ||
		(conn->token_iat >= 0 && time_t_to_timestamptz((pg_time_t) conn->token_iat) > r->before))
		return;
	conn->close_reason = "revoked";
	conn->revoked = true;
	if (conn->state == CONN_CONNECTING)
		return;					/* its registration's answer refuses it */
	rooms_leave_all(conn);
	conn_send_error(conn, SIO_NO_ACK, CE_AUTH_TOKEN_REVOKED,
					"your sessions were revoked: sign in again", NULL);
	initStringInfo(&buf);
	sio_encode_disconnect(&buf, NULL);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
	conn_close_after_flush(conn, LWS_CLOSE_STATUS_POLICY_VIOLATION);
}

/* One of the workers' own events (rooms.c hands them over). */
void
access_live_internal_event(JsonObject *ev)
{
	const char *name;
	const char *rid;
	const char *subject = NULL;
	size_t		l;
	RecheckScope scope;

	if (json_object_get_string(ev, "event", &name, &l) != JSON_GET_OK)
		return;
	if (strcmp(name, "internal:revoke_sessions") == 0)
	{
		Revocation	r;
		const char *before;

		if (json_object_get_string(ev, "userId", &r.user_id, &l) != JSON_GET_OK ||
			json_object_get_string(ev, "revokedBefore", &before, &l) != JSON_GET_OK)
			return;
		r.before = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
														   CStringGetDatum(before),
														   ObjectIdGetDatum(InvalidOid),
														   Int32GetDatum(-1)));
		conn_foreach(end_if_revoked, &r);
		return;
	}
	if (json_object_get_string(ev, "resourceId", &rid, &l) != JSON_GET_OK)
		return;
	if (strcmp(name, "internal:grant") == 0)
		scope.sql = permissions_sql;
	else if (strcmp(name, "internal:revoke") == 0 || strcmp(name, "internal:access_changed") == 0)
		scope.sql = recheck_sql;
	else
		return;
	if (strcmp(name, "internal:access_changed") != 0 &&
		json_object_get_string(ev, "subject", &subject, &l) != JSON_GET_OK)
		return;
	scope.subject = subject;
	rooms_foreach_member_under(rid, queue_member_recheck, &scope);
}
