/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The collab background worker: process lifecycle, the main loop, the
 *	  expiry sweep and the forwarding of events to NOTIFY listeners.
 *
 * The main loop alternates one pass of the event loop (libev, which
 * libwebsockets joins), whose callbacks (ws_transport.c, session.c) only
 * parse, validate and queue jobs, with running the queued jobs (jobs.c).
 * Committed events reach the worker through the shared-memory event queue
 * (event_queue.c), whose eventfd is part of the event loop; the worker fans
 * them out to its rooms (rooms.c) and, if it is the forwarding worker,
 * forwards them to NOTIFY listeners in a batch of their own.
 *
 * On a hot standby the worker starts too, and serves only /healthz and
 * /metrics (role.c); the main loop notices the promotion, does the
 * start-up work of a primary and serves from then on.
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
#include "access/xlog.h"
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

#include "access_live.h"
#include "collab.h"
#include "conn.h"
#include "eio.h"
#include "event_queue.h"
#include "jobs.h"
#include "jwt.h"
#include "listen.h"
#include "metrics.h"
#include "poll_http.h"
#include "relay.h"
#include "role.h"
#include "rooms.h"
#include "session.h"
#include "worker.h"
#include "ws_transport.h"

/*
 * The descriptors the worker adopts into the event loop besides its
 * connections, told apart by the opaque user data of their wsi.
 */
typedef enum WorkerFd
{
	FD_EVENT_QUEUE = 1,			/* the event queue's eventfd */
	FD_POSTMASTER				/* the postmaster-death pipe */
} WorkerFd;

static struct lws_context *worker_context = NULL;
static struct ev_loop *worker_loop = NULL;
static JwtConfig worker_jwt;
static char *worker_name = NULL;
static int	worker_slot = 0;		/* 0-based: collab worker <slot + 1> */

static volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t got_sighup = false;
static volatile bool events_readable = false;
static volatile bool postmaster_gone = false;

static bool sweep_queued = false;
static bool flush_queued = false;

