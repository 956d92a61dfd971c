/*-------------------------------------------------------------------------
 *
 * tokens.c
 *	  Issuing fencing tokens that are never reissued.
 *
 * Tokens come from the sequence collab.fencing_token_seq, which only moves
 * forward and whose WAL record precedes any use of a value.  That record is
 * durable once the granting transaction's commit is flushed, but a session
 * running with synchronous_commit = off gets its commit acknowledged before
 * the flush; after a crash the sequence could then hand out a token that a
 * client already holds.  So a transaction that issued tokens flushes WAL
 * before it commits whenever its commit would not.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "fmgr.h"
#include "utils/lsyscache.h"

#include "collab.h"

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

static bool issued_in_xact = false;
static bool callback_registered = false;

static void
tokens_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT)
	{
		/*
		 * Our own last WAL record (the lease row) follows the sequence
		 * record that covers the token, so flushing up to it suffices.
		 */
		if (issued_in_xact && synchronous_commit == SYNCHRONOUS_COMMIT_OFF &&
			XactLastRecEnd != InvalidXLogRecPtr)
			XLogFlush(XactLastRecEnd);
		issued_in_xact = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
			 event == XACT_EVENT_PREPARE)
	{
		/* an aborted grant's token is simply never used */
		issued_in_xact = false;
	}
}

/* The next fencing token, made durable at commit (see above). */
int64
collab_issue_token(void)
{
	Oid			nsp = get_namespace_oid("collab", false);
	Oid			seq = get_relname_relid("fencing_token_seq", nsp);

	if (!OidIsValid(seq))
		elog(ERROR, "sequence collab.fencing_token_seq does not exist");
	if (!callback_registered)
	{
		RegisterXactCallback(tokens_xact_callback, NULL);
		callback_registered = true;
	}
	issued_in_xact = true;
	return nextval_internal(seq, false);
}

/* collab._next_token(): the next fencing token */
PG_FUNCTION_INFO_V1(collab_next_token);
Datum
collab_next_token(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(collab_issue_token());
}
