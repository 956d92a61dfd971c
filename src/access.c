/*-------------------------------------------------------------------------
 *
 * access.c
 *	  The C parts of access control: the access locks of a path, the
 *	  access trail's record of refusals, and the retention setting as an
 *	  interval.
 *
 * Who may do what is decided in SQL (collab._level() and the functions
 * around it, see docs/access-control.md).  Two things SQL cannot do alone
 * live here:
 *
 * - A join decides before or after a grant or revoke on its path, never
 *   across one: it takes the access locks of the path in share mode, a
 *   grant or revoke that of its resource exclusively.  They are apart from
 *   the path locks of lock decisions, so that joins do not wait for locks
 *   and saves, nor for each other; a grant or revoke takes both kinds
 *   (access first), so that saves and lock decisions in its subtree wait
 *   for it too.
 *
 * - A refused join (or connection) ends in an error, which rolls back the
 *   worker's subtransaction for that request and every row it wrote.  Its
 *   access-log entry is therefore kept here, in the top transaction's
 *   memory, and written just before that transaction commits: it survives
 *   the failed request, and is lost only if the whole transaction is.
 *   In a collab worker, identical refusals are sampled with counts
 *   (sampling.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "collab.h"
#include "json_object.h"
#include "resource_id.h"

/* One refusal waiting for its transaction's commit. */
typedef struct Refusal
{
	TimestampTz at;
	char	   *action;
	char	   *user_id;
	char	   *username;
	char	   *resource_id;
	char	   *address;
	char	   *actor;
	char	   *detail;
} Refusal;

static List *refusals = NIL;	/* in TopTransactionContext */
static Oid	refusals_owner = InvalidOid;
static bool callback_registered = false;

#define REFUSAL_INSERT \
	"INSERT INTO collab.access_entries " \
	"(at, action, outcome, user_id, username, resource_id, address, actor, detail) " \
	"VALUES ($1, CAST($2 AS collab.access_action), 'refused', $3, $4, $5, $6, $7, " \
	"CAST($8 AS pg_catalog.jsonb))"

/*
 * collab._lock_access(resource_id, exclusive): the access locks of a path.
 * Shared: one on each segment of the path, root first (a join).  Exclusive:
 * the one of the resource itself (a grant or revoke), which conflicts with
 * every join on the resource and its descendants.  They are locks of
 * lock_path.c's own key space, of a kind apart from the path locks', on the
 * same path hashes (collab.lock_key()).
 */
PG_FUNCTION_INFO_V1(collab_lock_access);
Datum
collab_lock_access(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	bool		exclusive = PG_GETARG_BOOL(1);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	size_t		offset;

	if (resource_id_check(s, len, &offset) != RID_OK)
		ereport(ERROR,
				(errcode(collab_errcode(CE_RESOURCE_ID_INVALID)),
				 errmsg("invalid resource id")));
	collab_lock_access_of(s, len, exclusive);
	PG_RETURN_VOID();
}

/* argument n as a C string in the current memory context, NULL for NULL */
static char *
arg_or_null(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : TextDatumGetCString(PG_GETARG_DATUM(n));
}

/*
 * One refused access as a row of collab.access_entries, with detail; the
 * caller is connected to SPI, as the log's owner.  Also the writer of the
 * rows that count sampled refusals (sampling.c).
 */
