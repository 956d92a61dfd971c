/*-------------------------------------------------------------------------
 *
 * revisions.c
 *	  Revisions: every accepted save kept, SHA-256 hash-chained.
 *
 * The save guard calls collab_record_revision() for each save it accepts,
 * in the saving transaction: the new content, who saved it, when, under
 * which token, by which path (ws or sql) and, for a restore, which earlier
 * version it brings back, go into collab.revisions together with a hash
 * over all of that and the hash of the resource's previous revision.  The
 * hash input is defined once, here (revision_hash()), and documented in
 * docs/revisions.md so that an auditor can recompute it elsewhere; the
 * recording computes it in C, and collab.revision_hash() exposes it to SQL,
 * where the verification and the upgrade's genesis revisions use it.
 *
 * A save's content is compressed once, here, and the resource's row stores
 * the same bytes as its revision (the guard puts them in the new row): the
 * hash reads the content as saved, the tables store it compressed.
 *
 * Revisions never change: a trigger refuses UPDATE, DELETE and TRUNCATE of
 * collab.revisions and collab.revision_purges, except the DELETEs that
 * collab.purge_revisions() runs from this file.  The purge keeps, for each
 * resource, its newest revision and an anchor (the hash of the last
 * revision it dropped), so that the chain still verifies afterwards and a
 * save running beside it always finds the revision it chains to.
 *
 * The path and the restored version are what the save presented to the
 * guard (save_guard.c): the arguments of collab.save() and collab._save()
 * (the WebSocket worker's save), or the transaction-local setting
 * collab.restored_from of a plain UPDATE.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/skey.h"
#include "access/table.h"
#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "collab.h"

/* The format tag, first field of every hash input. */
#define REVISION_HASH_TAG	"collab.revision.v1"

/* One revision's fields, as the hash sees them (text in the server encoding). */
typedef struct RevisionFields
{
	const uint8 *prev_hash;		/* NULL: the first revision of its chain */
	const char *resource_id;
	int			resource_id_len;
	int64		version;
	const char *content;
	int			content_len;
	const char *saved_by;		/* NULL allowed (genesis) */
	const char *saved_by_name;
	TimestampTz saved_at;
	bool		has_token;
	int64		token;
	const char *path;			/* "ws", "sql" or "genesis" */
	bool		has_restored_from;
	int64		restored_from;
} RevisionFields;

/* True only while collab.purge_revisions() runs its DELETE. */
static bool purging = false;

static SPIPlanPtr restored_plan = NULL;

/* ------------------------------------------------------------------------
 * The hash
 * ------------------------------------------------------------------------ */

/*
 * One field of the hash input: its length as a 4-byte big-endian signed
 * integer (-1 for NULL, then nothing), then its bytes, as in PostgreSQL's
 * binary COPY format.
 */
static void
hash_field(pg_cryptohash_ctx *ctx, const void *data, int32 len)
{
	uint32		be = pg_hton32((uint32) len);

	if (pg_cryptohash_update(ctx, (const uint8 *) &be, 4) < 0 ||
		(len > 0 && pg_cryptohash_update(ctx, data, len) < 0))
		elog(ERROR, "could not compute a revision hash: %s", pg_cryptohash_error(ctx));
}

/* Text as UTF-8, whatever the database encoding. */
static void
hash_text(pg_cryptohash_ctx *ctx, const char *s, int len)
{
	char	   *utf8;

	if (s == NULL)
	{
		hash_field(ctx, NULL, -1);
		return;
	}
	utf8 = pg_server_to_any(s, len, PG_UTF8);
	hash_field(ctx, utf8, utf8 == s ? len : (int32) strlen(utf8));
	if (utf8 != s)
		pfree(utf8);
}

/* A bigint as 8 bytes, big-endian two's complement. */
static void
hash_int8(pg_cryptohash_ctx *ctx, bool isnull, int64 v)
{
	uint64		be = pg_hton64((uint64) v);

	hash_field(ctx, isnull ? NULL : &be, isnull ? -1 : 8);
}

