/*-------------------------------------------------------------------------
 *
 * session.h
 *	  The Socket.IO sessions of the worker (session.c): what an Engine.IO
 *	  session hands them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_SESSION_H
#define COLLAB_SESSION_H

#include <ev.h>

#include "conn.h"
#include "jwt.h"

extern void session_init(struct ev_loop *loop, const char *worker_name, int worker_slot,
						 const JwtConfig *jwt);
extern void session_end_detached(void);
extern bool session_holds_events(void);
extern void session_set_event_drain(void (*drain) (void));

#endif							/* COLLAB_SESSION_H */
