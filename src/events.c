/*-------------------------------------------------------------------------
 *
 * events.c
 *	  Transaction-scoped event publication.
 *
 * Functions that change what browsers must hear about (locks, saves,
 * presence) queue one JSON event each, built by payloads.c, with
 * collab_publish_event().  At commit
 * the queue becomes one payload on channel collab_events:
 *
 *     {"v":1,"events":[{...},{...}]}
 *
 * (split when it would not fit NOTIFY's 8000-byte limit).  While the worker
 * runs, payloads go through the shared-memory queue (event_queue.c), which
 * avoids NOTIFY's cluster-wide commit lock, and the worker forwards them to
 * NOTIFY listeners; otherwise they are sent with NOTIFY directly.  Events
 * of a rolled-back subtransaction or transaction are dropped: only what
 * commits is heard.
 *
 * Whoever can connect may LISTEN, so both routes send NOTIFY only the
 * public form of a payload (collab_public_payload(), also SQL's
 * collab.public_payload()): without the internal events and without the
 * members that name browser connections, which only the workers read.  It
 * is C so that the direct route, at pre-commit, runs no SQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "collab.h"
#include "event_queue.h"
#include "json_object.h"
#include "sio_codec.h"

/* Largest payload we hand to NOTIFY (the server's limit is 8000 bytes). */
#define EVENT_PAYLOAD_MAX	7900
#define EVENT_ENVELOPE_HEAD "{\"v\":1,\"events\":["
#define EVENT_ENVELOPE_TAIL "]}"

typedef struct PendingEvent
{
	SubTransactionId subid;
	char	   *json;
	int			len;
} PendingEvent;

static List *pending_events = NIL;	/* in TopTransactionContext */
static bool callbacks_registered = false;

/* Payloads handed to the shared queue at commit, and the room reserved. */
static List *queued_payloads = NIL;
static Size queued_reserved = 0;

/* The pending events as envelopes, each under the payload limit. */
static List *
build_payloads(void)
{
	StringInfoData buf;
	ListCell   *lc;
	int			in_batch = 0;
	List	   *payloads = NIL;

	initStringInfo(&buf);
	appendStringInfoString(&buf, EVENT_ENVELOPE_HEAD);
	foreach(lc, pending_events)
	{
		PendingEvent *ev = lfirst(lc);

		if (in_batch > 0 &&
			buf.len + 1 + ev->len + strlen(EVENT_ENVELOPE_TAIL) > EVENT_PAYLOAD_MAX)
		{
			appendStringInfoString(&buf, EVENT_ENVELOPE_TAIL);
			payloads = lappend(payloads, buf.data);
			initStringInfo(&buf);
			appendStringInfoString(&buf, EVENT_ENVELOPE_HEAD);
			in_batch = 0;
		}
		if (in_batch > 0)
			appendStringInfoChar(&buf, ',');
		appendBinaryStringInfo(&buf, ev->json, ev->len);
		in_batch++;
	}
	appendStringInfoString(&buf, EVENT_ENVELOPE_TAIL);
	return lappend(payloads, buf.data);
}

static void
flush_events(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	List	   *payloads = build_payloads();
	Size		reserved = event_queue_reserve(payloads);
	ListCell   *lc;

	MemoryContextSwitchTo(old);
	if (reserved > 0)
	{
		queued_payloads = payloads;
		queued_reserved = reserved;
		return;
	}
	foreach(lc, payloads)
	{
		char	   *pub = NULL;

		if (collab_public_payload(lfirst(lc), strlen(lfirst(lc)), &pub) && pub != NULL)
			Async_Notify(COLLAB_EVENT_CHANNEL, pub);
	}
}

static void
events_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pending_events != NIL)
				flush_events();
			pending_events = NIL;
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (pending_events != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed collab locks, saves or presence")));
			break;
		case XACT_EVENT_COMMIT:
			if (queued_payloads != NIL)
				event_queue_append(queued_payloads, queued_reserved);
			queued_payloads = NIL;
			queued_reserved = 0;
			pending_events = NIL;
			break;
		case XACT_EVENT_ABORT:
			if (queued_reserved > 0)
				event_queue_unreserve(queued_reserved);
			queued_payloads = NIL;
			queued_reserved = 0;
			pending_events = NIL;
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* the list lived in TopTransactionContext, now gone */
			pending_events = NIL;
			break;
		default:
			break;
	}
}

