/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The worker's queue of SQL jobs and the batches that run them.
 *
 * A batch of jobs runs in one transaction with a subtransaction per job,
 * so one commit (and one WAL flush) serves many clients and one failing
 * job cannot harm the others.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "collab.h"
#include "conn.h"
#include "jobs.h"
#include "metrics.h"
#include "worker.h"
#include "ws_session.h"

/* Jobs run in one transaction at most this many at a time. */
#define JOB_BATCH_MAX	64

MemoryContext jobs_cxt = NULL;

static Job *job_head = NULL;
static Job *job_tail = NULL;

void
jobs_queue(Job *job)
{
	job->next = NULL;
	if (job->conn)
		job->conn->pending_jobs++;
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

/*
 * Prepared plans of the worker's statements, keyed by the statement text
 * (each is a string constant, so the pointer identifies it).
 */
typedef struct JobPlan
{
	const char *sql;
	int			nargs;
	SPIPlanPtr	plan;
} JobPlan;

static JobPlan plan_cache[16];
static int	plan_cache_len = 0;

static SPIPlanPtr
job_plan(Job *job)
{
	Oid			types[JOB_MAX_ARGS];
	SPIPlanPtr	plan;

	for (int i = 0; i < plan_cache_len; i++)
		if (plan_cache[i].sql == job->sql && plan_cache[i].nargs == job->nargs)
			return plan_cache[i].plan;
	for (int i = 0; i < job->nargs; i++)
		types[i] = TEXTOID;
	plan = SPI_prepare(job->sql, job->nargs, types);
	if (plan == NULL)
		elog(ERROR, "collab worker could not prepare \"%s\": %s",
			 job->sql, SPI_result_code_string(SPI_result));
	if (plan_cache_len < lengthof(plan_cache))
	{
		SPI_keepplan(plan);
		plan_cache[plan_cache_len].sql = job->sql;
		plan_cache[plan_cache_len].nargs = job->nargs;
		plan_cache[plan_cache_len].plan = plan;
		plan_cache_len++;
	}
	return plan;
}

/* Runs one job's statement; called inside its subtransaction. */
static void
run_one_job(Job *job)
{
	Datum		values[JOB_MAX_ARGS];
	char		nulls[JOB_MAX_ARGS];
	int			rc;

	for (int i = 0; i < job->nargs; i++)
	{
		values[i] = job->args[i] ? CStringGetTextDatum(job->args[i]) : (Datum) 0;
		nulls[i] = job->args[i] ? ' ' : 'n';
	}
	rc = SPI_execute_plan(job_plan(job), values, nulls, false, 1);
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

			job->token = t ? MemoryContextStrdup(jobs_cxt, t) : NULL;
		}
	}
}

