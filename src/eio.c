/*-------------------------------------------------------------------------
 *
 * eio.c
 *	  Engine.IO sessions: the open packet, the heartbeat, the upgrade from
 *	  long-polling to WebSocket, the queue of outgoing packets and the end
 *	  of a session.
 *
 * A session outlives each of its transport's requests: a long-polling
 * client reaches it with a new HTTP request each time, by its sid.  Its
 * packets go to the transport at once when the transport takes them (a
 * WebSocket outside lws callbacks), and otherwise are queued and written
 * when the transport asks for them (a WebSocket's writable callback, the
 * next GET of a poll), so a slow client only delays itself; one whose
 * queue grows past a limit is disconnected.
 *
 * The worker's memory for slow readers is bounded too, whatever carries
 * them: every byte queued here, or held by a transport that could not
 * write a packet whole (it reports that with eio_transport_holds()), counts
 * against collab.max_output_buffer.  When the sum passes it, the sessions
 * that have waited longest for their data to go out (then those with most
 * of it) are shed: their queues are dropped and they are closed (a
 * WebSocket with code 1013 and a reason, long-polling with a close packet)
 * once what the transport holds has gone out; if those transports' own
 * bytes keep the sum too high, the oldest of them are dropped at once.
 *
 * Nothing ends a session in the middle of what is being done to it: the
 * callers that want it gone (a kill, a close packet, two polls at once) ask
 * for its end, and its timer ends it from the event loop.  Only a transport
 * that is itself gone (a WebSocket's close) ends it at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/rand.h>
#include <libwebsockets.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "collab.h"
#include "eio.h"
#include "metrics.h"
#include "sio_codec.h"

/* A client further behind than this is too slow to keep. */
#define OUT_QUEUE_MAX_FRAMES	4096
#define OUT_QUEUE_MAX_BYTES		(16 * 1024 * 1024)

/* Time a client has to finish an upgrade it probed (the reference server's). */
#define PROBE_TIMEOUT_US		(10 * 1000 * 1000LL)

/* A shed session's close waits this long for its transport. */
#define SHED_LINGER_US			(10 * 1000 * 1000LL)

/* WebSocket close code 1013, "Try Again Later" (RFC 6455, IANA registry) */
#define CLOSE_TRY_AGAIN_LATER	1013

#define SHED_REASON "collab.max_output_buffer reached: this connection read too slowly"