static void
events_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (pending_events == NIL)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending_events)
		{
			PendingEvent *ev = lfirst(lc);

			if (ev->subid == mySubid)
				pending_events = foreach_delete_current(pending_events, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending_events)
		{
			PendingEvent *ev = lfirst(lc);

			if (ev->subid == mySubid)
				ev->subid = parentSubid;
		}
	}
}

/* Queues one event (a JSON object) for publication at commit. */
void
collab_publish_event(const char *json, int len)
{
	MemoryContext old;
	PendingEvent *ev;

	if (len + strlen(EVENT_ENVELOPE_HEAD) + strlen(EVENT_ENVELOPE_TAIL) > EVENT_PAYLOAD_MAX)
		ereport(ERROR,
				(errcode(collab_errcode(CE_INTERNAL)),
				 errmsg("collab event of %d bytes exceeds the notification payload limit", len)));
	if (!callbacks_registered)
	{
		RegisterXactCallback(events_xact_callback, NULL);
		RegisterSubXactCallback(events_subxact_callback, NULL);
		callbacks_registered = true;
	}

	old = MemoryContextSwitchTo(TopTransactionContext);
	ev = palloc(sizeof(PendingEvent));
	ev->subid = GetCurrentSubTransactionId();
	ev->len = len;
	ev->json = pnstrdup(json, len);
	pending_events = lappend(pending_events, ev);
	MemoryContextSwitchTo(old);
}

