/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The worker's queue of SQL jobs and the batches that run them.
 *
 * A batch of jobs runs in one transaction with a subtransaction per job,
 * so one commit (and one WAL flush) serves many clients and one failing
 * job cannot harm the others.  After the commit each job's done callback
 * gets its answer; what a job is for is its queuer's business.
 *
 * A reply acknowledges only what is durable.  A batch whose every job
 * allows it (events_first: a viewer's join, whose only logged write is its
 * access-trail entry) commits without waiting for its WAL flush: its
 * events go out to the rooms first, then the flush (and, with synchronous
 * replication, the standby) is waited for, and only then are the replies
 * sent, so that a join's content leaves the server only once its entry is
 * durable and the room does not wait for the disk.  Other batches wait for
 * the flush at commit, which costs a lock or a save less: an asynchronous
 * commit wakes the WAL writer, and waiting for its flush afterwards cost
 * about 0.1 ms more on the lock round trip (test/bench/ab).  A crash before
 * the flush ends every connection anyway.
 *
 * A batch keeps its jobs' path locks until it commits, so only its first
 * job, which holds no other job's locks, may wait for a lock.  A later job
 * that would wait is handed back: requeue_blocked() puts it at the head of
 * the queue, where it runs first in the next batch.  That is the one place
 * that decides what becomes of a job that cannot run now; a job that
 * carries a deadline could be parked there and retried instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "replication/syncrep.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "collab.h"
#include "conn.h"
#include "jobs.h"
#include "metrics.h"

/* Jobs run in one transaction at most this many at a time. */
#define JOB_BATCH_MAX	64

/* What became of a job's statement in its batch. */
typedef enum JobOutcome
{
	JOB_RAN,
	JOB_FAILED,					/* err_code and err_message say why */
	JOB_WOULD_WAIT				/* not run: it would have waited for a lock */
} JobOutcome;

static MemoryContext jobs_cxt = NULL;

/* The end of the last batch's commit record, if it wrote WAL (see reply). */
static XLogRecPtr batch_commit_lsn = InvalidXLogRecPtr;
static Job *job_head = NULL;
static Job *job_tail = NULL;

/* The worker's fan-out of committed events, run before replies are released. */
static void (*fan_out_hook) (void) = NULL;

void
jobs_init(void (*fan_out) (void))
{
	jobs_cxt = AllocSetContextCreate(TopMemoryContext, "collab worker jobs",
									 ALLOCSET_DEFAULT_SIZES);
	fan_out_hook = fan_out;
}

/*
 * A new job of size bytes (a Job, or a struct that starts with one), zeroed,
 * living until its batch's replies are out.
 */
Job *
job_new(Size size, const char *sql, Conn *conn, JobCallback done)
{
	Job		   *job;

	Assert(size >= sizeof(Job));
	job = MemoryContextAllocZero(jobs_cxt, size);
	job->sql = sql;
	job->conn = conn;
	job->done = done;
	return job;
}

/* Copies for a job's arguments and fields, living as long as the job. */
char *
job_strdup(const char *s)
{
	return MemoryContextStrdup(jobs_cxt, s);
}

char *
job_strndup(const char *s, Size len)
{
	char	   *copy = MemoryContextAlloc(jobs_cxt, len + 1);

	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/*
 * Asks for a read-only query once the batch's events are out (see reply);
 * with sql NULL, only for done to be called then.
 */
void
job_follow_up(Job *job, const char *sql, const char *arg, JobCallback done)
{
	job->then_sql = sql;
	job->then_arg = job_strdup(arg);
	job->then_done = done;
}

void
jobs_queue(Job *job)
{
	job->next = NULL;
	if (job->conn)
		conn_pin(job->conn);
	if (job_tail)
		job_tail->next = job;
	else
		job_head = job;
	job_tail = job;
}

/* Are jobs waiting to run? */
bool
jobs_pending(void)
{
	return job_head != NULL;
}

/* Forgets every queued job (at shutdown, once nothing is left to run them). */
void
jobs_discard(void)
{
	job_head = job_tail = NULL;
}

/* ----------------------------------------------------------------
 * Running a batch
 * ---------------------------------------------------------------- */

/* The plan of a job's statement: its arguments are text. */
static SPIPlanPtr
statement_plan(const char *sql, int nargs)
{
	static const Oid types[JOB_MAX_ARGS] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};

	return collab_plan(sql, nargs, types, 0);
}

