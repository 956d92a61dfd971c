/*-------------------------------------------------------------------------
 *
 * eio.h
 *	  An Engine.IO session and the transports that carry it (eio.c).
 *
 * An Engine.IO session is what a client opens first: its sid, its
 * heartbeat, its queue of outgoing packets, and the transport that carries
 * it, a WebSocket (ws_transport.c) or a series of HTTP long-polling requests
 * (poll_transport.c).  During an upgrade a second transport, the probe,
 * waits beside the first until the client moves over.  What a session
 * carries above Engine.IO, a Socket.IO session (conn.h), it hands up through
 * the callbacks given to eio_init() and never looks into.
 *
 * A transport tells its session what arrives (eio_receive) and that it is
 * gone (eio_transport_closed); the session writes through the transport's
 * TransportOps and never calls a transport's functions by name.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_EIO_H
#define COLLAB_EIO_H

#include <ev.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"

/*
 * Session ids: the owning worker's slot as the first character, then
 * random characters of the same alphabet (URL-safe base64).
 */
#define EIO_SID_LEN		20

/* A packet to send, shared by every session it is queued on. */
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

typedef struct EioSession EioSession;
typedef struct Transport Transport;

/* What a session asks of a transport. */
typedef struct TransportOps
{
	const char *name;			/* "websocket" or "polling" */
	/* May a frame be written now, outside the transport's own callbacks? */
	bool		(*ready) (Transport *t);
	/* Writes one frame now; false if the transport failed. */
	bool		(*write) (Transport *t, OutFrame *frame);
	/* Asks to write the queued frames (and close) when the transport can. */
	void		(*want_writable) (Transport *t);
	/* Sends one packet of the transport's own (a probe's answer), first. */
	void		(*send_own) (Transport *t, const char *data, size_t len);
	/* Drops the transport soon; it reports its loss (eio_transport_closed). */
	void		(*kill) (Transport *t);
	/*
	 * The session is over, or has moved to another transport: the transport
	 * lets go of it (t->eio is cleared) and closes; it reports nothing more.
	 */
	void		(*release) (Transport *t);
} TransportOps;

/* The part of a transport that a session sees; transports embed it. */
struct Transport
{
	const TransportOps *ops;
	EioSession *eio;			/* NULL once released */
};

/* Why a session ended, for the Socket.IO session it carried. */
typedef enum EioEnd
{
	EIO_END_CLOSED,				/* a close packet, or closed by the server */
	EIO_END_LOST,				/* its transport failed or went away */
	EIO_END_TIMEOUT				/* no pong within collab.ping_timeout */
} EioEnd;

struct EioSession
{
	char		sid[EIO_SID_LEN + 1];
	MemoryContext cxt;
	Transport  *transport;		/* carries the session */
	Transport  *probe;			/* a WebSocket the client may upgrade to */
	bool		probed;			/* the probe answered "3probe": polls return at once */
	bool		upgraded;

	/* the peer, from the request that opened the session */
	char		address[64];
	char	   *origin;			/* NULL: no Origin header */
	bool		origin_ok;
	bool		unauthenticated;	/* counted in its address's budget */
	double		rate_tokens;	/* collab.rate_limit, over every packet */
	int64		rate_stamp;

	/*
	 * Outgoing packets not yet written, and what the transport holds of
	 * packets it could not write whole: both count against
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

	/*
	 * Deadlines in lws_now_usecs() time, served by one libev timer per
	 * session (a heap): lws 4.1's timers are a sorted list, whose every
	 * insertion walks all connections.
	 */
	ev_timer	timer;
	int64		deadline;		/* set by the carried session: dropped then; 0: none */
	int64		next_ping;
	int64		pong_deadline;	/* 0: not waiting */
	int64		probe_deadline; /* 0: no probe */
	int64		flush_deadline; /* closing: the queue must be out by then */
	bool		ending;			/* eio_end_soon() was called */
	EioEnd		end_reason;
	bool		client_closed;	/* the client sent a close packet */

	void	   *conn;			/* what it carries (a Socket.IO session), or NULL */
	dlist_node	all_node;
};

/* What a session hands to the protocol above it. */
typedef struct EioCallbacks
{
	/* A new session: the protocol above sets its deadline. */
	void		(*opened) (EioSession *eio);
	/*
	 * A message packet ("4..."), whole, with its type byte; within says
	 * whether it is within collab.rate_limit.
	 */
	void		(*message) (EioSession *eio, const char *data, size_t len, bool within);
	/* The session ended (eio->end_reason); eio is freed on return. */
	void		(*ended) (EioSession *eio);
} EioCallbacks;

extern void eio_init(struct ev_loop *loop, int worker_slot, const EioCallbacks *callbacks);
extern int	eio_sid_owner(const char *sid);
extern int	eio_local_slot(void);
extern EioSession *eio_lookup(const char *sid);
extern int	eio_count(void);

/* Lifecycle, for transports */
extern EioSession *eio_open(Transport *t, const char *address, const char *origin,
							const char **refusal);
extern bool eio_attach_probe(EioSession *eio, Transport *t);
extern void eio_receive(EioSession *eio, Transport *from, const char *data, size_t len);
extern void eio_transport_closed(EioSession *eio, Transport *t);
extern void eio_end_soon(EioSession *eio, EioEnd reason);
extern bool eio_allows_origin(const char *origin);
extern void eio_authenticated(EioSession *eio);
extern void eio_unauthenticated(EioSession *eio);

/* Sending and closing */
extern OutFrame *outframe_make(const char *data, size_t len);
extern void outframe_release(OutFrame *frame);
extern void eio_send_frame(EioSession *eio, OutFrame *frame);
extern void eio_send_text(EioSession *eio, const char *data, size_t len);
extern void eio_close_after_flush(EioSession *eio, int status);
extern void eio_kill(EioSession *eio);
extern void eio_set_deadline(EioSession *eio, int64 when_us);
extern void eio_transport_holds(EioSession *eio, size_t bytes);
extern int64 eio_output_bytes(void);

/* The outgoing queue, for a transport's writes and for replies held back */
extern void eio_hold(EioSession *eio);
extern void eio_release(EioSession *eio);
extern OutFrame *eio_queue_pop(EioSession *eio);
extern OutItem *eio_queue_slot(EioSession *eio);
extern void eio_fill_slot(EioSession *eio, OutItem *slot, OutFrame *frame);
extern bool eio_may_flush(EioSession *eio);

#endif							/* COLLAB_EIO_H */