/* SHA-256 of the revision's fields in their documented order. */
static void
revision_hash(const RevisionFields *f, uint8 *out)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	int64		unix_us;

	if (TIMESTAMP_NOT_FINITE(f->saved_at))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("a revision's time must be finite")));
	/* microseconds since 1970-01-01 00:00:00 UTC */
	unix_us = f->saved_at + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not compute a revision hash: %s", pg_cryptohash_error(ctx));
	hash_field(ctx, REVISION_HASH_TAG, strlen(REVISION_HASH_TAG));
	hash_field(ctx, f->prev_hash, f->prev_hash ? PG_SHA256_DIGEST_LENGTH : -1);
	hash_text(ctx, f->resource_id, f->resource_id_len);
	hash_int8(ctx, false, f->version);
	hash_text(ctx, f->content, f->content_len);
	hash_text(ctx, f->saved_by, f->saved_by ? strlen(f->saved_by) : 0);
	hash_text(ctx, f->saved_by_name, f->saved_by_name ? strlen(f->saved_by_name) : 0);
	hash_int8(ctx, false, unix_us);
	hash_int8(ctx, !f->has_token, f->token);
	hash_text(ctx, f->path, strlen(f->path));
	hash_int8(ctx, !f->has_restored_from, f->restored_from);
	if (pg_cryptohash_final(ctx, out, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute a revision hash: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

/*
 * collab.revision_hash(prev_hash, resource_id, version, content, saved_by,
 * saved_by_name, saved_at, token, path, restored_from): the hash of a
 * revision with these fields.
 */
PG_FUNCTION_INFO_V1(collab_revision_hash);
Datum
collab_revision_hash(PG_FUNCTION_ARGS)
{
	RevisionFields f;
	uint8		out[PG_SHA256_DIGEST_LENGTH];
	text	   *t;

	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3) || PG_ARGISNULL(6) || PG_ARGISNULL(8))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("resource_id, version, content, saved_at and path must not be null")));
	memset(&f, 0, sizeof(f));
	if (!PG_ARGISNULL(0))
	{
		bytea	   *p = PG_GETARG_BYTEA_PP(0);

		if (VARSIZE_ANY_EXHDR(p) != PG_SHA256_DIGEST_LENGTH)
			ereport(ERROR,
					(errcode(collab_errcode(CE_BAD_REQUEST)),
					 errmsg("prev_hash must be %d bytes", PG_SHA256_DIGEST_LENGTH)));
		f.prev_hash = (const uint8 *) VARDATA_ANY(p);
	}
	t = PG_GETARG_TEXT_PP(1);
	f.resource_id = VARDATA_ANY(t);
	f.resource_id_len = VARSIZE_ANY_EXHDR(t);
	f.version = PG_GETARG_INT64(2);
	t = PG_GETARG_TEXT_PP(3);
	f.content = VARDATA_ANY(t);
	f.content_len = VARSIZE_ANY_EXHDR(t);
	f.saved_by = PG_ARGISNULL(4) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(4));
	f.saved_by_name = PG_ARGISNULL(5) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(5));
	f.saved_at = PG_GETARG_TIMESTAMPTZ(6);
	f.has_token = !PG_ARGISNULL(7);
	f.token = f.has_token ? PG_GETARG_INT64(7) : 0;
	f.path = text_to_cstring(PG_GETARG_TEXT_PP(8));
	f.has_restored_from = !PG_ARGISNULL(9);
	f.restored_from = f.has_restored_from ? PG_GETARG_INT64(9) : 0;
	revision_hash(&f, out);
	{
		bytea	   *b = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

		SET_VARSIZE(b, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
		memcpy(VARDATA(b), out, PG_SHA256_DIGEST_LENGTH);
		PG_RETURN_BYTEA_P(b);
	}
}

/* ------------------------------------------------------------------------
 * Recording a save
 * ------------------------------------------------------------------------ */

