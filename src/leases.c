/*-------------------------------------------------------------------------
 *
 * leases.c
 *	  Granting, denying and dropping editor leases: collab.acquire(),
 *	  collab.release(), their WebSocket forms collab.ws_acquire() and
 *	  collab.ws_release(), and the shared steps collab._expire_lease() and
 *	  collab._drop_lease().
 *
 * These run for every lock:acquire and lock:release of every browser, and
 * a contended tab makes most of them denials, so they are C: a denial is
 * four prepared statements, with no PL/pgSQL frames and no jsonb built.
 * The decision: the path is locked (lock_path.c), the leases on the path
 * are read and row-locked in id order, an expired one is expired, a live
 * one of another holder denies, the holder's own is renewed, and otherwise
 * a new lease gets the next fencing token.  Every decision is audited and
 * published (payloads.c builds the events).  Errors whose diagnosis needs
 * the tables are raised by the SQL helpers (collab._check_user(),
 * collab._token_error(), ...), so that each message is written once.
 *
 * A lock:acquire needs edit permission, checked under the path lock
 * (P_MEMBER_EDITS, collab._ws_require_edit()); collab.acquire() refuses a
 * caller other than the worker a holder id that is a browser connection's.
 *
 * A lease whose holder's connection was lost (suspended, collab.ws_detach())
 * is a live lease here like any other, with one exception: the same user,
 * asking for that very resource from a new browser connection, takes it
 * over with a new token (take_over()).
 *
 * Queries run as the extension's owner (owner.c) with generic plans
 * prepared once per backend (plans.c): a custom plan of the path query per
 * call costs more than the call itself.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "collab.h"
#include "payloads.h"

/* What an acquisition decided. */
typedef struct Acquired
{
	bool		granted;
	bool		renewed;
	Lease		lease;			/* the lease granted, or the one in the way */
} Acquired;

#define LEASE_COLUMNS "resource_id, token, user_id, username, holder_id, acquired_at, expires_at, suspended_until"
/* the same of a 0.1.0 schema (see check_schema), which suspends no lease */
#define LEASE_COLUMNS_010 \
	"resource_id, token, user_id, username, holder_id, acquired_at, expires_at, NULL::pg_catalog.timestamptz"

typedef enum PlanId
{
	P_RESOURCE_EXISTS,
	P_PATH_HAS_LEASES,
	P_PATH_LEASES,
	P_OWN_LEASE,
	P_LEASE_BY_TOKEN,
	P_LEASE_BY_TOKEN_FOR_UPDATE,
	P_HOLDER_LEASE_FOR_UPDATE,
	P_DELETE_LEASE,
	P_INSERT_LEASE,
	P_RENEW_LEASE,
	P_AUDIT,
	P_ANSWER_REQUEST,
	P_HAS_REQUESTS,
	P_MEMBER,
	P_MEMBER_EDITS,
	P_SET_ROLE,
	P_IS_CONNECTION,
	P_IS_ATTACHED,
	P_REQUIRE_EDIT,
	NUM_PLANS
} PlanId;

typedef struct PlanDef
{
	const char *sql;
	int			nargs;
	Oid			types[8];
	const char *sql_010;		/* for a 0.1.0 schema, where it differs */
} PlanDef;

/*
 * The leases on the path of $1: its ancestors, itself and its descendants.
 * They all sort between its root and $1 followed by '0' (the character
 * after '/'), and that range comes first as an index condition of its own:
 * whatever the planner believes of the table's size, the primary key is
 * then read for the document's subtree only.  As one OR of two conditions,
 * a generic plan made from the statistics of a nearly empty table read the
 * whole index, and while a long transaction elsewhere keeps dead entries
 * from being removed, every lock decision read all of them.
 */
#define PATH_LEASES_WHERE \
	"c.resource_id OPERATOR(pg_catalog.>=) COALESCE((collab.ancestors($1))[1], $1) " \
	"  AND c.resource_id OPERATOR(pg_catalog.<) ($1 OPERATOR(pg_catalog.||) '0') " \
	"  AND (c.resource_id OPERATOR(pg_catalog.=) ANY (collab.ancestors($1) OPERATOR(pg_catalog.||) $1) " \
	"       OR (c.resource_id OPERATOR(pg_catalog.>) ($1 OPERATOR(pg_catalog.||) '/') " \
	"           AND c.resource_id OPERATOR(pg_catalog.<) ($1 OPERATOR(pg_catalog.||) '0'))) "

/* A query of the lease columns, in both forms. */
#define LEASE_PLAN(rest, n, ...) \
	{"SELECT " LEASE_COLUMNS " FROM collab.leases c " rest, n, {__VA_ARGS__}, \
	 "SELECT " LEASE_COLUMNS_010 " FROM collab.leases c " rest}

