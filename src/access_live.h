/*-------------------------------------------------------------------------
 *
 * access_live.h
 *	  The worker's side of access control: the permissions of its
 *	  connections in their rooms, kept current when access changes
 *	  (access_live.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_ACCESS_LIVE_H
#define COLLAB_ACCESS_LIVE_H

#include "conn.h"
#include "json_object.h"

extern void access_live_joined(Conn *conn, const char *resource_id, const char *ack);
extern void access_live_recheck_rooms(Conn *conn);
extern void access_live_resumed(Conn *conn, const char *resource_id,
								const char *permissions, size_t len);
extern void access_live_lost_view(Conn *conn, const char *resource_id);
extern void access_live_internal_event(JsonObject *ev);

#endif							/* COLLAB_ACCESS_LIVE_H */
