/*-------------------------------------------------------------------------
 *
 * save_guard.c
 *	  The guard on resource content, and collab.save().
 *
 * Every UPDATE of collab.resources fires collab._guard_update().  An UPDATE
 * that changes content, or presents a token, is a save: the token (from
 * collab.save(), or SET LOCAL collab.lock_token) must be the live lease of
 * the row or of an ancestor; the lease is renewed, the version bumped, the
 * saver recorded, the revision kept (revisions.c) and doc:saved published.  Anything else only changes the
 * title.  This is the hot path of the product, so it is C: no PL/pgSQL
 * frames, no SET clauses, plans prepared once per backend.  Rare failures
 * whose diagnosis needs the tables (which error a dead token deserves) are
 * left to the SQL helper collab._token_error() (collab_token_error()).
 *
 * Rows are checked for shape (id, kind and parent agree) when inserted,
 * by collab._resources_shape(); an UPDATE cannot change those columns.
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
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "collab.h"
#include "payloads.h"
#include "resource_id.h"
#include "trigger_rows.h"


/*
 * The renewal of the live lease with this token.  Whether its resource is
 * the saved one or an ancestor is checked in C (lease_covers()): the token
 * is unique, and the path's ids need not be built for every save.
 */
static const char renew_sql[] =
"UPDATE collab.leases c "
"   SET renewed_at = $2, expires_at = $3 "
" WHERE c.token OPERATOR(pg_catalog.=) $1 "
"   AND c.expires_at OPERATOR(pg_catalog.>) $2 "
"RETURNING c.resource_id, c.user_id, c.username, c.holder_id";
static const Oid renew_types[3] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};

/* collab.save()'s UPDATE, which the guard then checks */
static const char save_sql[] =
"UPDATE collab.resources SET content = $2 "
"WHERE id OPERATOR(pg_catalog.=) $1 RETURNING version";
static const Oid save_types[2] = {TEXTOID, TEXTOID};

/* An UPDATE of collab.resources, as far as the guard looks at it. */
typedef struct GuardedUpdate
{
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	oldt;
	HeapTuple	newt;
	/* the columns the guard reads or owns */
	int			a_id;
	int			a_content;
	int			a_version;
	int			a_by;
	int			a_byname;
	int			a_at;
} GuardedUpdate;

/*
 * What a save presents: its token, the version it expects to replace, the
 * version whose content it restores, and whether it comes from the
 * WebSocket worker (its revision's path).
 */
typedef struct Presented
{
	bool		has_token;
	int64		token;
	bool		has_base;
	int64		base;
	bool		has_restored;
	int64		restored_from;
	bool		ws;
} Presented;

/* collab.save() hands what it presents to the guard here, not via settings */
static bool save_active = false;
static Presented save_presented;

/* Who saved: the holder of the lease that the save renewed. */
typedef struct Saver
{
	char	   *user_id;
	char	   *username;
	char	   *holder_id;
} Saver;

static void
read_update(TriggerData *td, GuardedUpdate *u)
{
	u->rel = td->tg_relation;
	u->desc = RelationGetDescr(u->rel);
	u->oldt = td->tg_trigtuple;
	u->newt = td->tg_newtuple;
	u->a_id = collab_attnum(u->rel, "id");
	u->a_content = collab_attnum(u->rel, "content");
	u->a_version = collab_attnum(u->rel, "version");
	u->a_by = collab_attnum(u->rel, "saved_by");
	u->a_byname = collab_attnum(u->rel, "saved_by_name");
	u->a_at = collab_attnum(u->rel, "saved_at");
}

/* What identifies a resource never changes. */
static void
forbid_key_changes(GuardedUpdate *u)
{
	if (!collab_column_unchanged(u->oldt, u->newt, u->desc, u->a_id) ||
		!collab_column_unchanged(u->oldt, u->newt, u->desc, collab_attnum(u->rel, "parent_id")) ||
		!collab_column_unchanged(u->oldt, u->newt, u->desc, collab_attnum(u->rel, "kind")) ||
		!collab_column_unchanged(u->oldt, u->newt, u->desc, collab_attnum(u->rel, "created_at")))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("resource ids, parents, kinds and creation times cannot change")));
}