/* Every name and operator qualified: the caller's search_path is in force. */
static const PlanDef plan_defs[NUM_PLANS] = {
	[P_RESOURCE_EXISTS] = {
		"SELECT FROM collab.resources r WHERE r.id OPERATOR(pg_catalog.=) $1",
		1, {TEXTOID}
	},
	/*
	 * Is there a lease on the path at all?  No row lock, no order, and no
	 * LIMIT: with one, the generic plan is a sequential scan of every lease
	 * in the hope of an early match, which an empty path never gives.
	 */
	[P_PATH_HAS_LEASES] = {
		"SELECT FROM collab.leases c WHERE " PATH_LEASES_WHERE,
		1, {TEXTOID}
	},
	/* the resource, its ancestors and its descendants */
	[P_PATH_LEASES] = LEASE_PLAN(
		" WHERE " PATH_LEASES_WHERE " ORDER BY c.resource_id FOR UPDATE",
		1, TEXTOID),
	/* no row lock: see acquire_lease() */
	[P_OWN_LEASE] = LEASE_PLAN("WHERE c.resource_id OPERATOR(pg_catalog.=) $1", 1, TEXTOID),
	[P_LEASE_BY_TOKEN] = LEASE_PLAN("WHERE c.token OPERATOR(pg_catalog.=) $1", 1, INT8OID),
	[P_LEASE_BY_TOKEN_FOR_UPDATE] = LEASE_PLAN("WHERE c.token OPERATOR(pg_catalog.=) $1 FOR UPDATE",
											   1, INT8OID),
	[P_HOLDER_LEASE_FOR_UPDATE] = LEASE_PLAN(
		" WHERE c.resource_id OPERATOR(pg_catalog.=) $1 AND c.holder_id OPERATOR(pg_catalog.=) $2 FOR UPDATE",
		2, TEXTOID, TEXTOID),
	[P_DELETE_LEASE] = {
		"DELETE FROM collab.leases c WHERE c.token OPERATOR(pg_catalog.=) $1",
		1, {INT8OID}
	},
	[P_INSERT_LEASE] = {
		"INSERT INTO collab.leases (resource_id, token, user_id, username, holder_id, "
		"                           acquired_at, renewed_at, expires_at) "
		"VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
		7, {TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID}
	},
	[P_RENEW_LEASE] = {
		"UPDATE collab.leases c SET renewed_at = $2, expires_at = $3, username = $4 "
		" WHERE c.token OPERATOR(pg_catalog.=) $1",
		4, {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID}
	},
	[P_AUDIT] = {
		"INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id, reason, detail) "
		"VALUES (CAST($1 AS collab.audit_action), $2, $3, $4, $5, $6, $7, CAST($8 AS pg_catalog.jsonb))",
		8, {TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
	},
	/* a request for a lock one now holds is answered */
	[P_ANSWER_REQUEST] = {
		"DELETE FROM collab.ws_lock_requests r "
		" WHERE r.connection_id OPERATOR(pg_catalog.=) $1 AND r.resource_id OPERATOR(pg_catalog.=) $2",
		2, {TEXTOID, TEXTOID}
	},
	[P_HAS_REQUESTS] = {
		"SELECT FROM collab.ws_lock_requests q WHERE q.resource_id OPERATOR(pg_catalog.=) $1 LIMIT 1",
		1, {TEXTOID}
	},
	/* a presence row carries its connection's user (collab.ws_join) */
	[P_MEMBER] = {
		"SELECT p.user_id, p.username FROM collab.ws_presence p "
		" WHERE p.connection_id OPERATOR(pg_catalog.=) $1 AND p.resource_id OPERATOR(pg_catalog.=) $2",
		2, {TEXTOID, TEXTOID}
	},

	/*
	 * The member, and whether its grants alone let it edit
	 * (collab._ws_grants_edit(), which the planner inlines here): when they
	 * do not, collab._ws_require_edit() decides, and names the error.
	 */
	[P_MEMBER_EDITS] = {
		"SELECT p.user_id, p.username, e.edits "
		"  FROM collab.ws_presence p "
		"  LEFT JOIN LATERAL collab._ws_grants_edit(p.connection_id, $2) e ON true "
		" WHERE p.connection_id OPERATOR(pg_catalog.=) $1 AND p.resource_id OPERATOR(pg_catalog.=) $2",
		2, {TEXTOID, TEXTOID}
	},

	/*
	 * The role and its member of user_json, the PresenceUser that
	 * payload_presence_user() builds (see set_role).  In JSON text a quote
	 * inside a string is escaped, so the pattern can only be that member.
	 * Should the stored text be in another format, user_json stays as it
	 * was and the trigger builds it again.  No new row version for a role
	 * that stays.
	 */
	[P_SET_ROLE] = {
		"UPDATE collab.ws_presence p SET role = $3, user_json = pg_catalog.replace(p.user_json, $4, $5) "
		" WHERE p.connection_id OPERATOR(pg_catalog.=) $1 AND p.resource_id OPERATOR(pg_catalog.=) $2 "
		"   AND p.role OPERATOR(pg_catalog.<>) $3",
		5, {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID}
	},
	[P_IS_CONNECTION] = {
		"SELECT FROM collab.ws_connections c WHERE c.connection_id OPERATOR(pg_catalog.=) $1",
		1, {TEXTOID}
	},
	/* a connection whose transport is there (collab.ws_detach) */
	[P_IS_ATTACHED] = {
		"SELECT FROM collab.ws_connections c WHERE c.connection_id OPERATOR(pg_catalog.=) $1 "
		"   AND c.detached_at IS NULL",
		1, {TEXTOID}
	},
	/* raises FORBIDDEN or AUTH_TOKEN_REVOKED; a new snapshot, after the path lock */
	[P_REQUIRE_EDIT] = {
		"SELECT collab._ws_require_edit($1, $2)",
		2, {TEXTOID, TEXTOID}
	},
};

/*
 * Can leases be suspended here?  A library newer than the database's
 * schema (0.1.0, before ALTER EXTENSION UPDATE) reads leases without
 * suspended_until, which that schema lacks.  Checked by every SQL-callable
 * function below (a few cached catalog lookups): the update may run during
 * a backend's life.
 */
static bool leases_suspendable = true;

static void
check_schema(void)
{
	Oid			nsp = get_namespace_oid("collab", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("leases", nsp) : InvalidOid;

	leases_suspendable = OidIsValid(rel) && get_attnum(rel, "suspended_until") != InvalidAttrNumber;
}

/*
 * Runs one of the statements above, with a generic plan prepared on first
 * use; values are Datums, NULL where nulls[i] is 'n'.
 */
static void
run(PlanId id, Datum *values, const char *nulls, int expect)
{
	const PlanDef *d = &plan_defs[id];
	const char *sql = (!leases_suspendable && d->sql_010) ? d->sql_010 : d->sql;
	int			rc;

	rc = SPI_execute_plan(collab_plan(sql, d->nargs, d->types, CURSOR_OPT_GENERIC_PLAN),
						  values, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "collab statement \"%s\" failed: %s",
			 plan_defs[id].sql, SPI_result_code_string(rc));
}

/* Runs a SQL helper that raises the right error; it is not expected back. */
static void
raise_with(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls)
{
	if (SPI_execute_with_args(sql, nargs, types, values, nulls, true, 0) < 0)
		elog(ERROR, "collab could not run \"%s\"", sql);
}

static Datum
text_datum(const char *s)
{
	return PointerGetDatum(cstring_to_text(s));
}

/*
 * Raises the error collab._token_error() picks for a token that is not a
 * live lease (LOCK_EXPIRED or LOCK_NOT_HELD), on resource_id when the
 * caller names one.  Within SPI, as the owner; for the lock functions here
 * and the save guard (save_guard.c).  The diagnosis reads the tables with a
 * snapshot of its own, so that it sees what the decision that found no
 * live lease has waited for.
 */
void
collab_token_error(int64 token, const char *resource_id)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		v[2] = {Int64GetDatum(token), resource_id ? text_datum(resource_id) : (Datum) 0};

	if (SPI_execute_with_args("SELECT collab._token_error($1, $2)", 2, types, v,
							  resource_id ? "  " : " n", false, 0) < 0)
		elog(ERROR, "collab could not run collab._token_error()");
	elog(ERROR, "collab._token_error did not raise");
}

/* A copy in the context of the caller of SPI_connect(), which outlives SPI. */
static char *
upper_strdup(const char *s)
{
	size_t		len = strlen(s) + 1;
	char	   *copy = SPI_palloc(len);

	memcpy(copy, s, len);
	return copy;
}

/* Row i of the last result, in LEASE_COLUMNS order. */
static void
lease_from_row(uint64 i, Lease *l)
{
	HeapTuple	tup = SPI_tuptable->vals[i];
	TupleDesc	desc = SPI_tuptable->tupdesc;
	bool		isnull;

	l->resource_id = upper_strdup(SPI_getvalue(tup, desc, 1));
	l->token = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	l->user_id = upper_strdup(SPI_getvalue(tup, desc, 3));
	l->username = upper_strdup(SPI_getvalue(tup, desc, 4));
	l->holder_id = upper_strdup(SPI_getvalue(tup, desc, 5));
	l->acquired_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
	l->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));
	l->suspended_until = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
	if (isnull)
		l->suspended_until = 0;
}

