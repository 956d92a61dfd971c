/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The collab background worker: process lifecycle, the main loop, the
 *	  SQL job runner and the NOTIFY listener.
 *
 * The main loop alternates one pass of the event loop (libev, which
 * libwebsockets joins), whose libwebsockets callbacks (ws_session.c) only
 * parse, validate and queue jobs, with running the queued jobs.  A batch of jobs runs in one transaction with a
 * subtransaction per job, so one commit (and one WAL flush) serves many
 * clients and one failing job cannot harm the others.  Committed events
 * reach the worker through the shared-memory event queue (event_queue.c),
 * whose eventfd libwebsockets polls; the worker fans them out to its rooms
 * and forwards them to NOTIFY listeners in its next batch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "collab.h"
#include "event_queue.h"
#include "metrics.h"
#include "worker.h"

PGDLLEXPORT void collab_worker_main(Datum main_arg);

/* Jobs run in one transaction at most this many at a time. */
#define JOB_BATCH_MAX	64

struct lws_context *worker_context = NULL;
struct ev_loop *worker_loop = NULL;
MemoryContext worker_jobs_cxt = NULL;
JwtConfig	worker_jwt;
char	   *worker_name = NULL;
int			worker_slot = 0;

static volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t got_sighup = false;
static volatile bool events_readable = false;
static volatile bool postmaster_gone = false;

static Job *job_head = NULL;
static Job *job_tail = NULL;
static bool sweep_queued = false;

static lws_sorted_usec_list_t sweep_sul;
static ev_timer tick_timer;

static void
worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	if (worker_context)
		lws_cancel_service(worker_context);
	SetLatch(MyLatch);
	errno = save_errno;
}

