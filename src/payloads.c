/*-------------------------------------------------------------------------
 *
 * payloads.c
 *	  The JSON that collab publishes: one builder per event, and one per
 *	  object that events and acknowledgements share (UserRef, LockInfo,
 *	  PresenceUser), with the time format they all use.
 *
 * The C functions (leases.c, save_guard.c) call these builders directly;
 * the PL/pgSQL functions call them through the SQL functions at the end of
 * this file (collab._user_ref(), collab._lock_info(), ...), so that a
 * payload is written in one place whichever language decides to send it.
 * The trigger that stores each presence row's PresenceUser is here too.
 * Events carry routing members (holderId, requesterHolderId, to) that the
 * worker strips before a client sees them (rooms.c); docs/events.md and
 * types/collab.d.ts describe what remains.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/rel.h"

#include "collab.h"
#include "payloads.h"
#include "trigger_rows.h"

/* ----------------------------------------------------------------
 * Times and shared objects
 * ---------------------------------------------------------------- */

/* Appends t as the payloads' JSON time: ISO 8601 in UTC with milliseconds. */
void
collab_append_ts(StringInfo buf, TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "timestamp out of range");
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
					 (int) (fsec / 1000));
}

/* The same time without the JSON quotes, for messages. */
char *
collab_ts_text(TimestampTz t)
{
	StringInfoData buf;

	initStringInfo(&buf);
	collab_append_ts(&buf, t);
	memmove(buf.data, buf.data + 1, buf.len - 2);
	buf.data[buf.len - 2] = '\0';
	return buf.data;
}

/* A UserRef: {"userId":...,"username":...} */
void
payload_user_ref(StringInfo buf, const char *user_id, const char *username)
{
	appendStringInfoString(buf, "{\"userId\":");
	escape_json(buf, user_id);
	appendStringInfoString(buf, ",\"username\":");
	escape_json(buf, username);
	appendStringInfoChar(buf, '}');
}

/*
 * A LockInfo; the token only for its holder's own eyes, suspendedUntil only
 * while its holder's connection is lost.
 */
void
payload_lock_info(StringInfo buf, const Lease *l, bool with_token)
{
	appendStringInfoString(buf, "{\"resourceId\":");
	escape_json(buf, l->resource_id);
	appendStringInfoString(buf, ",\"holder\":");
	payload_user_ref(buf, l->user_id, l->username);
	appendStringInfoString(buf, ",\"acquiredAt\":");
	collab_append_ts(buf, l->acquired_at);
	appendStringInfoString(buf, ",\"expiresAt\":");
	collab_append_ts(buf, l->expires_at);
	if (l->suspended_until != 0)
	{
		appendStringInfoString(buf, ",\"suspendedUntil\":");
		collab_append_ts(buf, l->suspended_until);
	}
	if (with_token)
		appendStringInfo(buf, ",\"token\":" INT64_FORMAT, l->token);
	appendStringInfoChar(buf, '}');
}

/*
 * The role member of a PresenceUser.  A role change rewrites this member
 * in the stored JSON rather than building it again (set_role in leases.c),
 * so it is written here alone.
 */
void
payload_presence_role(StringInfo buf, const char *role)
{
	appendStringInfoString(buf, "\"role\":");
	escape_json(buf, role);
}

/* A PresenceUser: who is in a room, as what, since when. */
void
payload_presence_user(StringInfo buf, const char *user_id, const char *username,
					  const char *connection_id, const char *role,
					  TimestampTz joined_at, const char *resource_id)
{
	appendStringInfoString(buf, "{\"userId\":");
	escape_json(buf, user_id);
	appendStringInfoString(buf, ",\"username\":");
	escape_json(buf, username);
	appendStringInfoString(buf, ",\"connectionId\":");
	escape_json(buf, connection_id);
	appendStringInfoChar(buf, ',');
	payload_presence_role(buf, role);
	appendStringInfoString(buf, ",\"joinedAt\":");
	collab_append_ts(buf, joined_at);
	appendStringInfoString(buf, ",\"resourceId\":");
	escape_json(buf, resource_id);
	appendStringInfoChar(buf, '}');
}