/* What the save presents, from collab.save(), or from the settings. */
static void
read_presented(Presented *p)
{
	if (save_active)
	{
		*p = save_presented;
		return;
	}
	memset(p, 0, sizeof(*p));
	p->has_token = collab_lock_token && *collab_lock_token;
	p->has_base = collab_base_version && *collab_base_version;
	p->has_restored = collab_restored_from && *collab_restored_from;
	if ((p->has_token && !collab_parse_int64(collab_lock_token, &p->token)) ||
		(p->has_base && !collab_parse_int64(collab_base_version, &p->base)))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("collab.lock_token and collab.base_version must be integers")));
	if (p->has_restored && !collab_parse_int64(collab_restored_from, &p->restored_from))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("collab.restored_from must be an integer")));
}

/*
 * An UPDATE without a token: a change of the title alone needs no lock, and
 * keeps the columns the guard owns; a change of content is refused.  (An
 * UPDATE that presents a token is a save even with unchanged content: a bad
 * token never passes.)
 */
static HeapTuple
title_only(GuardedUpdate *u, const char *id)
{
	int			c[4] = {u->a_version, u->a_by, u->a_byname, u->a_at};
	Datum		v[4];
	bool		n[4];

	if (!collab_column_unchanged(u->oldt, u->newt, u->desc, u->a_content))
		ereport(ERROR,
				(errcode(collab_errcode(CE_LOCK_NOT_HELD)),
				 errmsg("no lock token presented for resource \"%s\"", id),
				 errdetail("Content changes only with the live editor lock's fencing token."),
				 errhint("Use collab.save(), or SET LOCAL collab.lock_token before the UPDATE.")));
	for (int i = 0; i < 4; i++)
		v[i] = heap_getattr(u->oldt, c[i], u->desc, &n[i]);
	return heap_modify_tuple_by_cols(u->newt, u->desc, 4, c, v, n);
}

static void
check_content_size(GuardedUpdate *u)
{
	bool		isnull;
	Datum		c = heap_getattr(u->newt, u->a_content, u->desc, &isnull);
	Size		size = isnull ? 0 : toast_raw_datum_size(c) - VARHDRSZ;

	if (size > (Size) collab_max_content_size)
		ereport(ERROR,
				(errcode(collab_errcode(CE_PAYLOAD_TOO_LARGE)),
				 errmsg("content of %zu bytes exceeds collab.max_content_size (%d bytes)",
						size, collab_max_content_size)));
}

/* Whether a lease on resource lease_id covers id: the same, or an ancestor. */
static bool
lease_covers(const char *lease_id, const char *id)
{
	size_t		len = strlen(lease_id);

	return strncmp(lease_id, id, len) == 0 && (id[len] == '\0' || id[len] == '/');
}

static char *
text_result(MemoryContext cxt, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? NULL : MemoryContextStrdup(cxt, TextDatumGetCString(d));
}

/*
 * Renews the live lease of token on the resource id or an ancestor, as the
 * owner of function fn, and tells who holds it; raises the right error
 * when token is not such a lease.  The renewal locks the lease's row until
 * commit: a release or takeover of the lease waits for the save, or the
 * save for it, and then finds no live lease with its token.
 */