/* The statements that insert a revision, one per path: no cast per save. */
static const char insert_sql_ws[] =
"INSERT INTO collab.revisions (resource_id, resource_created_at, version, content, saved_by, "
"       saved_by_name, saved_at, token, path, restored_from, prev_hash, hash) "
"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ws', $9, $10, $11)";
static const char insert_sql_sql[] =
"INSERT INTO collab.revisions (resource_id, resource_created_at, version, content, saved_by, "
"       saved_by_name, saved_at, token, path, restored_from, prev_hash, hash) "
"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'sql', $9, $10, $11)";
static const Oid insert_types[11] = {TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
TIMESTAMPTZOID, INT8OID, INT8OID, BYTEAOID, BYTEAOID};

/*
 * collab.revisions, or InvalidOid while the database's schema is older than
 * the library (0.1.0, before ALTER EXTENSION UPDATE): then saves go on
 * without revisions until the upgrade gives every resource its genesis
 * revision.
 */
static Oid
revisions_relid(void)
{
	Oid			nsp = get_namespace_oid("collab", true);

	return OidIsValid(nsp) ? get_relname_relid("revisions", nsp) : InvalidOid;
}

static Datum
column(HeapTuple tuple, TupleDesc desc, const char *name, bool *isnull)
{
	int			n = SPI_fnumber(desc, name);

	if (n <= 0)
		elog(ERROR, "collab.resources has no column \"%s\"", name);
	return heap_getattr(tuple, n, desc, isnull);
}

static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* A restore must bring back an existing revision's content unchanged. */
static void
check_restored(Datum id, Datum created, int64 restored_from, Datum content)
{
	Datum		v[4] = {id, created, Int64GetDatum(restored_from), content};
	bool		isnull;
	int			rc;

	if (restored_plan == NULL)
	{
		Oid			types[4] = {TEXTOID, TIMESTAMPTZOID, INT8OID, TEXTOID};

		restored_plan = prepare("SELECT r.content OPERATOR(pg_catalog.=) $4 FROM collab.revisions r "
								" WHERE r.resource_id OPERATOR(pg_catalog.=) $1 "
								"   AND r.resource_created_at OPERATOR(pg_catalog.=) $2 "
								"   AND r.version OPERATOR(pg_catalog.=) $3", 4, types);
	}
	rc = SPI_execute_plan(restored_plan, v, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "revision lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("resource \"%s\" has no revision " INT64_FORMAT " to restore",
						TextDatumGetCString(id), restored_from),
				 errhint("collab.history() lists the revisions that can be restored.")));
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("the content is not that of revision " INT64_FORMAT " of \"%s\"",
						restored_from, TextDatumGetCString(id)),
				 errdetail("A restore saves an earlier revision's content unchanged."),
				 errhint("Save edited content without restored_from.")));
}

/*
 * The hash of the revision that a save of version chains to: the previous
 * version's, looked up by its whole key; the resource's newest only when
 * that one is missing (a resource whose earlier versions were never
 * recorded).  NULL when the resource has none.  Read straight from the
 * primary key, with a snapshot taken now: it sees the save this one waited
 * for (the resource's row lock orders saves of a resource).
 */
static bytea *
previous_hash(Relation rel, Datum id, Datum created, int64 version)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			pk = RelationGetPrimaryKeyIndex(rel);
	int			a_id = SPI_fnumber(desc, "resource_id");
	int			a_created = SPI_fnumber(desc, "resource_created_at");
	int			a_version = SPI_fnumber(desc, "version");
	int			a_hash = SPI_fnumber(desc, "hash");
	Snapshot	snapshot;
	ScanKeyData key[3];
	SysScanDesc scan;
	HeapTuple	tuple;
	bytea	   *hash = NULL;
	bool		isnull;

	if (!OidIsValid(pk) || a_id <= 0 || a_created <= 0 || a_version <= 0 || a_hash <= 0)
		elog(ERROR, "collab.revisions is not as this library knows it");
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyInit(&key[0], a_id, BTEqualStrategyNumber, F_TEXTEQ, id);
	ScanKeyInit(&key[1], a_created, BTEqualStrategyNumber, F_TIMESTAMPTZ_EQ, created);
	ScanKeyInit(&key[2], a_version, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(version - 1));
	/* the scans renumber their keys' columns: each gets keys of its own */
	scan = systable_beginscan(rel, pk, true, snapshot, 3, key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Datum		h = heap_getattr(tuple, a_hash, desc, &isnull);

		if (!isnull)
			hash = DatumGetByteaPCopy(h);
	}
	systable_endscan(scan);
	if (hash == NULL)
	{
		Relation	index = index_open(pk, AccessShareLock);

		ScanKeyInit(&key[0], a_id, BTEqualStrategyNumber, F_TEXTEQ, id);
		ScanKeyInit(&key[1], a_created, BTEqualStrategyNumber, F_TIMESTAMPTZ_EQ, created);
		scan = systable_beginscan_ordered(rel, index, snapshot, 2, key);
		tuple = systable_getnext_ordered(scan, BackwardScanDirection);
		if (HeapTupleIsValid(tuple))
		{
			Datum		h = heap_getattr(tuple, a_hash, desc, &isnull);

			if (!isnull)
				hash = DatumGetByteaPCopy(h);
		}
		systable_endscan_ordered(scan);
		index_close(index, AccessShareLock);
	}
	UnregisterSnapshot(snapshot);
	if (hash != NULL && VARSIZE_ANY_EXHDR(hash) != PG_SHA256_DIGEST_LENGTH)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("the newest revision of \"%s\" has a hash of %d bytes",
						TextDatumGetCString(id), (int) VARSIZE_ANY_EXHDR(hash)),
				 errhint("collab.verify_history() tells what was changed.")));
	return hash;
}

