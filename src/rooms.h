/*-------------------------------------------------------------------------
 *
 * rooms.h
 *	  Which of the worker's connections are in which resource's room, and
 *	  the fan-out of committed events to them (rooms.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_ROOMS_H
#define COLLAB_ROOMS_H

#include "lib/ilist.h"

#include "conn.h"

typedef struct Room Room;

/* A connection's membership in a room. */
typedef struct RoomMember
{
	Conn	   *conn;
	Room	   *room;
	dlist_node	in_room;
	struct RoomMember *next_of_conn;
} RoomMember;

extern void rooms_init(void);
extern void rooms_join(Conn *conn, const char *resource_id);
extern void rooms_leave(Conn *conn, const char *resource_id);
extern void rooms_leave_all(Conn *conn);
extern int	rooms_count(void);
extern void rooms_fan_out(const char *payload, bool count);

#endif							/* COLLAB_ROOMS_H */
