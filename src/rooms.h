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
#include "json_object.h"

typedef struct Room Room;

/* A member's permissions on its room's resource (access_live.c keeps them). */
#define ROOM_PERM_VIEW	0x01
#define ROOM_PERM_EDIT	0x02
#define ROOM_PERM_ADMIN 0x04

/* A connection's membership in a room. */
typedef struct RoomMember
{
	Conn	   *conn;
	Room	   *room;
	dlist_node	in_room;
	struct RoomMember *next_of_conn;
	uint8		perms;			/* ROOM_PERM_* on the room's resource */
	/*
	 * Bit i: the member may view the room's ancestor of i + 1 segments, so
	 * that its events (other than lock:*) reach the member.  0 until known.
	 */
	uint8		viewable_ancestors;
} RoomMember;

/* What becomes of the workers' own events (access_live.c). */
typedef void (*InternalEventHandler) (JsonObject *ev);

extern void rooms_init(InternalEventHandler on_internal_event);
extern RoomMember *rooms_join(Conn *conn, const char *resource_id);
extern RoomMember *rooms_member(Conn *conn, const char *resource_id);
extern const char *rooms_member_resource(const RoomMember *m);
extern void rooms_leave(Conn *conn, const char *resource_id);
extern void rooms_leave_all(Conn *conn);
extern void rooms_foreach_member_under(const char *resource_id,
									   void (*fn) (RoomMember *m, void *arg), void *arg);
extern int	rooms_count(void);
extern void rooms_fan_out(const JsonArray *events, bool count);

#endif							/* COLLAB_ROOMS_H */
