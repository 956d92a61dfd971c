/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  The worker's SQL jobs and the runner of their batches (jobs.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_JOBS_H
#define COLLAB_JOBS_H

#include "conn.h"

typedef enum JobKind
{
	JOB_CONNECT,
	JOB_CALL,
	JOB_DISCONNECT,
	JOB_SWEEP,
	JOB_NOTIFY,
	JOB_HOLDER_TOKEN
} JobKind;

typedef enum JobAfter
{
	AFTER_NOTHING,
	AFTER_JOIN,
	AFTER_LEAVE
} JobAfter;

#define JOB_MAX_ARGS 7

typedef struct Job
{
	JobKind		kind;
	JobAfter	after;
	Conn	   *conn;
	int64		ack_id;			/* SIO_NO_ACK for none */
	const char *sql;			/* statement returning one text column */
	int			nargs;
	char	   *args[JOB_MAX_ARGS];	/* text, NULL for SQL NULL */
	char	   *resource_id;	/* for error events */
	char	   *event_name;		/* JOB_HOLDER_TOKEN: the event to complete */
	char	   *event_payload;	/* ... its payload without the closing brace */
	/* results: one text column, or (ack, token) */
	char	   *result;
	char	   *token;			/* second column, when there is one */
	/* presence:join: the room's users, read after the batch's fan-out */
	char	   *users;
	/* ... and the places of its ack and presence:state until then */
	bool		users_pending;
	OutItem    *ack_slot;
	OutItem    *state_slot;
	const char *err_code;
	char	   *err_message;
	struct Job *next;
} Job;

extern MemoryContext jobs_cxt;

extern void jobs_queue(Job *job);
extern bool jobs_pending(void);
extern void jobs_run_batch(void);
extern void jobs_discard(void);

#endif							/* COLLAB_JOBS_H */