static const char sid_alphabet[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

typedef struct SidEntry
{
	char		sid[EIO_SID_LEN + 1];	/* hash key */
	EioSession *eio;
} SidEntry;

static struct ev_loop *eio_loop = NULL;
static int	eio_worker_slot = 0;
static EioCallbacks eio_callbacks;
static MemoryContext sessions_cxt = NULL;
static HTAB *sessions_by_sid = NULL;
static dlist_head all_sessions = DLIST_STATIC_INIT(all_sessions);
static int	nsessions = 0;

/* Bytes queued and held by transports, over every session. */
static int64 output_bytes = 0;

/*
 * Sessions that have not authenticated yet, per client address
 * (collab.max_unauthenticated_per_address).
 */
typedef struct AddressCount
{
	char		address[64];	/* hash key */
	int			unauthenticated;
} AddressCount;

static HTAB *unauthenticated = NULL;

static void eio_end(EioSession *eio, EioEnd reason);
static void schedule_timer(EioSession *eio);
static void account(EioSession *eio, int64 queued, int64 held);

/* The loop that serves the sessions' timers, and what sessions report. */
void
eio_init(struct ev_loop *loop, int worker_slot, const EioCallbacks *callbacks)
{
	HASHCTL		ctl;

	eio_loop = loop;
	eio_worker_slot = worker_slot;
	eio_callbacks = *callbacks;
	sessions_cxt = AllocSetContextCreate(TopMemoryContext, "collab Engine.IO sessions",
										 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = EIO_SID_LEN + 1;
	ctl.entrysize = sizeof(SidEntry);
	ctl.hcxt = sessions_cxt;
	sessions_by_sid = hash_create("collab Engine.IO sessions by sid", 1024, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = 64;
	ctl.entrysize = sizeof(AddressCount);
	ctl.hcxt = sessions_cxt;
	unauthenticated = hash_create("collab unauthenticated connections by address", 256, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* ----------------------------------------------------------------
 * Session ids
 * ---------------------------------------------------------------- */

static void
make_sid(char *out)
{
	unsigned char raw[EIO_SID_LEN];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		elog(ERROR, "could not generate a session id");
	out[0] = sid_alphabet[eio_worker_slot];
	for (int i = 1; i < EIO_SID_LEN; i++)
		out[i] = sid_alphabet[raw[i] & 63];
	out[EIO_SID_LEN] = '\0';
}

/*
 * The slot of the worker that owns sid (0-based), or -1 when sid is not
 * one of ours in form.
 */
int
eio_sid_owner(const char *sid)
{
	const char *p;

	if (sid == NULL || strlen(sid) != EIO_SID_LEN)
		return -1;
	for (int i = 0; i < EIO_SID_LEN; i++)
		if (strchr(sid_alphabet, sid[i]) == NULL || sid[i] == '\0')
			return -1;
	p = strchr(sid_alphabet, sid[0]);
	if (p - sid_alphabet >= COLLAB_MAX_WORKERS)
		return -1;
	return (int) (p - sid_alphabet);
}

/* The slot of this worker, which its sids carry. */
int
eio_local_slot(void)
{
	return eio_worker_slot;
}

/* This worker's session of that sid, or NULL. */
EioSession *
eio_lookup(const char *sid)
{
	char		key[EIO_SID_LEN + 1];
	SidEntry   *e;

	if (sid == NULL || strlen(sid) != EIO_SID_LEN)
		return NULL;
	memcpy(key, sid, sizeof(key));
	e = hash_search(sessions_by_sid, key, HASH_FIND, NULL);
	return e ? e->eio : NULL;
}

int
eio_count(void)
{
	return nsessions;
}

/* Is origin in collab.allowed_origins?  No list, or no Origin header: yes. */
bool
eio_allows_origin(const char *origin)
{
	const char *p = collab_allowed_origins;
	size_t		olen;

	if (p == NULL || *p == '\0' || origin == NULL)
		return true;
	olen = strlen(origin);
	while (*p)
	{
		const char *start;
		const char *end;

		while (*p == ' ' || *p == ',')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && end[-1] == ' ')
			end--;
		if ((size_t) (end - start) == olen && strncmp(start, origin, olen) == 0)
			return true;
	}
	return false;
}

/* ----------------------------------------------------------------
 * Deadlines
 * ---------------------------------------------------------------- */

static void
schedule_timer(EioSession *eio)
{
	int64		now = lws_now_usecs();
	int64		next = INT64_MAX;

	if (eio->ending)
		next = now;
	if (eio->deadline > 0)
		next = Min(next, eio->deadline);
	if (eio->pong_deadline > 0)
		next = Min(next, eio->pong_deadline);
	else if (eio->next_ping > 0)
		next = Min(next, eio->next_ping);
	if (eio->probe_deadline > 0)
		next = Min(next, eio->probe_deadline);
	if (eio->flush_deadline > 0)
		next = Min(next, eio->flush_deadline);
	ev_timer_stop(eio_loop, &eio->timer);
	if (next == INT64_MAX)
		return;
	ev_timer_set(&eio->timer, Max(next - now, 0) / 1e6, 0.0);
	ev_timer_start(eio_loop, &eio->timer);
}

/* The probe is dropped: the session stays on its transport. */
static void
drop_probe(EioSession *eio)
{
	Transport  *p = eio->probe;

	eio->probe = NULL;
	eio->probed = false;
	eio->probe_deadline = 0;
	if (p)
		p->ops->release(p);
}

/*
 * A deadline of eio passed: the end asked for, the one the carried session
 * set, a heartbeat, an upgrade not finished, a close not flushed.
 */
static void
deadlines_passed(EioSession *eio)
{
	int64		now = lws_now_usecs();

	if (eio->ending)
	{
		eio_end(eio, eio->end_reason);
		return;
	}
	if (eio->deadline > 0 && now >= eio->deadline)
	{
		eio_end(eio, EIO_END_LOST);
		return;
	}
	if (eio->pong_deadline > 0 && now >= eio->pong_deadline)
	{
		/* a session the server is closing ends as closed, whichever comes first */
		eio_end(eio, eio->close_after_flush ? EIO_END_CLOSED : EIO_END_TIMEOUT);
		return;
	}
	if (eio->flush_deadline > 0 && now >= eio->flush_deadline)
	{
		eio_end(eio, EIO_END_CLOSED);
		return;
	}
	if (eio->probe_deadline > 0 && now >= eio->probe_deadline)
		drop_probe(eio);
	if (!eio->close_after_flush && eio->pong_deadline == 0 && eio->next_ping > 0 &&
		now >= eio->next_ping)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		sio_encode_ping(&buf);
		eio_send_text(eio, buf.data, buf.len);
		pfree(buf.data);
		eio->pong_deadline = now + (int64) collab_ping_timeout_ms * 1000;
	}
	schedule_timer(eio);
}

/* A session's deadline passed; runs in the event loop, outside lws callbacks. */
static void
timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	EioSession *eio = (EioSession *) w->data;
	MemoryContext oldcxt = CurrentMemoryContext;

	PG_TRY();
	{
		deadlines_passed(eio);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		EmitErrorReport();
		FlushErrorState();
		eio_end(eio, EIO_END_LOST);
	}
	PG_END_TRY();
}

/*
 * The carried session wants eio dropped at when_us (lws_now_usecs() time)
 * unless it moves it again; 0 cancels.
 */
void
eio_set_deadline(EioSession *eio, int64 when_us)
{
	eio->deadline = when_us;
	schedule_timer(eio);
}

/* ----------------------------------------------------------------
 * The budget of unauthenticated sessions per address
 * ---------------------------------------------------------------- */

/*
 * The count of unauthenticated sessions from address, created with zero
 * when create.
 */
static AddressCount *
address_count(const char *address, bool create)
{
	char		key[64];
	AddressCount *a;
	bool		found;

	memset(key, 0, sizeof(key));
	strlcpy(key, address, sizeof(key));
	a = hash_search(unauthenticated, key, create ? HASH_ENTER : HASH_FIND, &found);
	if (a != NULL && !found)
		a->unauthenticated = 0;
	return a;
}

/*
 * eio's Socket.IO session has authenticated, or eio is gone: its address
 * has one slot more.
 */
void
eio_authenticated(EioSession *eio)
{
	AddressCount *a;

	if (!eio->unauthenticated)
		return;
	eio->unauthenticated = false;
	a = address_count(eio->address, false);
	if (a != NULL && --a->unauthenticated <= 0)
		hash_search(unauthenticated, a->address, HASH_REMOVE, NULL);
}

/*
 * eio carries no authenticated session any more (after a DISCONNECT): it
 * counts in its address's budget again until a new CONNECT authenticates.
 */
void
eio_unauthenticated(EioSession *eio)
{
	if (eio->unauthenticated)
		return;
	eio->unauthenticated = true;
	address_count(eio->address, true)->unauthenticated++;
}

/* ----------------------------------------------------------------
 * Opening and ending
 * ---------------------------------------------------------------- */

/*
 * A new session on transport t, from a peer at address (with an Origin
 * header, or NULL): the open packet is queued and the heartbeat started.
 * NULL when the worker has no room for another session; *refusal then
 * says why.
 */
EioSession *
eio_open(Transport *t, const char *address, const char *origin, const char **refusal)
{
	MemoryContext cxt;
	EioSession *eio;
	SidEntry   *e;
	bool		found;
	bool		polling = strcmp(t->ops->name, "polling") == 0;
	StringInfoData buf;

	*refusal = NULL;
	if (nsessions >= collab_max_connections)
	{
		ereport(LOG, (errmsg("collab worker refuses a connection: collab.max_connections (%d) reached",
							 collab_max_connections)));
		collab_metrics->connections_refused++;
		return NULL;
	}
	if (collab_max_unauthenticated_per_address > 0 &&
		address_count(address, true)->unauthenticated >= collab_max_unauthenticated_per_address)
	{
		collab_metrics->connections_refused++;
		*refusal = "too many connections from this address have not authenticated yet "
			"(collab.max_unauthenticated_per_address); try again later";
		return NULL;
	}
	cxt = AllocSetContextCreate(sessions_cxt, "collab Engine.IO session", ALLOCSET_SMALL_SIZES);
	eio = MemoryContextAllocZero(cxt, sizeof(EioSession));
	eio->cxt = cxt;
	do
	{
		make_sid(eio->sid);
		e = hash_search(sessions_by_sid, eio->sid, HASH_ENTER, &found);
	} while (found);
	e->eio = eio;
	dlist_push_tail(&all_sessions, &eio->all_node);
	nsessions++;
	collab_metrics->connections_total++;

	eio->transport = t;
	t->eio = eio;
	strlcpy(eio->address, address, sizeof(eio->address));
	eio_unauthenticated(eio);
	if (origin)
		eio->origin = MemoryContextStrdup(cxt, origin);
	eio->origin_ok = eio_allows_origin(eio->origin);
	eio->rate_tokens = collab_rate_limit;
	eio->rate_stamp = lws_now_usecs();
	ev_init(&eio->timer, timer_cb);
	eio->timer.data = eio;

	initStringInfo(&buf);
	sio_encode_open(&buf, eio->sid, polling, collab_ping_interval_ms, collab_ping_timeout_ms,
					collab_max_message_size);
	eio_send_text(eio, buf.data, buf.len);
	pfree(buf.data);

	eio->next_ping = lws_now_usecs() + (int64) collab_ping_interval_ms * 1000;
	if (eio_callbacks.opened)
		eio_callbacks.opened(eio);
	schedule_timer(eio);
	return eio;
}

/*
 * t (a WebSocket opened with eio's sid) may become eio's transport: it
 * waits beside the current one until the client probes it and moves over.
 * False when eio cannot be upgraded (not on long-polling, or already
 * probing or upgraded).
 */
bool
eio_attach_probe(EioSession *eio, Transport *t)
{
	if (eio->ending || eio->close_after_flush || eio->probe != NULL || eio->upgraded ||
		eio->transport == NULL || strcmp(eio->transport->ops->name, "polling") != 0)
		return false;
	eio->probe = t;
	t->eio = eio;
	eio->probe_deadline = lws_now_usecs() + PROBE_TIMEOUT_US;
	schedule_timer(eio);
	return true;
}

/*
 * Ends eio from the event loop, soon: for callers in the middle of
 * something that eio (or what it carries) takes part in.
 */
void
eio_end_soon(EioSession *eio, EioEnd reason)
{
	if (eio->ending)
		return;
	eio->ending = true;
	eio->end_reason = reason;
	schedule_timer(eio);
}

/*
 * Drops eio soon, with what it had not sent (a client too slow to keep,
 * one that missed its deadline).
 */
void
eio_kill(EioSession *eio)
{
	eio_end_soon(eio, EIO_END_LOST);
}

/*
 * The session is over: what it carried is told, what it had not sent is
 * dropped, its transports let go of it, and it is freed.
 */
static void
eio_end(EioSession *eio, EioEnd reason)
{
	Transport  *t = eio->transport;

	ev_timer_stop(eio_loop, &eio->timer);
	eio->ending = true;
	eio->end_reason = reason;
	if (eio->conn && eio_callbacks.ended)
		eio_callbacks.ended(eio);
	eio->conn = NULL;
	eio_authenticated(eio);
	while (eio->out_head != NULL)
		outframe_release(eio_queue_pop(eio));
	account(eio, 0, -(int64) eio->transport_bytes);
	drop_probe(eio);
	eio->transport = NULL;
	if (t)
		t->ops->release(t);
	hash_search(sessions_by_sid, eio->sid, HASH_REMOVE, NULL);
	dlist_delete(&eio->all_node);
	nsessions--;
	MemoryContextDelete(eio->cxt);
}

/*
 * t is gone (a closed socket): if it carried eio, the session ends with
 * it; a probe that goes away leaves the session where it was.
 */
void
eio_transport_closed(EioSession *eio, Transport *t)
{
	t->eio = NULL;
	if (t == eio->probe)
	{
		eio->probe = NULL;
		eio->probed = false;
		eio->probe_deadline = 0;
		schedule_timer(eio);
		return;
	}
	if (t != eio->transport)
		return;
	eio->transport = NULL;
	if (eio->ending)
		eio_end(eio, eio->end_reason);
	else
		eio_end(eio, eio->close_after_flush ? EIO_END_CLOSED : EIO_END_LOST);
}

/* ----------------------------------------------------------------
 * What arrives
 * ---------------------------------------------------------------- */

/* The client moves to the probe: the old transport is let go. */
static void
upgrade(EioSession *eio)
{
	Transport  *old = eio->transport;

	eio->transport = eio->probe;
	eio->probe = NULL;
	eio->probed = false;
	eio->probe_deadline = 0;
	eio->upgraded = true;
	schedule_timer(eio);
	old->ops->release(old);
	if (eio->out_head != NULL && !eio->held)
		eio->transport->ops->want_writable(eio->transport);
}

/*
 * A packet on the probe: "2probe" is answered "3probe", and a poll that
 * waits returns (with a noop if nothing else) so that the client can pause
 * polling; then "5" completes the upgrade.  Anything else drops the probe.
 */
static void
probe_receive(EioSession *eio, const char *data, size_t len)
{
	if (len == 6 && memcmp(data, "2probe", 6) == 0 && !eio->probed)
	{
		eio->probe->ops->send_own(eio->probe, "3probe", 6);
		eio->probed = true;
		if (eio->transport)
			eio->transport->ops->want_writable(eio->transport);
		return;
	}
	if (len == 1 && data[0] == '5' && eio->probed)
	{
		upgrade(eio);
		return;
	}
	ereport(DEBUG1, (errmsg("collab worker drops the upgrade of session %s: unexpected packet", eio->sid)));
	drop_probe(eio);
	schedule_timer(eio);
}

/*
 * Is one more packet within collab.rate_limit (a token bucket of that many
 * per second)?
 */
static bool
rate_allows(EioSession *eio)
{
	int64		now;

	if (collab_rate_limit <= 0)
		return true;
	now = lws_now_usecs();
	eio->rate_tokens = Min((double) collab_rate_limit,
						   eio->rate_tokens + (now - eio->rate_stamp) * collab_rate_limit / 1e6);
	eio->rate_stamp = now;
	if (eio->rate_tokens < 1.0)
		return false;
	eio->rate_tokens -= 1.0;
	return true;
}

/* A malformed packet: the session is closed. */
static void
protocol_error(EioSession *eio, int status, const char *why)
{
	ereport(DEBUG1, (errmsg("collab worker closes session %s: %s", eio->sid, why)));
	eio_close_after_flush(eio, status);
}

/*
 * One Engine.IO packet from transport from.  Messages go up to the carried
 * protocol; heartbeats, close and upgrade packets are handled here.  A
 * malformed packet closes the session.
 *
 * Every packet counts against collab.rate_limit.  Over the limit, a ping,
 * or a pong that answers no ping of ours, is dropped unanswered (the
 * protocol above decides for messages); a pong to our ping or a close is
 * still handled, since dropping it would only cost the client its
 * connection.
 */
void
eio_receive(EioSession *eio, Transport *from, const char *data, size_t len)
{
	SioFrame	f;
	SioParseError err;
	StringInfoData buf;
	bool		within;

	if (eio->ending)
		return;
	if (from == eio->probe && from != NULL)
	{
		probe_receive(eio, data, len);
		return;
	}
	if (from != eio->transport || eio->close_after_flush)
		return;
	within = rate_allows(eio);
	if (len > 0 && data[0] == '4')
	{
		if (eio_callbacks.message)
			eio_callbacks.message(eio, data, len, within);
		return;
	}
	if (len > 0 && data[0] == 'b')
	{
		/* a binary packet, base64 on long-polling: refused as a binary frame is */
		protocol_error(eio, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, "binary packets are not supported");
		return;
	}
	err = sio_parse_frame(data, len, &f);
	if (err != SIO_OK)
	{
		protocol_error(eio, LWS_CLOSE_STATUS_PROTOCOL_ERR, sio_error_message(err));
		return;
	}
	switch (f.eio_type)
	{
		case SIO_EIO_PONG:
			if (!within && eio->pong_deadline == 0)
			{
				collab_metrics->frames_dropped++;
				return;
			}
			eio->pong_deadline = 0;
			eio->next_ping = lws_now_usecs() + (int64) collab_ping_interval_ms * 1000;
			schedule_timer(eio);
			return;
		case SIO_EIO_PING:
			if (!within)
			{
				collab_metrics->frames_dropped++;
				return;
			}
			initStringInfo(&buf);
			sio_encode_pong(&buf, f.eio_data, f.eio_data_len);
			eio_send_text(eio, buf.data, buf.len);
			pfree(buf.data);
			return;
		case SIO_EIO_CLOSE:
			/* the client leaves: a poll that waits gets a noop */
			eio->client_closed = true;
			if (strcmp(from->ops->name, "polling") == 0)
				eio_end_soon(eio, EIO_END_CLOSED);
			else
				eio_close_after_flush(eio, LWS_CLOSE_STATUS_NORMAL);
			return;
		default:
			return;				/* noop, or an upgrade on the transport it has */
	}
}

/* ----------------------------------------------------------------
 * Outgoing packets
 * ---------------------------------------------------------------- */

OutFrame *
outframe_make(const char *data, size_t len)
{
	OutFrame   *f = MemoryContextAlloc(TopMemoryContext, sizeof(OutFrame));

	f->refcount = 0;
	f->len = len;
	f->data = MemoryContextAlloc(TopMemoryContext, LWS_PRE + len);
	memcpy(f->data + LWS_PRE, data, len);
	return f;
}

void
outframe_release(OutFrame *frame)
{
	if (frame == NULL)			/* an unfilled place (eio_queue_slot) */
		return;
	if (--frame->refcount <= 0)
	{
		pfree(frame->data);
		pfree(frame);
	}
}

/* May a frame go to the transport now, outside its own callbacks? */
static bool
can_write_now(EioSession *eio)
{
	return eio->transport != NULL && !eio->ending && !eio->close_after_flush &&
		eio->transport->ops->ready(eio->transport);
}

static void
write_now(EioSession *eio, OutFrame *frame)
{
	if (!eio->transport->ops->write(eio->transport, frame))
	{
		/* the transport failed: the session ends on the event loop's next pass */
		eio->close_after_flush = true;
		eio->close_status = LWS_CLOSE_STATUS_ABNORMAL_CLOSE;
		eio_kill(eio);
	}
}

/* May the transport write the queue now (not held by a batch's replies)? */
bool
eio_may_flush(EioSession *eio)
{
	return !eio->held && !eio->ending;
}

/*
 * Takes the first item off the session's queue and returns its frame
 * (NULL for an unfilled place, see eio_queue_slot), which the caller
 * releases.
 */
OutFrame *
eio_queue_pop(EioSession *eio)
{
	OutItem    *item = eio->out_head;
	OutFrame   *f = item->frame;

	eio->out_head = item->next;
	if (eio->out_head == NULL)
		eio->out_tail = NULL;
	eio->out_count--;
	if (f != NULL)
		account(eio, -(int64) f->len, 0);
	pfree(item);
	return f;
}

/*
 * Holds eio's outgoing packets in its queue until eio_release(): the
 * replies of a batch wait there while the batch's events go out (jobs.c).
 */
void
eio_hold(EioSession *eio)
{
	eio->held = true;
}

/*
 * Ends a hold: writes what was queued meanwhile, replies first, as far as
 * the transport takes it; the transport asks for the rest when it can.
 */
void
eio_release(EioSession *eio)
{
	eio->held = false;
	while (eio->out_head != NULL && can_write_now(eio))
	{
		OutFrame   *f = eio_queue_pop(eio);

		if (f != NULL)
		{
			write_now(eio, f);
			outframe_release(f);
		}
	}
	if (eio->out_head != NULL && eio->transport != NULL && !eio->ending)
		eio->transport->ops->want_writable(eio->transport);
}

/* A new, empty item at the end of the session's queue. */
static OutItem *
queue_item(EioSession *eio)
{
	OutItem    *item = MemoryContextAlloc(eio->cxt, sizeof(OutItem));

	item->frame = NULL;
	item->queued_at = lws_now_usecs();
	item->next = NULL;
	if (eio->out_tail)
		eio->out_tail->next = item;
	else
		eio->out_head = item;
	eio->out_tail = item;
	eio->out_count++;
	return item;
}

void
eio_send_frame(EioSession *eio, OutFrame *frame)
{
	OutItem    *item;

	/* a shed session gets nothing more: it is closing for what it had */
	if (eio->ending || eio->shed)
		return;
	if (eio->out_count >= OUT_QUEUE_MAX_FRAMES ||
		eio->out_bytes + frame->len > OUT_QUEUE_MAX_BYTES)
	{
		/* too slow: stop feeding it and drop it */
		if (!eio->close_after_flush)
		{
			ereport(LOG, (errmsg("collab worker closes session %s: outgoing queue full", eio->sid)));
			eio->close_after_flush = true;
			eio->close_status = LWS_CLOSE_STATUS_POLICY_VIOLATION;
			eio_kill(eio);
		}
		return;
	}

	/*
	 * Outside the transport's callbacks (replies after a commit, fan-out), a
	 * frame for a session with nothing pending goes straight to the
	 * transport: no writable request, no extra pass of the event loop per
	 * member.  A held session's frames queue until it is released.
	 */
	if (!eio->held && eio->out_head == NULL && can_write_now(eio))
	{
		write_now(eio, frame);
		return;
	}
	item = queue_item(eio);
	item->frame = frame;
	frame->refcount++;
	if (!eio->held && eio->transport != NULL)
		eio->transport->ops->want_writable(eio->transport);
	account(eio, (int64) frame->len, 0);
}

void
eio_send_text(EioSession *eio, const char *data, size_t len)
{
	OutFrame   *f = outframe_make(data, len);

	f->refcount++;
	eio_send_frame(eio, f);
	outframe_release(f);
}

/*
 * A place in a held session's queue for a frame that is not built yet
 * (see join_done in session.c); eio_fill_slot() puts the frame there, or
 * with NULL removes the place.  Nothing writes a held queue, so no empty
 * place is ever seen.
 */
OutItem *
eio_queue_slot(EioSession *eio)
{
	Assert(eio->held);
	return queue_item(eio);
}

void
eio_fill_slot(EioSession *eio, OutItem *slot, OutFrame *frame)
{
	OutItem   **link;
	OutItem    *prev = NULL;

	if (slot == NULL)
		return;
	if (frame != NULL)
	{
		frame->refcount++;
		slot->frame = frame;
		account(eio, (int64) frame->len, 0);
		return;
	}
	for (link = &eio->out_head; *link != slot; link = &(*link)->next)
		prev = *link;
	*link = slot->next;
	if (eio->out_tail == slot)
		eio->out_tail = prev;
	eio->out_count--;
	pfree(slot);
}

/*
 * Closes the session once what is queued has been written: a WebSocket
 * with a close frame of that status, long-polling with a close packet in
 * the answer to the next poll.  A client that does not take it within
 * collab.ping_timeout is dropped.
 */
void
eio_close_after_flush(EioSession *eio, int status)
{
	if (eio->ending || eio->close_after_flush)
		return;
	eio->close_after_flush = true;
	eio->close_status = status;
	eio->flush_deadline = lws_now_usecs() + (int64) collab_ping_timeout_ms * 1000;
	schedule_timer(eio);
	if (eio->transport != NULL)
		eio->transport->ops->want_writable(eio->transport);
}

/* ----------------------------------------------------------------
 * The output budget (collab.max_output_buffer)
 * ---------------------------------------------------------------- */

/* Bytes queued and held by transports, over every session. */
int64
eio_output_bytes(void)
{
	return output_bytes;
}

/*
 * eio's transport now holds bytes of a packet it could not write whole
 * (0: it has written them).
 */
void
eio_transport_holds(EioSession *eio, size_t bytes)
{
	if (bytes > 0 && eio->transport_bytes == 0)
		eio->transport_since = lws_now_usecs();
	account(eio, 0, (int64) bytes - (int64) eio->transport_bytes);
}

/* Since when eio has been waiting for its data to go out (INT64_MAX: it is not). */
static int64
waiting_since(const EioSession *eio)
{
	int64		since = INT64_MAX;

	if (eio->out_head != NULL)
		since = eio->out_head->queued_at;
	if (eio->transport_bytes > 0)
		since = Min(since, eio->transport_since);
	return since;
}

typedef struct ShedCandidate
{
	EioSession *eio;
	int64		since;
	size_t		bytes;
} ShedCandidate;

/* The slowest reader first: waiting longest, then with most to send. */
static int
slowest_first(const void *a, const void *b)
{
	const ShedCandidate *x = a;
	const ShedCandidate *y = b;

	if (x->since != y->since)
		return x->since < y->since ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return 0;
}

/*
 * Sheds eio: what it had queued is dropped, and it is closed (1013 and a
 * reason on a WebSocket) once its transport has written what it holds, or
 * after SHED_LINGER_US.
 */
static void
shed_session(EioSession *eio)
{
	OutItem    *next;

	for (OutItem *item = eio->out_head; item; item = next)
	{
		next = item->next;
		outframe_release(item->frame);
		pfree(item);
	}
	eio->out_head = eio->out_tail = NULL;
	eio->out_count = 0;
	account(eio, -(int64) eio->out_bytes, 0);
	eio->shed = true;
	eio->close_after_flush = true;
	eio->close_status = CLOSE_TRY_AGAIN_LATER;
	eio->close_text = SHED_REASON;
	eio->flush_deadline = lws_now_usecs() + SHED_LINGER_US;
	collab_metrics->connections_shed++;
	schedule_timer(eio);
	if (eio->transport)
		eio->transport->ops->want_writable(eio->transport);
}

/*
 * The sum passed collab.max_output_buffer: sheds the slowest readers until
 * what the others have is a tenth below it (so that the next shedding is
 * not the next packet's; what shed sessions' transports still hold goes
 * with their close, and never makes a fresh session look slow), then, if
 * those bytes keep the sum above, drops the oldest shed sessions at once.
 */
static void
shed_slowest(void)
{
	int64		cap = (int64) collab_max_output_buffer_kb * 1024;
	int64		target = cap - cap / 10;
	ShedCandidate *cands;
	int			n = 0;
	int			nshed = 0;
	int64		held_by_shed = 0;
	dlist_iter	it;

	cands = palloc(sizeof(ShedCandidate) * Max(nsessions, 1));
	dlist_foreach(it, &all_sessions)
	{
		EioSession *e = dlist_container(EioSession, all_node, it.cur);

		if (e->out_bytes + e->transport_bytes == 0 || e->transport == NULL || e->ending)
			continue;
		cands[n].eio = e;
		cands[n].since = waiting_since(e);
		cands[n].bytes = e->out_bytes + e->transport_bytes;
		if (e->shed)
			held_by_shed += e->transport_bytes;
		n++;
	}
	qsort(cands, n, sizeof(ShedCandidate), slowest_first);
	for (int i = 0; i < n && output_bytes - held_by_shed > target; i++)
		if (!cands[i].eio->shed)
		{
			shed_session(cands[i].eio);
			held_by_shed += cands[i].eio->transport_bytes;
			nshed++;
		}
	for (int i = 0; i < n && output_bytes > target; i++)
	{
		EioSession *e = cands[i].eio;

		if (!e->shed || e->transport_bytes == 0)
			continue;
		/* its transport lets go of the bytes as it closes, on the next pass */
		account(e, 0, -(int64) e->transport_bytes);
		eio_kill(e);
	}
	pfree(cands);
	if (nshed > 0)
		ereport(LOG,
				(errmsg("collab worker closes %d connection(s) that read too slowly: collab.max_output_buffer (%d kB) reached",
						nshed, collab_max_output_buffer_kb)));
}

/*
 * Adds to eio's queued and transport-held bytes and to the worker's sum;
 * past collab.max_output_buffer, the slowest readers are shed.
 */
static void
account(EioSession *eio, int64 queued, int64 held)
{
	eio->out_bytes = (size_t) ((int64) eio->out_bytes + queued);
	eio->transport_bytes = (size_t) ((int64) eio->transport_bytes + held);
	output_bytes += queued + held;
	collab_metrics->output_bytes = output_bytes;
	if ((queued > 0 || held > 0) &&
		output_bytes > (int64) collab_max_output_buffer_kb * 1024)
		shed_slowest();
}
