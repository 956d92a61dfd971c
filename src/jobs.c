/*-------------------------------------------------------------------------
 *
 * jobs.c
 *	  The worker's queue of SQL jobs, the batches that run them, and the
 *	  jobs parked because something they need is busy.
 *
 * A batch of jobs runs in one transaction with a subtransaction per job,
 * so one commit (and one WAL flush) serves many clients and one failing
 * job cannot harm the others.  After the commit each job's done callback
 * gets its answer; what a job is for is its queuer's business.
 *
 * A reply acknowledges only what is durable, with one exception the
 * deployment chooses.  A batch whose every job allows it (events_first: a
 * viewer's join, whose only logged write is its access-trail entry)
 * commits without waiting for its WAL flush: its events go out to the
 * rooms first, then the flush (and, with synchronous replication, the
 * standby) is waited for, and only then are the replies sent, so that a
 * join's content leaves the server only once its entry is durable and the
 * room does not wait for the disk.  A batch of lock decisions alone
 * (grant: lock:acquire, lock:request) does not wait for its flush at all,
 * unless collab.synchronous_grants is on or synchronous standbys are
 * named: tokens.c flushes the WAL record behind each token first, so a
 * crash can undo such a grant but never hand its token out again, and a
 * save under it flushes it with its own commit.  Other batches wait for
 * the flush at commit, which costs a save less than an asynchronous commit
 * and a flush afterwards (the commit wakes the WAL writer).  A crash before
 * the flush ends every connection anyway.
 *
 * Every client is served by the one event loop that runs these batches,
 * so no job may wait for another session.  The worker takes path locks
 * without waiting (lock_path.c), every other lock with lock_timeout 1 ms
 * (set for the worker's whole session, worker.c), and each statement has
 * a deadline (jobs_deadline_arm).  A job whose statement found a lock busy
 * rolled back with its subtransaction and changed nothing: it is parked,
 * and tried again after a backoff (2, 4, 8 ... 50 ms) once the lock it met
 * can be had, until collab.request_timeout, when it is answered BUSY.
 * Jobs that must not be lost (what a closed connection held, events for
 * NOTIFY listeners) are tried until they run.  A connection's jobs keep
 * their order: while one of them is parked, the ones after it wait behind
 * it, and other connections' jobs go on; events forwarded to NOTIFY
 * listeners keep their order alike.  Parking is the one place that decides
 * what becomes of a job that cannot run now.
 *
 * Jobs are allocated in generations of memory: all jobs queued between two
 * moments when the queue is empty share one context, freed once its last
 * job is answered, so that a job parked for long keeps only its own
 * generation alive.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "replication/syncrep.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "collab.h"
#include "conn.h"
#include "jobs.h"
#include "metrics.h"

/* Jobs run in one transaction at most this many at a time. */
#define JOB_BATCH_MAX	64

/*
 * A batch takes no more jobs once it has run this long, so that the event
 * loop gets back to its sockets between batches, or once its answers take
 * this much memory (a join's carries the resource's content), so that they
 * are sent and freed before more are read.
 */
#define JOB_BATCH_BUDGET_US		(50 * 1000)
#define JOB_BATCH_BUDGET_BYTES	(8 * 1024 * 1024)

/* A parked job is tried again after 2, 4, 8 ... ms, at most 50 ms apart. */
#define RETRY_FIRST_US	2000
#define RETRY_MAX_US	(50 * 1000)

/* The deadline of one statement: collab.request_timeout, at most this. */
#define STATEMENT_TIMEOUT_MAX_MS	1000

#define BUSY_MESSAGE "another transaction held what this request needs for longer than " \
	"collab.request_timeout; the request had no effect and may be retried"
#define TIMEOUT_MESSAGE "the request ran past its deadline and was stopped; " \
	"it had no effect and may be retried"
#define BUSY_NOW_MESSAGE "another transaction holds what this request needs; " \
	"it had no effect"