/* ----------------------------------------------------------------
 * Events
 * ---------------------------------------------------------------- */

/* Opens the JSON of event name about resource_id: {"event":...,"resourceId":... */
static void
event_begin(StringInfo ev, const char *name, const char *resource_id)
{
	initStringInfo(ev);
	appendStringInfoString(ev, "{\"event\":\"");
	appendStringInfoString(ev, name);
	appendStringInfoString(ev, "\",\"resourceId\":");
	escape_json(ev, resource_id);
}

/* Closes the event's JSON and publishes it with the transaction (events.c). */
static void
event_publish(StringInfo ev)
{
	appendStringInfoChar(ev, '}');
	collab_publish_event(ev->data, ev->len);
	pfree(ev->data);
}

/* A lease was granted (not renewed). */
void
publish_lock_acquired(const Lease *l)
{
	StringInfoData ev;

	event_begin(&ev, "lock:acquired", l->resource_id);
	appendStringInfoString(&ev, ",\"holder\":");
	payload_user_ref(&ev, l->user_id, l->username);
	appendStringInfoString(&ev, ",\"holderId\":");
	escape_json(&ev, l->holder_id);
	appendStringInfoString(&ev, ",\"acquiredAt\":");
	collab_append_ts(&ev, l->acquired_at);
	appendStringInfoString(&ev, ",\"expiresAt\":");
	collab_append_ts(&ev, l->expires_at);
	event_publish(&ev);
}

/* holder_id (user_id, username) was denied resource_id: held is in the way. */
void
publish_lock_denied(const char *resource_id, const char *user_id, const char *username,
					const char *holder_id, const Lease *held)
{
	StringInfoData ev;

	event_begin(&ev, "lock:denied", resource_id);
	appendStringInfoString(&ev, ",\"requester\":");
	payload_user_ref(&ev, user_id, username);
	appendStringInfoString(&ev, ",\"requesterHolderId\":");
	escape_json(&ev, holder_id);
	appendStringInfoString(&ev, ",\"holder\":");
	payload_user_ref(&ev, held->user_id, held->username);
	appendStringInfoString(&ev, ",\"holderResourceId\":");
	escape_json(&ev, held->resource_id);
	appendStringInfoString(&ev, ",\"expiresAt\":");
	collab_append_ts(&ev, held->expires_at);
	appendStringInfoString(&ev, ",\"reason\":\"held\"");
	event_publish(&ev);
}

/* A live lease was released; reason is what clients are told ("forced", ...). */
void
publish_lock_released(const Lease *l, const char *reason, TimestampTz released_at)
{
	StringInfoData ev;

	event_begin(&ev, "lock:released", l->resource_id);
	appendStringInfoString(&ev, ",\"previousHolder\":");
	payload_user_ref(&ev, l->user_id, l->username);
	appendStringInfoString(&ev, ",\"holderId\":");
	escape_json(&ev, l->holder_id);
	appendStringInfoString(&ev, ",\"reason\":");
	escape_json(&ev, reason);
	appendStringInfoString(&ev, ",\"releasedAt\":");
	collab_append_ts(&ev, released_at);
	event_publish(&ev);
}

/* An expired lease was removed. */
void
publish_lock_expired(const Lease *l)
{
	StringInfoData ev;

	event_begin(&ev, "lock:expired", l->resource_id);
	appendStringInfoString(&ev, ",\"previousHolder\":");
	payload_user_ref(&ev, l->user_id, l->username);
	appendStringInfoString(&ev, ",\"holderId\":");
	escape_json(&ev, l->holder_id);
	appendStringInfoString(&ev, ",\"expiredAt\":");
	collab_append_ts(&ev, l->expires_at);
	event_publish(&ev);
}

/*
 * The holder's connection was lost uncleanly: the lease stays theirs until
 * l->suspended_until (unless its TTL ends first, at expiresAt).
 */