static void
renew_for_save(Oid fn, int64 token, const char *id_str, TimestampTz now, Saver *saver)
{
	MemoryContext upper = CurrentMemoryContext;
	CollabOwner oc;
	bool		covered = false;

	collab_become_owner(fn, &oc);
	PG_TRY();
	{
		Datum		v[3] = {Int64GetDatum(token), TimestampTzGetDatum(now),
							TimestampTzGetDatum(collab_lease_expiry(now))};
		int			rc;

		SPI_connect();
		rc = SPI_execute_plan(collab_plan(renew_sql, 3, renew_types, CURSOR_OPT_GENERIC_PLAN),
							  v, NULL, false, 1);
		if (rc != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "lease renewal failed: %s", SPI_result_code_string(rc));
		if (SPI_processed == 1)
		{
			char	   *lease_id = text_result(CurrentMemoryContext, 1);

			covered = lease_covers(lease_id, id_str);
			saver->user_id = text_result(upper, 2);
			saver->username = text_result(upper, 3);
			saver->holder_id = text_result(upper, 4);
		}
		/* a live lease elsewhere: the error undoes its renewal with the save */
		if (!covered)
			collab_token_error(token, id_str);
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();
}

/* The save expected base, and the resource is at version. */
pg_attribute_noreturn()
static void
version_conflict(GuardedUpdate *u, const char *id, int64 version, int64 base)
{
	bool		isnull;
	Datum		by = heap_getattr(u->oldt, u->a_byname, u->desc, &isnull);
	char	   *by_str = isnull ? "nobody" : TextDatumGetCString(by);
	Datum		at = heap_getattr(u->oldt, u->a_at, u->desc, &isnull);
	char	   *at_str = isnull ? "never" : collab_ts_text(DatumGetTimestampTz(at));

	ereport(ERROR,
			(errcode(collab_errcode(CE_VERSION_CONFLICT)),
			 errmsg("resource \"%s\" is at version " INT64_FORMAT ", not " INT64_FORMAT,
					id, version, base),
			 errdetail("It was last saved by %s at %s.", by_str, at_str),
			 errhint("Reload the current content and apply your change to it.")));
}

/*
 * The saved row: the next version, who saved it and when, and the content
 * as its revision stores it (0: as the UPDATE gave it).
 */
static HeapTuple
saved_row(GuardedUpdate *u, int64 version, const Saver *saver, TimestampTz now, Datum content)
{
	int			cols[5] = {u->a_version, u->a_by, u->a_byname, u->a_at, u->a_content};
	Datum		vals[5];
	bool		nulls[5] = {false, false, false, false, false};

	vals[0] = Int64GetDatum(version);
	vals[1] = CStringGetTextDatum(saver->user_id);
	vals[2] = CStringGetTextDatum(saver->username);
	vals[3] = TimestampTzGetDatum(now);
	vals[4] = content;
	return heap_modify_tuple_by_cols(u->newt, u->desc, content != (Datum) 0 ? 5 : 4, cols, vals, nulls);
}

/* collab._guard_update(): BEFORE UPDATE FOR EACH ROW on collab.resources */
PG_FUNCTION_INFO_V1(collab_guard_update);
Datum
collab_guard_update(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	GuardedUpdate u;
	Presented	p;
	bool		isnull;
	Datum		id;
	char	   *id_str;
	int64		old_version;
	TimestampTz now;
	Saver		saver;
	Datum		stored;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(td->tg_event) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "collab._guard_update() must be a BEFORE UPDATE row trigger");
	read_update(td, &u);
	forbid_key_changes(&u);
	read_presented(&p);
	id = heap_getattr(u.oldt, u.a_id, u.desc, &isnull);
	id_str = TextDatumGetCString(id);
	if (!p.has_token)
		return PointerGetDatum(title_only(&u, id_str));

	check_content_size(&u);
	old_version = DatumGetInt64(heap_getattr(u.oldt, u.a_version, u.desc, &isnull));
	collab_lock_path_of(id);
	now = GetCurrentTimestamp();
	renew_for_save(fcinfo->flinfo->fn_oid, p.token, id_str, now, &saver);
	if (p.has_base && p.base != old_version)
		version_conflict(&u, id_str, old_version, p.base);
	stored = collab_record_revision(fcinfo->flinfo->fn_oid, u.desc, u.oldt, u.newt, old_version + 1,
									saver.user_id, saver.username, now, p.token, p.ws,
									p.has_restored, p.restored_from);
	publish_doc_saved(id_str, old_version + 1, saver.user_id, saver.username, saver.holder_id, now,
					  p.has_restored ? &p.restored_from : NULL);
	return PointerGetDatum(saved_row(&u, old_version + 1, &saver, now, stored));
}

/*
 * A new row of collab.resources breaks its named rule: reported as the
 * CHECK constraint of that name would be.
 */
