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
		Async_Notify(COLLAB_EVENT_CHANNEL, (char *) lfirst(lc));
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