/* A collab.leases row passed to a SQL-callable step. */
static void
lease_from_composite(HeapTupleHeader row, Lease *l)
{
	bool		isnull;
	Datum		d;

	d = GetAttributeByName(row, "resource_id", &isnull);
	if (isnull)
		elog(ERROR, "collab lease without a resource id");
	l->resource_id = TextDatumGetCString(d);
	l->token = DatumGetInt64(GetAttributeByName(row, "token", &isnull));
	l->user_id = TextDatumGetCString(GetAttributeByName(row, "user_id", &isnull));
	l->username = TextDatumGetCString(GetAttributeByName(row, "username", &isnull));
	l->holder_id = TextDatumGetCString(GetAttributeByName(row, "holder_id", &isnull));
	l->acquired_at = DatumGetTimestampTz(GetAttributeByName(row, "acquired_at", &isnull));
	l->expires_at = DatumGetTimestampTz(GetAttributeByName(row, "expires_at", &isnull));
	l->suspended_until = 0;
	if (leases_suspendable)
	{
		d = GetAttributeByName(row, "suspended_until", &isnull);
		if (!isnull)
			l->suspended_until = DatumGetTimestampTz(d);
	}
}

static void
audit(const char *action, const char *resource_id, const int64 *token,
	  const char *user_id, const char *username, const char *holder_id,
	  const char *reason, const char *detail)
{
	Datum		v[8];
	char		n[8];

	v[0] = text_datum(action);
	v[1] = text_datum(resource_id);
	v[2] = token ? Int64GetDatum(*token) : (Datum) 0;
	v[3] = text_datum(user_id);
	v[4] = text_datum(username);
	v[5] = text_datum(holder_id);
	v[6] = reason ? text_datum(reason) : (Datum) 0;
	v[7] = detail ? text_datum(detail) : (Datum) 0;
	memset(n, ' ', sizeof(n));
	n[2] = token ? ' ' : 'n';
	n[6] = reason ? ' ' : 'n';
	n[7] = detail ? ' ' : 'n';
	run(P_AUDIT, v, n, SPI_OK_INSERT);
}