/* What became of a job's statement in its batch. */
typedef enum JobOutcome
{
	JOB_RAN,
	JOB_FAILED,					/* err_code and err_message say why */
	JOB_BLOCKED					/* a lock was busy: it changed nothing */
} JobOutcome;

/* The memory of the jobs queued between two moments of an empty queue. */
typedef struct JobGen
{
	MemoryContext cxt;
	int			live;			/* its jobs queued and not yet answered */
} JobGen;

static JobGen *cur_gen = NULL;

/* The end of the last batch's commit record, if it wrote WAL (see reply). */
static XLogRecPtr batch_commit_lsn = InvalidXLogRecPtr;

/* Jobs to run, in order */
static Job *job_head = NULL;
static Job *job_tail = NULL;

/* Parked jobs, in order; park_next: the earliest retry_at among them */
static Job *park_head = NULL;
static Job *park_tail = NULL;
static int	nparked = 0;
static int64 park_next = 0;
static uint64 retry_pass = 0;

/* Events forwarded to NOTIFY listeners (jobs of their own batch) keep their order too. */
static JobOrder forward_order;

/* The worker's fan-out of committed events, run before replies are released. */
static void (*fan_out_hook) (void) = NULL;

static JobGen *
new_gen(void)
{
	JobGen	   *g = MemoryContextAllocZero(TopMemoryContext, sizeof(JobGen));

	g->cxt = AllocSetContextCreate(TopMemoryContext, "collab worker jobs",
								   ALLOCSET_DEFAULT_SIZES);
	return g;
}

void
jobs_init(void (*fan_out) (void))
{
	cur_gen = new_gen();
	fan_out_hook = fan_out;
}

/*
 * A new job of size bytes (a Job, or a struct that starts with one), zeroed,
 * living until it has been answered.
 */
Job *
job_new(Size size, const char *sql, Conn *conn, JobCallback done)
{
	Job		   *job;

	Assert(size >= sizeof(Job));
	job = MemoryContextAllocZero(cur_gen->cxt, size);
	job->sql = sql;
	job->conn = conn;
	job->done = done;
	job->gen = cur_gen;
	return job;
}

/* Copies for the arguments and fields of the job just made, living as long as it. */
char *
job_strdup(const char *s)
{
	return MemoryContextStrdup(cur_gen->cxt, s);
}

char *
job_strndup(const char *s, Size len)
{
	char	   *copy = MemoryContextAlloc(cur_gen->cxt, len + 1);

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
	job->then_arg = MemoryContextStrdup(job->gen->cxt, arg);
	job->then_done = done;
}

