/*-------------------------------------------------------------------------
 *
 * save_guard.c
 *	  The guard on resource content, and collab.save().
 *
 * Every UPDATE of collab.resources fires collab._guard_update().  An UPDATE
 * that changes content, or presents a token, is a save: the token (from
 * collab.save(), or SET LOCAL collab.lock_token) must be the live lease of
 * the row or of an ancestor; the lease is renewed, the version bumped, the
 * saver recorded and doc:saved published.  Anything else only changes the
 * title.  This is the hot path of the product, so it is C: no PL/pgSQL
 * frames, no SET clauses, plans prepared once per backend.  Rare failures
 * whose diagnosis needs the tables (which error a dead token deserves) are
 * left to the SQL helper collab._token_error().
 *
 * The lease and the helpers belong to the extension owner; the guard and
 * collab.save() run their queries as that role (owner.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "collab.h"
#include "payloads.h"

extern Datum collab_lock_path(PG_FUNCTION_ARGS);


/* The renewal of the live lease of the row or an ancestor, by token */
static const char renew_sql[] =
"UPDATE collab.leases c "
"   SET renewed_at = $2, expires_at = $4 "
" WHERE c.token OPERATOR(pg_catalog.=) $1 "
"   AND c.resource_id OPERATOR(pg_catalog.=) ANY (collab.ancestors($3) OPERATOR(pg_catalog.||) $3) "
"   AND c.expires_at OPERATOR(pg_catalog.>) $2 "
"RETURNING c.user_id, c.username, c.holder_id";
static const Oid renew_types[4] = {INT8OID, TIMESTAMPTZOID, TEXTOID, TIMESTAMPTZOID};

/* collab.save()'s UPDATE, which the guard then checks */
static const char save_sql[] =
"UPDATE collab.resources SET content = $2 "
"WHERE id OPERATOR(pg_catalog.=) $1 RETURNING version";
static const Oid save_types[2] = {TEXTOID, TEXTOID};

/* collab.save() hands its token to the guard here rather than via settings */
static bool save_active = false;
static int64 save_token;
static bool save_has_base;
static int64 save_base;

/* Raises the error collab._token_error() picks; runs as the owner. */
pg_attribute_noreturn()
static void
token_error(bool has_token, int64 token, Datum resource_id)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(token), resource_id};
	char		nulls[2] = {has_token ? ' ' : 'n', ' '};

	SPI_connect();
	SPI_execute_with_args("SELECT collab._token_error($1, $2)", 2, types, values, nulls, false, 0);
	elog(ERROR, "collab._token_error did not raise");
}

static bool
column_unchanged(HeapTuple a, HeapTuple b, TupleDesc desc, int att)
{
	bool		na,
				nb;
	Datum		va = heap_getattr(a, att, desc, &na);
	Datum		vb = heap_getattr(b, att, desc, &nb);
	Form_pg_attribute fa = TupleDescAttr(desc, att - 1);

	if (na || nb)
		return na == nb;
	return datum_image_eq(va, vb, fa->attbyval, fa->attlen);
}

static int
attnum(TupleDesc desc, const char *name)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "collab.resources has no column \"%s\"", name);
	return n;
}

