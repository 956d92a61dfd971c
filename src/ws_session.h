/*-------------------------------------------------------------------------
 *
 * ws_session.h
 *	  One WebSocket connection's protocol (ws_session.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_WS_SESSION_H
#define COLLAB_WS_SESSION_H

#include "conn.h"
#include "jobs.h"

extern const struct lws_protocols *ws_protocols(void);
extern Conn *ws_conn_of(struct lws *wsi);
extern void ws_send_holder_event(Conn *conn, const char *name, const char *payload,
								 int len, int64 token);
extern void ws_queue_holder_event(Conn *conn, const char *resource_id, const char *name,
								  const char *payload, int len);

#endif							/* COLLAB_WS_SESSION_H */
