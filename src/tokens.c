/*-------------------------------------------------------------------------
 *
 * tokens.c
 *	  Issuing fencing tokens that are never reissued, not after a crash and
 *	  not by a promoted standby.
 *
 * A token is epoch * 2^36 + n.  The epoch belongs to one primary: it is
 * the timeline the server writes WAL on, plus the highest epoch of the
 * data's earlier lives (rows of collab.token_epochs that another cluster,
 * or another copy of the table restored from a dump, started).  A promoted
 * standby writes on a later timeline, so its epoch is greater than any
 * epoch the old primary can have used, whether or not the standby received
 * the old primary's last rows: an asynchronous standby that misses grants
 * can no longer hand out their tokens again.  n counts the epoch's grants
 * (collab.fencing_token_seq minus its value when the epoch started), from 1
 * to 2^36 - 1; at 2^36 grants are refused rather than wrap into the epoch
 * bits.  Epochs go up to 2^17 - 1, so every token is below 2^53 and exact
 * as a JavaScript number.  Tokens of 0.1.0 (plain sequence values, checked
 * below 2^36 by the upgrade) are epoch 0, below every epoch token.
 *
 * The decision that starts an epoch is SQL (collab._start_token_epoch());
 * this file gives it the timeline and system identifier, caches the answer
 * once it is committed, and does the arithmetic on the hot path.  A
 * database still at 0.1.0 (no collab.token_epochs yet) gets plain sequence
 * values, as 0.1.0 did.
 *
 * The sequence's WAL record precedes any use of a value: it logs values
 * ahead, and recovery goes on above the last value it logged.  That record
 * is durable once the granting transaction's commit is flushed, but a
 * transaction committing with synchronous_commit = off (a session's choice,
 * or the worker's grants, see collab.synchronous_grants) is acknowledged
 * before the flush; after a crash the sequence could then hand out a value
 * that a client already holds.  So a transaction that issued tokens flushes
 * WAL up to the end of the sequence's latest record before it commits
 * whenever its commit would not.  The sequence logs many values in one
 * record, so that record is nearly always on disk already; the grant itself
 * may then be lost in a crash, its token never.  The transaction that
 * starts an epoch commits synchronously: its row is what keeps the epoch's
 * count from starting over.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "collab.h"

/* The token layout: epoch in the high bits, the epoch's count below. */
#define TOKEN_COUNTER_BITS	36
#define TOKEN_COUNTER_LIMIT	(INT64CONST(1) << TOKEN_COUNTER_BITS)
#define TOKEN_MAX_EPOCH		((INT64CONST(1) << (53 - TOKEN_COUNTER_BITS)) - 1)

/*
 * A whole decimal int64, as tokens and versions travel in settings and
 * query results; false for anything else, so that the caller can name what
 * was wrong.
 */
bool
collab_parse_int64(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return false;
	*out = (int64) v;
	return true;
}

/* The epoch this server issues tokens in, and where its count starts. */
typedef struct TokenEpoch
{
	Oid			table;			/* collab.token_epochs when it was read */
	uint64		system_identifier;
	TimeLineID	timeline;
	int64		epoch;
	int64		base;			/* collab.fencing_token_seq at its start */
} TokenEpoch;

/* Only committed rows are cached: a rolled-back epoch must be decided again. */
static TokenEpoch cached_epoch;
static bool cached_epoch_valid = false;

/* The end of the sequence record that covers this transaction's tokens. */
static XLogRecPtr token_record_end = InvalidXLogRecPtr;
static bool callback_registered = false;

static void
tokens_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT)
	{
		if (token_record_end != InvalidXLogRecPtr &&
			synchronous_commit == SYNCHRONOUS_COMMIT_OFF)
			XLogFlush(token_record_end);
		token_record_end = InvalidXLogRecPtr;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		/* an aborted grant's token is simply never used */
		token_record_end = InvalidXLogRecPtr;
	}
}

/*
 * The sequence's page LSN is the end of its latest WAL record, the one that
 * logged the value just handed out (or values beyond it).
 */
static void
note_token_record(Oid seq)
{
	/* nextval_internal() holds the sequence's lock until the end of the transaction */
	Relation	rel = relation_open(seq, NoLock);
	Buffer		buf = ReadBuffer(rel, 0);
	XLogRecPtr	lsn;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	lsn = PageGetLSN(BufferGetPage(buf));
	UnlockReleaseBuffer(buf);
	relation_close(rel, NoLock);
	if (lsn > token_record_end)
		token_record_end = lsn;
}

static Oid
collab_relation(const char *name)
{
	return get_relname_relid(name, get_namespace_oid("collab", false));
}

/* Who is issuing: this primary's system identifier and WAL timeline. */
static void
token_issuer(uint64 *system_identifier, TimeLineID *timeline)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot issue fencing tokens during recovery"),
				 errdetail("Only a primary grants editor locks; this server is a standby."),
				 errhint("Acquire locks on the primary.")));
	*system_identifier = GetSystemIdentifier();
	/* the timeline of the WAL we write, current at once after a promotion */
	*timeline = GetWALInsertionTimeLine();
}

/*
 * The epoch of this primary (table is collab.token_epochs): from the cache,
 * or from collab._start_token_epoch(), which finds or starts it.
 */
