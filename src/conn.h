/*-------------------------------------------------------------------------
 *
 * conn.h
 *	  A client's connection to the worker, apart from how it is carried
 *	  (conn.c).
 *
 * A Conn is the session: its id (collab.ws_connections.connection_id),
 * its user, its rooms, the locks it holds and its outgoing frames.  A
 * Transport carries it: today one WebSocket (ws_transport.c).  The two are
 * separate objects so that a session can be carried by something else (a
 * series of HTTP requests) and outlive a transport that is lost, with its
 * outgoing frames kept for the next one.  A transport tells the session
 * what arrives (session.h); the session writes through the TransportOps of
 * its transport and never calls a transport's functions by name.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_CONN_H
#define COLLAB_CONN_H

#include <ev.h>
#include <libwebsockets.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"

#include "collab.h"

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
	OutFrame   *frame;			/* NULL: a place kept for a frame to come */
	int64		queued_at;		/* lws_now_usecs() */
	struct OutItem *next;
} OutItem;

typedef enum ConnState
{
	CONN_OPEN,					/* Engine.IO open sent, waiting for CONNECT */
	CONN_CONNECTING,			/* authenticated, registration job queued */
	CONN_CONNECTED,				/* Socket.IO session live */
	CONN_REJECTED,				/* CONNECT_ERROR sent, waiting to close */
	CONN_CLOSED					/* ended, jobs may still refer to it */
} ConnState;

typedef struct Conn Conn;
typedef struct Transport Transport;

/* What a session asks of its transport. */
typedef struct TransportOps
{
	/* May a frame be written now, outside the transport's own callbacks? */
	bool		(*ready) (Transport *t);
	/* Writes one frame now; false if the transport failed. */
	bool		(*write) (Transport *t, OutFrame *frame);
	/* Asks to write the queued frames (and close) when the transport can. */
	void		(*want_writable) (Transport *t);
	/* Drops the transport at once. */
	void		(*kill) (Transport *t);
	/* Drops the transport after seconds, whatever it is doing then. */
	void		(*kill_after) (Transport *t, int seconds);
} TransportOps;

/* The part of a transport that a session sees; transports embed it. */
struct Transport
{
	const TransportOps *ops;
	Conn	   *conn;
};

/* A lock this connection holds, to give its holder the token in events. */
typedef struct HeldLock
{
	char	   *resource_id;
	int64		token;
	struct HeldLock *next;
} HeldLock;

struct RoomMember;

/*
 * A stream of jobs that must run in order (a connection's; jobs.c): how
 * many of them are parked, and what the last retry pass decided for it.
 */
typedef struct JobOrder
{
	int			parked;
	uint64		retry_pass;
	bool		retry_moving;
} JobOrder;

struct Conn
{
	char		id[CONN_ID_LEN + 1];
	ConnState	state;
	MemoryContext cxt;			/* everything below is allocated here */
	Transport  *transport;		/* NULL once it is gone */

	/* who, from the token presented at CONNECT */
	char	   *user_id;
	char	   *username;
	int64		token_exp;		/* unix seconds */
	int64		token_iat;		/* unix seconds, at most the time of CONNECT; -1: none */
	char	  **groups;			/* the token's groups (collab.jwt_groups_claim) */
	int			ngroups;
	char		address[64];
	char	   *origin;
	bool		origin_ok;
	bool		unauthenticated;	/* counted in its address's budget */

	/*
	 * Outgoing frames not yet written, and what the transport holds of
	 * frames it could not write whole: both count against
	 * collab.max_output_buffer.
	 */
	OutItem    *out_head;
	OutItem    *out_tail;
	int			out_count;
	size_t		out_bytes;
	size_t		transport_bytes;
	int64		transport_since;	/* when the transport began holding them */
	bool		shed;			/* closed for collab.max_output_buffer */
	bool		held;			/* replies of a batch queued until its fan-out is out */
	bool		close_after_flush;
	int			close_status;	/* a WebSocket close code */
	const char *close_text;		/* its reason, for the client's log */
	bool		ended_cleanly;	/* ended on purpose (see conn_close_after_flush) */

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

	struct RoomMember *rooms;	/* rooms.c */
	HeldLock   *locks;
	int			pending_jobs;
	JobOrder	job_order;		/* jobs.c: its jobs run in order */
	bool		registered;		/* ws_connect committed */
	bool		revoked;		/* its user's sessions were revoked: it ends */
	uint64		fanout_stamp;	/* rooms.c: the last fan-out that reached it */
	dlist_node	all_node;
};

/* Lifecycle */
extern Conn *conn_create(void);
extern void conn_attach(Conn *conn, Transport *t);
extern void conn_detach(Conn *conn);
extern void conn_end(Conn *conn);
extern void conn_pin(Conn *conn);
extern void conn_unpin(Conn *conn);
extern int	conn_count(void);
extern void conn_close_all(int status);
extern void conn_foreach(void (*fn) (Conn *conn, void *arg), void *arg);

/* Sending and closing */
extern OutFrame *outframe_make(const char *data, size_t len);
extern void outframe_release(OutFrame *frame);
extern void conn_send_frame(Conn *conn, OutFrame *frame);
extern void conn_send_text(Conn *conn, const char *data, size_t len);
extern void conn_send_buf(Conn *conn, StringInfo buf);
extern void conn_send_ack(Conn *conn, int64 ack_id, const char *json, size_t len);
extern void conn_send_error(Conn *conn, int64 ack_id, CollabErrorCode code,
							const char *message, const char *resource_id);
extern void conn_close_after_flush(Conn *conn, int status);
extern void conn_kill(Conn *conn);
extern void conn_transport_holds(Conn *conn, size_t bytes);
extern int64 conn_output_bytes(void);

/* The outgoing queue, for a transport's writes and for replies held back */
extern void conn_hold(Conn *conn);
extern OutFrame *conn_queue_pop(Conn *conn);
extern OutItem *conn_queue_slot(Conn *conn);
extern void conn_fill_slot(Conn *conn, OutItem *slot, OutFrame *frame);

/* The locks it holds */
extern void conn_store_token(Conn *conn, const char *resource_id, int64 token);
extern void conn_forget_lock(Conn *conn, const char *resource_id);
extern int64 conn_held_token(Conn *conn, const char *resource_id);

#endif							/* COLLAB_CONN_H */