/* Runs one job's statement; called inside its subtransaction. */
static void
run_statement(Job *job)
{
	Datum		values[JOB_MAX_ARGS];
	char		nulls[JOB_MAX_ARGS];
	int			rc;

	for (int i = 0; i < job->nargs; i++)
	{
		values[i] = job->args[i] ? CStringGetTextDatum(job->args[i]) : (Datum) 0;
		nulls[i] = job->args[i] ? ' ' : 'n';
	}
	rc = SPI_execute_plan(statement_plan(job->sql, job->nargs), values, nulls, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "collab worker statement failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *v = SPI_getvalue(tup, desc, 1);

		if (v)
			job->result = MemoryContextStrdup(jobs_cxt, v);
		if (desc->natts >= 2)
		{
			char	   *t = SPI_getvalue(tup, desc, 2);

			job->result2 = t ? MemoryContextStrdup(jobs_cxt, t) : NULL;
		}
	}
}

static void
job_failed(Job *job, ErrorData *edata)
{
	job->failed = true;
	if (collab_error_of_sqlstate(edata->sqlerrcode, &job->err_code))
		job->err_message = MemoryContextStrdup(jobs_cxt, edata->message);
	else
	{
		/* unexpected: log it in full, tell the client nothing internal */
		ereport(LOG,
				(errmsg("collab worker job failed: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		job->err_code = CE_INTERNAL;
		job->err_message = MemoryContextStrdup(jobs_cxt,
											   "internal error; the request had no effect");
	}
}

/*
 * Runs job in a subtransaction of the batch's transaction.  A job that may
 * not wait for locks (see forbid_lock_waits) and would have is rolled back
 * and reported as JOB_WOULD_WAIT.
 */
static JobOutcome
run_in_subxact(Job *job, bool may_wait)
{
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext jobcxt = CurrentMemoryContext;
	JobOutcome	outcome = JOB_RAN;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(jobcxt);
	PG_TRY();
	{
		instr_time	t0,
					t1;

		INSTR_TIME_SET_CURRENT(t0);
		run_statement(job);
		INSTR_TIME_SET_CURRENT(t1);
		INSTR_TIME_SUBTRACT(t1, t0);
		if (job->timed)
			metrics_observe_sql(INSTR_TIME_GET_MILLISEC(t1));
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(jobcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(jobs_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(jobcxt);
		CurrentResourceOwner = oldowner;
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE && !may_wait)
			outcome = JOB_WOULD_WAIT;
		else
		{
			job_failed(job, edata);
			outcome = JOB_FAILED;
		}
	}
	PG_END_TRY();
	return outcome;
}

/*
 * Path locks are transaction locks: the jobs of a batch keep theirs until
 * the batch commits.  A later job that waited for a lock could then close a
 * cycle with any other transaction deciding about a path (a deadlock, the
 * worker stalled until deadlock_timeout).  So the jobs after the first run
 * with lock_timeout 1 ms; *saved keeps the setting to restore.
 */
static void
forbid_lock_waits(char **saved)
{
	if (*saved != NULL)
		return;
	*saved = pstrdup(GetConfigOption("lock_timeout", false, false));
	(void) set_config_option("lock_timeout", "1", PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

static void
allow_lock_waits(char *saved)
{
	if (saved != NULL)
		(void) set_config_option("lock_timeout", saved, PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
}

/*
 * job would have waited for a lock: it and the jobs after it go back to
 * the head of the queue, so that it runs first, and may wait, in the next
 * batch; prev, the job before it, now ends this batch.
 */
static void
requeue_blocked(Job *job, Job *prev)
{
	Job		   *tail = job;

	while (tail->next)
		tail = tail->next;
	prev->next = NULL;
	tail->next = job_head;
	job_head = job;
	if (job_tail == NULL)
		job_tail = tail;
}

/*
 * Takes up to JOB_BATCH_MAX jobs off the queue.  Jobs of their own batch
 * (forwarding to NOTIFY listeners) run in transactions of their own: a
 * full notification queue (a listener that stopped reading) fails them at
 * commit, and must not fail client requests with them.
 */
static Job *
take_batch(int *n)
{
	Job		   *batch = job_head;
	Job		   *last = NULL;

	*n = 0;
	for (Job *j = batch; j && *n < JOB_BATCH_MAX; j = j->next)
	{
		if (j->own_batch != batch->own_batch)
			break;
		last = j;
		(*n)++;
	}
	job_head = last->next;
	if (job_head == NULL)
		job_tail = NULL;
	last->next = NULL;
	return batch;
}

/* The batch's transaction: each job in its subtransaction, then the commit. */
static void
run_batch(Job *batch)
{
	char	   *saved_lock_timeout = NULL;
	bool		wrote_wal;
	bool		events_first;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "collab: running client requests");

	/*
	 * Jobs of their own batch forward events that are already committed; a
	 * NOTIFY lost in a crash is lost to its listeners anyway, so they do not
	 * wait for the flush at all.  A batch of events_first jobs waits for it
	 * after its events have gone out (reply).
	 */
	batch_commit_lsn = InvalidXLogRecPtr;
	events_first = !batch->own_batch;
	for (Job *j = batch; j; j = j->next)
		events_first &= j->events_first;
	if (batch->own_batch || events_first)
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	for (Job *j = batch, *prev = NULL; j; prev = j, j = j->next)
	{
		if (j->sql == NULL)
			continue;
		if (j != batch)
			forbid_lock_waits(&saved_lock_timeout);
		if (run_in_subxact(j, j == batch) == JOB_WOULD_WAIT)
		{
			requeue_blocked(j, prev);
			break;
		}
	}
	allow_lock_waits(saved_lock_timeout);

	SPI_finish();
	PopActiveSnapshot();
	/* only a batch that changed logged data has something to flush */
	wrote_wal = XactLastRecEnd != InvalidXLogRecPtr;
	CommitTransactionCommand();
	if (wrote_wal && events_first)
		batch_commit_lsn = XactLastCommitEnd;
	collab_metrics->last_commit_us = lws_now_usecs();
}

/* The batch's transaction failed (at commit, say): no job had an effect. */
static void
fail_batch(Job *batch, int n)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(jobs_cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	ereport(LOG, (errmsg("collab worker batch of %d requests failed: %s", n, edata->message)));
	for (Job *j = batch; j; j = j->next)
	{
		if (j->sql == NULL)
			continue;
		j->result = NULL;
		j->failed = true;
		j->err_code = CE_INTERNAL;
		j->err_message = "internal error; the request had no effect";
	}
}

/* ----------------------------------------------------------------
 * Replies
 * ---------------------------------------------------------------- */

/*
 * One step of the replies to a batch, for one job: what it raises is
 * logged, and the other jobs' replies go on.
 */
static void
reply_step(JobCallback step, Job *job)
{
	PG_TRY();
	{
		step(job);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
}

/* The end of a job's hold on its connection (see reply). */
static void
release_conn(Job *job)
{
	/* may free a closed connection once nothing refers to it */
	conn_unpin(job->conn);
}

/*
 * The follow-up queries of a batch's jobs, run once the batch's events have
 * gone out, in a read-only transaction of their own.  What they read after
 * the batch's commit may already show changes whose events the clients
 * then also receive; events describe state, so that is harmless.
 */
static void
run_follow_ups(Job *batch)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	bool		any = false;

	for (Job *j = batch; j; j = j->next)
		if (j->then_sql)
			any = true;
	if (!any)
		return;
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		for (Job *j = batch; j; j = j->next)
		{
			Datum		value;
			char		null = ' ';

			if (!j->then_sql)
				continue;
			value = CStringGetTextDatum(j->then_arg);
			if (SPI_execute_plan(statement_plan(j->then_sql, 1), &value, &null, true, 1) == SPI_OK_SELECT &&
				SPI_processed == 1)
			{
				char	   *u = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

				j->then_result = u ? MemoryContextStrdup(jobs_cxt, u) : NULL;
			}
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* the follow-ups get no result, and their callbacks say so */
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Replies, after commit: only what is durable is acknowledged.  They are
 * held in their connections' queues while the batch's events go out, so
 * that a room hears of a join before the joiner's own answer (a list of
 * every user in the room, twice) takes the socket and the joiner's CPU;
 * the events for a requester queue behind its reply, in order.  That list
 * is a follow-up query, read only after the events have gone out.
 */
static void
reply(Job *batch)
{
	for (Job *j = batch; j; j = j->next)
		if (j->conn)
			conn_hold(j->conn);
	for (Job *j = batch; j; j = j->next)
		if (j->done)
			reply_step(j->done, j);
	if (fan_out_hook)
		fan_out_hook();
	/* what the replies acknowledge is durable from here (see the top) */
	if (batch_commit_lsn != InvalidXLogRecPtr)
	{
		XLogFlush(batch_commit_lsn);
		SyncRepWaitForLSN(batch_commit_lsn, true);
		batch_commit_lsn = InvalidXLogRecPtr;
	}
	run_follow_ups(batch);
	for (Job *j = batch; j; j = j->next)
		if (j->then_done)
			reply_step(j->then_done, j);
	for (Job *j = batch; j; j = j->next)
		if (j->conn)
			reply_step(release_conn, j);
}

/* Runs the next batch of queued jobs and sends their replies. */
void
jobs_run_batch(void)
{
	Job		   *batch;
	int			n;
	MemoryContext oldcxt = CurrentMemoryContext;

	if (job_head == NULL)
		return;
	batch = take_batch(&n);
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		run_batch(batch);
	}
	PG_CATCH();
	{
		fail_batch(batch, n);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	reply(batch);
	if (job_head == NULL)
		MemoryContextReset(jobs_cxt);
}
