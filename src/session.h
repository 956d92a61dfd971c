/*-------------------------------------------------------------------------
 *
 * session.h
 *	  The Engine.IO / Socket.IO session of a connection (session.c): what
 *	  a transport hands it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_SESSION_H
#define COLLAB_SESSION_H

#include <ev.h>

#include "conn.h"
#include "jwt.h"

extern void session_init(struct ev_loop *loop, const char *worker_name, const JwtConfig *jwt);
extern Conn *session_open(Transport *t, const char *address, const char *origin,
						  const char **refusal);
extern void session_receive(Conn *conn, const char *data, size_t len);
extern void session_transport_lost(Conn *conn);

#endif							/* COLLAB_SESSION_H */