/*
 * The content as both tables store it: compressed once, here, with the
 * resource column's method, when the row is large enough that the heap
 * would compress it; otherwise as it is.  The heap leaves a compressed
 * value as it is, in the resource's row and in the revision alike.  A
 * value stored out of line, or already compressed, stays as it is.
 */
static Datum
stored_content(TupleDesc desc, HeapTuple newt, int att, Datum content)
{
	Form_pg_attribute a = TupleDescAttr(desc, att - 1);
	char		method = a->attcompression;
	Datum		compressed;

	if (VARATT_IS_EXTENDED(DatumGetPointer(content)) && !VARATT_IS_SHORT(DatumGetPointer(content)))
		return content;
	if (newt->t_len <= TOAST_TUPLE_THRESHOLD ||
		(a->attstorage != TYPSTORAGE_EXTENDED && a->attstorage != TYPSTORAGE_MAIN))
		return content;
	if (!CompressionMethodIsValid(method))
		method = default_toast_compression;
	compressed = toast_compress_datum(content, method);
	return compressed != (Datum) 0 ? compressed : content;
}

/*
 * Records the revision of a save the guard accepted (version, saver, time,
 * token; the resource and its new content come from the old and new rows).
 * A save that restores an earlier version names it in restored_from
 * (has_restored); ws tells the WebSocket path from SQL.  Runs its queries
 * as the owner of function fn.  Returns the content datum that the row is
 * to store (the revision's, compressed once for both), or 0 when the row
 * keeps the one it has.
 */
