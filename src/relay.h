/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  The channel between the workers (relay.c): a long-polling request
 *	  that reaches a worker other than its session's is answered by the
 *	  session's worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_RELAY_H
#define COLLAB_RELAY_H

#include <ev.h>

#include "poll_transport.h"

typedef struct RelayCall RelayCall;

/* The owner's answer to a forwarded request (relay_forward). */
typedef void (*RelayDone) (void *arg, PollAnswer *answer);

extern void relay_start(struct ev_loop *loop, int worker_slot);
extern void relay_stop(void);
extern RelayCall *relay_forward(int slot, bool post, const char *sid,
								const char *body, size_t len, RelayDone done, void *arg);
extern void relay_cancel(RelayCall *call);

#endif							/* COLLAB_RELAY_H */