static bool
identity_plain(const char *s)
{
	int			len = 0;

	/* printable ASCII is certainly fine; anything else is for the SQL check */
	for (; s[len]; len++)
		if (s[len] < 0x20 || s[len] > 0x7e)
			return false;
	return len > 0 && len <= 256;
}

/* Removes an expired lease, records it and announces lock:expired. */
static void
expire_lease(const Lease *l)
{
	Datum		tok = Int64GetDatum(l->token);

	run(P_DELETE_LEASE, &tok, NULL, SPI_OK_DELETE);
	if (SPI_processed == 0)
		return;
	audit("expire", l->resource_id, &l->token, l->user_id, l->username, l->holder_id, "ttl", NULL);
	publish_lock_expired(l);
}

/*
 * Removes a live lease, records it (action "release" or "force_release")
 * and announces lock:released; a viewer who asked for the lock is offered
 * it (collab._hand_off).
 */
static void
drop_lease(const Lease *l, const char *action, const char *reason)
{
	Datum		tok = Int64GetDatum(l->token);
	Datum		rid = text_datum(l->resource_id);

	run(P_DELETE_LEASE, &tok, NULL, SPI_OK_DELETE);
	audit(action, l->resource_id, &l->token, l->user_id, l->username, l->holder_id, reason, NULL);
	publish_lock_released(l, strcmp(action, "force_release") == 0 ? "forced" : reason,
						  GetCurrentTimestamp());

	run(P_HAS_REQUESTS, &rid, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		Oid			type = TEXTOID;

		if (SPI_execute_with_args("SELECT collab._hand_off($1)", 1, &type, &rid, NULL, false, 0) < 0)
			elog(ERROR, "collab could not hand off the lock of \"%s\"", l->resource_id);
	}
}

static void
require_read_committed(void)
{
	if (XactIsoLevel != XACT_READ_COMMITTED)
		raise_with("SELECT collab._require_read_committed()", 0, NULL, NULL, NULL);
}

/*
 * A request's identity and resource must be valid, and the resource must
 * exist unless the caller knows it does; the SQL helpers raise the right
 * error.  Returns the resource id as a text Datum.
 */
static Datum
check_request(const char *resource_id, const char *user_id, const char *username,
			  const char *holder_id, bool resource_known)
{
	Datum		rid;

	if (user_id == NULL || username == NULL || holder_id == NULL ||
		!identity_plain(user_id) || !identity_plain(username) || !identity_plain(holder_id))
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		v[3];
		char		n[3];

		v[0] = user_id ? text_datum(user_id) : (Datum) 0;
		v[1] = username ? text_datum(username) : (Datum) 0;
		v[2] = holder_id ? text_datum(holder_id) : (Datum) 0;
		n[0] = user_id ? ' ' : 'n';
		n[1] = username ? ' ' : 'n';
		n[2] = holder_id ? ' ' : 'n';
		raise_with("SELECT collab._check_user($1, $2), collab._check_identity('holder_id', $3)",
				   3, types, v, n);
	}
	if (resource_id == NULL)
	{
		Oid			type = TEXTOID;
		char		n = 'n';
		Datum		v = (Datum) 0;

		raise_with("SELECT collab._check_resource($1)", 1, &type, &v, &n);
		elog(ERROR, "collab._check_resource did not raise");
	}
	rid = text_datum(resource_id);
	if (!resource_known)
	{
		run(P_RESOURCE_EXISTS, &rid, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
		{
			Oid			type = TEXTOID;

			raise_with("SELECT collab._check_resource($1)", 1, &type, &rid, NULL);
		}
	}
	return rid;
}

/* A request for a lock, and what the leases on its path say about it. */
typedef struct Request
{
	const char *resource_id;
	Datum		rid;			/* resource_id as text */
	const char *user_id;
	const char *username;
	const char *holder_id;
	bool		have_mine;
	bool		have_conflict;
	Lease		mine;			/* the requester's own live lease of the resource */
	Lease		conflict;		/* a live lease of another holder on the path */
} Request;

static bool
is_requester(const Request *r, const Lease *l)
{
	return strcmp(l->holder_id, r->holder_id) == 0 && strcmp(l->user_id, r->user_id) == 0;
}

