/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  The worker's SQL jobs and the runner of their batches (jobs.c).
 *
 * Whoever queues a job says what to run and what to do with the answer:
 * the runner calls the job's done callback once its batch has committed
 * (or failed), and knows nothing of what the job is for.  A module that
 * needs more per job embeds Job as the first member of its own struct and
 * allocates that with job_new().
 *
 * No job waits for a lock held by another session: one that would is
 * parked, changed nothing, and is tried again later (job->retry says how
 * long); a connection's later jobs wait behind its parked one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_JOBS_H
#define COLLAB_JOBS_H

#include "collab.h"
#include "conn.h"

#define JOB_MAX_ARGS 8

typedef struct Job Job;
typedef void (*JobCallback) (Job *job);

/* What becomes of a job that found a lock busy (or ran out of time). */
typedef enum JobRetry
{
	JOB_RETRY_UNTIL_TIMEOUT,	/* a request: tried again until
								 * collab.request_timeout, then BUSY */
	JOB_RETRY_ALWAYS,			/* tried again until it runs (what a closed
								 * connection held, events to forward) */
	JOB_RETRY_NEVER				/* fails at once (the sweep: its next run
								 * tries again) */
} JobRetry;

struct Job
{
	/* What to run, set by whoever queues the job */
	const char *sql;			/* a string constant (its address keys the
								 * plan cache) returning one row of one or
								 * two text columns */
	int			nargs;
	char	   *args[JOB_MAX_ARGS];	/* text, NULL for SQL NULL */
	Conn	   *conn;			/* the connection waiting for the answer, or
								 * NULL; kept until the replies are out */
	JobCallback done;			/* called after the batch, once */
	bool		timed;			/* a client request: its time is a metric */
	bool		own_batch;		/* runs only in batches of such jobs, which
								 * commit without waiting for the WAL flush */
	bool		events_first;	/* its batch's events may go out before the
								 * WAL flush that its reply waits for */
	bool		grant;			/* a lock decision, answered without waiting
								 * for the WAL flush unless
								 * collab.synchronous_grants says so */
	JobRetry	retry;

	/* The answer, for done */
	char	   *result;			/* first column, NULL for none */
	char	   *result2;		/* second column, when there is one */
	bool		failed;			/* then err_code and err_message say why */
	CollabErrorCode err_code;
	char	   *err_message;

	/*
	 * A read-only query that done may ask for (job_follow_up): it runs after
	 * the batch's events have gone out, and then_done gets its answer in
	 * then_result (NULL if it failed, or if there was no query).
	 */
	const char *then_sql;
	char	   *then_arg;
	char	   *then_result;
	JobCallback then_done;

	/* The runner's */
	struct JobGen *gen;			/* the memory it lives in */
	int64		queued_at;		/* lws_now_usecs() when first queued */
	int64		retry_at;		/* parked: when to try again (0: at once,
								 * or behind its connection's parked job) */
	int			attempts;		/* times parked */
	CollabBlocker blocker;		/* the lock it found busy, if known */
	bool		abandoned;		/* its connection closed while it was parked */
	struct Job *next;
};

extern void jobs_init(void (*before_replies) (void));
extern Job *job_new(Size size, const char *sql, Conn *conn, JobCallback done);
extern char *job_strdup(const char *s);
extern char *job_strndup(const char *s, Size len);
extern void job_follow_up(Job *job, const char *sql, const char *arg, JobCallback done);

extern void jobs_queue(Job *job);
extern bool jobs_pending(void);
extern void jobs_run_batch(void);
extern void jobs_discard(void);

extern int64 jobs_next_retry(void);
extern void jobs_retry_due(void);
extern int	jobs_parked(void);
extern void jobs_abandon(Conn *conn);

extern int	jobs_statement_timeout_ms(void);
extern bool jobs_in_transaction(void (*body) (void *arg), void *arg);
extern void jobs_deadline_arm(int ms);
extern void jobs_deadline_disarm(void);

#endif							/* COLLAB_JOBS_H */
