/*-------------------------------------------------------------------------
 *
 * rooms.c
 *	  Which of this worker's connections are in which resource's room, and
 *	  fan-out of committed events to them.
 *
 * Rooms are grouped by their root segment (the document), so an event about
 * a resource looks only at the rooms of its own document.  An event about a
 * lock or a save on R reaches every connection in a room on R's path (R, its
 * ancestors and its descendants), because those are the resources the lock
 * conflicts with; a presence change on R reaches R and its ancestors, since
 * a document carries the presence of its tabs.  Each connection gets each
 * event once, and every recipient shares one encoded frame, except the
 * holder's copy of lock:acquired, which alone carries the token.  Internal
 * events (COLLAB_INTERNAL_EVENT_PREFIX) are the workers' own and reach no
 * connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "collab.h"
#include "json_object.h"
#include "metrics.h"
#include "resource_id.h"
#include "sio_codec.h"
#include "worker.h"

#define ROOT_KEY_LEN	(RESOURCE_ID_MAX_SEGMENT_BYTES + 1)

typedef struct RootEntry
{
	char		key[ROOT_KEY_LEN];	/* hash key: the first segment */
	dlist_head	rooms;
} RootEntry;

struct Room
{
	char	   *id;
	int			len;
	RootEntry  *root;
	dlist_node	in_root;
	dlist_head	members;
	int			nmembers;
};

static HTAB *roots = NULL;
static MemoryContext rooms_cxt = NULL;
static int	nrooms = 0;
static uint64 fanout_stamp = 0;

