/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The WebSocket worker processes (worker.c).
 *
 * A worker is one process with one thread; collab.workers of them share
 * the port, each serving the connections the kernel gives it.  What clients
 * send is parsed and validated in libwebsockets callbacks and queued as SQL
 * jobs; the main loop runs the jobs in one transaction per batch (a
 * subtransaction per job), sends the replies, and fans out the committed
 * events that arrive through the shared-memory event queue.  Nothing in a
 * callback runs SQL, and every callback body runs inside a PG_TRY boundary.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_WORKER_H
#define COLLAB_WORKER_H

#include "fmgr.h"

/* Registers collab.workers background workers; from _PG_init. */
extern void collab_register_workers(void);

/* A worker's entry point, named in its registration. */
extern PGDLLEXPORT void collab_worker_main(Datum main_arg);

#endif							/* COLLAB_WORKER_H */
