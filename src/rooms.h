/*-------------------------------------------------------------------------
 *
 * rooms.h
 *	  Rooms of the worker's connections and the fan-out of events (rooms.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_ROOMS_H
#define COLLAB_ROOMS_H

#include "conn.h"

extern void rooms_init(void);
extern void rooms_join(Conn *conn, const char *resource_id);
extern void rooms_leave(Conn *conn, const char *resource_id);
extern void rooms_leave_all(Conn *conn);
extern int	rooms_count(void);
extern void rooms_dispatch_notification(const char *payload, bool count);

#endif							/* COLLAB_ROOMS_H */