void
publish_lock_suspended(const Lease *l)
{
	StringInfoData ev;

	event_begin(&ev, "lock:suspended", l->resource_id);
	appendStringInfoString(&ev, ",\"holder\":");
	payload_user_ref(&ev, l->user_id, l->username);
	appendStringInfoString(&ev, ",\"holderId\":");
	escape_json(&ev, l->holder_id);
	appendStringInfoString(&ev, ",\"until\":");
	collab_append_ts(&ev, l->suspended_until);
	appendStringInfoString(&ev, ",\"expiresAt\":");
	collab_append_ts(&ev, l->expires_at);
	event_publish(&ev);
}

/*
 * A suspended lease's holder is back: on its own connection
 * (previous_holder_id NULL), or, having joined again from a new one, which
 * took the lease over (l is the new lease, previous_holder_id the
 * connection that lost it).
 */
void
publish_lock_resumed(const Lease *l, const char *previous_holder_id)
{
	StringInfoData ev;

	event_begin(&ev, "lock:resumed", l->resource_id);
	appendStringInfoString(&ev, ",\"holder\":");
	payload_user_ref(&ev, l->user_id, l->username);
	appendStringInfoString(&ev, ",\"holderId\":");
	escape_json(&ev, l->holder_id);
	if (previous_holder_id)
	{
		appendStringInfoString(&ev, ",\"previousHolderId\":");
		escape_json(&ev, previous_holder_id);
	}
	appendStringInfoString(&ev, ",\"expiresAt\":");
	collab_append_ts(&ev, l->expires_at);
	event_publish(&ev);
}

/* A viewer asked holder_id, the holder of resource_id's lock, for it. */
void
publish_lock_requested(const char *resource_id, const char *user_id, const char *username,
					   TimestampTz requested_at, const char *holder_id)
{
	StringInfoData ev;

	event_begin(&ev, "lock:requested", resource_id);
	appendStringInfoString(&ev, ",\"requester\":");
	payload_user_ref(&ev, user_id, username);
	appendStringInfoString(&ev, ",\"requestedAt\":");
	collab_append_ts(&ev, requested_at);
	appendStringInfoString(&ev, ",\"to\":");
	escape_json(&ev, holder_id);
	event_publish(&ev);
}

/*
 * A save was accepted: resource_id is at version.  restored_from, when not
 * NULL, is the version whose content the save restored.
 */
void
publish_doc_saved(const char *resource_id, int64 version, const char *user_id,
				  const char *username, const char *holder_id, TimestampTz saved_at,
				  const int64 *restored_from)
{
	StringInfoData ev;

	event_begin(&ev, "doc:saved", resource_id);
	appendStringInfo(&ev, ",\"version\":" INT64_FORMAT ",\"savedBy\":", version);
	payload_user_ref(&ev, user_id, username);
	appendStringInfoString(&ev, ",\"holderId\":");
	escape_json(&ev, holder_id);
	appendStringInfoString(&ev, ",\"savedAt\":");
	collab_append_ts(&ev, saved_at);
	if (restored_from)
		appendStringInfo(&ev, ",\"restoredFrom\":" INT64_FORMAT, *restored_from);
	event_publish(&ev);
}

/* user_json (a PresenceUser, as stored with the presence row) joined resource_id. */
void
publish_presence_joined(const char *resource_id, const char *user_json)
{
	StringInfoData ev;

	event_begin(&ev, "presence:joined", resource_id);
	appendStringInfoString(&ev, ",\"user\":");
	appendStringInfoString(&ev, user_json);
	event_publish(&ev);
}

/* user_json left resource_id ("left", "disconnected" or "timeout"). */
void
publish_presence_left(const char *resource_id, const char *user_json, const char *reason)
{
	StringInfoData ev;

	event_begin(&ev, "presence:left", resource_id);
	appendStringInfoString(&ev, ",\"user\":");
	appendStringInfoString(&ev, user_json);
	appendStringInfoString(&ev, ",\"reason\":");
	escape_json(&ev, reason);
	event_publish(&ev);
}

/* ----------------------------------------------------------------
 * The builders as SQL functions, for the PL/pgSQL functions
 * ---------------------------------------------------------------- */