Datum
collab_record_revision(Oid fn, TupleDesc desc, HeapTuple oldt, HeapTuple newt, int64 version,
					   const char *user_id, const char *username, TimestampTz saved_at,
					   int64 token, bool ws, bool has_restored, int64 restored)
{
	Oid			relid = revisions_relid();
	bool		isnull;
	Datum		id,
				created,
				content,
				stored;
	int			a_content;
	text	   *plain;
	text	   *id_text;
	RevisionFields f;
	bytea	   *prev;
	bytea	   *hash;
	Relation	rel;
	CollabOwner oc;

	if (!OidIsValid(relid))
		return (Datum) 0;
	id = column(oldt, desc, "id", &isnull);
	created = column(oldt, desc, "created_at", &isnull);
	a_content = SPI_fnumber(desc, "content");
	content = column(newt, desc, "content", &isnull);
	/* the row's NOT NULL constraint refuses this UPDATE after the trigger */
	if (isnull)
		return (Datum) 0;

	/* the hash reads the content as saved, the tables store it compressed */
	plain = DatumGetTextPP(content);
	stored = stored_content(desc, newt, a_content, content);
	id_text = DatumGetTextPP(id);

	collab_become_owner(fn, &oc);
	PG_TRY();
	{
		Datum		v[11];
		char		n[11];
		int			rc;

		rel = table_open(relid, RowExclusiveLock);
		prev = previous_hash(rel, id, created, version);
		table_close(rel, NoLock);

		memset(&f, 0, sizeof(f));
		f.prev_hash = prev ? (const uint8 *) VARDATA_ANY(prev) : NULL;
		f.resource_id = VARDATA_ANY(id_text);
		f.resource_id_len = VARSIZE_ANY_EXHDR(id_text);
		f.version = version;
		f.content = VARDATA_ANY(plain);
		f.content_len = VARSIZE_ANY_EXHDR(plain);
		f.saved_by = user_id;
		f.saved_by_name = username;
		f.saved_at = saved_at;
		f.has_token = true;
		f.token = token;
		f.path = ws ? "ws" : "sql";
		f.has_restored_from = has_restored;
		f.restored_from = restored;
		hash = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
		SET_VARSIZE(hash, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
		revision_hash(&f, (uint8 *) VARDATA(hash));

		SPI_connect();
		if (has_restored)
			check_restored(id, created, restored, PointerGetDatum(plain));
		memset(n, ' ', sizeof(n));
		v[0] = id;
		v[1] = created;
		v[2] = Int64GetDatum(version);
		v[3] = stored;
		v[4] = CStringGetTextDatum(user_id);
		v[5] = CStringGetTextDatum(username);
		v[6] = TimestampTzGetDatum(saved_at);
		v[7] = Int64GetDatum(token);
		v[8] = Int64GetDatum(restored);
		n[8] = has_restored ? ' ' : 'n';
		v[9] = PointerGetDatum(prev);
		n[9] = prev ? ' ' : 'n';
		v[10] = PointerGetDatum(hash);
		rc = SPI_execute_plan(collab_plan(ws ? insert_sql_ws : insert_sql_sql, 11, insert_types,
										  CURSOR_OPT_GENERIC_PLAN),
							  v, n, false, 0);
		if (rc != SPI_OK_INSERT || SPI_processed != 1)
			elog(ERROR, "recording the revision failed: %s", SPI_result_code_string(rc));
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();
	return stored != content ? stored : (Datum) 0;
}

/* ------------------------------------------------------------------------
 * Immutability and the purge
 * ------------------------------------------------------------------------ */

/*
 * collab._revisions_immutable(): BEFORE UPDATE OR DELETE (row) and BEFORE
 * TRUNCATE (statement) on collab.revisions and collab.revision_purges.
 */
PG_FUNCTION_INFO_V1(collab_revisions_immutable);
Datum
collab_revisions_immutable(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	const char *op;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event))
		elog(ERROR, "collab._revisions_immutable() must be a BEFORE trigger");
	if (purging && TRIGGER_FIRED_BY_DELETE(td->tg_event) && TRIGGER_FIRED_FOR_ROW(td->tg_event))
		return PointerGetDatum(td->tg_trigtuple);
	op = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(td->tg_event) ? "DELETE" :
		TRIGGER_FIRED_BY_TRUNCATE(td->tg_event) ? "TRUNCATE" : "INSERT";
	ereport(ERROR,
			(errcode(collab_errcode(CE_FORBIDDEN)),
			 errmsg("%s of collab.%s is not allowed: revisions are immutable",
					op, RelationGetRelationName(td->tg_relation)),
			 errhint("collab.purge_revisions() is the one way to drop old revisions.")));
	PG_RETURN_NULL();
}

/*
 * collab.purge_revisions(before timestamptz): drops, for each resource,
 * its revisions up to the newest one saved before `before`, never the
 * resource's newest revision, and records the hash of the last one dropped
 * as the anchor of what remains.  A chain that does not verify up to that
 * point is left whole, with a warning: a purge never removes the evidence
 * of tampering.  Superuser only.  Returns the number of revisions dropped.
 *
 * A save running beside it chains to the resource's newest revision, which
 * the purge never drops; concurrent purges take turns (the table lock).
 * One statement, so that what is verified is what is dropped.
 */
