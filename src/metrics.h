/*-------------------------------------------------------------------------
 *
 * metrics.h
 *	  The worker's counters and HTTP endpoints (metrics.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_METRICS_H
#define COLLAB_METRICS_H

#include <libwebsockets.h>

#include "lib/stringinfo.h"

#define METRICS_LATENCY_BUCKETS 10

typedef struct CollabMetrics
{
	int			connections;	/* gauges, published by the owning worker */
	int			rooms;
	uint64		connections_total;
	uint64		messages_in;
	uint64		messages_out;
	uint64		auth_failures;
	uint64		lock_grants;
	uint64		lock_denials;
	uint64		lock_releases;
	uint64		lock_expiries;
	uint64		saves_accepted;
	uint64		saves_rejected;
	uint64		requests_failed;
	int			requests_waiting;	/* gauges kept by jobs.c and conn.c */
	uint64		requests_parked;
	uint64		requests_busy;
	int64		output_bytes;
	uint64		connections_shed;
	uint64		connections_refused;
	uint64		frames_dropped;
	uint64		config_reloads;
	int			polling_sessions;	/* gauge: sessions on long-polling */
	uint64		relayed_requests;	/* long-polling requests sent to their session's worker */
	uint64		sql_latency_buckets[METRICS_LATENCY_BUCKETS];
	uint64		sql_latency_count;
	double		sql_latency_sum_ms;
	int64		last_commit_us;	/* lws_now_usecs() of the last commit */
} CollabMetrics;

/* This worker's counters: its slot in shared memory once attached. */
extern CollabMetrics *collab_metrics;

extern void metrics_init(void);
extern void metrics_attach(int slot);
extern void metrics_set_gauges(int connections, int rooms);

extern void metrics_observe_sql(double ms);
extern void metrics_count_event(const char *name);
extern void metrics_render(StringInfo buf);
extern int	metrics_http(struct lws *wsi, const char *uri);

#endif							/* COLLAB_METRICS_H */
