/*-------------------------------------------------------------------------
 *
 * conn.h
 *	  The worker's connections: their state, outgoing frames and the locks
 *	  they hold (conn.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_CONN_H
#define COLLAB_CONN_H

#include <ev.h>
#include <libwebsockets.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"

#define CONN_ID_LEN		20

/* A frame to send, shared by every connection it is queued on. */
typedef struct OutFrame
{
	int			refcount;
	size_t		len;
	unsigned char *data;		/* LWS_PRE bytes of headroom, then len bytes */
} OutFrame;

typedef struct OutItem
{
	OutFrame   *frame;
	struct OutItem *next;
} OutItem;

typedef enum ConnState
{
	CONN_OPEN,					/* Engine.IO open sent, waiting for CONNECT */
	CONN_CONNECTING,			/* authenticated, registration job queued */
	CONN_CONNECTED,				/* Socket.IO session live */
	CONN_REJECTED,				/* CONNECT_ERROR sent, waiting to close */
	CONN_CLOSED					/* socket gone, jobs may still refer to it */
} ConnState;

typedef struct Room Room;
typedef struct Conn Conn;

/* A connection's membership in a room. */
typedef struct RoomMember
{
	Conn	   *conn;
	Room	   *room;
	dlist_node	in_room;
	struct RoomMember *next_of_conn;
} RoomMember;

/* A lock this connection holds, to give its holder the token in events. */
typedef struct HeldLock
{
	char	   *resource_id;
	int64		token;
	struct HeldLock *next;
} HeldLock;

struct Conn
{
	struct lws *wsi;			/* NULL once the socket is gone */
	char		id[CONN_ID_LEN + 1];
	ConnState	state;
	MemoryContext cxt;			/* everything below is allocated here */
	char	   *user_id;
	char	   *username;
	int64		token_exp;		/* unix seconds */
	char		address[64];
	char	   *origin;
	bool		origin_ok;

	StringInfoData rx;			/* reassembly of a fragmented message */
	bool		rx_discard;		/* dropping the rest of an oversized message */

	OutItem    *out_head;
	OutItem    *out_tail;
	int			out_count;
	size_t		out_bytes;
	bool		close_after_flush;
	bool		plain;			/* not TLS, not closing: send_plain() may write */
	bool		held;			/* replies of a batch queued until its fan-out is out */
	int			close_status;

	/*
	 * Deadlines in lws_now_usecs() time, served by one libev timer per
	 * connection (a heap): lws 4.1's timers are a sorted list, whose every
	 * insertion walks all connections.
	 */
	ev_timer	timer;
	int64		connect_deadline;
	int64		next_ping;
	int64		pong_deadline;	/* 0: not waiting */
	const char *close_reason;	/* 'disconnected' or 'timeout' */

	double		rate_tokens;
	int64		rate_stamp;

	RoomMember *rooms;
	HeldLock   *locks;
	int			pending_jobs;
	bool		registered;		/* ws_connect committed */
	uint64		fanout_stamp;
	dlist_node	all_node;
};

extern dlist_head ws_all_conns;
extern int	ws_conn_count;
/* Inside a libwebsockets callback (where frames are only queued)? */
extern int	ws_in_callback;

extern OutFrame *outframe_make(const char *data, size_t len);
extern void outframe_release(OutFrame *frame);
extern void ws_send_frame(Conn *conn, OutFrame *frame);
extern void ws_send_text(Conn *conn, const char *data, size_t len);
extern void conn_send_buf(Conn *conn, StringInfo buf);
extern void conn_send_ack_raw(Conn *conn, int64 ack_id, const char *json, size_t len);
extern void ws_close_after_flush(Conn *conn, int status);
extern void ws_send_error(Conn *conn, int64 ack_id, const char *code,
						  const char *message, const char *resource_id);
extern void conn_pin(Conn *conn);
extern void conn_hold(Conn *conn);
extern void ws_release_held(Conn *conn);
extern void conn_unpin(Conn *conn);
extern OutFrame *conn_queue_pop(Conn *conn);
extern OutItem *conn_queue_slot(Conn *conn);
extern void conn_fill_slot(Conn *conn, OutItem *slot, OutFrame *frame);
extern void conn_free_if_done(Conn *conn);

extern void conn_store_token(Conn *conn, const char *resource_id, int64 token);
extern void conn_forget_lock(Conn *conn, const char *resource_id);
extern int64 conn_held_token(Conn *conn, const char *resource_id);

#endif							/* COLLAB_CONN_H */