/* Arguments that are never NULL where the builders are called. */
static char *
required_arg(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		elog(ERROR, "collab payload builder called without %s", name);
	return text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static Datum
jsonb_of(StringInfo buf)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf->data));
}

/* collab._ts(t timestamptz): the payloads' time format, as text */
PG_FUNCTION_INFO_V1(collab_ts_sql);
Datum
collab_ts_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(collab_ts_text(PG_GETARG_TIMESTAMPTZ(0))));
}

/* collab._user_ref(user_id, username): a UserRef */
PG_FUNCTION_INFO_V1(collab_user_ref_sql);
Datum
collab_user_ref_sql(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	payload_user_ref(&buf, required_arg(fcinfo, 0, "a user id"), required_arg(fcinfo, 1, "a username"));
	PG_RETURN_DATUM(jsonb_of(&buf));
}

/*
 * collab._lock_info(resource_id, user_id, username, acquired_at,
 * expires_at, token, suspended_until): a LockInfo, with the token when one
 * is given and suspendedUntil when the lease is suspended; NULL when
 * resource_id is (no lease).
 */
PG_FUNCTION_INFO_V1(collab_lock_info_sql);
Datum
collab_lock_info_sql(PG_FUNCTION_ARGS)
{
	Lease		l;
	StringInfoData buf;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	l.resource_id = text_to_cstring(PG_GETARG_TEXT_PP(0));
	l.user_id = required_arg(fcinfo, 1, "a user id");
	l.username = required_arg(fcinfo, 2, "a username");
	l.holder_id = NULL;
	if (PG_ARGISNULL(3) || PG_ARGISNULL(4))
		elog(ERROR, "collab payload builder called without the lease's times");
	l.acquired_at = PG_GETARG_TIMESTAMPTZ(3);
	l.expires_at = PG_GETARG_TIMESTAMPTZ(4);
	l.token = PG_ARGISNULL(5) ? 0 : PG_GETARG_INT64(5);
	l.suspended_until = (PG_NARGS() > 6 && !PG_ARGISNULL(6)) ? PG_GETARG_TIMESTAMPTZ(6) : 0;
	initStringInfo(&buf);
	payload_lock_info(&buf, &l, !PG_ARGISNULL(5));
	PG_RETURN_DATUM(jsonb_of(&buf));
}

/* collab._presence_user(user_id, username, connection_id, role, joined_at, resource_id) */
PG_FUNCTION_INFO_V1(collab_presence_user_sql);
Datum
collab_presence_user_sql(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	if (PG_ARGISNULL(4))
		elog(ERROR, "collab payload builder called without a join time");
	initStringInfo(&buf);
	payload_presence_user(&buf, required_arg(fcinfo, 0, "a user id"),
						  required_arg(fcinfo, 1, "a username"),
						  required_arg(fcinfo, 2, "a connection id"),
						  required_arg(fcinfo, 3, "a role"),
						  PG_GETARG_TIMESTAMPTZ(4),
						  required_arg(fcinfo, 5, "a resource id"));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* A presence row's column as text; an error for NULL, as the builders give. */
static char *
presence_column(HeapTuple row, Relation rel, const char *name)
{
	char	   *v = SPI_getvalue(row, RelationGetDescr(rel), collab_attnum(rel, name));

	if (v == NULL)
		elog(ERROR, "collab presence row without %s", name);
	return v;
}

/*
 * collab._ws_presence_json(): the BEFORE INSERT OR UPDATE trigger that keeps
 * a presence row's PresenceUser in user_json.  An UPDATE that sets
 * user_json itself (a role change rewrites its member, leases.c) keeps what
 * it set; any other row is built again.  That test is made here rather than
 * in a WHEN clause, which PostgreSQL would read back from the catalog for
 * every statement that updates the table.
 */
PG_FUNCTION_INFO_V1(collab_ws_presence_json);
Datum
collab_ws_presence_json(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	row;
	int			a_json;
	bool		isnull;
	Datum		joined_at;
	StringInfoData buf;
	Datum		value;
	bool		value_null = false;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "collab._ws_presence_json() must be fired BEFORE, FOR EACH ROW");
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	a_json = collab_attnum(rel, "user_json");
	row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event) &&
		!collab_column_unchanged(td->tg_trigtuple, row, desc, a_json))
		return PointerGetDatum(row);
	joined_at = heap_getattr(row, collab_attnum(rel, "joined_at"), desc, &isnull);
	if (isnull)
		elog(ERROR, "collab presence row without joined_at");
	initStringInfo(&buf);
	payload_presence_user(&buf, presence_column(row, rel, "user_id"),
						  presence_column(row, rel, "username"),
						  presence_column(row, rel, "connection_id"),
						  presence_column(row, rel, "role"),
						  DatumGetTimestampTz(joined_at),
						  presence_column(row, rel, "resource_id"));
	value = PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len));
	return PointerGetDatum(heap_modify_tuple_by_cols(row, desc, 1, &a_json, &value, &value_null));
}