static void
insert_refusal(const CollabRefusal *r, const char *detail)
{
	Oid			types[8] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	const char *strs[7] = {r->action, r->user_id, r->fields[0], r->resource_id,
	r->fields[1], r->fields[2], detail};
	Datum		values[8];
	char		nulls[8];

	values[0] = TimestampTzGetDatum(r->at);
	nulls[0] = ' ';
	for (int i = 0; i < 7; i++)
	{
		values[i + 1] = strs[i] ? CStringGetTextDatum(strs[i]) : (Datum) 0;
		nulls[i + 1] = strs[i] ? ' ' : 'n';
	}
	if (SPI_execute_with_args(REFUSAL_INSERT, 8, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "collab could not record a refused access");
}

/* The "reason" member of a refusal's detail, NULL for none. */
static const char *
detail_reason(const char *detail)
{
	JsonObject	obj;
	char	   *perr = NULL;
	const char *reason;
	size_t		len;

	if (detail == NULL || !json_object_parse(detail, strlen(detail), &obj, &perr) ||
		json_object_get_string(&obj, "reason", &reason, &len) != JSON_GET_OK)
		return NULL;
	return pnstrdup(reason, len);
}

static void
write_refusals(void)
{
	List	   *todo = refusals;
	Oid			saved_uid;
	int			saved_ctx;
	ListCell   *lc;

	refusals = NIL;
	GetUserIdAndSecContext(&saved_uid, &saved_ctx);
	SetUserIdAndSecContext(refusals_owner, saved_ctx | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		foreach(lc, todo)
		{
			Refusal    *r = lfirst(lc);
			CollabRefusal cr = {"access", r->action, r->user_id, r->resource_id,
				detail_reason(r->detail), {r->username, r->address, r->actor}, r->detail, r->at};

			/* a worker's browsers cannot grow the log faster than once a second per kind */
			if (collab_refusal_sample(&cr, insert_refusal))
				insert_refusal(&cr, cr.detail);
		}
		PopActiveSnapshot();
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_uid, saved_ctx);
	}
	PG_END_TRY();
}

static void
access_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (refusals != NIL)
				write_refusals();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_ABORT:
			refusals = NIL;		/* freed with TopTransactionContext */
			break;
		default:
			break;
	}
}

/*
 * collab._log_refusal(action, user_id, username, resource_id, address,
 * detail): an access-log entry with outcome "refused", written when the
 * top transaction commits even if the subtransaction that refused rolls
 * back.
 */
PG_FUNCTION_INFO_V1(collab_log_refusal);
Datum
collab_log_refusal(PG_FUNCTION_ARGS)
{
	MemoryContext old;
	Refusal    *r;
	HeapTuple	tp;

	if (PG_ARGISNULL(0))
		elog(ERROR, "collab._log_refusal needs an action");
	if (!callback_registered)
	{
		RegisterXactCallback(access_xact_callback, NULL);
		callback_registered = true;
	}
	/* the entry is written as this function's owner, who owns the log */
	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fcinfo->flinfo->fn_oid);
	refusals_owner = ((Form_pg_proc) GETSTRUCT(tp))->proowner;
	ReleaseSysCache(tp);

	old = MemoryContextSwitchTo(TopTransactionContext);
	r = palloc0(sizeof(Refusal));
	r->at = GetCurrentTimestamp();
	r->action = arg_or_null(fcinfo, 0);
	r->user_id = arg_or_null(fcinfo, 1);
	r->username = arg_or_null(fcinfo, 2);
	r->resource_id = arg_or_null(fcinfo, 3);
	r->address = arg_or_null(fcinfo, 4);
	r->detail = arg_or_null(fcinfo, 5);
	r->actor = GetUserNameFromId(GetSessionUserId(), false);
	refusals = lappend(refusals, r);
	MemoryContextSwitchTo(old);
	PG_RETURN_VOID();
}

/* collab.access_log_retention(): the setting as an interval, NULL for "keep" */
PG_FUNCTION_INFO_V1(collab_access_log_retention);
Datum
collab_access_log_retention(PG_FUNCTION_ARGS)
{
	Interval   *keep;

	if (collab_access_log_retention_min <= 0)
		PG_RETURN_NULL();
	keep = palloc0(sizeof(Interval));
	keep->day = collab_access_log_retention_min / MINS_PER_HOUR / HOURS_PER_DAY;
	keep->time = (int64) (collab_access_log_retention_min % (MINS_PER_HOUR * HOURS_PER_DAY)) * USECS_PER_MINUTE;
	PG_RETURN_INTERVAL_P(keep);
}
