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
 * connection: they go to the handler given to rooms_init().
 *
 * Access: a member may view its room's resource (checked at its join and
 * again on every change of access, access_live.c), so events of the
 * resource and of its descendants reach it, viewing being inherited
 * downwards.  An event of a proper ancestor reaches it only if it may view
 * that ancestor too (RoomMember.viewable_ancestors), except lock:* events:
 * a lock on an ancestor covers the member's own resource, and who holds it
 * is what the member needs to know to edit there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "collab.h"
#include "conn.h"
#include "jobs.h"
#include "json_object.h"
#include "metrics.h"
#include "resource_id.h"
#include "rooms.h"
#include "sio_codec.h"

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
static InternalEventHandler internal_event_handler = NULL;

void
rooms_init(InternalEventHandler on_internal_event)
{
	HASHCTL		ctl;

	internal_event_handler = on_internal_event;
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

/* conn's membership in the room of resource_id, NULL if it is not in it. */
RoomMember *
rooms_member(Conn *conn, const char *resource_id)
{
	for (RoomMember *m = conn->rooms; m; m = m->next_of_conn)
		if (strcmp(m->room->id, resource_id) == 0)
			return m;
	return NULL;
}

const char *
rooms_member_resource(const RoomMember *m)
{
	return m->room->id;
}

/* conn is in the room of resource_id (a member already, or a new one). */
RoomMember *
rooms_join(Conn *conn, const char *resource_id)
{
	Room	   *room;
	RoomMember *m = rooms_member(conn, resource_id);

	if (m)
		return m;
	room = find_room(resource_id, true);
	m = MemoryContextAllocZero(conn->cxt, sizeof(RoomMember));
	m->conn = conn;
	m->room = room;
	dlist_push_tail(&room->members, &m->in_room);
	room->nmembers++;
	m->next_of_conn = conn->rooms;
	conn->rooms = m;
	return m;
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

/*
 * Calls fn for every member of the rooms of resource_id and of its
 * descendants.  fn must not make a member leave or join a room.
 */
void
rooms_foreach_member_under(const char *resource_id,
						   void (*fn) (RoomMember *m, void *arg), void *arg)
{
	char		key[ROOT_KEY_LEN];
	RootEntry  *root;
	dlist_iter	rit;
	int			len = strlen(resource_id);

	root_key(resource_id, key);
	root = hash_search(roots, key, HASH_FIND, NULL);
	if (root == NULL)
		return;
	dlist_foreach(rit, &root->rooms)
	{
		Room	   *room = dlist_container(Room, in_root, rit.cur);
		dlist_iter	mit;

		if (!((room->len == len && strcmp(room->id, resource_id) == 0) ||
			  is_ancestor(resource_id, len, room->id, room->len)))
			continue;
		dlist_foreach(mit, &room->members)
			fn(dlist_container(RoomMember, in_room, mit.cur), arg);
	}
}

/* ----------------------------------------------------------------
 * The holder's own copy of lock:acquired
 * ---------------------------------------------------------------- */

/* A lookup of the token of a lock granted on a connection's behalf. */
typedef struct HolderEventJob
{
	Job			job;
	char	   *resource_id;
	char	   *event_name;
	char	   *event_payload;	/* without its closing brace */
} HolderEventJob;

static void holder_event_done(Job *job);
static void send_holder_event(Conn *conn, const char *name, const char *payload, int len,
							  int64 token);

/* Looks up the token of a lock granted on conn's behalf, then sends it the event. */
static void
queue_holder_event(Conn *conn, const char *resource_id, const char *name,
				   const char *payload, int len)
{
	HolderEventJob *hj;

	hj = (HolderEventJob *) job_new(sizeof(HolderEventJob),
									"SELECT token::text FROM collab.leases WHERE holder_id = $1 AND resource_id = $2",
									conn, holder_event_done);
	hj->job.nargs = 2;
	hj->job.args[0] = job_strdup(conn->id);
	hj->job.args[1] = job_strdup(resource_id);
	hj->resource_id = hj->job.args[1];
	hj->event_name = job_strdup(name);
	hj->event_payload = job_strndup(payload, len);
	jobs_queue(&hj->job);
}

/*
 * Sends the holder's own copy of an event: payload is the shared payload
 * without its closing brace, and the token (if >= 0) is added.
 */
static void
send_holder_event(Conn *conn, const char *name, const char *payload, int len, int64 token)
{
	StringInfoData buf;

	initStringInfo(&buf);
	sio_event_begin(&buf, NULL, name, SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendBinaryStringInfo(&buf, payload, len);
	if (token >= 0)
	{
		appendStringInfoString(&buf, ",\"token\":");
		sio_append_int64(&buf, token);
	}
	appendStringInfoChar(&buf, '}');
	sio_packet_end(&buf);
	conn_send_buf(conn, &buf);
	pfree(buf.data);
}

static void
holder_event_done(Job *job)
{
	HolderEventJob *hj = (HolderEventJob *) job;
	int64		token = -1;

	if (job->conn->state != CONN_CONNECTED)
		return;
	if (job->result && collab_parse_int64(job->result, &token))
		conn_store_token(job->conn, hj->resource_id, token);
	else
		token = -1;
	send_holder_event(job->conn, hj->event_name, hj->event_payload,
					  strlen(hj->event_payload), token);
}

/* ----------------------------------------------------------------
 * Fan-out
 * ---------------------------------------------------------------- */

/* A committed event, as the fan-out sees it. */
typedef struct Fanout
{
	const char *name;
	const char *rid;
	int			rlen;
	const char *holder;			/* holderId: the connection whose lock it is */
	const char *requester;		/* the one connection it is for, if any */
	bool		presence;		/* reaches the resource and its ancestors only */
	bool		lock;			/* lock:*: reaches descendants' members regardless */
	int			depth;			/* the resource's number of segments */
	bool		acquired;		/* lock:acquired: the holder's copy has the token */
	bool		drops_lock;		/* the holder's lock is gone */
	StringInfoData payload;		/* what clients get, without its closing brace */
	OutFrame   *shared;			/* the frame of every recipient but the holder */
} Fanout;

/* The event's name, resource and routing members; false if malformed. */
static bool
read_routing(JsonObject *ev, Fanout *f)
{
	const char *name;
	size_t		l;

	if (json_object_get_string(ev, "event", &name, &l) != JSON_GET_OK ||
		json_object_get_string(ev, "resourceId", &f->rid, &l) != JSON_GET_OK)
		return false;
	f->name = name;
	f->rlen = (int) l;
	f->holder = NULL;
	f->requester = NULL;
	(void) json_object_get_string(ev, "holderId", &f->holder, &l);
	(void) json_object_get_string(ev, "requesterHolderId", &f->requester, &l);
	/* events for one connection only name it in "to" */
	if (f->requester == NULL)
		(void) json_object_get_string(ev, "to", &f->requester, &l);
	f->presence = strncmp(name, "presence:", 9) == 0;
	f->lock = strncmp(name, "lock:", 5) == 0;
	f->depth = 1;
	for (int i = 0; i < f->rlen; i++)
		if (f->rid[i] == '/')
			f->depth++;
	f->acquired = strcmp(name, "lock:acquired") == 0;
	f->drops_lock = strcmp(name, "lock:released") == 0 || strcmp(name, "lock:expired") == 0;
	return true;
}

/* Events named with COLLAB_INTERNAL_EVENT_PREFIX are the workers' own. */
static bool
is_internal_event(JsonObject *ev)
{
	const char *name;
	size_t		l;

	return json_object_get_string(ev, "event", &name, &l) == JSON_GET_OK &&
		strncmp(name, COLLAB_INTERNAL_EVENT_PREFIX, strlen(COLLAB_INTERNAL_EVENT_PREFIX)) == 0;
}

/* The payload clients get: every member but the routing ones, and its frame. */
static void
client_payload(JsonObject *ev, Fanout *f)
{
	StringInfoData frame;

	initStringInfo(&f->payload);
	appendStringInfoChar(&f->payload, '{');
	for (int i = 0; i < ev->nmembers; i++)
	{
		JsonMember *m = &ev->members[i];

		if (strcmp(m->key, "event") == 0 || collab_event_routing_member(m->key))
			continue;
		if (f->payload.len > 1)
			appendStringInfoChar(&f->payload, ',');
		sio_json_escape(&f->payload, m->key);
		appendStringInfoChar(&f->payload, ':');
		if (m->kind == JSON_KIND_STRING)
			sio_json_escape_len(&f->payload, m->value, m->len);
		else
			appendBinaryStringInfo(&f->payload, m->value, m->len);
	}
	initStringInfo(&frame);
	sio_event_begin(&frame, NULL, f->name, SIO_NO_ACK);
	sio_arg_begin(&frame);
	appendBinaryStringInfo(&frame, f->payload.data, f->payload.len);
	appendStringInfoChar(&frame, '}');
	sio_packet_end(&frame);
	f->shared = outframe_make(frame.data, frame.len);
	f->shared->refcount++;
	pfree(frame.data);
}

/* Is the room on the event's path? */
static bool
on_path(const Room *room, const Fanout *f)
{
	return (room->len == f->rlen && strcmp(room->id, f->rid) == 0) ||
		is_ancestor(room->id, room->len, f->rid, f->rlen) ||
		(!f->presence && is_ancestor(f->rid, f->rlen, room->id, room->len));
}

/* The event for one member of a room on its path, once per connection. */
static void
deliver(RoomMember *m, Fanout *f)
{
	Conn	   *conn = m->conn;
	bool		is_holder = f->holder != NULL && strcmp(conn->id, f->holder) == 0;

	if (conn->fanout_stamp == fanout_stamp)
		return;
	/*
	 * An ancestor's event, for a member who may not view the ancestor (it
	 * may still reach the connection through another of its rooms).
	 */
	if (m->room->len > f->rlen && !f->lock &&
		(m->viewable_ancestors & (1 << (f->depth - 1))) == 0)
		return;
	conn->fanout_stamp = fanout_stamp;
	if (conn->state != CONN_CONNECTED)
		return;
	if (f->requester != NULL && strcmp(conn->id, f->requester) != 0)
		return;
	if (f->drops_lock && is_holder)
		conn_forget_lock(conn, f->rid);
	if (f->acquired && is_holder && conn_held_token(conn, f->rid) < 0)
	{
		/*
		 * Granted on this connection's behalf (an edit hand-off): its copy
		 * must carry the token, which we look up first.
		 */
		queue_holder_event(conn, f->rid, f->name, f->payload.data, f->payload.len);
		return;
	}
	if (f->acquired && is_holder)
	{
		send_holder_event(conn, f->name, f->payload.data, f->payload.len,
						  conn_held_token(conn, f->rid));
		return;
	}
	conn_send_frame(conn, f->shared);
}

/* Fans out one committed event. */
static void
dispatch_event(const JsonMember *elem, bool count)
{
	JsonObject	ev;
	Fanout		f;
	char		key[ROOT_KEY_LEN];
	RootEntry  *root;
	dlist_iter	rit;

	if (!json_member_object(elem, &ev))
	{
		ereport(LOG, (errmsg("collab worker ignores a malformed event")));
		return;
	}
	/* the workers' own bookkeeping, never a browser's */
	if (is_internal_event(&ev))
	{
		if (internal_event_handler)
			internal_event_handler(&ev);
		json_object_free(&ev);
		return;
	}
	if (!read_routing(&ev, &f))
	{
		ereport(LOG, (errmsg("collab worker ignores a malformed event")));
		return;
	}
	if (count)
		metrics_count_event(f.name);
	/* a denial is for the requester alone */
	if (strcmp(f.name, "lock:denied") == 0 && f.requester == NULL)
		return;
	root_key(f.rid, key);
	root = hash_search(roots, key, HASH_FIND, NULL);
	if (root == NULL)
		return;

	client_payload(&ev, &f);
	fanout_stamp++;
	dlist_foreach(rit, &root->rooms)
	{
		Room	   *room = dlist_container(Room, in_root, rit.cur);
		dlist_iter	mit;

		if (!on_path(room, &f))
			continue;
		dlist_foreach(mit, &room->members)
			deliver(dlist_container(RoomMember, in_room, mit.cur), &f);
	}
	outframe_release(f.shared);
	pfree(f.payload.data);
	json_object_free(&ev);
}

/*
 * Fans out the events of one committed payload (the events array of its
 * envelope {"v":1,"events":[...]}, see events.c) to the rooms they
 * concern; count: counted in the metrics.
 */
void
rooms_fan_out(const JsonArray *events, bool count)
{
	for (int i = 0; i < events->nelems; i++)
		if (events->elems[i].kind == JSON_KIND_OBJECT)
			dispatch_event(&events->elems[i], count);
}
