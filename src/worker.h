/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  State shared by the WebSocket worker's modules: connections, rooms,
 *	  outgoing frames and the queue of SQL jobs.
 *
 * A worker is one process with one thread; collab.workers of them share
 * the port, each serving the connections the kernel gives it.  libwebsockets callbacks parse
 * and validate what clients send and queue SQL jobs; the main loop runs the
 * jobs in one transaction per batch (a subtransaction per job), sends the
 * replies, and fans out the events that arrive by NOTIFY.  Nothing in a
 * callback runs SQL, and every callback body runs inside a PG_TRY boundary.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_WORKER_H
#define COLLAB_WORKER_H

#include <ev.h>
#include <libwebsockets.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"

#include "jwt.h"

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

typedef enum JobKind
{
	JOB_CONNECT,
	JOB_CALL,
	JOB_DISCONNECT,
	JOB_SWEEP,
	JOB_NOTIFY,
	JOB_HOLDER_TOKEN
} JobKind;

typedef enum JobAfter
{
	AFTER_NOTHING,
	AFTER_JOIN,
	AFTER_LEAVE
} JobAfter;

#define JOB_MAX_ARGS 7

typedef struct Job
{
	JobKind		kind;
	JobAfter	after;
	Conn	   *conn;
	int64		ack_id;			/* SIO_NO_ACK for none */
	const char *sql;			/* statement returning one text column */
	int			nargs;
	char	   *args[JOB_MAX_ARGS];	/* text, NULL for SQL NULL */
	char	   *resource_id;	/* for error events */
	char	   *event_name;		/* JOB_HOLDER_TOKEN: the event to complete */
	char	   *event_payload;	/* ... its payload without the closing brace */
	/* results: one text column, or (ack, token) */
	char	   *result;
	char	   *token;			/* second column, when there is one */
	/* presence:join: the room's users, read after the batch's fan-out */
	char	   *users;
	/* ... and the places of its ack and presence:state until then */
	bool		users_pending;
	OutItem    *ack_slot;
	OutItem    *state_slot;
	const char *err_code;
	char	   *err_message;
	struct Job *next;
} Job;

/* worker.c */
extern struct lws_context *worker_context;
extern struct ev_loop *worker_loop;
extern MemoryContext worker_jobs_cxt;
extern JwtConfig worker_jwt;
extern char *worker_name;
extern int	worker_slot;		/* 0-based: collab worker <slot + 1> */
extern void worker_queue_job(Job *job);
extern int64 worker_now_unix(void);
extern int	collab_fd_callback(struct lws *wsi, enum lws_callback_reasons reason,
							   void *user, void *in, size_t len);
extern void collab_register_workers(void);

/* ws_session.c */
extern const struct lws_protocols *ws_protocols(void);
extern Conn *ws_conn_of(struct lws *wsi);
extern void ws_send_frame(Conn *conn, OutFrame *frame);
extern void ws_send_text(Conn *conn, const char *data, size_t len);
extern void ws_close_after_flush(Conn *conn, int status);
extern void ws_send_error(Conn *conn, int64 ack_id, const char *code,
						  const char *message, const char *resource_id);
extern void ws_job_done(Job *job);
extern void ws_release_held(Conn *conn);
extern void ws_join_users_done(Job *job);
extern void ws_send_holder_event(Conn *conn, const char *name, const char *payload,
								 int len, int64 token);
extern void ws_queue_holder_event(Conn *conn, const char *resource_id, const char *name,
								  const char *payload, int len);
extern OutFrame *outframe_make(const char *data, size_t len);
extern void outframe_release(OutFrame *frame);
extern dlist_head ws_all_conns;
extern int	ws_conn_count;

/* listen.c */
extern void listen_start(struct ev_loop *loop, struct lws_vhost *vh);
extern void listen_stop(struct ev_loop *loop);

/* rooms.c */
extern void rooms_init(void);
extern void rooms_join(Conn *conn, const char *resource_id);
extern void rooms_leave(Conn *conn, const char *resource_id);
extern void rooms_leave_all(Conn *conn);
extern int	rooms_count(void);
extern void rooms_dispatch_notification(const char *payload, bool count);

#endif							/* COLLAB_WORKER_H */