PG_FUNCTION_INFO_V1(collab_purge_revisions);
Datum
collab_purge_revisions(PG_FUNCTION_ARGS)
{
	int64		dropped = 0;

	if (!superuser())
		ereport(ERROR,
				(errcode(collab_errcode(CE_FORBIDDEN)),
				 errmsg("only a superuser may purge revisions")));
	if (PG_ARGISNULL(0) || TIMESTAMP_NOT_FINITE(PG_GETARG_TIMESTAMPTZ(0)))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("before must be a finite time")));

	SPI_connect();
	PG_TRY();
	{
		Oid			types[1] = {TIMESTAMPTZOID};
		Datum		v[1] = {PG_GETARG_DATUM(0)};

		if (SPI_execute("LOCK TABLE collab.revision_purges IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
			elog(ERROR, "could not lock collab.revision_purges");
		purging = true;
		if (SPI_execute_with_args(
								  "WITH cut AS ("
								  "  SELECT r.resource_id, r.resource_created_at,"
								  "         CASE WHEN pg_catalog.max(r.version) FILTER (WHERE r.saved_at OPERATOR(pg_catalog.<) $1) IS NOT NULL"
								  "              THEN LEAST(pg_catalog.max(r.version) FILTER (WHERE r.saved_at OPERATOR(pg_catalog.<) $1),"
								  "                         pg_catalog.max(r.version) OPERATOR(pg_catalog.-) 1) END AS through"
								  "    FROM collab.revisions r GROUP BY r.resource_id, r.resource_created_at"
								  "), checked AS ("
								  "  SELECT c.resource_id, c.resource_created_at, c.through, k.first_bad_version, k.problem"
								  "    FROM cut c, LATERAL collab._verify_chain(c.resource_id, c.resource_created_at, c.through) k"
								  "   WHERE c.through IS NOT NULL"
								  "), gone AS ("
								  "  DELETE FROM collab.revisions r USING checked c"
								  "   WHERE c.first_bad_version IS NULL"
								  "     AND r.resource_id OPERATOR(pg_catalog.=) c.resource_id"
								  "     AND r.resource_created_at OPERATOR(pg_catalog.=) c.resource_created_at"
								  "     AND r.version OPERATOR(pg_catalog.<=) c.through"
								  "  RETURNING r.resource_id, r.resource_created_at, r.version, r.hash"
								  "), anchors AS ("
								  "  INSERT INTO collab.revision_purges (resource_id, resource_created_at, through_version,"
								  "         hash, revisions, purged_before)"
								  "  SELECT DISTINCT ON (g.resource_id, g.resource_created_at) g.resource_id, g.resource_created_at,"
								  "         g.version, g.hash,"
								  "         pg_catalog.count(*) OVER (PARTITION BY g.resource_id, g.resource_created_at), $1"
								  "    FROM gone g ORDER BY g.resource_id, g.resource_created_at, g.version DESC"
								  "  RETURNING revisions"
								  ")"
								  " SELECT NULL::pg_catalog.text, NULL::pg_catalog.int8, NULL::pg_catalog.text,"
								  "        (SELECT pg_catalog.sum(a.revisions)::pg_catalog.int8 FROM anchors a)"
								  " UNION ALL"
								  " (SELECT c.resource_id, c.first_bad_version, c.problem, NULL"
								  "    FROM checked c WHERE c.first_bad_version IS NOT NULL ORDER BY c.resource_id)",
								  1, types, v, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "purging revisions failed");
		purging = false;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	t = SPI_tuptable->vals[i];
			TupleDesc	d = SPI_tuptable->tupdesc;
			char	   *id = SPI_getvalue(t, d, 1);
			bool		isnull;

			if (id == NULL)
			{
				Datum		n = SPI_getbinval(t, d, 4, &isnull);

				dropped = isnull ? 0 : DatumGetInt64(n);
			}
			else
				ereport(WARNING,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("revisions of \"%s\" were not purged: revision %s does not verify",
								id, SPI_getvalue(t, d, 2)),
						 errdetail("%s.", SPI_getvalue(t, d, 3)),
						 errhint("collab.verify_history() reports it; the revisions are kept as evidence.")));
		}
	}
	PG_FINALLY();
	{
		purging = false;
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_INT64(dropped);
}