static void
append(Job **head, Job **tail, Job *job)
{
	job->next = NULL;
	if (*tail)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

/*
 * job has been answered: its generation may go, and its arguments and
 * answers (a save's content, a join's) are freed now rather than with it.
 */
static void
job_finished(Job *job)
{
	JobGen	   *g = job->gen;

	for (int i = 0; i < job->nargs; i++)
		if (job->args[i])
			pfree(job->args[i]);
	if (job->result)
		pfree(job->result);
	if (job->result2)
		pfree(job->result2);
	if (job->then_result)
		pfree(job->then_result);
	if (job->then_arg)
		pfree(job->then_arg);

	if (--g->live > 0 || g == cur_gen)
		return;
	MemoryContextDelete(g->cxt);
	pfree(g);
}

/* ----------------------------------------------------------------
 * Parking
 * ---------------------------------------------------------------- */

/* The stream whose order job keeps: its connection's, or the forwarding's. */
static JobOrder *
order_of(Job *job)
{
	if (job->conn)
		return &job->conn->job_order;
	if (job->own_batch)
		return &forward_order;
	return NULL;
}

/*
 * Parks job: behind, to wait for its connection's parked job before it;
 * otherwise to be tried again after the next step of its backoff.
 */
static void
park(Job *job, bool behind)
{
	if (behind)
		job->retry_at = 0;
	else
	{
		int64		delay = Min((int64) RETRY_FIRST_US << Min(job->attempts, 10), RETRY_MAX_US);

		job->attempts++;
		job->retry_at = lws_now_usecs() + delay;
		if (park_next == 0 || job->retry_at < park_next)
			park_next = job->retry_at;
		collab_metrics->requests_parked++;
	}
	append(&park_head, &park_tail, job);
	nparked++;
	if (order_of(job))
		order_of(job)->parked++;
}

void
jobs_queue(Job *job)
{
	job->queued_at = lws_now_usecs();
	job->gen->live++;
	if (job->conn)
		conn_pin(job->conn);
	/* a connection's jobs run in order */
	if (order_of(job) && order_of(job)->parked > 0)
		park(job, true);
	else
		append(&job_head, &job_tail, job);
}

/* Are jobs waiting to run now (parked ones are not)? */
bool
jobs_pending(void)
{
	return job_head != NULL;
}

/* How many jobs are parked. */
int
jobs_parked(void)
{
	return nparked;
}

/* When a parked job is due to be tried again (lws_now_usecs() time), 0 for none. */
int64
jobs_next_retry(void)
{
	return park_next;
}

/*
 * conn has closed: its parked requests will never be read, and are
 * answered BUSY at the next retry (nobody hears it), so that what must
 * follow them (releasing what it held) runs at once.
 */
void
jobs_abandon(Conn *conn)
{
	for (Job *j = park_head; j; j = j->next)
		if (j->conn == conn && j->retry == JOB_RETRY_UNTIL_TIMEOUT)
		{
			j->abandoned = true;
			j->retry_at = 1;
			park_next = 1;
		}
}

/*
 * Has a parked job waited as long as it may?  Only one that found a lock
 * busy itself: a job that waited behind another of its connection is
 * tried once when its turn comes, and answered BUSY if it then has to wait.
 */
static bool
out_of_time(Job *job, int64 now)
{
	if (job->retry != JOB_RETRY_UNTIL_TIMEOUT)
		return false;
	return job->abandoned ||
		(job->attempts > 0 && now - job->queued_at >= (int64) collab_request_timeout_ms * 1000);
}

static void reply(Job *batch);

/*
 * Parked jobs whose time has come: the first parked job of each
 * connection (and every job without one) is answered BUSY if it has waited
 * too long, stays parked if the lock it met is still busy, or goes back
 * to the head of the queue, with the jobs of its connection behind it.
 */
void
jobs_retry_due(void)
{
	int64		now = lws_now_usecs();
	Job		   *keep_head = NULL,
			   *keep_tail = NULL,
			   *run_head = NULL,
			   *run_tail = NULL,
			   *busy_head = NULL,
			   *busy_tail = NULL;
	int64		next_due = 0;
	Job		   *next;

	if (park_head == NULL || park_next == 0 || now < park_next)
		return;
	retry_pass++;
	for (Job *j = park_head; j; j = next)
	{
		JobOrder   *o = order_of(j);
		bool		run;

		next = j->next;
		if (o && o->retry_pass == retry_pass)
			run = o->retry_moving;	/* behind the first parked job of its stream */
		else
		{
			if (j->retry_at > now)
				run = false;
			else if (out_of_time(j, now))
			{
				/* the next parked job of its stream comes first now */
				nparked--;
				if (o)
					o->parked--;
				j->failed = true;
				j->err_code = CE_BUSY;
				j->err_message = BUSY_MESSAGE;
				append(&busy_head, &busy_tail, j);
				collab_metrics->requests_busy++;
				continue;
			}
			else if (!collab_blocker_gone(&j->blocker))
			{
				int64		delay = Min((int64) RETRY_FIRST_US << Min(j->attempts, 10), RETRY_MAX_US);

				j->attempts++;
				j->retry_at = now + delay;
				run = false;
			}
			else
				run = true;
			if (o)
			{
				o->retry_pass = retry_pass;
				o->retry_moving = run;
			}
		}
		if (run)
		{
			nparked--;
			if (o)
				o->parked--;
			append(&run_head, &run_tail, j);
		}
		else
		{
			append(&keep_head, &keep_tail, j);
			if (j->retry_at > 0 && (next_due == 0 || j->retry_at < next_due))
				next_due = j->retry_at;
		}
	}
	park_head = keep_head;
	park_tail = keep_tail;
	park_next = next_due;

	/* they go first: they are older than anything queued since */
	if (run_head)
	{
		run_tail->next = job_head;
		if (job_head == NULL)
			job_tail = run_tail;
		job_head = run_head;
	}
	if (busy_head)
		reply(busy_head);
}

/* Forgets every queued and parked job (at shutdown, once nothing is left to run them). */
void
jobs_discard(void)
{
	job_head = job_tail = NULL;
	park_head = park_tail = NULL;
	nparked = 0;
	park_next = 0;
	forward_order.parked = 0;
}

/* ----------------------------------------------------------------
 * Deadlines
 * ---------------------------------------------------------------- */

/* The deadline of one statement of the worker, in ms. */
int
jobs_statement_timeout_ms(void)
{
	return Min(collab_request_timeout_ms, STATEMENT_TIMEOUT_MAX_MS);
}

/*
 * A background worker's statements are not timed by statement_timeout
 * (only a client's are, in postgres.c): the timeout is armed here around
 * each statement, and a statement past it is cancelled as a client's
 * would be (ERRCODE_QUERY_CANCELED).
 */
void
jobs_deadline_arm(int ms)
{
	enable_timeout_after(STATEMENT_TIMEOUT, ms);
}

void
jobs_deadline_disarm(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	/* fired as the statement ended: there is nothing left to cancel */
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
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
		{
			job->result = MemoryContextStrdup(job->gen->cxt, v);
			pfree(v);
		}
		if (desc->natts >= 2)
		{
			char	   *t = SPI_getvalue(tup, desc, 2);

			job->result2 = t ? MemoryContextStrdup(job->gen->cxt, t) : NULL;
			if (t)
				pfree(t);
		}
	}
	/* an answer can be large (a join's): only the job's copy stays */
	SPI_freetuptable(SPI_tuptable);
}

