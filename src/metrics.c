/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  The worker's counters, and its HTTP endpoints /healthz and /metrics
 *	  (Prometheus text format) on the WebSocket port.
 *
 * Each worker counts in its own slot of shared memory, and whichever
 * worker answers /metrics reports the sum over the running workers.  A slot
 * restarts from zero with its worker, which Prometheus handles as a counter
 * reset.  Health is judged from what the workers last achieved, not by
 * running SQL from the HTTP callback: the database is reachable when a
 * transaction of any running worker committed within the last few sweep
 * intervals (the forwarding worker's sweep commits every interval), and
 * the worker answering serves a primary (role.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "collab.h"
#include "metrics.h"
#include "role.h"

typedef struct MetricsSlot
{
	pid_t		pid;			/* 0: no worker in this slot */
	CollabMetrics m;
} MetricsSlot;

/* Until the worker attaches its slot (and in unit tests), counts go here. */
static CollabMetrics local_metrics;
CollabMetrics *collab_metrics = &local_metrics;

static MetricsSlot *slots = NULL;
static MetricsSlot *my_slot = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
slots_size(void)
{
	return mul_size(sizeof(MetricsSlot), COLLAB_MAX_WORKERS);
}

static void
metrics_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(slots_size());
}

static void
metrics_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	slots = ShmemInitStruct("collab worker metrics", slots_size(), &found);
	if (!found)
		memset(slots, 0, slots_size());
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init in the postmaster. */
void
metrics_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = metrics_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = metrics_shmem_startup;
}

static void
metrics_detach(int code, Datum arg)
{
	if (my_slot)
		my_slot->pid = 0;
}

/* The worker of slot counts in shared memory from now on. */
void
metrics_attach(int slot)
{
	if (slots == NULL || slot < 0 || slot >= COLLAB_MAX_WORKERS)
		return;
	my_slot = &slots[slot];
	my_slot->m = local_metrics;
	pg_write_barrier();
	my_slot->pid = MyProcPid;
	collab_metrics = &my_slot->m;
	before_shmem_exit(metrics_detach, (Datum) 0);
}

/* The sum over the running workers (just ours without shared memory). */
static int
metrics_total(CollabMetrics *sum)
{
	int			nworkers = 0;

	memset(sum, 0, sizeof(*sum));
	for (int i = 0; slots != NULL && i < COLLAB_MAX_WORKERS; i++)
	{
		const CollabMetrics *m = &slots[i].m;

		if (slots[i].pid == 0)
			continue;
		nworkers++;
		sum->connections += m->connections;
		sum->rooms += m->rooms;
		sum->connections_total += m->connections_total;
		sum->messages_in += m->messages_in;
		sum->messages_out += m->messages_out;
		sum->auth_failures += m->auth_failures;
		sum->lock_grants += m->lock_grants;
		sum->lock_denials += m->lock_denials;
		sum->lock_releases += m->lock_releases;
		sum->lock_expiries += m->lock_expiries;
		sum->saves_accepted += m->saves_accepted;
		sum->saves_rejected += m->saves_rejected;
		sum->requests_failed += m->requests_failed;
		sum->requests_waiting += m->requests_waiting;
		sum->requests_parked += m->requests_parked;
		sum->requests_busy += m->requests_busy;
		sum->output_bytes += m->output_bytes;
		sum->connections_shed += m->connections_shed;
		sum->connections_refused += m->connections_refused;
		sum->frames_dropped += m->frames_dropped;
		sum->config_reloads += m->config_reloads;
		sum->polling_sessions += m->polling_sessions;
		sum->relayed_requests += m->relayed_requests;
		for (int b = 0; b < METRICS_LATENCY_BUCKETS; b++)
			sum->sql_latency_buckets[b] += m->sql_latency_buckets[b];
		sum->sql_latency_count += m->sql_latency_count;
		sum->sql_latency_sum_ms += m->sql_latency_sum_ms;
		/* the newest: a worker without clients may not commit for long */
		sum->last_commit_us = Max(sum->last_commit_us, m->last_commit_us);
	}
	if (nworkers == 0)
	{
		*sum = *collab_metrics;
		nworkers = 1;
	}
	return nworkers;
}