/* collab._publish_presence_joined(resource_id, user_json) */
PG_FUNCTION_INFO_V1(collab_publish_presence_joined);
Datum
collab_publish_presence_joined(PG_FUNCTION_ARGS)
{
	publish_presence_joined(required_arg(fcinfo, 0, "a resource id"),
							required_arg(fcinfo, 1, "a PresenceUser"));
	PG_RETURN_VOID();
}

/* collab._publish_presence_left(resource_id, user_json, reason) */
PG_FUNCTION_INFO_V1(collab_publish_presence_left);
Datum
collab_publish_presence_left(PG_FUNCTION_ARGS)
{
	publish_presence_left(required_arg(fcinfo, 0, "a resource id"),
						  required_arg(fcinfo, 1, "a PresenceUser"),
						  required_arg(fcinfo, 2, "a reason"));
	PG_RETURN_VOID();
}

/* A lease passed from SQL, as (resource_id, user_id, username, holder_id, expires_at, suspended_until). */
static void
lease_arg(FunctionCallInfo fcinfo, Lease *l)
{
	memset(l, 0, sizeof(*l));
	l->resource_id = required_arg(fcinfo, 0, "a resource id");
	l->user_id = required_arg(fcinfo, 1, "a user id");
	l->username = required_arg(fcinfo, 2, "a username");
	l->holder_id = required_arg(fcinfo, 3, "the holder's connection");
	if (PG_ARGISNULL(4))
		elog(ERROR, "collab payload builder called without the lease's expiry");
	l->expires_at = PG_GETARG_TIMESTAMPTZ(4);
}

/* collab._publish_lock_suspended(resource_id, user_id, username, holder_id, expires_at, until) */
PG_FUNCTION_INFO_V1(collab_publish_lock_suspended);
Datum
collab_publish_lock_suspended(PG_FUNCTION_ARGS)
{
	Lease		l;

	lease_arg(fcinfo, &l);
	if (PG_ARGISNULL(5))
		elog(ERROR, "collab payload builder called without the end of the suspension");
	l.suspended_until = PG_GETARG_TIMESTAMPTZ(5);
	publish_lock_suspended(&l);
	PG_RETURN_VOID();
}

/* collab._publish_lock_resumed(resource_id, user_id, username, holder_id, expires_at) */
PG_FUNCTION_INFO_V1(collab_publish_lock_resumed);
Datum
collab_publish_lock_resumed(PG_FUNCTION_ARGS)
{
	Lease		l;

	lease_arg(fcinfo, &l);
	publish_lock_resumed(&l, NULL);
	PG_RETURN_VOID();
}

/* collab._publish_lock_requested(resource_id, user_id, username, requested_at, holder_id) */
PG_FUNCTION_INFO_V1(collab_publish_lock_requested);
Datum
collab_publish_lock_requested(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(3))
		elog(ERROR, "collab payload builder called without a request time");
	publish_lock_requested(required_arg(fcinfo, 0, "a resource id"),
						   required_arg(fcinfo, 1, "a user id"),
						   required_arg(fcinfo, 2, "a username"),
						   PG_GETARG_TIMESTAMPTZ(3),
						   required_arg(fcinfo, 4, "the holder's connection"));
	PG_RETURN_VOID();
}
