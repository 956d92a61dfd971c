/*-------------------------------------------------------------------------
 *
 * relay.h
 *	  The channel between the workers (relay.c): a long-polling request
 *	  that reaches a worker other than its session's is answered by the
 *	  session's worker, and a detached Socket.IO session moves to the
 *	  worker its client's recovering CONNECT reached.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_RELAY_H
#define COLLAB_RELAY_H

#include <ev.h>

#include "poll_transport.h"

typedef struct RelayCall RelayCall;

/* The owner's answer to a forwarded request (relay_forward, relay_migrate). */
typedef void (*RelayDone) (void *arg, PollAnswer *answer);

/*
 * The owner's side of relay_migrate(): answers 200 with the detached
 * session of pid in the body (and lets go of it), or another status.
 */
typedef void (*RelayMigrateHandler) (const char *pid, const char *request, size_t len,
									 PollAnswer *answer);

/* A message being read: relay_get_*() clear ok when it is cut short. */
typedef struct RelayReader
{
	const char *p;
	const char *end;
	bool		ok;
} RelayReader;

extern void relay_put_u32(StringInfo buf, uint32 v);
extern void relay_put_u64(StringInfo buf, uint64 v);
extern void relay_put_bytes(StringInfo buf, const char *data, size_t len);
extern uint32 relay_get_u32(RelayReader *r);
extern uint64 relay_get_u64(RelayReader *r);
extern const char *relay_get_bytes(RelayReader *r, uint32 *len);

extern void relay_start(struct ev_loop *loop, int worker_slot);
extern void relay_stop(void);
extern RelayCall *relay_forward(int slot, bool post, const char *sid,
								const char *body, size_t len, RelayDone done, void *arg);
extern void relay_cancel(RelayCall *call);
extern void relay_set_migrate_handler(RelayMigrateHandler handler);
extern RelayCall *relay_migrate(int slot, const char *pid, const char *request, size_t len,
								RelayDone done, void *arg);

#endif							/* COLLAB_RELAY_H */