static void
job_failed(Job *job, ErrorData *edata)
{
	const CollabErrorInfo *info = collab_error_by_sqlstate(edata->sqlerrcode);


	if (info)
	{
		job->err_code = info->code;
		job->err_message = MemoryContextStrdup(jobs_cxt, edata->message);
	}
	else
	{
		/* unexpected: log it in full, tell the client nothing internal */
		ereport(LOG,
				(errmsg("collab worker job failed: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		job->err_code = "INTERNAL";
		job->err_message = MemoryContextStrdup(jobs_cxt,
											   "internal error; the request had no effect");
	}
}

/*
 * One step of the replies to a batch, for one job: what it raises is
 * logged, and the other jobs' replies go on.
 */
static void
reply_step(void (*step) (Job *), Job *job)
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

/* The end of a job's hold on its connection (see jobs_run_batch). */
static void
release_job_conn(Job *job)
{
	/* may free a closed connection once nothing refers to it */
	job->conn->pending_jobs--;
	ws_release_held(job->conn);
}

/*
 * The user lists of a batch's joins, read once the batch's events have gone
 * out (see jobs_run_batch), in a read-only transaction of their own.  A list read
 * after the join's commit may already show changes whose events the joiner
 * then also receives; events describe state, so that is harmless.
 */
static void
read_room_users(Job *batch)
{
	static const char *users_sql = "SELECT collab._room_users($1)";
	MemoryContext oldcxt = CurrentMemoryContext;
	bool		any = false;

	for (Job *j = batch; j; j = j->next)
		if (j->users_pending)
			any = true;
	if (!any)
		return;
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		Job			key = {0};

		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		key.sql = users_sql;
		key.nargs = 1;
		for (Job *j = batch; j; j = j->next)
		{
			Datum		value;
			char		null = ' ';

			if (!j->users_pending)
				continue;
			value = CStringGetTextDatum(j->resource_id);
			if (SPI_execute_plan(job_plan(&key), &value, &null, true, 1) == SPI_OK_SELECT &&
				SPI_processed == 1)
			{
				char	   *u = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

				j->users = u ? MemoryContextStrdup(jobs_cxt, u) : NULL;
			}
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		/* the joins without a list are closed (ws_join_users_done) */
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
}

void
jobs_run_batch(void)
{
	Job		   *batch = job_head;
	Job		   *last = NULL;
	Job		   *deferred = NULL;
	Job		   *deferred_prev = NULL;
	int			n = 0;
	MemoryContext oldcxt = CurrentMemoryContext;

	if (batch == NULL)
		return;
	/*
	 * Take up to JOB_BATCH_MAX jobs off the queue.  Forwarding to NOTIFY
	 * listeners runs in transactions of its own: a full notification queue
	 * (a listener that stopped reading) fails them at commit, and must not
	 * fail client requests with them.
	 */
	for (Job *j = batch; j && n < JOB_BATCH_MAX; j = j->next)
	{
		if ((j->kind == JOB_NOTIFY) != (batch->kind == JOB_NOTIFY))
			break;
		last = j;
		n++;
	}
	job_head = last->next;
	if (job_head == NULL)
		job_tail = NULL;
	last->next = NULL;

	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		char	   *saved_lock_timeout = NULL;

		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "collab: running client requests");
		/*
		 * Forwarded events are already committed; a NOTIFY lost in a crash
		 * is lost to its listeners anyway.  Not waiting for the WAL flush
		 * keeps the forwarding off the clients' path.
		 */
		if (batch->kind == JOB_NOTIFY)
			(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
									 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

		for (Job *j = batch, *prev = NULL; j; prev = j, j = j->next)
		{
			ResourceOwner oldowner = CurrentResourceOwner;
			MemoryContext jobcxt = CurrentMemoryContext;

			if (j->sql == NULL)
				continue;

			/*
			 * Path locks are transaction locks: the jobs of a batch keep
			 * theirs until the batch commits.  A later job that waited for a
			 * lock could then close a cycle with any other transaction
			 * deciding about a path (a deadlock, the worker stalled until
			 * deadlock_timeout).  So only the first job may wait; a later
			 * one that would is put back at the head of the queue and runs
			 * first in the next batch.
			 */
			if (j != batch && saved_lock_timeout == NULL)
			{
				saved_lock_timeout = pstrdup(GetConfigOption("lock_timeout", false, false));
				(void) set_config_option("lock_timeout", "1", PGC_SUSET,
										 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
			}
			BeginInternalSubTransaction(NULL);
			MemoryContextSwitchTo(jobcxt);
			PG_TRY();
			{
				instr_time	t0,
							t1;

				INSTR_TIME_SET_CURRENT(t0);
				run_one_job(j);
				INSTR_TIME_SET_CURRENT(t1);
				INSTR_TIME_SUBTRACT(t1, t0);
				if (j->kind == JOB_CALL || j->kind == JOB_CONNECT)
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
				if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE && j != batch)
				{
					deferred = j;
					deferred_prev = prev;
				}
				else
					job_failed(j, edata);
			}
			PG_END_TRY();
			if (deferred)
				break;
		}
		if (saved_lock_timeout != NULL)
			(void) set_config_option("lock_timeout", saved_lock_timeout, PGC_SUSET,
									 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		if (deferred)
		{
			Job		   *tail = deferred;

			while (tail->next)
				tail = tail->next;
			deferred_prev->next = NULL;
			tail->next = job_head;
			job_head = deferred;
			if (job_tail == NULL)
				job_tail = tail;
		}

		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		collab_metrics->last_commit_us = lws_now_usecs();
	}
	PG_CATCH();
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
			j->err_code = "INTERNAL";
			j->err_message = "internal error; the request had no effect";
		}
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	/*
	 * Replies, after commit: only what is durable is acknowledged.  They are
	 * held in their connections' queues while the batch's events go out, so
	 * that a room hears of a join before the joiner's own answer (a list of
	 * every user in the room, twice) takes the socket and the joiner's CPU;
	 * the events for a requester queue behind its reply, in order.  That
	 * list is read only after the events have gone out (read_room_users):
	 * reading 1000 rows need not delay the room.
	 */
	for (Job *j = batch; j; j = j->next)
		if (j->conn)
			j->conn->held = true;
	for (Job *j = batch; j; j = j->next)
	{
		if (j->kind == JOB_SWEEP)
			worker_sweep_queued = false;
		reply_step(ws_job_done, j);
	}
	worker_drain_events();
	read_room_users(batch);
	for (Job *j = batch; j; j = j->next)
		if (j->users_pending)
			reply_step(ws_join_users_done, j);
	for (Job *j = batch; j; j = j->next)
		if (j->conn)
			reply_step(release_job_conn, j);
	if (job_head == NULL)
		MemoryContextReset(jobs_cxt);
}
