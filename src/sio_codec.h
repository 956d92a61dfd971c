/*-------------------------------------------------------------------------
 *
 * sio_codec.h
 *	  Engine.IO v4 / Socket.IO v5 text packets: parsing and encoding.
 *
 * One WebSocket text frame carries exactly one Engine.IO packet (the
 * websocket transport never concatenates packets with \x1e), so the unit of
 * work here is a frame.  This module knows nothing of libwebsockets or of
 * the worker's connection state: it turns bytes into a validated SioFrame
 * and SioFrame-shaped facts back into bytes.  It builds both in the backend
 * (part of collab.so) and in frontend unit tests (-DFRONTEND, linked with
 * libpgcommon), so it reports errors as enum values with static messages and
 * never calls ereport/elog.
 *
 * Wire formats (Socket.IO protocol README, "Packet encoding"):
 *
 *   <eio type>[<data>]
 *   4<sio type>[<# attachments>-][<namespace>,][<ack id>][<JSON payload>]
 *
 * Parsing never copies the payload: spans point into the caller's frame,
 * which must outlive the SioFrame.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SIO_CODEC_H
#define SIO_CODEC_H

#include "lib/stringinfo.h"

/* Longest event name accepted from a client, in bytes after de-escaping. */
#define SIO_MAX_EVENT_NAME		64
/* Longest namespace accepted, in bytes, including the leading '/'. */
#define SIO_MAX_NAMESPACE		128
/*
 * Deepest JSON nesting accepted.  The PostgreSQL JSON parser recurses once
 * per level (and calls check_stack_depth() in the backend, which would
 * ereport); bounding the depth beforehand keeps hostile input from doing
 * either.
 */
#define SIO_MAX_JSON_DEPTH		64
/* Socket.IO ack ids are JavaScript numbers: Number.MAX_SAFE_INTEGER. */
#define SIO_MAX_ACK_ID			INT64CONST(9007199254740991)
/* "no ack id" for the encoders' ack_id arguments */
#define SIO_NO_ACK				INT64CONST(-1)

typedef enum SioEioType
{
	SIO_EIO_OPEN = 0,			/* server -> client only */
	SIO_EIO_CLOSE = 1,
	SIO_EIO_PING = 2,			/* server -> client; client only as "2probe" */
	SIO_EIO_PONG = 3,
	SIO_EIO_MESSAGE = 4,
	SIO_EIO_UPGRADE = 5,
	SIO_EIO_NOOP = 6
} SioEioType;

typedef enum SioPacketType
{
	SIO_CONNECT = 0,
	SIO_DISCONNECT = 1,
	SIO_EVENT = 2,
	SIO_ACK = 3,
	SIO_CONNECT_ERROR = 4,
	SIO_BINARY_EVENT = 5,
	SIO_BINARY_ACK = 6
} SioPacketType;

typedef enum SioParseError
{
	SIO_OK = 0,
	SIO_ERR_EMPTY_FRAME,		/* zero-length frame */
	SIO_ERR_FRAME_TOO_LARGE,	/* longer than the JSON parser can address */
	SIO_ERR_INVALID_UTF8,		/* malformed UTF-8, or a NUL byte */
	SIO_ERR_EIO_TYPE,			/* unknown (or server-only) Engine.IO type */
	SIO_ERR_EIO_PAYLOAD,		/* data on close/upgrade/noop */
	SIO_ERR_SIO_TYPE,			/* empty message or unknown Socket.IO type */
	SIO_ERR_BINARY_UNSUPPORTED, /* BINARY_EVENT / BINARY_ACK */
	SIO_ERR_NAMESPACE,			/* malformed namespace */
	SIO_ERR_ACK_ID,				/* malformed, out of range or misplaced id */
	SIO_ERR_SYNTAX,				/* unexpected characters before the payload */
	SIO_ERR_JSON,				/* payload is not valid JSON */
	SIO_ERR_JSON_DEPTH,			/* payload nested deeper than allowed */
	SIO_ERR_PAYLOAD,			/* payload missing, forbidden or misshapen */
	SIO_ERR_EVENT_NAME			/* event name bad escape, too long, reserved */
} SioParseError;

/*
 * A parsed frame.  Pointers other than nsp/event point into the frame that
 * was parsed; lengths are in bytes.  Fields that do not apply to the packet
 * are zero / NULL.
 */
typedef struct SioFrame
{
	SioEioType	eio_type;
	/* Engine.IO data after the type byte for non-message packets ("probe") */
	const char *eio_data;
	size_t		eio_data_len;

	/* The Socket.IO packet, when eio_type == SIO_EIO_MESSAGE */
	SioPacketType sio_type;
	char		nsp[SIO_MAX_NAMESPACE + 1]; /* "/" when absent */
	bool		has_ack;
	int64		ack_id;			/* 0 .. SIO_MAX_ACK_ID when has_ack */
	int			attachments;	/* binary packets only */

	/* The raw JSON payload, or NULL when the packet has none */
	const char *data;
	size_t		data_len;

	/* EVENT only: the de-escaped name and the arguments after it */
	char		event[SIO_MAX_EVENT_NAME + 1];
	int			nargs;			/* array length minus the name */
	const char *arg0;			/* raw JSON of the first argument, or NULL */
	size_t		arg0_len;

	/* On failure: a short static sentence for logs; never NULL after parse */
	const char *errmsg;
} SioFrame;