static void
current_epoch(Oid table, TokenEpoch *out)
{
	uint64		sysid;
	TimeLineID	tli;
	Oid			types[2] = {INT8OID, INT8OID};
	Datum		values[2];
	bool		isnull;
	TransactionId xmin;

	token_issuer(&sysid, &tli);
	if (cached_epoch_valid && cached_epoch.table == table &&
		cached_epoch.system_identifier == sysid && cached_epoch.timeline == tli)
	{
		*out = cached_epoch;
		return;
	}

	values[0] = Int64GetDatum((int64) sysid);
	values[1] = Int64GetDatum((int64) tli);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT epoch, base, row_xmin FROM collab._start_token_epoch($1, $2)",
							  2, types, values, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "collab._start_token_epoch() returned no row");
	out->table = table;
	out->system_identifier = sysid;
	out->timeline = tli;
	out->epoch = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		elog(ERROR, "collab._start_token_epoch() returned no epoch");
	out->base = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		elog(ERROR, "collab._start_token_epoch() returned no base");
	xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	SPI_finish();

	if (out->epoch < 1 || out->epoch > TOKEN_MAX_EPOCH)
		elog(ERROR, "fencing token epoch " INT64_FORMAT " is out of range", out->epoch);
	/*
	 * A row of our own transaction (or subtransaction) may still roll back,
	 * so it is not cached; and it must not be lost once a token of its epoch
	 * is out: started again after a crash, the epoch would count from 1
	 * again.  So its transaction commits synchronously, whatever
	 * synchronous_commit says.
	 */
	if (!isnull && TransactionIdIsCurrentTransactionId(xmin))
		ForceSyncCommit();
	else if (!isnull)
	{
		cached_epoch = *out;
		cached_epoch_valid = true;
	}
}

/* The next fencing token, made durable at commit (see above). */
int64
collab_issue_token(void)
{
	Oid			seq = collab_relation("fencing_token_seq");
	Oid			table = collab_relation("token_epochs");
	TokenEpoch	e;
	int64		value;
	int64		n;

	if (!OidIsValid(seq))
		elog(ERROR, "sequence collab.fencing_token_seq does not exist");
	if (!callback_registered)
	{
		RegisterXactCallback(tokens_xact_callback, NULL);
		callback_registered = true;
	}
	if (!OidIsValid(table))
	{
		/* the extension is still at 0.1.0: its plain sequence values */
		value = nextval_internal(seq, false);
		note_token_record(seq);
		return value;
	}

	current_epoch(table, &e);
	value = nextval_internal(seq, false);
	note_token_record(seq);
	n = value - e.base;
	if (n >= TOKEN_COUNTER_LIMIT)
		ereport(ERROR,
				(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
				 errmsg("the fencing tokens of epoch " INT64_FORMAT " are exhausted", e.epoch),
				 errdetail("An epoch issues at most " INT64_FORMAT " tokens; epoch " INT64_FORMAT
						   " (timeline %u) has issued them all.",
						   TOKEN_COUNTER_LIMIT - 1, e.epoch, e.timeline),
				 errhint("A new timeline starts a new epoch: switch over to a standby, or restart this "
						 "server through archive recovery (standby.signal, then pg_ctl promote).")));
	if (n < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("collab.fencing_token_seq is below the start of fencing token epoch " INT64_FORMAT,
						e.epoch),
				 errdetail("The sequence gave " INT64_FORMAT "; the epoch started at " INT64_FORMAT ".",
						   value, e.base),
				 errhint("The sequence must never be set back: set it to at least the epoch's base "
						 "in collab.token_epochs.")));
	return (e.epoch << TOKEN_COUNTER_BITS) + n;
}

/* collab._next_token(): the next fencing token */
PG_FUNCTION_INFO_V1(collab_next_token);
Datum
collab_next_token(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(collab_issue_token());
}

/* collab.token_epoch(token bigint): the epoch a token was issued in */
PG_FUNCTION_INFO_V1(collab_token_epoch);
Datum
collab_token_epoch(PG_FUNCTION_ARGS)
{
	int64		token = PG_GETARG_INT64(0);

	if (token < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a fencing token is never negative")));
	PG_RETURN_INT32((int32) (token >> TOKEN_COUNTER_BITS));
}

/*
 * collab.current_token_epoch(): the epoch this primary issues tokens in,
 * started now if no grant has started it yet.  As the extension's owner,
 * like the lock functions, so that an administrator may call it.
 */
PG_FUNCTION_INFO_V1(collab_current_token_epoch);
Datum
collab_current_token_epoch(PG_FUNCTION_ARGS)
{
	Oid			table = collab_relation("token_epochs");
	CollabOwner oc;
	TokenEpoch	e;

	if (!OidIsValid(table))
		elog(ERROR, "table collab.token_epochs does not exist");
	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	PG_TRY();
	{
		current_epoch(table, &e);
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();
	PG_RETURN_INT32((int32) e.epoch);
}

/*
 * collab._token_issuer(): this primary's system identifier and timeline,
 * as the epoch decision sees them.
 */
PG_FUNCTION_INFO_V1(collab_token_issuer);
Datum
collab_token_issuer(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	uint64		sysid;
	TimeLineID	tli;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	token_issuer(&sysid, &tli);
	values[0] = Int64GetDatum((int64) sysid);
	values[1] = Int64GetDatum((int64) tli);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