/* Upper bounds of the SQL latency histogram, in milliseconds. */
static const double latency_bounds_ms[METRICS_LATENCY_BUCKETS] =
{0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000};

void
metrics_observe_sql(double ms)
{
	for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++)
		if (ms <= latency_bounds_ms[i])
			collab_metrics->sql_latency_buckets[i]++;
	collab_metrics->sql_latency_count++;
	collab_metrics->sql_latency_sum_ms += ms;
}

/* Counts the events the worker fans out, by kind. */
void
metrics_count_event(const char *name)
{
	if (strcmp(name, "lock:acquired") == 0)
		collab_metrics->lock_grants++;
	else if (strcmp(name, "lock:denied") == 0)
		collab_metrics->lock_denials++;
	else if (strcmp(name, "lock:expired") == 0)
		collab_metrics->lock_expiries++;
	else if (strcmp(name, "lock:released") == 0)
		collab_metrics->lock_releases++;
	else if (strcmp(name, "doc:saved") == 0)
		collab_metrics->saves_accepted++;
}

/*
 * Our gauges, for the worker that renders the sum: the worker sets them on
 * every pass of its loop, and before it answers /metrics or /healthz.
 */
void
metrics_set_gauges(int connections, int rooms)
{
	collab_metrics->connections = connections;
	collab_metrics->rooms = rooms;
}

/*
 * Has any running worker committed lately (total from metrics_total)?  The
 * forwarding worker's sweep commits every collab.sweep_interval; the other
 * workers commit only for their clients.  (lws_now_usecs() is
 * CLOCK_MONOTONIC, one clock for all.)
 */
static bool
database_ok(const CollabMetrics *total)
{
	int64		now = lws_now_usecs();
	int64		horizon = (int64) Max(collab_sweep_interval_ms * 5, 5000) * 1000;

	return total->last_commit_us > 0 && now - total->last_commit_us <= horizon;
}

static void
metric(StringInfo buf, const char *name, const char *type, const char *help, double value)
{
	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, value);
}

void
metrics_render(StringInfo buf)
{
	CollabMetrics total;
	const CollabMetrics *m = &total;
	int			nworkers;

	nworkers = metrics_total(&total);
	metric(buf, "collab_workers", "gauge", "Running WebSocket worker processes.", nworkers);
	metric(buf, "collab_connections", "gauge", "Open connections (Engine.IO sessions, on either transport).", m->connections);
	metric(buf, "collab_connections_total", "counter", "Connections accepted (Engine.IO sessions, on either transport).", m->connections_total);
	metric(buf, "collab_polling_sessions", "gauge", "Connections on HTTP long-polling.", m->polling_sessions);
	metric(buf, "collab_relayed_requests_total", "counter", "Long-polling requests that reached a worker other than their session's, sent on to it.", m->relayed_requests);
	metric(buf, "collab_rooms", "gauge", "Rooms with at least one member, counted in each worker serving one.", m->rooms);
	metric(buf, "collab_messages_in_total", "counter", "Engine.IO packets received.", m->messages_in);
	metric(buf, "collab_messages_out_total", "counter", "Engine.IO packets sent.", m->messages_out);
	metric(buf, "collab_auth_failures_total", "counter", "Connections refused at authentication.", m->auth_failures);
	metric(buf, "collab_lock_grants_total", "counter", "Editor locks granted.", m->lock_grants);
	metric(buf, "collab_lock_denials_total", "counter", "Editor lock requests denied.", m->lock_denials);
	metric(buf, "collab_lock_releases_total", "counter", "Editor locks released (any reason).", m->lock_releases);
	metric(buf, "collab_lock_expiries_total", "counter", "Editor locks expired.", m->lock_expiries);
	metric(buf, "collab_saves_accepted_total", "counter", "Saves committed.", m->saves_accepted);
	metric(buf, "collab_saves_rejected_total", "counter", "doc:save requests rejected.", m->saves_rejected);
	metric(buf, "collab_requests_failed_total", "counter", "Client requests answered with an error.", m->requests_failed);
	metric(buf, "collab_requests_waiting", "gauge", "Requests parked until what they need is free.", m->requests_waiting);
	metric(buf, "collab_requests_parked_total", "counter", "Times a request was parked because a lock it needs was busy.", m->requests_parked);
	metric(buf, "collab_requests_busy_total", "counter", "Requests answered BUSY after collab.request_timeout.", m->requests_busy);
	metric(buf, "collab_output_buffer_bytes", "gauge", "Outgoing bytes queued for connections that read slowly.", m->output_bytes);
	metric(buf, "collab_connections_shed_total", "counter", "Connections closed because collab.max_output_buffer was reached.", m->connections_shed);
	metric(buf, "collab_connections_refused_total", "counter", "Connections refused by a budget (per address, per user).", m->connections_refused);
	metric(buf, "collab_frames_dropped_total", "counter", "Frames over collab.rate_limit that were dropped (events are answered RATE_LIMITED).", m->frames_dropped);
	metric(buf, "collab_config_reloads_total", "counter", "Times a worker has reloaded its configuration (SIGHUP), summed over the workers.", m->config_reloads);

	appendStringInfoString(buf,
						   "# HELP collab_sql_duration_ms Time the worker spends on the SQL of one client request.\n"
						   "# TYPE collab_sql_duration_ms histogram\n");
	/* buckets are cumulative, as Prometheus wants: see metrics_observe_sql() */
	for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++)
		appendStringInfo(buf, "collab_sql_duration_ms_bucket{le=\"%g\"} " UINT64_FORMAT "\n",
						 latency_bounds_ms[i], m->sql_latency_buckets[i]);
	appendStringInfo(buf, "collab_sql_duration_ms_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n",
					 m->sql_latency_count);
	appendStringInfo(buf, "collab_sql_duration_ms_sum %.17g\n", m->sql_latency_sum_ms);
	appendStringInfo(buf, "collab_sql_duration_ms_count " UINT64_FORMAT "\n", m->sql_latency_count);
	metric(buf, "collab_database_up", "gauge",
		   "1 when a worker transaction committed recently.", database_ok(m) ? 1 : 0);
}