/*
 * Parse one WebSocket text frame received from a client.
 *
 * On SIO_ERR_BINARY_UNSUPPORTED the header fields (sio_type, attachments,
 * nsp, has_ack/ack_id) are filled in whenever the header itself was well
 * formed, so that the worker can still answer an acknowledgement with an
 * error before closing.
 */
extern SioParseError sio_parse_frame(const char *buf, size_t len, SioFrame *frame);

/* The enum value's name ("SIO_ERR_JSON") and a generic sentence for it. */
extern const char *sio_error_name(SioParseError err);
extern const char *sio_error_message(SioParseError err);

/* True if buf is well-formed UTF-8 with no NUL bytes. */
extern bool sio_utf8_valid(const char *buf, size_t len);

/*
 * Check that buf is one complete JSON value, nested at most
 * SIO_MAX_JSON_DEPTH deep.  Returns SIO_OK, SIO_ERR_JSON or
 * SIO_ERR_JSON_DEPTH.  Does not check UTF-8 (see sio_utf8_valid).
 */
extern SioParseError sio_json_validate(const char *buf, size_t len);

/*
 * Encoders.
 *
 * Every encoder appends one complete frame (or, for the *_begin/end family,
 * part of one) to buf and never resets it, so a caller may reserve
 * headroom first (libwebsockets wants LWS_PRE bytes before the payload) and
 * may build a broadcast frame once and send the same bytes to every
 * connection in a room.
 *
 * nsp may be NULL or "/" for the main namespace, which the protocol leaves
 * out of the frame; any other value must start with '/' and contain no ','.
 * ack_id is SIO_NO_ACK or 0 .. SIO_MAX_ACK_ID.  JSON arguments are written
 * verbatim and must already be valid JSON values.
 */

/*
 * 0{"sid":"...","upgrades":[],"pingInterval":N,"pingTimeout":N,"maxPayload":N},
 * with "upgrades":["websocket"] when websocket_upgrade
 */
extern void sio_encode_open(StringInfo buf, const char *sid, bool websocket_upgrade,
							int ping_interval_ms, int ping_timeout_ms,
							int64 max_payload);
/* 1 */
extern void sio_encode_close(StringInfo buf);
/* 2 */
extern void sio_encode_ping(StringInfo buf);
/* 3<data>, e.g. "3probe" in answer to "2probe" */
extern void sio_encode_pong(StringInfo buf, const char *data, size_t len);
/* 6 */
extern void sio_encode_noop(StringInfo buf);

/* 40{"sid":"..."}  or  40/admin,{"sid":"..."} */
extern void sio_encode_connect(StringInfo buf, const char *nsp, const char *sid);

/*
 * 44{"message":"...","data":{"code":"..."}}; with code NULL the data member
 * is left out, as in the reference server's 44/random,{"message":"Invalid
 * namespace"}.
 */
extern void sio_encode_connect_error(StringInfo buf, const char *nsp,
									 const char *message, const char *code);

/* 41  or  41/admin, */
extern void sio_encode_disconnect(StringInfo buf, const char *nsp);

/*
 * 42[<nsp>,][<id>]["name"] or 42...["name",<arg>]; arg may be NULL for an
 * event without arguments.
 */
extern void sio_encode_event(StringInfo buf, const char *nsp, const char *event,
							 int64 ack_id, const char *arg, size_t arg_len);

/* 43[<nsp>,]<id>[] or 43...<id>[<arg>] */
extern void sio_encode_ack(StringInfo buf, const char *nsp, int64 ack_id,
						   const char *arg, size_t arg_len);

/*
 * Streaming form, for payloads written straight into buf:
 *
 *	 sio_event_begin(buf, NULL, "doc:saved", SIO_NO_ACK);
 *	 sio_arg_begin(buf);
 *	 ... append one JSON value ...
 *	 sio_packet_end(buf);
 *
 * sio_arg_begin writes the separating comma when one is needed.
 */
extern void sio_event_begin(StringInfo buf, const char *nsp, const char *event,
							int64 ack_id);
extern void sio_ack_begin(StringInfo buf, const char *nsp, int64 ack_id);
extern void sio_arg_begin(StringInfo buf);
extern void sio_packet_end(StringInfo buf);

/*
 * Append s as a quoted JSON string.  Quotes, backslashes and every control
 * character are escaped (\b \f \n \r \t by name, the rest as \u00XX), as
 * are U+2028 and U+2029 so that the output is also safe inside JavaScript
 * source.  Valid UTF-8 passes through; each byte of a malformed sequence
 * becomes U+FFFD, so the output is always valid UTF-8 and valid JSON.  The
 * _len variant also escapes NUL bytes as \u0000.
 */
extern void sio_json_escape(StringInfo buf, const char *s);
extern void sio_json_escape_len(StringInfo buf, const char *s, size_t len);

/* Append a decimal integer, without allocating. */
extern void sio_append_int64(StringInfo buf, int64 value);

#endif							/* SIO_CODEC_H */
