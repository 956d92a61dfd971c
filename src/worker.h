/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The WebSocket worker process (worker.c).
 *
 * A worker is one process with one thread; collab.workers of them share
 * the port, each serving the connections the kernel gives it.  libwebsockets callbacks parse
 * and validate what clients send and queue SQL jobs; the main loop runs the
 * jobs in one transaction per batch (a subtransaction per job), sends the
 * replies, and fans out the events that arrive by NOTIFY.  Nothing in a
 * callback runs SQL, and every callback body runs inside a PG_TRY boundary.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_WORKER_H
#define COLLAB_WORKER_H

#include <ev.h>
#include <libwebsockets.h>

#include "jwt.h"

extern struct lws_context *worker_context;
extern struct ev_loop *worker_loop;
extern JwtConfig worker_jwt;
extern char *worker_name;
extern int	worker_slot;		/* 0-based: collab worker <slot + 1> */
extern int64 worker_now_unix(void);
extern int	collab_fd_callback(struct lws *wsi, enum lws_callback_reasons reason,
							   void *user, void *in, size_t len);
extern void collab_register_workers(void);

#endif							/* COLLAB_WORKER_H */