void
rooms_init(void)
{
	HASHCTL		ctl;

	rooms_cxt = AllocSetContextCreate(TopMemoryContext, "collab rooms", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ROOT_KEY_LEN;
	ctl.entrysize = sizeof(RootEntry);
	ctl.hcxt = rooms_cxt;
	roots = hash_create("collab rooms by document", 1024, &ctl,
						HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

int
rooms_count(void)
{
	return nrooms;
}

static void
root_key(const char *resource_id, char *key)
{
	size_t		n = strcspn(resource_id, "/");

	memset(key, 0, ROOT_KEY_LEN);
	memcpy(key, resource_id, Min(n, ROOT_KEY_LEN - 1));
}

static Room *
find_room(const char *resource_id, bool create)
{
	char		key[ROOT_KEY_LEN];
	RootEntry  *root;
	bool		found;
	dlist_iter	it;
	Room	   *room;

	root_key(resource_id, key);
	root = hash_search(roots, key, create ? HASH_ENTER : HASH_FIND, &found);
	if (root == NULL)
		return NULL;
	if (!found)
		dlist_init(&root->rooms);
	dlist_foreach(it, &root->rooms)
	{
		room = dlist_container(Room, in_root, it.cur);
		if (strcmp(room->id, resource_id) == 0)
			return room;
	}
	if (!create)
		return NULL;
	room = MemoryContextAllocZero(rooms_cxt, sizeof(Room));
	room->id = MemoryContextStrdup(rooms_cxt, resource_id);
	room->len = strlen(resource_id);
	room->root = root;
	dlist_init(&room->members);
	dlist_push_tail(&root->rooms, &room->in_root);
	nrooms++;
	return room;
}

static void
drop_room_if_empty(Room *room)
{
	RootEntry  *root = room->root;

	if (room->nmembers > 0)
		return;
	dlist_delete(&room->in_root);
	nrooms--;
	if (dlist_is_empty(&root->rooms))
		hash_search(roots, root->key, HASH_REMOVE, NULL);
	pfree(room->id);
	pfree(room);
}

void
rooms_join(Conn *conn, const char *resource_id)
{
	Room	   *room;
	RoomMember *m;

	for (m = conn->rooms; m; m = m->next_of_conn)
		if (strcmp(m->room->id, resource_id) == 0)
			return;
	room = find_room(resource_id, true);
	m = MemoryContextAlloc(conn->cxt, sizeof(RoomMember));
	m->conn = conn;
	m->room = room;
	dlist_push_tail(&room->members, &m->in_room);
	room->nmembers++;
	m->next_of_conn = conn->rooms;
	conn->rooms = m;
}

static void
unlink_member(RoomMember *m)
{
	Room	   *room = m->room;

	dlist_delete(&m->in_room);
	room->nmembers--;
	drop_room_if_empty(room);
	pfree(m);
}

void
rooms_leave(Conn *conn, const char *resource_id)
{
	RoomMember **link = &conn->rooms;

	while (*link)
	{
		RoomMember *m = *link;

		if (strcmp(m->room->id, resource_id) == 0)
		{
			*link = m->next_of_conn;
			unlink_member(m);
			return;
		}
		link = &m->next_of_conn;
	}
}

void
rooms_leave_all(Conn *conn)
{
	while (conn->rooms)
	{
		RoomMember *m = conn->rooms;

		conn->rooms = m->next_of_conn;
		unlink_member(m);
	}
}

/* Is a a proper ancestor of b (whole segments)? */
static bool
is_ancestor(const char *a, int alen, const char *b, int blen)
{
	return alen < blen && b[alen] == '/' && strncmp(a, b, alen) == 0;
}

static void
forget_lock(Conn *conn, const char *resource_id)
{
	HeldLock  **link = &conn->locks;

	while (*link)
	{
		if (strcmp((*link)->resource_id, resource_id) == 0)
		{
			HeldLock   *h = *link;

			*link = h->next;
			pfree(h->resource_id);
			pfree(h);
			return;
		}
		link = &(*link)->next;
	}
}

static int64
held_token(Conn *conn, const char *resource_id)
{
	for (HeldLock *h = conn->locks; h; h = h->next)
		if (strcmp(h->resource_id, resource_id) == 0)
			return h->token;
	return -1;
}

/* Fans out one event object of a notification. */
static void
dispatch_event(const char *json, size_t len, bool count)
{
	JsonObject	ev;
	char	   *perr = NULL;
	const char *name;
	const char *rid;
	const char *holder = NULL;
	const char *requester = NULL;
	size_t		l;
	int			rlen;
	bool		presence;
	bool		acquired;
	bool		drops_lock;
	StringInfoData payload;
	StringInfoData frame;
	OutFrame   *shared;
	char		key[ROOT_KEY_LEN];
	RootEntry  *root;
	dlist_iter	rit;

	if (!json_object_parse(json, len, &ev, &perr) ||
		json_object_get_string(&ev, "event", &name, &l) != JSON_GET_OK)
	{
		ereport(LOG, (errmsg("collab worker ignores a malformed event")));
		return;
	}
	/* the workers' own bookkeeping, never a browser's */
	if (strncmp(name, COLLAB_INTERNAL_EVENT_PREFIX, strlen(COLLAB_INTERNAL_EVENT_PREFIX)) == 0)
	{
		json_object_free(&ev);
		return;
	}
	if (json_object_get_string(&ev, "resourceId", &rid, &l) != JSON_GET_OK)
	{
		ereport(LOG, (errmsg("collab worker ignores a malformed event")));
		return;
	}
	rlen = (int) l;
	if (count)
		metrics_count_event(name);
	(void) json_object_get_string(&ev, "holderId", &holder, &l);
	(void) json_object_get_string(&ev, "requesterHolderId", &requester, &l);
	/* events for one connection only name it in "to" */
	if (requester == NULL)
		(void) json_object_get_string(&ev, "to", &requester, &l);
	presence = strncmp(name, "presence:", 9) == 0;
	acquired = strcmp(name, "lock:acquired") == 0;
	drops_lock = strcmp(name, "lock:released") == 0 || strcmp(name, "lock:expired") == 0;
	if (strcmp(name, "lock:denied") == 0 && requester == NULL)
		return;

	root_key(rid, key);
	root = hash_search(roots, key, HASH_FIND, NULL);
	if (root == NULL)
		return;

	/* the payload: every member but the routing ones */
	initStringInfo(&payload);
	appendStringInfoChar(&payload, '{');
	for (int i = 0; i < ev.nmembers; i++)
	{
		JsonMember *m = &ev.members[i];

		if (strcmp(m->key, "event") == 0 || strcmp(m->key, "holderId") == 0 ||
			strcmp(m->key, "requesterHolderId") == 0 || strcmp(m->key, "to") == 0)
			continue;
		if (payload.len > 1)
			appendStringInfoChar(&payload, ',');
		sio_json_escape(&payload, m->key);
		appendStringInfoChar(&payload, ':');
		if (m->kind == JSON_KIND_STRING)
			sio_json_escape_len(&payload, m->value, m->len);
		else
			appendBinaryStringInfo(&payload, m->value, m->len);
	}
	initStringInfo(&frame);
	sio_event_begin(&frame, NULL, name, SIO_NO_ACK);
	sio_arg_begin(&frame);
	appendBinaryStringInfo(&frame, payload.data, payload.len);
	appendStringInfoChar(&frame, '}');
	sio_packet_end(&frame);
	shared = outframe_make(frame.data, frame.len);
	shared->refcount++;

	fanout_stamp++;
	dlist_foreach(rit, &root->rooms)
	{
		Room	   *room = dlist_container(Room, in_root, rit.cur);
		bool		on_path;
		dlist_iter	mit;

		on_path = (room->len == rlen && strcmp(room->id, rid) == 0) ||
			is_ancestor(room->id, room->len, rid, rlen) ||
			(!presence && is_ancestor(rid, rlen, room->id, room->len));
		if (!on_path)
			continue;
		dlist_foreach(mit, &room->members)
		{
			Conn	   *conn = dlist_container(RoomMember, in_room, mit.cur)->conn;
			bool		is_holder = holder != NULL && strcmp(conn->id, holder) == 0;

			if (conn->fanout_stamp == fanout_stamp)
				continue;
			conn->fanout_stamp = fanout_stamp;
			if (conn->state != CONN_CONNECTED)
				continue;
			if (requester != NULL && strcmp(conn->id, requester) != 0)
				continue;
			if (drops_lock && is_holder)
				forget_lock(conn, rid);
			if (acquired && is_holder && held_token(conn, rid) < 0)
			{
				/*
				 * Granted on this connection's behalf (an edit hand-off): its
				 * copy must carry the token, which we look up first.
				 */
				ws_queue_holder_event(conn, rid, name, payload.data, payload.len);
				continue;
			}
			if (acquired && is_holder)
			{
				ws_send_holder_event(conn, name, payload.data, payload.len,
									 held_token(conn, rid));
				continue;
			}
			ws_send_frame(conn, shared);
		}
	}
	outframe_release(shared);
	pfree(payload.data);
	pfree(frame.data);
	json_object_free(&ev);
}

void
rooms_dispatch_notification(const char *payload, bool count)
{
	JsonObject	env;
	JsonArray	events;
	char	   *perr = NULL;
	const JsonMember *m;

	if (!json_object_parse(payload, strlen(payload), &env, &perr) ||
		(m = json_object_get(&env, "events")) == NULL || m->kind != JSON_KIND_ARRAY ||
		!json_array_parse(m->value, m->len, &events, &perr))
	{
		ereport(LOG, (errmsg("collab worker ignores a malformed notification")));
		return;
	}
	for (int i = 0; i < events.nelems; i++)
		if (events.elems[i].kind == JSON_KIND_OBJECT)
			dispatch_event(events.elems[i].value, events.elems[i].len, count);
	json_array_free(&events);
	json_object_free(&env);
}
