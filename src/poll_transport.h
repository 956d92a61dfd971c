/*-------------------------------------------------------------------------
 *
 * poll_transport.h
 *	  Engine.IO's HTTP long-polling transport (poll_transport.c).
 *
 * What a polling request asks of a session, and what it gets back, apart
 * from how the request arrived: from a client through libwebsockets
 * (poll_http.c), or from another worker through the relay (relay.c).
 * Whoever carries a request (its carrier) checks the query, reads the
 * body, and writes the PollAnswer with the HTTP headers it needs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_POLL_TRANSPORT_H
#define COLLAB_POLL_TRANSPORT_H

#include "lib/stringinfo.h"

#include "eio.h"

/* The longest answer to a poll; what does not fit waits for the next one. */
#define POLL_MAX_ANSWER		(1024 * 1024)

typedef struct PollRequest PollRequest;
typedef struct PollTransport PollTransport;

typedef struct PollRequestOps
{
	/*
	 * A GET that waits may be answered: the carrier calls poll_answer()
	 * when it can write (at once, or from its writable callback).
	 */
	void		(*wake) (PollRequest *r);
} PollRequestOps;

/* A polling request, embedded in its carrier's own record. */
struct PollRequest
{
	const PollRequestOps *ops;
	PollTransport *pt;			/* the transport it waits on; NULL when not waiting */
	char		final;			/* a GET let go by its session: '1' close, '6' noop */
};

/* An HTTP answer. */
typedef struct PollAnswer
{
	int			status;
	const char *content_type;
	StringInfoData body;
} PollAnswer;

/* The result of poll_get(). */
typedef enum PollResult
{
	POLL_ANSWERED,				/* the answer is filled in */
	POLL_WAITING				/* the GET waits: wake() comes later */
} PollResult;

/* Engine.IO's error codes of the reference server, for its 400 answers. */
typedef enum PollError
{
	POLL_ERR_UNKNOWN_TRANSPORT = 0,
	POLL_ERR_UNKNOWN_SID = 1,
	POLL_ERR_BAD_HANDSHAKE_METHOD = 2,
	POLL_ERR_BAD_REQUEST = 3,
	POLL_ERR_FORBIDDEN = 4,
	POLL_ERR_UNSUPPORTED_PROTOCOL_VERSION = 5
} PollError;

extern void poll_answer_error(PollAnswer *out, int status, PollError code, const char *message);
extern void poll_answer_free(PollAnswer *a);

extern void poll_open(PollRequest *r, const char *address, const char *origin, PollAnswer *out);
extern PollResult poll_get(PollRequest *r, const char *sid, PollAnswer *out);
extern void poll_answer(PollRequest *r, PollAnswer *out);
extern bool poll_post_begin(PollRequest *r, const char *sid, PollAnswer *out);
extern void poll_post_end(PollRequest *r, const char *body, size_t len, PollAnswer *out);
extern void poll_post_refuse(PollRequest *r, int status, const char *message, PollAnswer *out);
extern void poll_request_gone(PollRequest *r);

#endif							/* COLLAB_POLL_TRANSPORT_H */
