/*-------------------------------------------------------------------------
 *
 * conn.h
 *	  A client's Socket.IO session (conn.c).
 *
 * A Conn is the Socket.IO session of the main namespace: its id (the
 * socket.id, collab.ws_connections.connection_id), its user, its rooms and
 * the locks it holds.  It begins with a CONNECT and ends with a DISCONNECT
 * or with the Engine.IO session that carries it (eio.h), which sends what
 * it says; a new CONNECT on the same Engine.IO session begins a new one.
 * What it sends goes through that Engine.IO session, whichever transport
 * carries it.
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
#include "eio.h"

#define CONN_ID_LEN		20

typedef enum ConnState
{
	CONN_OPEN,					/* CONNECT received, not authenticated yet */
	CONN_CONNECTING,			/* authenticated, registration job queued */
	CONN_CONNECTED,				/* Socket.IO session live */
	CONN_REJECTED,				/* CONNECT_ERROR sent, waiting to close */
	CONN_CLOSED					/* ended, jobs may still refer to it */
} ConnState;

typedef struct Conn Conn;

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
	EioSession *eio;			/* carries it; NULL once it has ended */

	/* who, from the token presented at CONNECT */
	char	   *user_id;
	char	   *username;
	int64		token_exp;		/* unix seconds */
	int64		token_iat;		/* unix seconds, at most the time of CONNECT; -1: none */
	char	  **groups;			/* the token's groups (collab.jwt_groups_claim) */
	int			ngroups;

	bool		held;			/* replies of a batch queued until its fan-out is out */
	ev_timer	timer;			/* the token's expiry (session.c) */
	const char *close_reason;	/* 'disconnected', 'timeout' or 'revoked' */
	bool		ended_cleanly;	/* ended on purpose (see conn_close_after_flush) */

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
extern Conn *conn_create(EioSession *eio);
extern void conn_detach(Conn *conn);
extern void conn_end(Conn *conn);
extern void conn_pin(Conn *conn);
extern void conn_unpin(Conn *conn);
extern int	conn_count(void);
extern void conn_close_all(int status);
extern void conn_foreach(void (*fn) (Conn *conn, void *arg), void *arg);

/* Sending and closing */
extern void conn_send_frame(Conn *conn, OutFrame *frame);
extern void conn_send_text(Conn *conn, const char *data, size_t len);
extern void conn_send_buf(Conn *conn, StringInfo buf);
extern void conn_send_ack(Conn *conn, int64 ack_id, const char *json, size_t len);
extern void conn_send_error(Conn *conn, int64 ack_id, CollabErrorCode code,
							const char *message, const char *resource_id);
extern void conn_encode_error_event(StringInfo buf, CollabErrorCode code, const char *message,
									const char *resource_id);
extern void conn_close_after_flush(Conn *conn, int status);
extern void conn_kill(Conn *conn);

/* Replies held back while a batch's events go out */
extern void conn_hold(Conn *conn);
extern OutItem *conn_queue_slot(Conn *conn);
extern void conn_fill_slot(Conn *conn, OutItem *slot, OutFrame *frame);

/* The locks it holds */
extern void conn_store_token(Conn *conn, const char *resource_id, int64 token);
extern void conn_forget_lock(Conn *conn, const char *resource_id);
extern int64 conn_held_token(Conn *conn, const char *resource_id);

#endif							/* COLLAB_CONN_H */
