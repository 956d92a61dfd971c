/*-------------------------------------------------------------------------
 *
 * sampling.c
 *	  Refusals in the trails, sampled with counts: in a collab worker, the
 *	  denials of collab.audit and the refusals of the access trail cannot
 *	  grow them faster than once a second per user and resource.
 *
 * A browser can ask again and again for what it is refused (a lock that
 * someone holds, a resource it may not view, a connection with a revoked
 * token).  Each answer stays exact; what is written is sampled: the first
 * refusal of a kind (trail, action, user, resource, reason) is written as it
 * happens, and opens a window of one second in which the identical ones
 * are only counted.  When the window has ended, one more row stands for
 * them: the last one's columns, with "repeats" (how many), "firstAt" and
 * "lastAt" added to its detail.  The refusal after that opens a new window.
 * So each refusal is in the trail, alone or in a count, and a kind writes
 * at most two rows a second.
 *
 * The counts are process memory (each worker has its own); the changes a
 * transaction made to them are undone if it aborts, with its rows.  The
 * rows of ended windows are written by collab._flush_sampled_refusals(),
 * which the worker runs when one is due.  Backends write every refusal:
 * their callers are the application, not browsers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "collab.h"
#include "payloads.h"

/* Identical refusals within this long of a written one are counted. */
#define SAMPLE_WINDOW_US	USECS_PER_SEC

typedef struct SampleEntry
{
	uint64		key;			/* hash key: the kind of refusal */
	TimestampTz window_end;
	int64		repeats;		/* refusals in the window not written */
	TimestampTz first_at;		/* the first and last of them */
	TimestampTz last_at;
	CollabRefusal last;			/* the last of them, in sample_cxt */
	CollabRefusalWriter writer;
} SampleEntry;

/* An entry as it was before this transaction changed it. */
typedef struct SampleUndo
{
	uint64		key;
	bool		existed;
	TimestampTz window_end;
	int64		repeats;
	TimestampTz first_at;
	TimestampTz last_at;
} SampleUndo;

static HTAB *samples = NULL;
static MemoryContext sample_cxt = NULL;
static List *undo = NIL;		/* in TopTransactionContext */
static TimestampTz next_due = 0;	/* the earliest window_end; 0: none */

static void
sampling_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			foreach(lc, undo)
			{
				SampleUndo *u = lfirst(lc);
				SampleEntry *e = hash_search(samples, &u->key, HASH_FIND, NULL);

				if (e == NULL)
					continue;
				if (!u->existed)
				{
					/* nothing is due from it: it ends at once, empty */
					e->window_end = 0;
					e->repeats = 0;
					next_due = 1;
					continue;
				}
				e->window_end = u->window_end;
				e->repeats = u->repeats;
				e->first_at = u->first_at;
				e->last_at = u->last_at;
				if (e->window_end > 0 && (next_due == 0 || e->window_end < next_due))
					next_due = e->window_end;
			}
			undo = NIL;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			undo = NIL;			/* freed with TopTransactionContext */
			break;
		default:
			break;
	}
}

static void
init_samples(void)
{
	HASHCTL		ctl;

	sample_cxt = AllocSetContextCreate(TopMemoryContext, "collab sampled refusals",
									   ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(SampleEntry);
	ctl.hcxt = sample_cxt;
	samples = hash_create("collab sampled refusals", 256, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	RegisterXactCallback(sampling_xact_callback, NULL);
}

static uint64
refusal_key(const CollabRefusal *r)
{
	StringInfoData buf;
	uint64		key;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s%c%s%c%s%c%s%c%s", r->trail, 0, r->action, 0,
					 r->user_id ? r->user_id : "", 0, r->resource_id ? r->resource_id : "", 0,
					 r->reason ? r->reason : "");
	key = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return key;
}

/* Remembers e as it is, to be put back if the transaction aborts. */
static void
note_undo(SampleEntry *e, bool existed)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	SampleUndo *u = palloc(sizeof(SampleUndo));

	u->key = e->key;
	u->existed = existed;
	u->window_end = existed ? e->window_end : 0;
	u->repeats = existed ? e->repeats : 0;
	u->first_at = existed ? e->first_at : 0;
	u->last_at = existed ? e->last_at : 0;
	undo = lappend(undo, u);
	MemoryContextSwitchTo(old);
}

static char *
copy_or_null(const char *s)
{
	return s ? MemoryContextStrdup(sample_cxt, s) : NULL;
}

static void
free_copy(CollabRefusal *r)
{
	char	   *strs[] = {(char *) r->trail, (char *) r->action, (char *) r->user_id,
		(char *) r->resource_id, (char *) r->reason, (char *) r->fields[0],
	(char *) r->fields[1], (char *) r->fields[2], (char *) r->detail};

	for (int i = 0; i < lengthof(strs); i++)
		if (strs[i])
			pfree(strs[i]);
	memset(r, 0, sizeof(*r));
}