static void
worker_sighup(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sighup = true;
	if (worker_context)
		lws_cancel_service(worker_context);
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Register the worker(s).  Called from _PG_init in the postmaster.
 */
void		collab_register_workers(void);

void
collab_register_workers(void)
{
	BackgroundWorker worker;

	for (int i = 1; i <= collab_workers; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "collab");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "collab_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "collab worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "collab worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

int64
worker_now_unix(void)
{
	return (int64) time(NULL);
}

void
worker_queue_job(Job *job)
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

/* (Re)load the JWT verification settings. */
static void
load_jwt_config(void)
{
	if (worker_jwt.public_key)
		EVP_PKEY_free(worker_jwt.public_key);
	memset(&worker_jwt, 0, sizeof(worker_jwt));
	worker_jwt.hs_secret = collab_jwt_secret;
	worker_jwt.hs_secret_len = collab_jwt_secret ? strlen(collab_jwt_secret) : 0;
	if (worker_jwt.hs_secret_len == 0)
		worker_jwt.hs_secret = NULL;
	else if (worker_jwt.hs_secret_len < JWT_HS256_MIN_SECRET_LEN)
		ereport(WARNING,
				(errmsg("collab.jwt_secret is shorter than %d bytes", JWT_HS256_MIN_SECRET_LEN),
				 errhint("Use a random secret of at least 32 bytes.")));
	worker_jwt.issuer = (collab_jwt_issuer && *collab_jwt_issuer) ? collab_jwt_issuer : NULL;
	worker_jwt.audience = (collab_jwt_audience && *collab_jwt_audience) ? collab_jwt_audience : NULL;
	worker_jwt.leeway_s = collab_jwt_leeway;
	if (collab_jwt_public_key_file && *collab_jwt_public_key_file)
	{
		char	   *perr = NULL;

		worker_jwt.public_key = jwt_load_public_key_pem(collab_jwt_public_key_file, &perr);
		if (worker_jwt.public_key == NULL)
			ereport(WARNING,
					(errmsg("could not load collab.jwt_public_key_file \"%s\": %s",
							collab_jwt_public_key_file, perr ? perr : "unknown error"),
					 errdetail("RS256 and ES256 tokens are refused until the key loads.")));
	}
	if (worker_jwt.hs_secret == NULL && worker_jwt.public_key == NULL)
		ereport(WARNING,
				(errmsg("neither collab.jwt_secret nor collab.jwt_public_key_file is set"),
				 errdetail("Every WebSocket connection will be refused.")));
}

/* ----------------------------------------------------------------
 * SQL jobs
 * ---------------------------------------------------------------- */

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
			job->result = MemoryContextStrdup(worker_jobs_cxt, v);
		if (desc->natts >= 2)
		{
			char	   *t = SPI_getvalue(tup, desc, 2);

			job->token = t ? MemoryContextStrdup(worker_jobs_cxt, t) : NULL;
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
		job->err_message = MemoryContextStrdup(worker_jobs_cxt, edata->message);
	}
	else
	{
		/* unexpected: log it in full, tell the client nothing internal */
		ereport(LOG,
				(errmsg("collab worker job failed: %s", edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0));
		job->err_code = "INTERNAL";
		job->err_message = MemoryContextStrdup(worker_jobs_cxt,
											   "internal error; the request had no effect");
	}
}

static void drain_events(void);

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

/* The end of a job's hold on its connection (see run_jobs). */
static void
release_job_conn(Job *job)
{
	/* may free a closed connection once nothing refers to it */
	job->conn->pending_jobs--;
	ws_release_held(job->conn);
}

/*
 * The user lists of a batch's joins, read once the batch's events have gone
 * out (see run_jobs), in a read-only transaction of their own.  A list read
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

				j->users = u ? MemoryContextStrdup(worker_jobs_cxt, u) : NULL;
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

static void
run_jobs(void)
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

				MemoryContextSwitchTo(worker_jobs_cxt);
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

		MemoryContextSwitchTo(worker_jobs_cxt);
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
			sweep_queued = false;
		reply_step(ws_job_done, j);
	}
	drain_events();
	read_room_users(batch);
	for (Job *j = batch; j; j = j->next)
		if (j->users_pending)
			reply_step(ws_join_users_done, j);
	for (Job *j = batch; j; j = j->next)
		if (j->conn)
			reply_step(release_job_conn, j);
	if (job_head == NULL)
		MemoryContextReset(worker_jobs_cxt);
}

/* ----------------------------------------------------------------
 * Timers and foreign descriptors
 * ---------------------------------------------------------------- */

/* The forwarding worker (see event_queue.c) also sweeps: one sweep per server. */
static void
sweep_timer_cb(lws_sorted_usec_list_t *sul)
{
	if (!sweep_queued && event_queue_is_forwarder())
	{
		Job		   *job = MemoryContextAllocZero(worker_jobs_cxt, sizeof(Job));

		job->kind = JOB_SWEEP;
		job->sql = "SELECT count(*)::text FROM collab.sweep()";
		job->ack_id = -1;
		worker_queue_job(job);
		sweep_queued = true;
	}
	lws_sul_schedule(worker_context, 0, &sweep_sul, sweep_timer_cb,
					 (lws_usec_t) collab_sweep_interval_ms * 1000);
}

/*
 * libwebsockets 4.1 re-arms its libev timer only after I/O callbacks, and
 * not reliably when an earlier deadline is added: this tick wakes its loop
 * (through its cancel pipe, an I/O callback) so that connection timers and
 * the sweep run at most TICK_MS late.
 */
#define TICK_MS		50

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	lws_cancel_service(worker_context);
}

/* Callback for the adopted descriptors: the libpq socket and the postmaster pipe. */
int
collab_fd_callback(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	switch (reason)
	{
		case LWS_CALLBACK_RAW_RX_FILE:
			if (lws_get_opaque_user_data(wsi) == (void *) 1)
				events_readable = true;
			else
				postmaster_gone = true;
			break;
		case LWS_CALLBACK_RAW_CLOSE_FILE:
			if (lws_get_opaque_user_data(wsi) != (void *) 1)
				postmaster_gone = true;
			break;
		default:
			break;
	}
	return 0;
}

static void
adopt_fd(struct lws_vhost *vh, int fd, void *tag)
{
	lws_sock_file_fd_type u;
	struct lws *wsi;

	/* lws closes what it adopts: give it a duplicate */
	u.filefd = dup(fd);
	if (u.filefd < 0)
		elog(ERROR, "could not duplicate descriptor: %m");
	wsi = lws_adopt_descriptor_vhost(vh, LWS_ADOPT_RAW_FILE_DESC, u, "collab-fd", NULL);
	if (wsi == NULL)
		elog(ERROR, "could not adopt descriptor into the event loop");
	lws_set_opaque_user_data(wsi, tag);
}

/*
 * Fans out one committed payload to our connections, and, in the
 * forwarding worker, queues it for NOTIFY listeners.
 */
static void
dispatch_payload(const char *payload, bool forwarder, void *arg)
{
	Job		   *job;

	PG_TRY();
	{
		rooms_dispatch_notification(payload, forwarder);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();

	if (!forwarder)
		return;
	job = MemoryContextAllocZero(worker_jobs_cxt, sizeof(Job));
	job->kind = JOB_NOTIFY;
	job->ack_id = -1;
	job->sql = "SELECT pg_catalog.pg_notify('" COLLAB_EVENT_CHANNEL "', $1)::text";
	job->nargs = 1;
	job->args[0] = MemoryContextStrdup(worker_jobs_cxt, payload);
	worker_queue_job(job);
}

static void
drain_events(void)
{
	events_readable = false;
	(void) event_queue_drain(dispatch_payload, NULL);
	if (event_queue_take_overflow())
	{
		/*
		 * Events went past the full queue: our clients missed some.  Close
		 * every connection; clients reconnect and join again with fresh state.
		 */
		dlist_iter	it;

		ereport(WARNING,
				(errmsg("collab event queue overflowed; closing %d connections so that they resynchronize",
						ws_conn_count)));
		dlist_foreach(it, &ws_all_conns)
		{
			Conn	   *conn = dlist_container(Conn, all_node, it.cur);

			ws_close_after_flush(conn, LWS_CLOSE_STATUS_GOINGAWAY);
		}
	}
}

static void
detach_event_queue(int code, Datum arg)
{
	event_queue_detach();
}

/* Waits until CREATE EXTENSION collab has run in our database. */
static void
wait_for_extension(void)
{
	bool		logged = false;

	for (;;)
	{
		bool		found;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'collab'", true, 1);
		found = SPI_processed == 1;
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (found)
			return;
		if (!logged)
			ereport(LOG,
					(errmsg("collab worker waits for CREATE EXTENSION collab in database \"%s\"",
							collab_database)));
		logged = true;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 2000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (got_sigterm)
			proc_exit(1);
		if (got_sighup)
		{
			got_sighup = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * Connections of our previous incarnation are gone: release what they
 * held.  Worker 1 also releases those of workers that collab.workers no
 * longer runs.
 */
static void
release_previous_incarnation(void)
{
	int			n = 0;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	{
		Oid			types[2] = {TEXTOID, INT4OID};
		Datum		values[2] = {CStringGetTextDatum(worker_name), Int32GetDatum(collab_workers)};
		char		nulls[2] = {' ', worker_slot == 0 ? ' ' : 'n'};

		if (SPI_execute_with_args("SELECT collab.ws_worker_start($1, $2)", 2, types, values,
								  nulls, false, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			n = isnull ? 0 : DatumGetInt32(d);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (n > 0)
		ereport(LOG, (errmsg("collab worker released %d connection(s) of its previous run", n)));
}

/*
 * Checks the TLS files before libwebsockets sees them, so that a mistake is
 * reported in PostgreSQL's terms.  These settings need a server restart, so
 * a worker restarted every second could only fill the log: on a mistake it
 * stops for good (exit code 0) until the server is restarted.
 */
static void
check_tls_files(void)
{
	const char *cert = collab_ssl_cert_file;
	const char *key = collab_ssl_key_file;
	const char *problem = NULL;
	struct stat st;
	SSL_CTX    *ctx;
	char		sslerr[256] = "";

	if (cert == NULL || *cert == '\0')
	{
		if (key && *key)
			problem = "collab.ssl_key_file is set but collab.ssl_cert_file is not";
	}
	else if (key == NULL || *key == '\0')
		problem = "collab.ssl_cert_file is set but collab.ssl_key_file is not";
	else if (stat(key, &st) != 0)
		problem = psprintf("could not access collab.ssl_key_file \"%s\": %m", key);
	else if (!S_ISREG(st.st_mode))
		problem = psprintf("collab.ssl_key_file \"%s\" is not a regular file", key);
	/* as PostgreSQL's own ssl_key_file: private to us, or root's and 0640 */
	else if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
			 (st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		problem = psprintf("collab.ssl_key_file \"%s\" has group or world access", key);
	else if ((ctx = SSL_CTX_new(TLS_server_method())) != NULL)
	{
		if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
			problem = psprintf("could not load collab.ssl_cert_file \"%s\"", cert);
		else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
			problem = psprintf("could not load collab.ssl_key_file \"%s\"", key);
		else if (SSL_CTX_check_private_key(ctx) != 1)
			problem = "collab.ssl_key_file does not match collab.ssl_cert_file";
		if (problem)
			ERR_error_string_n(ERR_get_error(), sslerr, sizeof(sslerr));
		ERR_clear_error();
		SSL_CTX_free(ctx);
	}
	if (problem == NULL)
		return;
	ereport(LOG,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("collab worker cannot serve wss: %s", problem),
			 sslerr[0] ? errdetail("%s", sslerr) : 0,
			 errhint("Fix the TLS settings and restart the server; the worker stays stopped until then."),
			 errhidestmt(true)));
	proc_exit(0);
}

/*
 * Each connection is a descriptor.  The postmaster's soft limit is often
 * 1024 (systemd's default) under a much higher hard limit: raise ours to what
 * collab.max_connections needs, as far as the hard limit allows.
 */
static void
raise_descriptor_limit(void)
{
	struct rlimit rl;
	rlim_t		want = (rlim_t) collab_max_connections + 256;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
		ereport(WARNING,
				(errmsg("collab.max_connections (%d) needs about %lu descriptors, the worker may open %lu",
						collab_max_connections, (unsigned long) want, (unsigned long) rl.rlim_max),
				 errhint("Raise the server's hard limit on open files (LimitNOFILE in its systemd unit).")));
	rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) ? want : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		ereport(WARNING, (errmsg("could not raise the worker's limit on open files: %m")));
}

/*
 * The libwebsockets context on our libev loop, with one vhost that adopts
 * the connections listen.c accepts.
 */
static struct lws_vhost *
create_context(void)
{
	struct lws_context_creation_info info;
	struct lws_vhost *vh;

	/*
	 * An epoll loop (libev) of our own rather than lws's poll() loop:
	 * poll() scans every connection on every pass, which with thousands of
	 * connections costs each request more than its SQL.  The loop is
	 * "foreign" to lws, so that we run it one pass at a time.
	 */
	worker_loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOSIGMASK);
	if (worker_loop == NULL)
		worker_loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (worker_loop == NULL)
		ereport(ERROR, (errmsg("collab worker could not create its event loop")));
	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
		LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
		LWS_SERVER_OPTION_LIBEV;
	info.foreign_loops = (void **) &worker_loop;
	info.gid = -1;
	info.uid = -1;
	/*
	 * A header buffer for every connection that may be upgrading, and a
	 * short deadline for its headers: with a small fixed pool, a few dozen
	 * sockets sending their request slowly would block every new client.
	 */
	info.max_http_header_pool2 = (unsigned int) Min(collab_max_connections, 4096);
	info.timeout_secs_ah_idle = 5;
	/* large replies (a room's user list) go out in big chunks */
	info.pt_serv_buf_size = 64 * 1024;
	/*
	 * Room in lws's descriptor table beyond collab.max_connections, so that
	 * a burst of connections is adopted and then refused with a close (see
	 * ws_session.c) rather than dropped at adoption.  The open-files limit
	 * bounds what we accept anyway.
	 */
	info.fd_limit_per_thread = (unsigned int) collab_max_connections + 4096;
	info.timeout_secs = 10;
	if (collab_ssl_cert_file && *collab_ssl_cert_file)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	lws_set_log_level(LLL_ERR, NULL);
	worker_context = lws_create_context(&info);
	if (worker_context == NULL)
		ereport(ERROR, (errmsg("collab worker could not create its event loop")));

	info.options &= ~LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	/* listen.c listens; this vhost serves what it accepts */
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.vhost_name = "collab";
	info.protocols = ws_protocols();
	if (collab_ssl_cert_file && *collab_ssl_cert_file)
	{
		info.ssl_cert_filepath = collab_ssl_cert_file;
		info.ssl_private_key_filepath = collab_ssl_key_file;
		/* HTTP/1.1 only: lws 4.1 truncates large single writes on h2 streams */
		info.alpn = "http/1.1";
	}
	vh = lws_create_vhost(worker_context, &info);
	if (vh == NULL)
		ereport(ERROR,
				(errmsg("collab worker could not set up its WebSocket server"),
				 errhint("Check the TLS files.")));
	return vh;
}

void
collab_worker_main(Datum main_arg)
{
	struct lws_vhost *vh;
	MemoryContext loopcxt;

	pqsignal(SIGTERM, worker_sigterm);
	pqsignal(SIGHUP, worker_sighup);
	BackgroundWorkerUnblockSignals();

	worker_slot = DatumGetInt32(main_arg) - 1;
	worker_name = psprintf("collab worker %d", DatumGetInt32(main_arg));
	BackgroundWorkerInitializeConnection(collab_database, NULL, 0);
	SetConfigOption("application_name", "collab worker", PGC_USERSET, PGC_S_SESSION);
	pgstat_report_appname("collab worker");

	worker_jobs_cxt = AllocSetContextCreate(TopMemoryContext, "collab worker jobs",
											ALLOCSET_DEFAULT_SIZES);
	loopcxt = AllocSetContextCreate(TopMemoryContext, "collab worker loop",
									ALLOCSET_DEFAULT_SIZES);
	rooms_init();

	wait_for_extension();
	release_previous_incarnation();
	collab_metrics->last_commit_us = lws_now_usecs();
	load_jwt_config();
	check_tls_files();

	raise_descriptor_limit();
	vh = create_context();
	before_shmem_exit(detach_event_queue, (Datum) 0);
	if (!event_queue_attach(worker_slot))
		ereport(ERROR,
				(errmsg("collab worker has no event queue"),
				 errdetail("The server could not create the worker's eventfd at start.")));
	metrics_attach(worker_slot);
	adopt_fd(vh, event_queue_wake_fd(worker_slot), (void *) 1);
	adopt_fd(vh, postmaster_alive_fds[POSTMASTER_FD_WATCH], (void *) 2);
	listen_start(worker_loop, vh);
	lws_sul_schedule(worker_context, 0, &sweep_sul, sweep_timer_cb,
					 (lws_usec_t) collab_sweep_interval_ms * 1000);
	ev_timer_init(&tick_timer, tick_cb, TICK_MS / 1000.0, TICK_MS / 1000.0);
	ev_timer_start(worker_loop, &tick_timer);

	ereport(LOG,
			(errmsg("%s listening on %s port %d for database \"%s\"",
					worker_name, collab_listen_addresses,
					collab_port, collab_database)));

	while (!got_sigterm && !postmaster_gone)
	{
		bool		worked;

		MemoryContextSwitchTo(loopcxt);
		metrics_publish_gauges();
		/* one pass: wait for some I/O or timer, run its callbacks */
		ev_run(worker_loop, EVRUN_ONCE);
		MemoryContextSwitchTo(loopcxt);

		if (got_sighup)
		{
			got_sighup = false;
			ProcessConfigFile(PGC_SIGHUP);
			load_jwt_config();
		}
		/* events of other sessions, then our own jobs (each batch drains its events) */
		worked = events_readable || job_head != NULL;
		drain_events();
		while (job_head != NULL && !got_sigterm)
			run_jobs();
		/* timers that job replies set out here: let lws arm its timer */
		if (worked)
			lws_cancel_service(worker_context);
		MemoryContextReset(loopcxt);
	}

	if (postmaster_gone)
		proc_exit(1);

	/*
	 * Clean shutdown.  Finish the requests in hand and forward what is in
	 * the ring, then stop reading it, so that the events of the release
	 * below go to the other workers or, with none running, straight to
	 * NOTIFY.  Then close every socket and release what they held, in one
	 * transaction rather than a disconnect job each.
	 */
	listen_stop(worker_loop);
	PG_TRY();
	{
		drain_events();
		while (job_head != NULL)
			run_jobs();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
	event_queue_detach();
	lws_context_destroy(worker_context);
	worker_context = NULL;
	ev_timer_stop(worker_loop, &tick_timer);
	ev_loop_destroy(worker_loop);
	worker_loop = NULL;
	job_head = job_tail = NULL;
	PG_TRY();
	{
		release_previous_incarnation();
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
	/* exit code 1: the postmaster restarts us unless it is shutting down */
	proc_exit(1);
}