/* collab._publish(event text) */
PG_FUNCTION_INFO_V1(collab_publish);
Datum
collab_publish(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	collab_publish_event(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	PG_RETURN_VOID();
}

/* collab.pending_events(): what this transaction will publish at commit */
PG_FUNCTION_INFO_V1(collab_pending_events);
Datum
collab_pending_events(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	foreach(lc, pending_events)
	{
		PendingEvent *ev = lfirst(lc);
		Datum		value = PointerGetDatum(cstring_to_text_with_len(ev->json, ev->len));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}

/* ----------------------------------------------------------------
 * What NOTIFY listeners may see
 * ---------------------------------------------------------------- */

/*
 * Is key a routing member of an event: the connection (or application
 * holder) it is about or for, which the workers read and strip before a
 * browser or a listener sees the event?
 */
bool
collab_event_routing_member(const char *key)
{
	return strcmp(key, "holderId") == 0 || strcmp(key, "requesterHolderId") == 0 ||
		strcmp(key, "previousHolderId") == 0 || strcmp(key, "to") == 0;
}

static void
append_json_value(StringInfo buf, const JsonMember *m)
{
	if (m->kind == JSON_KIND_STRING)
		sio_json_escape_len(buf, m->value, m->len);
	else
		appendBinaryStringInfo(buf, m->value, m->len);
}

/* A PresenceUser without its connectionId; false if it is not an object. */
static bool
append_public_user(StringInfo buf, const JsonMember *user)
{
	JsonObject	u;
	bool		first = true;

	if (!json_member_object(user, &u))
		return false;
	appendStringInfoChar(buf, '{');
	for (int i = 0; i < u.nmembers; i++)
	{
		if (strcmp(u.members[i].key, "connectionId") == 0)
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		sio_json_escape(buf, u.members[i].key);
		appendStringInfoChar(buf, ':');
		append_json_value(buf, &u.members[i]);
	}
	appendStringInfoChar(buf, '}');
	json_object_free(&u);
	return true;
}

/* One event's public form appended to buf; false if it has none. */
static bool
append_public_event(StringInfo buf, const JsonMember *elem)
{
	JsonObject	ev;
	const char *name;
	size_t		l;
	bool		first = true;

	if (!json_member_object(elem, &ev))
		return false;
	if (json_object_get_string(&ev, "event", &name, &l) != JSON_GET_OK ||
		strncmp(name, COLLAB_INTERNAL_EVENT_PREFIX, strlen(COLLAB_INTERNAL_EVENT_PREFIX)) == 0)
	{
		json_object_free(&ev);
		return false;
	}
	appendStringInfoChar(buf, '{');
	for (int i = 0; i < ev.nmembers; i++)
	{
		const JsonMember *m = &ev.members[i];

		if (collab_event_routing_member(m->key))
			continue;
		if (!first)
			appendStringInfoChar(buf, ',');
		first = false;
		sio_json_escape(buf, m->key);
		appendStringInfoChar(buf, ':');
		if (strcmp(m->key, "user") == 0 && append_public_user(buf, m))
			continue;
		append_json_value(buf, m);
	}
	appendStringInfoChar(buf, '}');
	json_object_free(&ev);
	return true;
}

/*
 * Appends the public forms of events to buf, each preceded by a comma when
 * *n (events in buf) is not 0.
 */
static void
append_public_array(const JsonArray *events, StringInfo buf, int *n)
{
	for (int i = 0; i < events->nelems; i++)
	{
		int			before = buf->len;

		if (*n > 0)
			appendStringInfoChar(buf, ',');
		if (append_public_event(buf, &events->elems[i]))
			(*n)++;
		else
		{
			/* nothing of it: not even its comma */
			buf->len = before;
			buf->data[before] = '\0';
		}
	}
}

/*
 * Appends the public forms of payload's events ({"v":1,"events":[...]})
 * to buf, each preceded by a comma when *n (events in buf) is not 0; false
 * if payload is not such an envelope.
 */
static bool
append_public_events(const char *payload, size_t len, StringInfo buf, int *n)
{
	JsonObject	env;
	JsonArray	events;
	char	   *perr = NULL;
	const JsonMember *v;

	if (!json_object_parse(payload, len, &env, &perr))
		return false;
	v = json_object_get(&env, "v");
	if (v == NULL || v->kind != JSON_KIND_NUMBER ||
		!json_member_array(json_object_get(&env, "events"), &events))
	{
		json_object_free(&env);
		return false;
	}
	append_public_array(&events, buf, n);
	json_array_free(&events);
	json_object_free(&env);
	return true;
}

/*
 * The public form of a payload {"v":1,"events":[...]}: its events but the
 * internal ones, without routing members and without user.connectionId.
 * *out is NULL when no event is left.  False if payload is not such an
 * envelope.
 */
bool
collab_public_payload(const char *payload, size_t len, char **out)
{
	StringInfoData buf;
	int			n = 0;

	*out = NULL;
	initStringInfo(&buf);
	appendStringInfoString(&buf, EVENT_ENVELOPE_HEAD);
	if (!append_public_events(payload, len, &buf, &n))
	{
		pfree(buf.data);
		return false;
	}
	appendStringInfoString(&buf, EVENT_ENVELOPE_TAIL);
	if (n > 0)
		*out = buf.data;
	else
		pfree(buf.data);
	return true;
}

/*
 * The forwarding worker's NOTIFY payloads: the public events of the
 * payloads it reads (the events array of each, parsed by the worker),
 * joined into as few envelopes under the NOTIFY limit as they fit in, in
 * order.  One notification per envelope rather than per
 * committed transaction: listeners read an envelope's events one by one
 * either way.  emit receives each full envelope (palloc'd in the caller's
 * context).
 */
static StringInfoData forward_buf;
static int	forward_n = 0;

void
collab_forward_flush(void (*emit) (char *envelope))
{
	if (forward_n == 0)
		return;
	appendStringInfoString(&forward_buf, EVENT_ENVELOPE_TAIL);
	emit(pstrdup(forward_buf.data));
	resetStringInfo(&forward_buf);
	forward_n = 0;
}

void
collab_forward_add(const JsonArray *events, void (*emit) (char *envelope))
{
	StringInfoData one;
	int			n = 0;

	if (forward_buf.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&forward_buf);
		MemoryContextSwitchTo(old);
	}
	initStringInfo(&one);
	append_public_array(events, &one, &n);
	if (n > 0)
	{
		if (forward_n > 0 &&
			forward_buf.len + 1 + one.len + strlen(EVENT_ENVELOPE_TAIL) > EVENT_PAYLOAD_MAX)
			collab_forward_flush(emit);
		if (forward_n == 0)
			appendStringInfoString(&forward_buf, EVENT_ENVELOPE_HEAD);
		else
			appendStringInfoChar(&forward_buf, ',');
		appendBinaryStringInfo(&forward_buf, one.data, one.len);
		forward_n += n;
	}
	pfree(one.data);
}

/* collab.public_payload(payload text): NULL when nothing is left */
PG_FUNCTION_INFO_V1(collab_public_payload_sql);
Datum
collab_public_payload_sql(PG_FUNCTION_ARGS)
{
	char	   *payload = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *out;

	if (!collab_public_payload(payload, strlen(payload), &out))
		ereport(ERROR,
				(errcode(collab_errcode(CE_BAD_REQUEST)),
				 errmsg("not an event payload of collab"),
				 errdetail("A payload is {\"v\": 1, \"events\": [...]} with an object per event.")));
	if (out == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(out));
}