static lws_sorted_usec_list_t sweep_sul;
static void sweep_timer_cb(lws_sorted_usec_list_t *sul);
static ev_timer tick_timer;
static ev_timer retry_timer;
static ev_timer hold_timer;
static bool hold_due = false;	/* hold_timer fired since the last drain */

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
void
collab_register_workers(void)
{
	BackgroundWorker worker;

	for (int i = 1; i <= collab_workers; i++)
	{
		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		/* on a hot standby too: it answers /healthz there (role.c) */
		worker.bgw_start_time = BgWorkerStart_ConsistentState;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "collab");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "collab_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "collab worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "collab worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
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
	worker_jwt.groups_claim = collab_jwt_groups_claim;
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

/*
 * With collab.access_control off every authenticated user may edit every
 * document: said at start, and at a reload that turns it off.
 */
static void
warn_if_access_control_off(void)
{
	static bool warned = false;

	if (collab_access_control)
	{
		warned = false;
		return;
	}
	if (warned)
		return;
	warned = true;
	ereport(WARNING,
			(errmsg("collab.access_control is off: every authenticated user may view and edit every document"),
			 errhint("Set collab.access_control = on and grant access with collab.grant().")));
}

/* ----------------------------------------------------------------
 * Timers and foreign descriptors
 * ---------------------------------------------------------------- */

/*
 * A sweep runs in the event loop, so it stops after SWEEP_BUDGET_MS, with
 * what it did committed; when it stopped there (thousands of connections
 * detached at once, say), the next one follows after SWEEP_AGAIN_MS, so
 * that the backlog shrinks while requests keep being served in between.
 */
#define SWEEP_BUDGET_MS		10
#define SWEEP_AGAIN_MS		20

static void
sweep_done(Job *job)
{
	sweep_queued = false;
	/* a busy lease is the next sweep's */
	if (job->failed)
		ereport(job->err_code == CE_BUSY ? DEBUG1 : LOG,
				(errmsg("collab lock sweep failed: %s", job->err_message)));
	else if (job->result && strcmp(job->result, "true") == 0)
		lws_sul_schedule(worker_context, 0, &sweep_sul, sweep_timer_cb,
						 (lws_usec_t) SWEEP_AGAIN_MS * 1000);
}

static void
flush_done(Job *job)
{
	flush_queued = false;
	if (job->failed)
		ereport(LOG, (errmsg("collab worker could not write its counts of refusals: %s",
							 job->err_message)));
}

/* Counts of sampled refusals whose second has ended go to their trails (sampling.c). */
static void
flush_refusals(void)
{
	Job		   *job;

	if (flush_queued || role_is_standby() || !collab_refusals_due(GetCurrentTimestamp()))
		return;
	job = job_new(sizeof(Job), "SELECT collab._flush_sampled_refusals()::text", NULL, flush_done);
	job->retry = JOB_RETRY_NEVER;
	jobs_queue(job);
	flush_queued = true;
}

/* The forwarding worker (see event_queue.c) also sweeps: one sweep per server. */
static void
sweep_timer_cb(lws_sorted_usec_list_t *sul)
{
	if (!sweep_queued && !role_is_standby() && event_queue_is_forwarder())
	{
		Job		   *job = job_new(sizeof(Job),
									  "SELECT collab._sweep_until(clock_timestamp() + interval '"
									  CppAsString2(SWEEP_BUDGET_MS) " ms')::text",
									  NULL, sweep_done);

		/* a busy lease is left to the next sweep */
		job->retry = JOB_RETRY_NEVER;
		jobs_queue(job);
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

/* A parked job is due: the loop only has to wake up (see serve). */
static void
retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* A held worker reads the event queue again (drain_events). */
static void
hold_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	hold_due = true;
}

/* Wakes the loop when the next parked job is due. */
static void
schedule_retry(void)
{
	int64		due = jobs_next_retry();

	ev_timer_stop(worker_loop, &retry_timer);
	if (due == 0)
		return;
	ev_timer_set(&retry_timer, Max(due - lws_now_usecs(), 0) / 1e6, 0.0);
	ev_timer_start(worker_loop, &retry_timer);
}

static WorkerFd
fd_of(struct lws *wsi)
{
	return (WorkerFd) (intptr_t) lws_get_opaque_user_data(wsi);
}

/* Callback for the adopted descriptors: the event queue and the postmaster pipe. */
static int
fd_callback(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	switch (reason)
	{
		case LWS_CALLBACK_RAW_RX_FILE:
			if (fd_of(wsi) == FD_EVENT_QUEUE)
				events_readable = true;
			else
				postmaster_gone = true;
			break;
		case LWS_CALLBACK_RAW_CLOSE_FILE:
			if (fd_of(wsi) != FD_EVENT_QUEUE)
				postmaster_gone = true;
			break;
		default:
			break;
	}
	return 0;
}

/* The protocols of the vhost: the port's connections, and fd_callback's. */
static const struct lws_protocols protocols[] = {
	WS_TRANSPORT_PROTOCOL,
	{"collab-fd", fd_callback, 0, 0, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static void
adopt_fd(struct lws_vhost *vh, int fd, WorkerFd tag)
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
	lws_set_opaque_user_data(wsi, (void *) (intptr_t) tag);
}

static void
forward_done(Job *job)
{
	if (job->failed)
		ereport(LOG, (errmsg("collab worker could not forward events to NOTIFY listeners: %s",
							 job->err_message)));
}

/* Queues one NOTIFY of an envelope of public events (events.c). */
static void
forward_envelope(char *envelope)
{
	Job		   *job = job_new(sizeof(Job), "SELECT pg_catalog.pg_notify('" COLLAB_EVENT_CHANNEL "', $1)::text",
							  NULL, forward_done);

	job->own_batch = true;
	/* in order, and never lost to a busy lock at commit */
	job->retry = JOB_RETRY_ALWAYS;
	job->nargs = 1;
	job->args[0] = job_strdup(envelope);
	pfree(envelope);
	jobs_queue(job);
}

/*
 * Fans out one committed payload to our connections, and, in the
 * forwarding worker, adds its public form to the NOTIFY listeners' next
 * envelope (see events.c): nothing when no event of it is for them.
 */
static void
dispatch_payload(const char *payload, bool forwarder, uint64 pos, void *arg)
{
	PG_TRY();
	{
		JsonObject	env;
		JsonArray	events;
		char	   *perr = NULL;

		if (json_object_parse(payload, strlen(payload), &env, &perr) &&
			json_member_array(json_object_get(&env, "events"), &events))
		{
			rooms_fan_out(&events, forwarder, pos);
			if (forwarder)
				collab_forward_add(&events, forward_envelope);
			json_array_free(&events);
		}
		else
			ereport(LOG, (errmsg("collab worker ignores a malformed event payload")));
		json_object_free(&env);
	}
	PG_CATCH();
	{
		EmitErrorReport();
		FlushErrorState();
	}
	PG_END_TRY();
}

static void
drain_events(void)
{
	bool		held;

	/* a session moves here from another worker: its events wait (session.c) */
	if (session_holds_events())
		return;
	events_readable = false;
	/* only the hold timer's pass may end a hold: other passes come sooner */
	(void) event_queue_drain(dispatch_payload, NULL, hold_due, &held);
	hold_due = false;
	/* backends no longer wake us: come back soon, as the next of them would */
	if (held && !ev_is_active(&hold_timer))
	{
		ev_timer_set(&hold_timer, EVENT_HOLD_MS / 1000.0, 0.0);
		ev_timer_start(worker_loop, &hold_timer);
	}
	collab_forward_flush(forward_envelope);
	poll_http_flush();
	if (event_queue_take_overflow())
	{
		/*
		 * Events went past the full queue: our clients missed some.  Close
		 * every connection; clients reconnect and join again with fresh state.
		 */
		ereport(WARNING,
				(errmsg("collab event queue overflowed; closing %d connections so that they resynchronize",
						conn_count())));
		conn_close_all(LWS_CLOSE_STATUS_GOINGAWAY);
		session_end_detached();
	}
}

static void
detach_event_queue(int code, Datum arg)
{
	event_queue_detach();
}

/* A start-up query: one row, one column, or none. */
typedef struct StartupQuery
{
	const char *query;
	int			nargs;
	Oid		   *types;
	Datum	   *values;
	const char *nulls;
	int			deadline_ms;
	bool		found;			/* a row came back */
	Datum		value;			/* its first column */
} StartupQuery;

static void
startup_query(void *arg)
{
	StartupQuery *sq = arg;

	jobs_deadline_arm(sq->deadline_ms);
	if (SPI_execute_with_args(sq->query, sq->nargs, sq->types, sq->values, sq->nulls, false, 0) == SPI_OK_SELECT &&
		SPI_processed >= 1)
	{
		bool		isnull;

		sq->found = true;
		sq->value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	}
	jobs_deadline_disarm();
}

/*
 * Runs query in a transaction of its own within deadline_ms; false if it
 * failed (logged).  *found: a row came back; *value its first column.
 */
static bool
run_startup_query(const char *query, int nargs, Oid *types, Datum *values, const char *nulls,
				  int deadline_ms, bool *found, Datum *value)
{
	StartupQuery sq = {query, nargs, types, values, nulls, deadline_ms, false, (Datum) 0};
	bool		ok = jobs_in_transaction(startup_query, &sq);

	*found = ok && sq.found;
	if (value && *found)
		*value = sq.value;
	return ok;
}

/* Waits until CREATE EXTENSION collab has run in our database. */
static void
wait_for_extension(void)
{
	bool		logged = false;

	for (;;)
	{
		bool		found;

		if (run_startup_query("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'collab'",
							  0, NULL, NULL, NULL, jobs_statement_timeout_ms(), &found, NULL) && found)
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

static void
previous_done(Job *job)
{
	if (job->failed)
		ereport(LOG, (errmsg("collab worker could not detach connection %s of its previous run: %s",
							 job->args[0], job->err_message)));
}

/*
 * Connections of our previous incarnation are gone, uncleanly as far as
 * their clients know: they are detached, their locks kept for
 * collab.disconnect_grace, one connection per job, each tried again until
 * it runs (a transaction holding one of their paths holds up that one
 * only).  Worker 1 does the same for those of workers that collab.workers
 * no longer runs.
 */
/* Queues the detach of each connection of the previous run; *n: how many. */
static void
detach_previous(void *arg)
{
	int		   *n = arg;
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(worker_name), Int32GetDatum(collab_workers)};
	char		nulls[2] = {' ', worker_slot == 0 ? ' ' : 'n'};

	jobs_deadline_arm(jobs_statement_timeout_ms());
	if (SPI_execute_with_args("SELECT id FROM collab.ws_previous_connections($1, $2) id",
							  2, types, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "collab worker could not list the connections of its previous run");
	jobs_deadline_disarm();
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Job		   *job = job_new(sizeof(Job), "SELECT collab.ws_detach($1, 'disconnected')::text",
								  NULL, previous_done);

		job->retry = JOB_RETRY_ALWAYS;
		job->nargs = 1;
		job->args[0] = job_strdup(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		jobs_queue(job);
		(*n)++;
	}
}

static void
release_previous_run(void)
{
	int			n = 0;

	/* after an error, jobs made here were never queued, or will still run */
	(void) jobs_in_transaction(detach_previous, &n);

	/* what is not held up is released before the first client comes */
	while (jobs_pending())
		jobs_run_batch();
	if (n > 0)
		ereport(LOG, (errmsg("collab worker detaches %d connection(s) of its previous run%s", n,
							 jobs_parked() > 0 ? "; some wait for a transaction that holds their locks" : "")));
}

/*
 * At a clean stop: this run's connections are detached in one transaction,
 * within collab.request_timeout (no client is served any more), their
 * locks kept for collab.disconnect_grace as the clients reconnect; if that
 * cannot be done (a lock held elsewhere), the next start detaches them.
 */
static void
release_this_run(void)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2] = {CStringGetTextDatum(worker_name), Int32GetDatum(collab_workers)};
	char		nulls[2] = {' ', worker_slot == 0 ? ' ' : 'n'};
	bool		found;
	Datum		n = 0;

	if (run_startup_query("SELECT collab.ws_worker_start($1, $2)", 2, types, values, nulls,
						  collab_request_timeout_ms, &found, &n) &&
		found && DatumGetInt32(n) > 0)
		ereport(LOG, (errmsg("collab worker detached %d connection(s) at its stop", DatumGetInt32(n))));
}

static void
extend_done(Job *job)
{
	if (job->failed)
		ereport(LOG, (errmsg("collab worker could not extend the live leases after the promotion: %s",
							 job->err_message)));
	else if (job->result && strcmp(job->result, "0") != 0)
		ereport(LOG, (errmsg("collab worker extended %s live lease(s) by collab.disconnect_grace after the promotion",
							 job->result)));
}

/*
 * The start-up work of a primary, before it serves: at the worker's start
 * on a primary, or once the standby it started on has been promoted.  A
 * server on a timeline after the first was promoted (or ended an archive
 * recovery): worker 1 asks for every live lease to be extended by
 * collab.disconnect_grace, so that holders cut off by the failover can
 * come back and save.  The function does that once per timeline, so a
 * later start changes nothing; asking at every start also covers a worker
 * that was not running when its server was promoted.
 */
static void
start_primary(void)
{
	if (worker_slot == 0 && GetWALInsertionTimeLine() > 1)
	{
		Job		   *job = job_new(sizeof(Job),
								  "SELECT collab.extend_leases_after_promotion(collab.disconnect_grace())::text",
								  NULL, extend_done);

		/* a path held elsewhere holds it up: tried again until it runs */
		job->retry = JOB_RETRY_ALWAYS;
		jobs_queue(job);
	}
	release_previous_run();
	role_set_primary();
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
	 * lws's descriptor table is as large as the open-files limit
	 * (fd_limit_per_thread left 0), which leaves room beyond
	 * collab.max_connections for a burst of connections to be adopted and
	 * then refused with a close rather than dropped at adoption.  A smaller
	 * table would make lws look up each ready descriptor's connection by a
	 * scan of the table instead of by index.
	 */
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
	info.protocols = protocols;
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

/*
 * Connects to the database, releases what a previous run left, and sets up
 * the event loop with its descriptors, timers and listening sockets.
 */
static void
start_worker(Datum main_arg)
{
	struct lws_vhost *vh;

	pqsignal(SIGTERM, worker_sigterm);
	pqsignal(SIGHUP, worker_sighup);
	BackgroundWorkerUnblockSignals();

	worker_slot = DatumGetInt32(main_arg) - 1;
	worker_name = psprintf("collab worker %d", DatumGetInt32(main_arg));
	BackgroundWorkerInitializeConnection(collab_database, NULL, 0);
	SetConfigOption("application_name", "collab worker", PGC_USERSET, PGC_S_SESSION);

	/*
	 * Nothing the worker runs may wait for another session: path locks are
	 * taken without waiting (lock_path.c), any other lock gives up after
	 * 1 ms, and each statement has a deadline (jobs.c).  See docs/design.md.
	 */
	collab_worker_session = true;
	SetConfigOption("lock_timeout", "1", PGC_SUSET, PGC_S_SESSION);
	pgstat_report_appname("collab worker");

	jobs_init(drain_events);
	rooms_init(access_live_internal_event);

	wait_for_extension();
	collab_metrics->last_commit_us = lws_now_usecs();
	load_jwt_config();
	check_tls_files();
	warn_if_access_control_off();

	raise_descriptor_limit();
	vh = create_context();
	session_init(worker_loop, worker_name, worker_slot, &worker_jwt);
	session_set_event_drain(drain_events);
	poll_http_init(worker_loop);
	if (collab_workers > 1)
		relay_start(worker_loop, worker_slot);
	before_shmem_exit(detach_event_queue, (Datum) 0);
	if (!event_queue_attach(worker_slot))
		ereport(ERROR,
				(errmsg("collab worker has no event queue"),
				 errdetail("The server could not create the worker's eventfd at start.")));
	metrics_attach(worker_slot);
	adopt_fd(vh, event_queue_wake_fd(worker_slot), FD_EVENT_QUEUE);
	adopt_fd(vh, postmaster_alive_fds[POSTMASTER_FD_WATCH], FD_POSTMASTER);
	ev_init(&retry_timer, retry_cb);
	ev_init(&hold_timer, hold_cb);
	role_init();
	if (!role_is_standby())
		start_primary();
	listen_start(worker_loop, vh);
	lws_sul_schedule(worker_context, 0, &sweep_sul, sweep_timer_cb,
					 (lws_usec_t) collab_sweep_interval_ms * 1000);
	ev_timer_init(&tick_timer, tick_cb, TICK_MS / 1000.0, TICK_MS / 1000.0);
	ev_timer_start(worker_loop, &tick_timer);

	ereport(LOG,
			(errmsg("%s listening on %s port %d for database \"%s\"%s",
					worker_name, collab_listen_addresses,
					collab_port, collab_database,
					role_is_standby() ? " (a standby: no session until the server is promoted)" : "")));
}

/*
 * The main loop, until SIGTERM or the postmaster's death.  Jobs run in
 * batches until none is left or PASS_BUDGET_US has gone by; then the loop
 * reads and writes its sockets again (without sleeping while jobs wait).
 */
#define PASS_BUDGET_US	(50 * 1000)

static void
serve(void)
{
	MemoryContext loopcxt = AllocSetContextCreate(TopMemoryContext, "collab worker loop",
												  ALLOCSET_DEFAULT_SIZES);

	while (!got_sigterm && !postmaster_gone)
	{
		bool		worked;
		int64		start;

		MemoryContextSwitchTo(loopcxt);
		metrics_set_gauges(eio_count(), rooms_count());
		collab_metrics->requests_waiting = jobs_parked();
		schedule_retry();
		/* one pass: wait for some I/O or timer, run its callbacks */
		ev_run(worker_loop, jobs_pending() ? EVRUN_NOWAIT : EVRUN_ONCE);
		MemoryContextSwitchTo(loopcxt);

		if (got_sighup)
		{
			got_sighup = false;
			ProcessConfigFile(PGC_SIGHUP);
			load_jwt_config();
			warn_if_access_control_off();
			collab_metrics->config_reloads++;
		}
		if (role_promoted())
		{
			ereport(LOG, (errmsg("%s: the server was promoted; it serves as the primary", worker_name)));
			start_primary();
		}
		/* events of other sessions, then our own jobs (each batch drains its events) */
		worked = events_readable || jobs_pending();
		drain_events();
		jobs_retry_due();
		flush_refusals();
		start = lws_now_usecs();
		while (jobs_pending() && !got_sigterm && lws_now_usecs() - start < PASS_BUDGET_US)
		{
			jobs_run_batch();
			/* the replies' packets for waiting GETs */
			poll_http_flush();
		}
		if (worked)
		{
			/* timers that job replies set out here: let lws arm its timer */
			lws_cancel_service(worker_context);

			/*
			 * Table statistics, as a backend reports them between queries
			 * (at most once a second, PGSTAT_MIN_INTERVAL): without them
			 * autovacuum never learns of the worker's writes, the dead
			 * lease and presence rows pile up, and the plans the worker
			 * keeps are never made again as its tables grow.
			 */
			pgstat_report_stat(false);
		}
		MemoryContextReset(loopcxt);
	}
}

/*
 * Clean shutdown.  Finish the requests in hand and forward what is in the
 * ring, then stop reading it, so that the events of the release below go to
 * the other workers or, with none running, straight to NOTIFY.  Then close
 * every socket and release what they held, in one transaction rather than a
 * disconnect job each.
 */
static void
stop_worker(void)
{
	listen_stop(worker_loop);
	relay_stop();
	PG_TRY();
	{
		drain_events();
		jobs_retry_due();
		while (jobs_pending())
			jobs_run_batch();
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
	ev_timer_stop(worker_loop, &retry_timer);
	ev_timer_stop(worker_loop, &hold_timer);
	ev_loop_destroy(worker_loop);
	worker_loop = NULL;
	jobs_discard();
	if (!role_is_standby())
		release_this_run();
}

void
collab_worker_main(Datum main_arg)
{
	start_worker(main_arg);
	serve();
	if (!postmaster_gone)
		stop_worker();
	/* exit code 1: the postmaster restarts us unless it is shutting down */
	proc_exit(1);
}