/*
 * The leases on the path, locked in path order: an expired one is expired,
 * the requester's own is mine, the first live one of another holder is
 * the conflict.
 */
static void
read_path_leases(Request *r, TimestampTz now)
{
	SPITupleTable *rows;
	uint64		nrows;
	Lease	   *leases;

	run(P_PATH_LEASES, &r->rid, NULL, SPI_OK_SELECT);
	/* expiring runs statements of its own: keep this result */
	rows = SPI_tuptable;
	nrows = SPI_processed;
	leases = palloc(sizeof(Lease) * Max(nrows, 1));
	for (uint64 i = 0; i < nrows; i++)
		lease_from_row(i, &leases[i]);
	SPI_freetuptable(rows);
	for (uint64 i = 0; i < nrows; i++)
	{
		Lease	   *l = &leases[i];

		if (l->expires_at <= now)
			expire_lease(l);
		else if (strcmp(l->resource_id, r->resource_id) == 0 && is_requester(r, l))
		{
			r->mine = *l;
			r->have_mine = true;
		}
		else if (!r->have_conflict)
		{
			r->conflict = *l;
			r->have_conflict = true;
		}
	}
}

/* What the leases on the request's path say; the path is locked. */
static void
read_path(Request *r)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		own_row;

	/*
	 * A contended resource has a live lease of its own, and then no other
	 * live lease on its path: leases never overlap.  That answer needs no
	 * look at ancestors and descendants (their expired leases are left to
	 * the sweep), and no row lock: whoever would change a live lease
	 * (release, renewal, a save, a takeover) waits for our path lock, and
	 * the sweep removes only expired ones.  A denial then writes nothing but
	 * its audit row.
	 */
	run(P_OWN_LEASE, &r->rid, NULL, SPI_OK_SELECT);
	own_row = SPI_processed == 1;
	if (own_row)
	{
		Lease		l;

		lease_from_row(0, &l);
		if (l.expires_at > now && !is_requester(r, &l))
		{
			r->conflict = l;
			r->have_conflict = true;
			return;
		}
	}

	/*
	 * Most grants find no lease on the path at all.  A look without row
	 * locks or order says so, and our path lock keeps it so: every lease on
	 * the path is inserted under it.  Leases that are there are locked, in
	 * path order, and read again.
	 */
	if (!own_row)
	{
		run(P_PATH_HAS_LEASES, &r->rid, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			return;
	}
	read_path_leases(r, now);
}

/*
 * A denial's audit row; also the writer of the rows that count sampled
 * denials (sampling.c).  Within SPI, as the owner.
 */
static void
audit_denial(const CollabRefusal *r, const char *detail)
{
	audit(r->action, r->resource_id, NULL, r->user_id, r->fields[0], r->fields[1], r->fields[2], detail);
}

/*
 * Denied: the conflicting lease is named, the denial audited (in a worker,
 * sampled: see sampling.c) and published.
 */
static void
deny(const Request *r, Acquired *out)
{
	StringInfoData detail;
	CollabRefusal cr;

	out->granted = false;
	out->renewed = false;
	out->lease = r->conflict;
	initStringInfo(&detail);
	appendStringInfoString(&detail, "{\"heldBy\":");
	escape_json(&detail, r->conflict.user_id);
	appendStringInfoString(&detail, ",\"heldOn\":");
	escape_json(&detail, r->conflict.resource_id);
	appendStringInfoChar(&detail, '}');
	cr.trail = "audit";
	cr.action = "deny";
	cr.user_id = r->user_id;
	cr.resource_id = r->resource_id;
	cr.reason = "held";
	cr.fields[0] = r->username;
	cr.fields[1] = r->holder_id;
	cr.fields[2] = "held";
	cr.detail = detail.data;
	cr.at = GetCurrentTimestamp();
	if (collab_refusal_sample(&cr, audit_denial))
		audit_denial(&cr, cr.detail);
	publish_lock_denied(r->resource_id, r->user_id, r->username, r->holder_id, &r->conflict);
}

/* The same holder asking again: a renewal, with the same token. */
static void
renew_own(const Request *r, Acquired *out)
{
	TimestampTz now = GetCurrentTimestamp();
	Datum		v[4];

	out->granted = true;
	out->renewed = true;
	out->lease = r->mine;
	out->lease.username = upper_strdup(r->username);
	out->lease.expires_at = collab_lease_expiry(now);
	v[0] = Int64GetDatum(r->mine.token);
	v[1] = TimestampTzGetDatum(now);
	v[2] = TimestampTzGetDatum(out->lease.expires_at);
	v[3] = text_datum(r->username);
	run(P_RENEW_LEASE, v, NULL, SPI_OK_UPDATE);
	audit("renew", r->resource_id, &r->mine.token, r->user_id, r->username, r->holder_id,
		  "reacquire", NULL);
}

/*
 * A new lease with the next fencing token, audited with reason (NULL for a
 * plain grant); a request for it is answered.  The caller announces it.
 */