/* Writes a complete HTTP response; returns what the lws callback returns. */
static int
http_reply(struct lws *wsi, unsigned int status, const char *type, StringInfo body)
{
	unsigned char hdr[LWS_PRE + 1024];
	unsigned char *start = hdr + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;
	StringInfoData out;

	if (lws_add_http_common_headers(wsi, status, type, body->len, &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
									 (unsigned char *) "no-store", 8, &p, end) ||
		lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	initStringInfo(&out);
	enlargeStringInfo(&out, LWS_PRE + body->len);
	out.len = LWS_PRE;
	appendBinaryStringInfo(&out, body->data, body->len);
	if (lws_write(wsi, (unsigned char *) out.data + LWS_PRE, body->len, LWS_WRITE_HTTP_FINAL) < body->len)
		return -1;
	pfree(out.data);
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* GET /healthz and /metrics; -2 when the path is not ours. */
int
metrics_http(struct lws *wsi, const char *uri)
{
	StringInfoData body;
	int			rc;

	initStringInfo(&body);
	if (strcmp(uri, "/healthz") == 0)
	{
		CollabMetrics total;
		bool		standby;
		bool		db;

		(void) metrics_total(&total);
		/* a standby serves nothing: never healthy, whatever it committed */
		standby = role_is_standby();
		db = !standby && database_ok(&total);
		appendStringInfo(&body, "{\"status\":\"%s\",\"role\":\"%s\",\"worker\":\"ok\",\"database\":\"%s\",\"connections\":%d}",
						 db ? "ok" : "unavailable", role_name(),
						 standby ? "in recovery" : db ? "ok" : "unreachable", total.connections);
		rc = http_reply(wsi, db ? HTTP_STATUS_OK :
						(standby ? ROLE_STANDBY_STATUS : HTTP_STATUS_SERVICE_UNAVAILABLE),
						"application/json", &body);
	}
	else if (strcmp(uri, "/metrics") == 0)
	{
		metrics_render(&body);
		rc = http_reply(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", &body);
	}
	else
		rc = -2;
	pfree(body.data);
	return rc;
}