static void
keep_copy(SampleEntry *e, const CollabRefusal *r)
{
	free_copy(&e->last);
	e->last.trail = copy_or_null(r->trail);
	e->last.action = copy_or_null(r->action);
	e->last.user_id = copy_or_null(r->user_id);
	e->last.resource_id = copy_or_null(r->resource_id);
	e->last.reason = copy_or_null(r->reason);
	for (int i = 0; i < lengthof(r->fields); i++)
		e->last.fields[i] = copy_or_null(r->fields[i]);
	e->last.detail = copy_or_null(r->detail);
	e->last.at = r->at;
}

/* The detail of a row that stands for e's counted refusals. */
static char *
repeats_detail(const SampleEntry *e)
{
	StringInfoData buf;
	const char *d = e->last.detail;
	size_t		len = d ? strlen(d) : 0;

	initStringInfo(&buf);
	/* a JSON object: its members, then ours */
	while (len > 0 && d[len - 1] != '}')
		len--;
	if (len > 1)
	{
		appendBinaryStringInfo(&buf, d, len - 1);
		while (buf.len > 1 && (buf.data[buf.len - 1] == ' ' || buf.data[buf.len - 1] == '\n'))
			buf.len--;
		if (buf.data[buf.len - 1] != '{')
			appendStringInfoChar(&buf, ',');
	}
	else
		appendStringInfoChar(&buf, '{');
	appendStringInfo(&buf, "\"repeats\": " INT64_FORMAT ", \"firstAt\": ", e->repeats);
	collab_append_ts(&buf, e->first_at);
	appendStringInfoString(&buf, ", \"lastAt\": ");
	collab_append_ts(&buf, e->last_at);
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Writes the row that stands for e's counted refusals, if there are any. */
static void
write_repeats(SampleEntry *e)
{
	CollabRefusal r;

	if (e->repeats == 0)
		return;
	r = e->last;
	r.at = e->last_at;
	e->writer(&r, repeats_detail(e));
	e->repeats = 0;
}

/*
 * A refusal r, about to be written by writer: true if it is to be written
 * now (in a backend always); false if it was counted, to be written as
 * part of a count later.
 */
bool
collab_refusal_sample(const CollabRefusal *r, CollabRefusalWriter writer)
{
	uint64		key;
	SampleEntry *e;
	bool		found;

	if (!collab_worker_session)
		return true;
	if (samples == NULL)
		init_samples();
	key = refusal_key(r);
	e = hash_search(samples, &key, HASH_ENTER, &found);
	if (!found)
		memset(((char *) e) + sizeof(uint64), 0, sizeof(SampleEntry) - sizeof(uint64));
	note_undo(e, found);
	e->writer = writer;
	if (found && r->at < e->window_end)
	{
		if (e->repeats == 0)
			e->first_at = r->at;
		e->repeats++;
		e->last_at = r->at;
		keep_copy(e, r);
		return false;
	}
	/* an earlier window's count first, if no flush has written it yet */
	if (found)
		write_repeats(e);
	e->window_end = r->at + SAMPLE_WINDOW_US;
	if (next_due == 0 || e->window_end < next_due)
		next_due = e->window_end;
	return true;
}

/* Are rows of ended windows waiting to be written (or windows to forget)? */
bool
collab_refusals_due(TimestampTz now)
{
	return next_due != 0 && now >= next_due;
}

/*
 * collab._flush_sampled_refusals(): writes the rows of the counts whose
 * window has ended, and forgets those windows; how many rows it wrote.
 * Only a worker has counts.
 */
PG_FUNCTION_INFO_V1(collab_flush_sampled_refusals);
Datum
collab_flush_sampled_refusals(PG_FUNCTION_ARGS)
{
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	SampleEntry *e;
	CollabOwner oc;
	int			written = 0;
	List	   *ended = NIL;
	List	   *gone = NIL;
	ListCell   *lc;

	if (samples == NULL)
		PG_RETURN_INT32(0);
	next_due = 0;
	hash_seq_init(&seq, samples);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->window_end == 0 && e->repeats == 0)
			gone = lappend(gone, e);	/* an earlier flush ended it, and committed */
		else if (e->window_end <= now)
			ended = lappend(ended, e);
		else if (next_due == 0 || e->window_end < next_due)
			next_due = e->window_end;
	}
	foreach(lc, gone)
	{
		e = lfirst(lc);
		free_copy(&e->last);
		hash_search(samples, &e->key, HASH_REMOVE, NULL);
	}
	list_free(gone);

	collab_become_owner(fcinfo->flinfo->fn_oid, &oc);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		foreach(lc, ended)
		{
			e = lfirst(lc);
			note_undo(e, true);
			if (e->repeats > 0)
			{
				write_repeats(e);
				written++;
			}
			/* forgotten at the next flush, once this one has committed */
			e->window_end = 0;
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		collab_restore_user(&oc);
	}
	PG_END_TRY();
	if (ended != NIL)
	{
		TimestampTz again = now + SAMPLE_WINDOW_US;

		if (next_due == 0 || again < next_due)
			next_due = again;
	}
	list_free(ended);
	PG_RETURN_INT32(written);
}