static void
insert_lease(const Request *r, Acquired *out, const char *reason)
{
	TimestampTz now = GetCurrentTimestamp();
	Lease	   *l = &out->lease;
	Datum		v[7];
	Datum		q[2];

	out->granted = true;
	out->renewed = false;
	l->resource_id = upper_strdup(r->resource_id);
	l->token = collab_issue_token();
	l->user_id = upper_strdup(r->user_id);
	l->username = upper_strdup(r->username);
	l->holder_id = upper_strdup(r->holder_id);
	l->acquired_at = now;
	l->expires_at = collab_lease_expiry(now);
	l->suspended_until = 0;
	v[0] = r->rid;
	v[1] = Int64GetDatum(l->token);
	v[2] = text_datum(r->user_id);
	v[3] = text_datum(r->username);
	v[4] = text_datum(r->holder_id);
	v[5] = TimestampTzGetDatum(now);
	v[6] = TimestampTzGetDatum(l->expires_at);
	run(P_INSERT_LEASE, v, NULL, SPI_OK_INSERT);
	audit("grant", r->resource_id, &l->token, r->user_id, r->username, r->holder_id, reason, NULL);
	q[0] = v[4];
	q[1] = r->rid;
	run(P_ANSWER_REQUEST, q, NULL, SPI_OK_DELETE);
}

/* A new lease, announced with lock:acquired. */
static void
grant(const Request *r, Acquired *out)
{
	insert_lease(r, out, NULL);
	publish_lock_acquired(&out->lease);
}

/*
 * May the request take the conflicting lease over?  Only its own user,
 * joining again from a new browser connection while the connection that
 * holds it is lost (the lease is suspended, collab.ws_detach), and only on
 * the same resource: the lease stays that user's, with a new token for the
 * new connection.  An application's holder id is never a browser
 * connection's (collab.acquire refuses it), so no backend takes a
 * browser's lock over.
 */