/* collab._guard_update(): BEFORE UPDATE FOR EACH ROW on collab.resources */
PG_FUNCTION_INFO_V1(collab_guard_update);
Datum
collab_guard_update(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	oldt,
				newt;
	int			a_content,
				a_version,
				a_by,
				a_byname,
				a_at;
	int64		token = 0,
				base = 0;
	bool		has_token,
				has_base,
				isnull;
	Datum		id;
	char	   *id_str;
	int64		old_version;
	TimestampTz now;
	char	   *uid = NULL,
			   *uname = NULL,
			   *hid = NULL;
	int			cols[4];
	Datum		vals[4];
	bool		nulls[4] = {false, false, false, false};
	MemoryContext upper = CurrentMemoryContext;
	CollabOwner oc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(td->tg_event) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "collab._guard_update() must be a BEFORE UPDATE row trigger");
	desc = td->tg_relation->rd_att;
	oldt = td->tg_trigtuple;
	newt = td->tg_newtuple;
	a_content = attnum(desc, "content");
	a_version = attnum(desc, "version");
	a_by = attnum(desc, "saved_by");
	a_byname = attnum(desc, "saved_by_name");
	a_at = attnum(desc, "saved_at");

	if (!column_unchanged(oldt, newt, desc, attnum(desc, "id")) ||
		!column_unchanged(oldt, newt, desc, attnum(desc, "parent_id")) ||
		!column_unchanged(oldt, newt, desc, attnum(desc, "kind")) ||
		!column_unchanged(oldt, newt, desc, attnum(desc, "created_at")))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("resource ids, parents, kinds and creation times cannot change")));

	if (save_active)
	{
		has_token = true;
		token = save_token;
		has_base = save_has_base;
		base = save_base;
	}
	else
	{
		has_token = collab_lock_token && *collab_lock_token;
		has_base = collab_base_version && *collab_base_version;
		if ((has_token && !collab_parse_int64(collab_lock_token, &token)) ||
			(has_base && !collab_parse_int64(collab_base_version, &base)))
			ereport(ERROR,
					(errcode(collab_errcode(CE_BAD_REQUEST)),
					 errmsg("collab.lock_token and collab.base_version must be integers")));
	}

	id = heap_getattr(oldt, attnum(desc, "id"), desc, &isnull);
	id_str = TextDatumGetCString(id);

	if (!has_token)
	{
		/*
		 * Title-only changes need no lock.  An UPDATE that presents a token
		 * is a save even with unchanged content: a bad token never passes.
		 */
		if (column_unchanged(oldt, newt, desc, a_content))
		{
			int			c[4] = {a_version, a_by, a_byname, a_at};
			Datum		v[4];
			bool		n[4];

			for (int i = 0; i < 4; i++)
				v[i] = heap_getattr(oldt, c[i], desc, &n[i]);
			return PointerGetDatum(heap_modify_tuple_by_cols(newt, desc, 4, c, v, n));
		}
		ereport(ERROR,
				(errcode(collab_errcode(CE_LOCK_NOT_HELD)),
				 errmsg("no lock token presented for resource \"%s\"", id_str),
				 errdetail("Content changes only with the live editor lock's fencing token."),
				 errhint("Use collab.save(), or SET LOCAL collab.lock_token before the UPDATE.")));
	}

	{
		Datum		c = heap_getattr(newt, a_content, desc, &isnull);
		Size		size = isnull ? 0 : toast_raw_datum_size(c) - VARHDRSZ;

		if (size > (Size) collab_max_content_size)
			ereport(ERROR,
					(errcode(collab_errcode(CE_PAYLOAD_TOO_LARGE)),
					 errmsg("content of %zu bytes exceeds collab.max_content_size (%d bytes)",
							size, collab_max_content_size)));
	}

	old_version = DatumGetInt64(heap_getattr(oldt, a_version, desc, &isnull));
	DirectFunctionCall1(collab_lock_path, id);
	now = GetCurrentTimestamp();

	/* renew the live lease of this resource or an ancestor, as the owner */
	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	PG_TRY();
	{
		Datum		v[4] = {Int64GetDatum(token), TimestampTzGetDatum(now), id,
							TimestampTzGetDatum(collab_lease_expiry(now))};
		int			rc;

		SPI_connect();
		rc = SPI_execute_plan(collab_plan(renew_sql, 4, renew_types, 0), v, NULL, false, 1);
		if (rc != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "lease renewal failed: %s", SPI_result_code_string(rc));
		if (SPI_processed != 1)
			token_error(true, token, id);
		uid = MemoryContextStrdup(upper, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1));
		uname = MemoryContextStrdup(upper, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		hid = MemoryContextStrdup(upper, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3));
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();

	if (has_base && base != old_version)
	{
		Datum		by = heap_getattr(oldt, a_byname, desc, &isnull);
		char	   *by_str = isnull ? "nobody" : TextDatumGetCString(by);
		Datum		at = heap_getattr(oldt, a_at, desc, &isnull);
		char	   *at_str = isnull ? "never" : collab_ts_text(DatumGetTimestampTz(at));

		ereport(ERROR,
				(errcode(collab_errcode(CE_VERSION_CONFLICT)),
				 errmsg("resource \"%s\" is at version " INT64_FORMAT ", not " INT64_FORMAT,
						id_str, old_version, base),
				 errdetail("It was last saved by %s at %s.", by_str, at_str),
				 errhint("Reload the current content and apply your change to it.")));
	}

	cols[0] = a_version;
	vals[0] = Int64GetDatum(old_version + 1);
	cols[1] = a_by;
	vals[1] = CStringGetTextDatum(uid);
	cols[2] = a_byname;
	vals[2] = CStringGetTextDatum(uname);
	cols[3] = a_at;
	vals[3] = TimestampTzGetDatum(now);

	publish_doc_saved(id_str, old_version + 1, uid, uname, hid, now);

	return PointerGetDatum(heap_modify_tuple_by_cols(newt, desc, 4, cols, vals, nulls));
}

/* collab.save(resource_id, token, content, base_version): the new version */
PG_FUNCTION_INFO_V1(collab_save);
Datum
collab_save(PG_FUNCTION_ARGS)
{
	CollabOwner oc;
	int64		version = 0;
	uint64		processed = 0;

	collab_require_resource_id(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("content must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(collab_errcode(CE_LOCK_NOT_HELD)),
				 errmsg("no lock token presented on \"%s\"", TextDatumGetCString(PG_GETARG_DATUM(0))),
				 errhint("Acquire the editor lock and present its token.")));

	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	save_active = true;
	save_token = PG_GETARG_INT64(1);
	save_has_base = !PG_ARGISNULL(3);
	save_base = save_has_base ? PG_GETARG_INT64(3) : 0;
	PG_TRY();
	{
		Datum		v[2] = {PG_GETARG_DATUM(0), PG_GETARG_DATUM(2)};
		bool		isnull;

		SPI_connect();
		if (SPI_execute_plan(collab_plan(save_sql, 2, save_types, 0), v, NULL, false, 1) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "collab.save: UPDATE failed");
		processed = SPI_processed;
		if (processed == 1)
			version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
	}
	PG_FINALLY();
	{
		save_active = false;
		collab_restore_user(&oc);
	}
	PG_END_TRY();
	if (processed != 1)
		ereport(ERROR,
				(errcode(collab_errcode(CE_RESOURCE_NOT_FOUND)),
				 errmsg("resource \"%s\" does not exist", TextDatumGetCString(PG_GETARG_DATUM(0)))));
	PG_RETURN_INT64(version);
}