pg_attribute_noreturn()
static void
shape_violation(Relation rel, const char *constraint)
{
	ereport(ERROR,
			(errcode(ERRCODE_CHECK_VIOLATION),
			 errmsg("new row for relation \"%s\" violates check constraint \"%s\"",
					RelationGetRelationName(rel), constraint),
			 errtableconstraint(rel, constraint)));
}

/*
 * collab._resources_shape(): BEFORE INSERT FOR EACH ROW on collab.resources.
 *
 * A row's id is a valid resource id, its kind the kind of the id's last
 * segment, its parent the id without that segment.  Checked when a row is
 * inserted only: the guard refuses every UPDATE of id, parent_id and kind,
 * so a save does not evaluate these rules (a table CHECK would, and
 * PostgreSQL reads a CHECK's expression back from the catalog for every
 * statement that writes the table).
 */
PG_FUNCTION_INFO_V1(collab_resources_shape);
Datum
collab_resources_shape(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	row;
	bool		isnull;
	Datum		d;
	text	   *id;
	const char *s;
	int			len;
	int			last = 0;		/* where the last segment starts */
	int			colon;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_INSERT(td->tg_event) ||
		!TRIGGER_FIRED_BEFORE(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "collab._resources_shape() must be a BEFORE INSERT row trigger");
	rel = td->tg_relation;
	desc = RelationGetDescr(rel);
	row = td->tg_trigtuple;

	/* NULL ids are left to the primary key */
	d = heap_getattr(row, collab_attnum(rel, "id"), desc, &isnull);
	if (isnull)
		return PointerGetDatum(row);
	id = DatumGetTextPP(d);
	s = VARDATA_ANY(id);
	len = VARSIZE_ANY_EXHDR(id);
	if (resource_id_check(s, len, NULL) != RID_OK)
		shape_violation(rel, "resources_id_check");

	for (int i = len - 1; i > 0; i--)
		if (s[i] == '/')
		{
			last = i + 1;
			break;
		}
	for (colon = last; s[colon] != ':'; colon++)
		;						/* a valid id has a colon in every segment */

	d = heap_getattr(row, collab_attnum(rel, "kind"), desc, &isnull);
	if (isnull)
		shape_violation(rel, "resources_kind_matches_id");
	{
		text	   *kind = DatumGetTextPP(d);

		if (VARSIZE_ANY_EXHDR(kind) != colon - last ||
			memcmp(VARDATA_ANY(kind), s + last, colon - last) != 0)
			shape_violation(rel, "resources_kind_matches_id");
	}

	d = heap_getattr(row, collab_attnum(rel, "parent_id"), desc, &isnull);
	if (last == 0 ? !isnull :
		isnull || VARSIZE_ANY_EXHDR(DatumGetTextPP(d)) != last - 1 ||
		memcmp(VARDATA_ANY(DatumGetTextPP(d)), s, last - 1) != 0)
		shape_violation(rel, "resources_parent_matches_id");

	return PointerGetDatum(row);
}

/*
 * collab.save(resource_id, token, content, base_version, restored_from) and
 * collab._save(..., path), the WebSocket worker's save ("ws" or "sql"): the
 * new version.
 */
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

	memset(&save_presented, 0, sizeof(save_presented));
	save_presented.has_token = true;
	save_presented.token = PG_GETARG_INT64(1);
	save_presented.has_base = !PG_ARGISNULL(3);
	save_presented.base = save_presented.has_base ? PG_GETARG_INT64(3) : 0;
	save_presented.has_restored = PG_NARGS() > 4 && !PG_ARGISNULL(4);
	save_presented.restored_from = save_presented.has_restored ? PG_GETARG_INT64(4) : 0;
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
	{
		char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(5));

		save_presented.ws = strcmp(path, "ws") == 0;
		if (!save_presented.ws && strcmp(path, "sql") != 0)
			ereport(ERROR,
					(errcode(collab_errcode(CE_BAD_REQUEST)),
					 errmsg("a save's path must be \"ws\" or \"sql\"")));
	}

	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	save_active = true;
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