static bool
may_take_over(const Request *r)
{
	Datum		h;

	if (r->conflict.suspended_until == 0 ||
		strcmp(r->conflict.resource_id, r->resource_id) != 0 ||
		strcmp(r->conflict.user_id, r->user_id) != 0 ||
		strcmp(r->conflict.holder_id, r->holder_id) == 0)
		return false;
	h = text_datum(r->holder_id);
	run(P_IS_ATTACHED, &h, NULL, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * The takeover: the suspended lease ends (audited as a release, reason
 * "takeover") and a new one with the next token is the requester's; the
 * room hears lock:resumed, as for a holder who came back.
 */
static void
take_over(const Request *r, Acquired *out)
{
	const Lease *old = &r->conflict;
	Datum		tok = Int64GetDatum(old->token);

	run(P_DELETE_LEASE, &tok, NULL, SPI_OK_DELETE);
	audit("release", old->resource_id, &old->token, old->user_id, old->username, old->holder_id,
		  "takeover", NULL);
	insert_lease(r, out, "takeover");
	publish_lock_resumed(&out->lease, old->holder_id);
}

/*
 * The lock decision for holder_id (user_id, username) on resource_id;
 * within SPI, as the owner.  A caller that knows the resource exists (its
 * presence row says so) passes resource_known.
 */
static void
acquire_lease(const char *resource_id, const char *user_id, const char *username,
			  const char *holder_id, bool resource_known, Acquired *out)
{
	Request		r = {0};

	require_read_committed();
	r.rid = check_request(resource_id, user_id, username, holder_id, resource_known);
	r.resource_id = resource_id;
	r.user_id = user_id;
	r.username = username;
	r.holder_id = holder_id;
	collab_lock_path_of(r.rid);
	read_path(&r);
	if (r.have_conflict && may_take_over(&r))
		take_over(&r, out);
	else if (r.have_conflict)
		deny(&r, out);
	else if (r.have_mine)
		renew_own(&r, out);
	else
		grant(&r, out);
}

/*
 * Path-locks and row-locks the lease of token, found on l->resource_id
 * before the wait, and reads it again into l.  Raises the right error if
 * it is gone or has expired meanwhile: an expired lease is the sweep's to
 * record.
 */
static void
lock_live_lease(int64 token, Lease *l)
{
	Datum		tok = Int64GetDatum(token);
	bool		found;

	collab_lock_path_of(text_datum(l->resource_id));
	run(P_LEASE_BY_TOKEN_FOR_UPDATE, &tok, NULL, SPI_OK_SELECT);
	found = SPI_processed > 0;
	if (found)
		lease_from_row(0, l);
	if (!found || l->expires_at <= GetCurrentTimestamp())
		collab_token_error(token, found ? l->resource_id : NULL);
}

/*
 * When a lease granted or renewed at from expires: the one computation of a
 * lease's end, for the lock decision here, the save guard (save_guard.c)
 * and collab.renew() (through collab._lease_expiry()).
 */
TimestampTz
collab_lease_expiry(TimestampTz from)
{
	return from + (int64) collab_lock_ttl_ms * 1000;
}

/* collab._lease_expiry(from timestamptz) */
PG_FUNCTION_INFO_V1(collab_lease_expiry_sql);
Datum
collab_lease_expiry_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(collab_lease_expiry(PG_GETARG_TIMESTAMPTZ(0)));
}

static bool
release_reason_valid(const char *reason)
{
	return reason && (strcmp(reason, "released") == 0 || strcmp(reason, "left") == 0 ||
					  strcmp(reason, "disconnected") == 0);
}

/*
 * collab.acquire(resource_id, user_id, username, holder_id): the editor
 * lock for holder_id (default: the user), or who holds it instead.
 */
PG_FUNCTION_INFO_V1(collab_acquire);
Datum
collab_acquire(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[10];
	bool		nulls[10];
	Acquired	a;
	CollabOwner oc;
	char	   *rid = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *uid = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *uname = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *hid = PG_ARGISNULL(3) ? uid : text_to_cstring(PG_GETARG_TEXT_PP(3));

	Oid			caller = GetUserId();
	bool		trusted;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "collab.acquire must return a record");
	check_schema();
	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	/* the worker's functions run as the owner; the application does not */
	trusted = superuser_arg(caller) || has_privs_of_role(caller, GetUserId());
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/*
		 * The application names users, but a browser connection's lock is
		 * that connection's: renewing it here would hand out its token.
		 */
		if (!trusted && hid != NULL)
		{
			Datum		h = text_datum(hid);

			run(P_IS_CONNECTION, &h, NULL, SPI_OK_SELECT);
			if (SPI_processed > 0)
				ereport(ERROR,
						(errcode(collab_errcode(CE_FORBIDDEN)),
						 errmsg("holder_id names a WebSocket connection"),
						 errdetail("Only that connection may take, renew or release its locks."),
						 errhint("Use a holder id of the application's own; administrators end a browser's lock with collab.force_release().")));
		}
		acquire_lease(rid, uid, uname, hid, false, &a);
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();

	memset(nulls, false, sizeof(nulls));
	values[0] = BoolGetDatum(a.granted);
	values[1] = Int64GetDatum(a.lease.token);
	nulls[1] = !a.granted;
	values[2] = CStringGetTextDatum(rid);
	values[3] = CStringGetTextDatum(a.lease.user_id);
	values[4] = CStringGetTextDatum(a.lease.username);
	values[5] = CStringGetTextDatum(a.lease.holder_id);
	values[6] = CStringGetTextDatum(a.lease.resource_id);
	values[7] = TimestampTzGetDatum(a.lease.acquired_at);
	values[8] = TimestampTzGetDatum(a.lease.expires_at);
	values[9] = BoolGetDatum(a.renewed);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* collab.release(token, reason): drops a live lease; its resource id */
PG_FUNCTION_INFO_V1(collab_release);
Datum
collab_release(PG_FUNCTION_ARGS)
{
	CollabOwner oc;
	char	   *reason = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Lease		l = {0};

	check_schema();
	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	PG_TRY();
	{
		Datum		tok;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		require_read_committed();
		if (!release_reason_valid(reason))
			ereport(ERROR,
					(errcode(collab_errcode(CE_BAD_REQUEST)),
					 errmsg("reason must be one of released, left, disconnected"),
					 errhint("Administrators use collab.force_release() to take a lock away.")));
		if (PG_ARGISNULL(0))
			ereport(ERROR,
					(errcode(collab_errcode(CE_LOCK_NOT_HELD)),
					 errmsg("no lock token presented")));
		tok = PG_GETARG_DATUM(0);
		run(P_LEASE_BY_TOKEN, &tok, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			collab_token_error(DatumGetInt64(tok), NULL);
		lease_from_row(0, &l);
		lock_live_lease(DatumGetInt64(tok), &l);
		drop_lease(&l, "release", reason);
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(cstring_to_text(l.resource_id));
}

/*
 * collab._expire_lease(l collab.leases): within a collab function; a row
 * without a token (a lease not found) has nothing to expire.
 */
PG_FUNCTION_INFO_V1(collab_expire_lease);
Datum
collab_expire_lease(PG_FUNCTION_ARGS)
{
	Lease		l;
	bool		isnull;

	(void) GetAttributeByName(PG_GETARG_HEAPTUPLEHEADER(0), "token", &isnull);
	if (isnull)
		PG_RETURN_VOID();
	check_schema();
	lease_from_composite(PG_GETARG_HEAPTUPLEHEADER(0), &l);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	expire_lease(&l);
	SPI_finish();
	PG_RETURN_VOID();
}

/* collab._drop_lease(l collab.leases, action, reason): within a collab function */
PG_FUNCTION_INFO_V1(collab_drop_lease);
Datum
collab_drop_lease(PG_FUNCTION_ARGS)
{
	Lease		l;
	char	   *action = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *reason = text_to_cstring(PG_GETARG_TEXT_PP(2));

	check_schema();
	lease_from_composite(PG_GETARG_HEAPTUPLEHEADER(0), &l);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	drop_lease(&l, action, reason);
	SPI_finish();
	PG_RETURN_VOID();
}

/* The role member of a stored PresenceUser, as payloads.c writes it. */
static Datum
role_member(const char *role)
{
	StringInfoData buf;

	initStringInfo(&buf);
	payload_presence_role(&buf, role);
	return PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len));
}

/* The connection's role in the room; "editor" or "viewer". */
static void
set_role(Datum *conn_and_resource, bool editor)
{
	const char *from = editor ? "viewer" : "editor";
	const char *to = editor ? "editor" : "viewer";
	Datum		v[5];

	v[0] = conn_and_resource[0];
	v[1] = conn_and_resource[1];
	v[2] = text_datum(to);
	v[3] = role_member(from);
	v[4] = role_member(to);
	run(P_SET_ROLE, v, NULL, SPI_OK_UPDATE);
}

/* Raises NOT_JOINED, or the resource id's error (collab._ws_presence). */
pg_attribute_noreturn()
static void
not_joined(Datum *conn_and_resource)
{
	Oid			types[2] = {TEXTOID, TEXTOID};

	raise_with("SELECT collab._ws_presence($1, $2)", 2, types, conn_and_resource, NULL);
	ereport(ERROR,
			(errcode(collab_errcode(CE_NOT_JOINED)),
			 errmsg("not joined to \"%s\"", TextDatumGetCString(conn_and_resource[1])),
			 errhint("Send presence:join first.")));
}

/*
 * collab.ws_acquire(conn, resource_id): lock:acquire of a connection in
 * the room; {"ack": ..., "token": ...} as text for the worker.
 */
PG_FUNCTION_INFO_V1(collab_ws_acquire);
Datum
collab_ws_acquire(PG_FUNCTION_ARGS)
{
	CollabOwner oc;
	Acquired	a;
	StringInfoData ack;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "collab.ws_acquire needs a connection and a resource id");
	check_schema();
	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	PG_TRY();
	{
		Datum		key[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};
		char	   *conn = TextDatumGetCString(key[0]);
		char	   *uid,
				   *uname;
		bool		isnull;
		Datum		edits;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/*
		 * Membership and edit permission, read under the path lock that a
		 * grant or revoke on the path takes too, in one statement
		 */
		require_read_committed();
		collab_lock_path_of(key[1]);
		run(P_MEMBER_EDITS, key, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			not_joined(key);
		uid = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		uname = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
		edits = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		if (isnull || !DatumGetBool(edits))
			run(P_REQUIRE_EDIT, key, NULL, SPI_OK_SELECT);
		/* the presence row vouches for the resource (see collab.ws_presence) */
		acquire_lease(TextDatumGetCString(key[1]), uid, uname, conn, true, &a);
		if (a.granted)
			set_role(key, true);
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();

	if (!a.granted)
	{
		initStringInfo(&ack);
		appendStringInfoString(&ack, "{\"ack\":{\"ok\":false,\"error\":{\"code\":");
		escape_json(&ack, collab_errors[CE_LOCK_HELD].code);
		appendStringInfoString(&ack, ",\"message\":");
		{
			StringInfoData msg;

			initStringInfo(&msg);
			appendStringInfo(&msg, "%s holds the lock on \"%s\"", a.lease.username, a.lease.resource_id);
			escape_json(&ack, msg.data);
		}
		appendStringInfoString(&ack, "},\"lock\":");
		payload_lock_info(&ack, &a.lease, false);
		appendStringInfoString(&ack, "}}");
		PG_RETURN_TEXT_P(cstring_to_text_with_len(ack.data, ack.len));
	}
	initStringInfo(&ack);
	appendStringInfoString(&ack, "{\"ack\":{\"ok\":true,\"lock\":");
	payload_lock_info(&ack, &a.lease, true);
	appendStringInfo(&ack, "},\"token\":" INT64_FORMAT "}", a.lease.token);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(ack.data, ack.len));
}

/*
 * collab.ws_release(conn, resource_id): lock:release of the connection's
 * own lease on the resource.
 */
PG_FUNCTION_INFO_V1(collab_ws_release);
Datum
collab_ws_release(PG_FUNCTION_ARGS)
{
	CollabOwner oc;
	StringInfoData ack;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		elog(ERROR, "collab.ws_release needs a connection and a resource id");
	check_schema();
	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	PG_TRY();
	{
		Datum		key[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)};
		Datum		by_holder[2] = {key[1], key[0]};
		Lease		l;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		run(P_MEMBER, key, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
			not_joined(key);
		require_read_committed();
		/* the path lock first: then the lease is read once, and locked */
		collab_lock_path_of(key[1]);
		run(P_HOLDER_LEASE_FOR_UPDATE, by_holder, NULL, SPI_OK_SELECT);
		if (SPI_processed == 0)
		{
			Oid			types[2] = {TEXTOID, TEXTOID};

			/* raises LOCK_EXPIRED or LOCK_NOT_HELD */
			raise_with("SELECT collab._ws_lease($1, $2, false)", 2, types, key, NULL);
			elog(ERROR, "collab._ws_lease did not raise");
		}
		lease_from_row(0, &l);
		/* an expired lease is the sweep's to record */
		if (l.expires_at <= GetCurrentTimestamp())
			collab_token_error(l.token, l.resource_id);
		drop_lease(&l, "release", "released");
		set_role(key, false);
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();
	initStringInfo(&ack);
	appendStringInfoString(&ack, "{\"ack\":{\"ok\":true}}");
	PG_RETURN_TEXT_P(cstring_to_text_with_len(ack.data, ack.len));
}