static void
job_failed(Job *job, ErrorData *edata)
{
	job->failed = true;
	if (collab_error_of_sqlstate(edata->sqlerrcode, &job->err_code))
		job->err_message = MemoryContextStrdup(job->gen->cxt, edata->message);
	else if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
	{
		/* its deadline, or an administrator's cancel */
		ereport(LOG,
				(errmsg("collab worker stopped a request: %s", edata->message),
				 errdetail_internal("statement: %s", job->sql)));
		job->err_code = CE_BUSY;
		job->err_message = TIMEOUT_MESSAGE;
	}
	else if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE)
	{
		/* a job that is not tried again (JOB_RETRY_NEVER) found a lock busy */
		job->err_code = CE_BUSY;
		job->err_message = BUSY_NOW_MESSAGE;
	}
	else
	{
		/* unexpected: log it in full, tell the client nothing internal */
		ereport(LOG,
				(errmsg("collab worker job failed: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		job->err_code = CE_INTERNAL;
		job->err_message = "internal error; the request had no effect";
	}
}

/*
 * Runs job in a subtransaction of the batch's transaction, its statement
 * under its deadline.  A job that found a lock busy is rolled back and
 * reported as JOB_BLOCKED, with the lock in job->blocker when it is a
 * lock of collab's key space.
 */
static JobOutcome
run_in_subxact(Job *job)
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
		jobs_deadline_arm(jobs_statement_timeout_ms());
		run_statement(job);
		jobs_deadline_disarm();
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

		jobs_deadline_disarm();
		MemoryContextSwitchTo(job->gen->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(jobcxt);
		CurrentResourceOwner = oldowner;
		collab_take_blocker(&job->blocker);
		if (edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE && job->retry != JOB_RETRY_NEVER)
			outcome = JOB_BLOCKED;
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

/* Puts jobs (a list) back at the head of the queue, in their order. */
static void
requeue_first(Job *jobs)
{
	Job		   *tail = jobs;

	while (tail->next)
		tail = tail->next;
	tail->next = job_head;
	if (job_head == NULL)
		job_tail = tail;
	job_head = jobs;
}

/*
 * The batch's transaction: each job in its subtransaction, then the commit.
 * The jobs that ran (or failed) are appended to *ran, as they go, for the
 * replies or, should the commit fail, for fail_batch(); the ones that
 * found a lock busy are parked; past the batch's budget the rest go back
 * to the head of the queue.
 */
static void
run_batch(Job *batch, Job **ran_head, Job **ran_tail)
{
	int64		start = lws_now_usecs();
	Size		answers = 0;
	Job		   *next;
	bool		wrote_wal;
	bool		events_first;
	bool		lazy_grants;
	bool		lazy;

	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "collab: running client requests");

	/*
	 * Jobs of their own batch forward events that are already committed; a
	 * NOTIFY lost in a crash is lost to its listeners anyway, so they do not
	 * wait for the flush at all, nor do lock decisions that may go without
	 * it (see the top).  A batch of events_first jobs, such lock decisions
	 * among them or not, waits for it after its events have gone out
	 * (reply).
	 */
	batch_commit_lsn = InvalidXLogRecPtr;
	lazy_grants = !collab_synchronous_grants &&
		(SyncRepStandbyNames == NULL || SyncRepStandbyNames[0] == '\0');
	lazy = events_first = !batch->own_batch;
	for (Job *j = batch; j; j = j->next)
	{
		bool		lazy_grant = j->grant && lazy_grants;

		lazy &= lazy_grant;
		events_first &= j->events_first || lazy_grant;
	}
	events_first &= !lazy;
	if (batch->own_batch || events_first || lazy)
		(void) set_config_option("synchronous_commit", "off", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);

	for (Job *j = batch; j; j = next)
	{
		next = j->next;
		if (j->sql == NULL)
		{
			append(ran_head, ran_tail, j);
			continue;
		}
		if (order_of(j) && order_of(j)->parked > 0)
		{
			park(j, true);
			continue;
		}
		if (*ran_head != NULL &&
			(lws_now_usecs() - start > JOB_BATCH_BUDGET_US || answers > JOB_BATCH_BUDGET_BYTES))
		{
			requeue_first(j);
			break;
		}
		if (run_in_subxact(j) == JOB_BLOCKED)
			park(j, false);
		else
		{
			append(ran_head, ran_tail, j);
			answers += (j->result ? strlen(j->result) : 0) + (j->result2 ? strlen(j->result2) : 0);
		}
	}

	SPI_finish();
	PopActiveSnapshot();
	/* only a batch that changed logged data has something to flush */
	wrote_wal = XactLastRecEnd != InvalidXLogRecPtr;
	CommitTransactionCommand();
	if (wrote_wal && events_first)
		batch_commit_lsn = XactLastCommitEnd;
	collab_metrics->last_commit_us = lws_now_usecs();
}

/*
 * The batch's transaction failed (at commit, say): no job had an effect.
 * If the commit found a lock busy (lock_timeout), the jobs go to the head
 * of the parked ones, in order, to be tried again; otherwise they fail.
 * Returns the jobs to answer now.
 */
static Job *
fail_batch(Job *ran, int n, MemoryContext cxt)
{
	ErrorData  *edata;
	bool		retry;
	Job		   *answer_head = NULL,
			   *answer_tail = NULL;
	Job		   *again_head = NULL,
			   *again_tail = NULL;
	Job		   *next;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	jobs_deadline_disarm();
	retry = edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	ereport(LOG, (errmsg("collab worker batch of %d requests failed%s: %s", n,
						 retry ? " (tried again)" : "", edata->message)));
	for (Job *j = ran; j; j = next)
	{
		next = j->next;
		j->result = j->result2 = NULL;
		j->then_sql = NULL;
		j->failed = false;
		if (j->sql != NULL && retry && j->retry != JOB_RETRY_NEVER)
		{
			int64		delay = Min((int64) RETRY_FIRST_US << Min(j->attempts, 10), RETRY_MAX_US);

			j->attempts++;
			j->retry_at = lws_now_usecs() + delay;
			if (park_next == 0 || j->retry_at < park_next)
				park_next = j->retry_at;
			nparked++;
			if (order_of(j))
				order_of(j)->parked++;
			append(&again_head, &again_tail, j);
			continue;
		}
		if (j->sql != NULL)
		{
			j->failed = true;
			j->err_code = CE_INTERNAL;
			j->err_message = "internal error; the request had no effect";
		}
		append(&answer_head, &answer_tail, j);
	}
	/* before the jobs parked in the batch itself: a connection's order holds */
	if (again_head)
	{
		again_tail->next = park_head;
		if (park_head == NULL)
			park_tail = again_tail;
		park_head = again_head;
	}
	return answer_head;
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
/*
 * Runs body(arg) in a transaction of its own, connected to SPI and with a
 * snapshot, and commits; false if it raised an error, which is reported,
 * its transaction rolled back and the statement deadline disarmed.  For
 * the worker's work outside the batches: its start-up queries and the
 * follow-up queries of a batch.
 */
bool
jobs_in_transaction(void (*body) (void *arg), void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		StartTransactionCommand();
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		body(arg);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		jobs_deadline_disarm();
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	return ok;
}

/* The follow-up queries of a batch's jobs, in one transaction. */
static void
follow_ups(void *arg)
{
	for (Job *j = (Job *) arg; j; j = j->next)
	{
		Datum		value;
		char		null = ' ';
		int			rc;

		if (!j->then_sql)
			continue;
		value = CStringGetTextDatum(j->then_arg);
		jobs_deadline_arm(jobs_statement_timeout_ms());
		rc = SPI_execute_plan(statement_plan(j->then_sql, 1), &value, &null, true, 1);
		jobs_deadline_disarm();
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			char	   *u = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			j->then_result = u ? MemoryContextStrdup(j->gen->cxt, u) : NULL;
			if (u)
				pfree(u);
		}
		SPI_freetuptable(SPI_tuptable);
	}
}

static void
run_follow_ups(Job *batch)
{
	bool		any = false;

	for (Job *j = batch; j; j = j->next)
		if (j->then_sql)
			any = true;
	/* after an error the follow-ups get no result, and their callbacks say so */
	if (any)
		(void) jobs_in_transaction(follow_ups, batch);
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
	Job		   *next;

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
	for (Job *j = batch; j; j = next)
	{
		next = j->next;
		if (j->conn)
			reply_step(release_conn, j);
		job_finished(j);
	}
}

/* Runs the next batch of queued jobs and sends their replies. */
void
jobs_run_batch(void)
{
	Job		   *batch;
	Job		   *volatile ran_head = NULL;
	Job		   *volatile ran_tail = NULL;
	Job		   *answer;
	int			n;
	MemoryContext oldcxt = CurrentMemoryContext;

	if (job_head == NULL)
		return;
	batch = take_batch(&n);
	SetCurrentStatementStartTimestamp();
	PG_TRY();
	{
		run_batch(batch, (Job **) &ran_head, (Job **) &ran_tail);
		answer = ran_head;
	}
	PG_CATCH();
	{
		answer = fail_batch(ran_head, n, oldcxt);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	if (answer)
		reply(answer);

	/* a new generation once the queue is empty; the old one goes with its last job */
	if (job_head == NULL)
	{
		if (cur_gen->live == 0)
			MemoryContextReset(cur_gen->cxt);
		else
			cur_gen = new_gen();
	}
}
