/*-------------------------------------------------------------------------
 *
 * event_queue.h
 *	  The shared-memory queue of committed events (event_queue.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_EVENT_QUEUE_H
#define COLLAB_EVENT_QUEUE_H

#include "nodes/pg_list.h"

extern void event_queue_init(void);

/* Backends: reserve before commit (0: use NOTIFY), append after it. */
extern Size event_queue_reserve(List *payloads);
extern void event_queue_unreserve(Size reserved);
extern void event_queue_append(List *payloads, Size reserved);

/*
 * The worker.  A held worker (see event_queue_drain) reads the ring again
 * this long after it was held: what backends' events wait at most, beyond
 * the first of a stream, which wakes it.
 */
#define EVENT_HOLD_MS	1

extern int	event_queue_wake_fd(int slot);
extern bool event_queue_attach(int slot);
extern void event_queue_detach(void);
extern bool event_queue_is_forwarder(void);
extern bool event_queue_take_overflow(void);
extern int	event_queue_drain(void (*cb) (const char *payload, bool forward, uint64 pos,
											  void *arg),
							  void *arg, bool release, bool *held);

#endif							/* COLLAB_EVENT_QUEUE_H */
