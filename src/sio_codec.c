/*-------------------------------------------------------------------------
 *
 * sio_codec.c
 *	  Engine.IO v4 / Socket.IO v5 text packets: parsing and encoding.
 *
 * The parser follows the reference decoder (socket.io-parser) where the
 * protocol README is silent, and is stricter where the README says MUST:
 * an EVENT payload must be a non-empty array whose first element is the
 * event name, an ACK payload must be an array and carry an id, a CONNECT
 * payload may only be an object and a DISCONNECT carries none.  Anything
 * else is refused with a specific SioParseError; the worker then closes
 * the connection, as the protocol test suites expect.
 *
 * The whole frame is checked for UTF-8 first, because a WebSocket text
 * frame must be UTF-8 and the payload may later be stored or echoed.  JSON
 * syntax is checked with PostgreSQL's own parser (common/jsonapi.h) without
 * de-escaping, which keeps it free of ereport (no encoding conversion);
 * nesting depth is bounded before the recursive-descent parser ever sees
 * the input, and the event name is de-escaped, as json_object.c does for
 * every string it reads (json_depth_check, json_string_decode).
 *
 * IDENTIFICATION
 *	  src/sio_codec.c
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "json_object.h"
#include "sio_codec.h"

/*
 * Event names that socket.io reserves for its own use; the reference
 * decoder refuses packets that try to emit them, and so do we.
 */
static const char *const reserved_events[] = {
	"connect",
	"connect_error",
	"disconnect",
	"disconnecting",
	"newListener",
	"removeListener",
};

/* What the JSON scan learned about the payload's top level. */
typedef struct JsonShape
{
	JsonLexContext *lex;
	int			depth;			/* containers currently open */
	int			nelems;			/* elements of a top-level array */
	JsonTokenType elem0_type;	/* first token of element 0 */
	const char *elem0;
	const char *elem0_end;
	const char *elem1;
	const char *elem1_end;
} JsonShape;

static SioParseError parse_socketio(const char *p, size_t n, SioFrame *f);

static SioParseError
fail(SioFrame *f, SioParseError err, const char *msg)
{
	f->errmsg = msg;
	return err;
}

static inline bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* ----------------------------------------------------------------
 * Validation helpers
 * ----------------------------------------------------------------
 */

bool
sio_utf8_valid(const char *buf, size_t len)
{
	if (len > (size_t) PG_INT32_MAX)
		return false;

	/*
	 * pg_encoding_verifymbstr follows Unicode's table of well-formed byte
	 * sequences (no overlongs, no surrogates, nothing past U+10FFFF) and
	 * stops at a NUL byte, which we want to refuse as well: no client has a
	 * reason to send one outside a JSON escape.
	 */
	return pg_encoding_verifymbstr(PG_UTF8, buf, (int) len) == (int) len;
}

static void
shape_push(void *state)
{
	((JsonShape *) state)->depth++;
}

static void
shape_pop(void *state)
{
	((JsonShape *) state)->depth--;
}

/*
 * When an element starts, the lexer's current token is its first token;
 * when it ends, the lexer has already read one token past it, so the
 * element ends at prev_token_terminator.
 */
static void
shape_elem_start(void *state, bool isnull)
{
	JsonShape  *sh = (JsonShape *) state;

	if (sh->depth != 1)
		return;
	if (sh->nelems == 0)
	{
		sh->elem0 = sh->lex->token_start;
		sh->elem0_type = sh->lex->token_type;
	}
	else if (sh->nelems == 1)
		sh->elem1 = sh->lex->token_start;
	sh->nelems++;
}

static void
shape_elem_end(void *state, bool isnull)
{
	JsonShape  *sh = (JsonShape *) state;

	if (sh->depth != 1)
		return;
	if (sh->nelems == 1)
		sh->elem0_end = sh->lex->prev_token_terminator;
	else if (sh->nelems == 2)
		sh->elem1_end = sh->lex->prev_token_terminator;
}

/* Validate one JSON value and, if it is an array, locate elements 0 and 1. */
static SioParseError
scan_json(const char *s, size_t len, JsonShape *sh)
{
	JsonSemAction sem;
	JsonParseErrorType jerr;

	memset(sh, 0, sizeof(*sh));
	if (len == 0 || len > (size_t) PG_INT32_MAX)
		return SIO_ERR_JSON;
	switch (json_depth_check(s, len, SIO_MAX_JSON_DEPTH))
	{
		case JSON_DEPTH_OK:
			break;
		case JSON_DEPTH_EXCEEDED:
			return SIO_ERR_JSON_DEPTH;
		case JSON_DEPTH_UNBALANCED:
			return SIO_ERR_JSON;
	}

	/* need_escapes = false: no de-escaping, hence no encoding conversion */
	sh->lex = makeJsonLexContextCstringLen(unconstify(char *, s), (int) len,
										   PG_UTF8, false);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = sh;
	sem.object_start = shape_push;
	sem.object_end = shape_pop;
	sem.array_start = shape_push;
	sem.array_end = shape_pop;
	sem.array_element_start = shape_elem_start;
	sem.array_element_end = shape_elem_end;

	jerr = pg_parse_json(sh->lex, &sem);
	pfree(sh->lex);
	sh->lex = NULL;
	return jerr == JSON_SUCCESS ? SIO_OK : SIO_ERR_JSON;
}

SioParseError
sio_json_validate(const char *buf, size_t len)
{
	JsonShape	sh;

	return scan_json(buf, len, &sh);
}

/* ----------------------------------------------------------------
 * Event names
 * ----------------------------------------------------------------
 */

/*
 * De-escape the JSON string token [tok, end) (quotes included) into out,
 * which has room for SIO_MAX_EVENT_NAME bytes and a terminator, with
 * json_string_decode(): the lexer has vouched for the escape syntax and the
 * frame for its UTF-8, but bounds are re-checked rather than relied on.
 * Control characters (escaped or not) and NUL are refused because names end
 * up in logs and C strings, and so are socket.io's reserved names.
 */
static SioParseError
decode_event_name(const char *tok, const char *end, char *out, const char **msg)
{
	char	   *name;
	size_t		len;

	switch (json_string_decode(tok, end - tok, &name, &len))
	{
		case JSON_STRING_OK:
			break;
		case JSON_STRING_MALFORMED:
			*msg = "event name is not a string";
			return SIO_ERR_PAYLOAD;
		case JSON_STRING_SURROGATE:
			*msg = "event name contains an unpaired surrogate";
			return SIO_ERR_EVENT_NAME;
		case JSON_STRING_NUL:
			*msg = "event name contains a control character";
			return SIO_ERR_EVENT_NAME;
		case JSON_STRING_BAD_ESCAPE:
		default:
			*msg = "event name has a malformed escape";
			return SIO_ERR_EVENT_NAME;
	}
	for (size_t i = 0; i < len; i++)
	{
		/* a byte of a multibyte character is >= 0x80: only these are controls */
		if ((unsigned char) name[i] < 0x20 || name[i] == 0x7f)
		{
			pfree(name);
			*msg = "event name contains a control character";
			return SIO_ERR_EVENT_NAME;
		}
	}
	if (len > SIO_MAX_EVENT_NAME)
	{
		pfree(name);
		*msg = "event name is longer than 64 bytes";
		return SIO_ERR_EVENT_NAME;
	}
	memcpy(out, name, len + 1);
	pfree(name);

	for (size_t i = 0; i < lengthof(reserved_events); i++)
	{
		if (strcmp(out, reserved_events[i]) == 0)
		{
			*msg = "event name is reserved by socket.io";
			return SIO_ERR_EVENT_NAME;
		}
	}
	return SIO_OK;
}

/* ----------------------------------------------------------------
 * Parsing
 * ----------------------------------------------------------------
 */

SioParseError
sio_parse_frame(const char *buf, size_t len, SioFrame *f)
{
	memset(f, 0, sizeof(*f));
	f->nsp[0] = '/';
	f->errmsg = "";

	if (len == 0)
		return fail(f, SIO_ERR_EMPTY_FRAME, "empty frame");
	if (len > (size_t) PG_INT32_MAX)
		return fail(f, SIO_ERR_FRAME_TOO_LARGE, "frame too large");
	if (!sio_utf8_valid(buf, len))
		return fail(f, SIO_ERR_INVALID_UTF8,
					"frame is not valid UTF-8 or contains a NUL byte");

	switch (buf[0])
	{
		case '0':
			return fail(f, SIO_ERR_EIO_TYPE,
						"open packets are sent by the server only");
		case '1':
		case '5':
		case '6':
			f->eio_type = (SioEioType) (buf[0] - '0');
			if (len > 1)
				return fail(f, SIO_ERR_EIO_PAYLOAD,
							"close, upgrade and noop packets carry no data");
			return SIO_OK;
		case '2':
		case '3':
			/* ping/pong data ("probe") is echoed, never interpreted */
			f->eio_type = (SioEioType) (buf[0] - '0');
			if (len > 1)
			{
				f->eio_data = buf + 1;
				f->eio_data_len = len - 1;
			}
			return SIO_OK;
		case '4':
			f->eio_type = SIO_EIO_MESSAGE;
			return parse_socketio(buf + 1, len - 1, f);
		default:
			return fail(f, SIO_ERR_EIO_TYPE, "unknown Engine.IO packet type");
	}
}

/*
 * Explain characters found where an ack id or the payload should start.
 * The cases are only there to give the worker's log a useful sentence.
 */
static SioParseError
classify_garbage(const char *p, size_t n, size_t i, bool had_nsp,
				 SioPacketType type, SioFrame *f)
{
	size_t		j;

	if (p[i] == '-' && i + 1 < n && is_digit(p[i + 1]))
		return fail(f, SIO_ERR_ACK_ID, "ack id must be a non-negative integer");

	/* "2admin,[...]": a namespace without its slash */
	if (!had_nsp && !f->has_ack)
	{
		for (j = i; j < n && p[j] != '[' && p[j] != '{' && p[j] != '"'; j++)
		{
			if (p[j] == ',')
				return fail(f, SIO_ERR_NAMESPACE,
							"namespace must start with '/'");
		}
	}

	/* "42abc[...]", "212.5[...]": something id-like before the payload */
	if (type == SIO_EVENT || type == SIO_ACK)
	{
		for (j = i; j < n; j++)
		{
			char		c = p[j];

			if (!(is_digit(c) || (c >= 'a' && c <= 'z') ||
				  (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '_'))
				break;
		}
		if (j > i && j < n && (p[j] == '[' || p[j] == '{'))
			return fail(f, SIO_ERR_ACK_ID,
						"ack id must be a non-negative integer");
	}

	return fail(f, SIO_ERR_SYNTAX,
				had_nsp ? "unexpected characters after the namespace" :
				"unexpected characters before the payload");
}

/*
 * Parse [<# of attachments>-][<namespace>,][<ack id>] starting at *pos, the
 * byte after the packet type, leaving *pos at the first byte of the
 * payload (or at the end).
 */
static SioParseError
parse_header(const char *p, size_t n, size_t *pos, bool *had_nsp, SioFrame *f)
{
	size_t		i = *pos;

	if (f->sio_type == SIO_BINARY_EVENT || f->sio_type == SIO_BINARY_ACK)
	{
		int			count = 0;
		size_t		start = i;

		while (i < n && is_digit(p[i]) && count <= 1000)
			count = count * 10 + (p[i++] - '0');
		if (i == start || count > 1000 || i >= n || p[i] != '-')
			return fail(f, SIO_ERR_SYNTAX, "malformed attachment count");
		f->attachments = count;
		i++;
	}

	/* <namespace>, : runs to the first comma or to the end of the frame */
	if (i < n && p[i] == '/')
	{
		size_t		start = i;
		size_t		nsp_len;

		while (i < n && p[i] != ',')
		{
			unsigned char c = (unsigned char) p[i];

			if (c < 0x20 || c == 0x7f)
				return fail(f, SIO_ERR_NAMESPACE,
							"namespace contains a control character");
			i++;
		}
		nsp_len = i - start;
		if (nsp_len > SIO_MAX_NAMESPACE)
			return fail(f, SIO_ERR_NAMESPACE, "namespace is too long");
		memcpy(f->nsp, p + start, nsp_len);
		f->nsp[nsp_len] = '\0';
		if (i < n)
			i++;				/* the comma */
		*had_nsp = true;
	}

	/* <ack id>: a JavaScript safe integer */
	if (i < n && is_digit(p[i]))
	{
		int64		id = 0;

		while (i < n && is_digit(p[i]))
		{
			int			d = p[i++] - '0';

			if (id > (SIO_MAX_ACK_ID - d) / 10)
				return fail(f, SIO_ERR_ACK_ID,
							"ack id is larger than 2^53-1");
			id = id * 10 + d;
		}
		f->has_ack = true;
		f->ack_id = id;
	}

	*pos = i;
	return SIO_OK;
}

static SioParseError
parse_socketio(const char *p, size_t n, SioFrame *f)
{
	size_t		i = 1;
	SioPacketType type;
	bool		had_nsp = false;
	const char *payload = NULL;
	size_t		payload_len = 0;
	JsonShape	sh;
	SioParseError err;

	if (n == 0)
		return fail(f, SIO_ERR_SIO_TYPE, "message without a Socket.IO packet");
	if (p[0] < '0' || p[0] > '6')
		return fail(f, SIO_ERR_SIO_TYPE, "unknown Socket.IO packet type");
	type = (SioPacketType) (p[0] - '0');
	f->sio_type = type;

	err = parse_header(p, n, &i, &had_nsp, f);

	/*
	 * Binary packets are refused whatever follows, but with whatever header
	 * fields were readable so that an ack id can still be answered.
	 */
	if (type == SIO_BINARY_EVENT || type == SIO_BINARY_ACK)
	{
		if (err != SIO_OK)
		{
			f->attachments = 0;
			f->nsp[0] = '/';
			f->nsp[1] = '\0';
			f->has_ack = false;
			f->ack_id = 0;
		}
		return fail(f, SIO_ERR_BINARY_UNSUPPORTED,
					"binary attachments are not supported");
	}
	if (err != SIO_OK)
		return err;

	if (f->has_ack && type != SIO_EVENT && type != SIO_ACK)
		return fail(f, SIO_ERR_ACK_ID,
					"only EVENT and ACK packets carry an ack id");

	if (i < n)
	{
		if (p[i] != '[' && p[i] != '{' && p[i] != '"')
			return classify_garbage(p, n, i, had_nsp, type, f);
		payload = p + i;
		payload_len = n - i;
	}

	if (type == SIO_ACK && !f->has_ack)
		return fail(f, SIO_ERR_ACK_ID, "ACK packet without an ack id");

	if (payload == NULL)
	{
		switch (type)
		{
			case SIO_EVENT:
				return fail(f, SIO_ERR_PAYLOAD, "EVENT packet without a payload");
			case SIO_ACK:
				return fail(f, SIO_ERR_PAYLOAD, "ACK packet without a payload");
			default:
				return SIO_OK;
		}
	}

	if (type == SIO_DISCONNECT)
		return fail(f, SIO_ERR_PAYLOAD, "DISCONNECT packet carries no payload");

	err = scan_json(payload, payload_len, &sh);
	if (err == SIO_ERR_JSON_DEPTH)
		return fail(f, err, "payload is nested too deeply");
	if (err != SIO_OK)
		return fail(f, err, "payload is not valid JSON");

	f->data = payload;
	f->data_len = payload_len;

	/* a successful parse of one value starting with '{' is an object */
	switch (type)
	{
		case SIO_CONNECT:
			if (payload[0] != '{')
				return fail(f, SIO_ERR_PAYLOAD,
							"CONNECT payload must be an object");
			return SIO_OK;

		case SIO_CONNECT_ERROR:
			if (payload[0] == '[')
				return fail(f, SIO_ERR_PAYLOAD,
							"CONNECT_ERROR payload must be an object");
			return SIO_OK;

		case SIO_ACK:
			if (payload[0] != '[')
				return fail(f, SIO_ERR_PAYLOAD, "ACK payload must be an array");
			return SIO_OK;

		case SIO_EVENT:
			if (payload[0] != '[')
				return fail(f, SIO_ERR_PAYLOAD, "EVENT payload must be an array");
			if (sh.nelems == 0)
				return fail(f, SIO_ERR_PAYLOAD,
							"EVENT payload must not be an empty array");
			if (sh.elem0_type != JSON_TOKEN_STRING)
				return fail(f, SIO_ERR_PAYLOAD,
							"EVENT payload must start with the event name");
			err = decode_event_name(sh.elem0, sh.elem0_end, f->event,
									&f->errmsg);
			if (err != SIO_OK)
				return err;
			f->nargs = sh.nelems - 1;
			if (sh.nelems > 1)
			{
				f->arg0 = sh.elem1;
				f->arg0_len = sh.elem1_end - sh.elem1;
			}
			return SIO_OK;

		default:
			/* DISCONNECT and the binary types returned above */
			Assert(false);
			return fail(f, SIO_ERR_SIO_TYPE, "unknown Socket.IO packet type");
	}
}

const char *
sio_error_name(SioParseError err)
{
	switch (err)
	{
		case SIO_OK:
			return "SIO_OK";
		case SIO_ERR_EMPTY_FRAME:
			return "SIO_ERR_EMPTY_FRAME";
		case SIO_ERR_FRAME_TOO_LARGE:
			return "SIO_ERR_FRAME_TOO_LARGE";
		case SIO_ERR_INVALID_UTF8:
			return "SIO_ERR_INVALID_UTF8";
		case SIO_ERR_EIO_TYPE:
			return "SIO_ERR_EIO_TYPE";
		case SIO_ERR_EIO_PAYLOAD:
			return "SIO_ERR_EIO_PAYLOAD";
		case SIO_ERR_SIO_TYPE:
			return "SIO_ERR_SIO_TYPE";
		case SIO_ERR_BINARY_UNSUPPORTED:
			return "SIO_ERR_BINARY_UNSUPPORTED";
		case SIO_ERR_NAMESPACE:
			return "SIO_ERR_NAMESPACE";
		case SIO_ERR_ACK_ID:
			return "SIO_ERR_ACK_ID";
		case SIO_ERR_SYNTAX:
			return "SIO_ERR_SYNTAX";
		case SIO_ERR_JSON:
			return "SIO_ERR_JSON";
		case SIO_ERR_JSON_DEPTH:
			return "SIO_ERR_JSON_DEPTH";
		case SIO_ERR_PAYLOAD:
			return "SIO_ERR_PAYLOAD";
		case SIO_ERR_EVENT_NAME:
			return "SIO_ERR_EVENT_NAME";
	}
	return "SIO_ERR_UNKNOWN";
}

const char *
sio_error_message(SioParseError err)
{
	switch (err)
	{
		case SIO_OK:
			return "ok";
		case SIO_ERR_EMPTY_FRAME:
			return "empty frame";
		case SIO_ERR_FRAME_TOO_LARGE:
			return "frame too large";
		case SIO_ERR_INVALID_UTF8:
			return "frame is not valid UTF-8";
		case SIO_ERR_EIO_TYPE:
			return "invalid Engine.IO packet type";
		case SIO_ERR_EIO_PAYLOAD:
			return "unexpected Engine.IO packet data";
		case SIO_ERR_SIO_TYPE:
			return "invalid Socket.IO packet type";
		case SIO_ERR_BINARY_UNSUPPORTED:
			return "binary attachments are not supported";
		case SIO_ERR_NAMESPACE:
			return "invalid namespace";
		case SIO_ERR_ACK_ID:
			return "invalid ack id";
		case SIO_ERR_SYNTAX:
			return "malformed packet";
		case SIO_ERR_JSON:
			return "payload is not valid JSON";
		case SIO_ERR_JSON_DEPTH:
			return "payload is nested too deeply";
		case SIO_ERR_PAYLOAD:
			return "invalid payload for the packet type";
		case SIO_ERR_EVENT_NAME:
			return "invalid event name";
	}
	return "unknown error";
}

/* ----------------------------------------------------------------
 * Encoding
 * ----------------------------------------------------------------
 */

void
sio_append_int64(StringInfo buf, int64 value)
{
	char		tmp[24];
	char	   *p = tmp + sizeof(tmp);
	uint64		u;

	/* negate in unsigned arithmetic so that INT64_MIN works */
	u = value < 0 ? (uint64) 0 - (uint64) value : (uint64) value;
	do
	{
		*--p = (char) ('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (value < 0)
		*--p = '-';
	appendBinaryStringInfo(buf, p, (int) (tmp + sizeof(tmp) - p));
}

/*
 * Length of the well-formed UTF-8 sequence at s, or 0 if it is malformed
 * (Unicode table 3-7: no overlongs, surrogates or code points past
 * U+10FFFF).  s[0] is known to be >= 0x80.
 */
static int
utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80,
				hi = 0xBF;
	int			n;

	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;			/* overlong */
		else if (c == 0xED)
			hi = 0x9F;			/* surrogates */
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		n = 4;
		if (c == 0xF0)
			lo = 0x90;			/* overlong */
		else if (c == 0xF4)
			hi = 0x8F;			/* past U+10FFFF */
	}
	else
		return 0;

	if ((size_t) n > avail)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
	{
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	}
	return n;
}

void
sio_json_escape_len(StringInfo buf, const char *s, size_t len)
{
	static const char hexdigits[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	const unsigned char *run = p;

	appendStringInfoCharMacro(buf, '"');
	while (p < end)
	{
		unsigned char c = *p;
		const char *esc;
		char		ubuf[6];
		int			esclen;
		int			n;

		/* the common case: printable ASCII that needs nothing */
		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
		{
			p++;
			continue;
		}

		if (c >= 0x80)
		{
			n = utf8_seq_len(p, end - p);
			if (n == 3 && c == 0xE2 && p[1] == 0x80 &&
				(p[2] == 0xA8 || p[2] == 0xA9))
			{
				/* U+2028/U+2029 end a line in JavaScript source */
				esc = p[2] == 0xA8 ? "\\u2028" : "\\u2029";
				esclen = 6;
			}
			else if (n > 0)
			{
				p += n;
				continue;
			}
			else
			{
				/* one replacement per bad byte: never emit bad UTF-8 */
				esc = "\\ufffd";
				esclen = 6;
				n = 1;
			}
		}
		else
		{
			n = 1;
			esclen = 2;
			switch (c)
			{
				case '"':
					esc = "\\\"";
					break;
				case '\\':
					esc = "\\\\";
					break;
				case '\b':
					esc = "\\b";
					break;
				case '\f':
					esc = "\\f";
					break;
				case '\n':
					esc = "\\n";
					break;
				case '\r':
					esc = "\\r";
					break;
				case '\t':
					esc = "\\t";
					break;
				default:
					ubuf[0] = '\\';
					ubuf[1] = 'u';
					ubuf[2] = '0';
					ubuf[3] = '0';
					ubuf[4] = hexdigits[c >> 4];
					ubuf[5] = hexdigits[c & 0xF];
					esc = ubuf;
					esclen = 6;
					break;
			}
		}

		if (p > run)
			appendBinaryStringInfo(buf, (const char *) run, (int) (p - run));
		appendBinaryStringInfo(buf, esc, esclen);
		p += n;
		run = p;
	}
	if (p > run)
		appendBinaryStringInfo(buf, (const char *) run, (int) (p - run));
	appendStringInfoCharMacro(buf, '"');
}

void
sio_json_escape(StringInfo buf, const char *s)
{
	sio_json_escape_len(buf, s, strlen(s));
}

/* "/admin," for a custom namespace, nothing for the main one */
static void
append_nsp(StringInfo buf, const char *nsp)
{
	if (nsp == NULL || (nsp[0] == '/' && nsp[1] == '\0'))
		return;
	Assert(nsp[0] == '/' && strchr(nsp, ',') == NULL);
	appendStringInfoString(buf, nsp);
	appendStringInfoCharMacro(buf, ',');
}

void
sio_encode_open(StringInfo buf, const char *sid, bool websocket_upgrade,
				int ping_interval_ms, int ping_timeout_ms, int64 max_payload)
{
	/*
	 * "upgrades" names what a long-polling session may move to; a
	 * WebSocket session has nothing to upgrade to (the reference server
	 * also sends [] there).
	 */
	appendStringInfoString(buf, "0{\"sid\":");
	sio_json_escape(buf, sid);
	appendStringInfoString(buf, websocket_upgrade ? ",\"upgrades\":[\"websocket\"]" : ",\"upgrades\":[]");
	appendStringInfoString(buf, ",\"pingInterval\":");
	sio_append_int64(buf, ping_interval_ms);
	appendStringInfoString(buf, ",\"pingTimeout\":");
	sio_append_int64(buf, ping_timeout_ms);
	appendStringInfoString(buf, ",\"maxPayload\":");
	sio_append_int64(buf, max_payload);
	appendStringInfoCharMacro(buf, '}');
}

void
sio_encode_close(StringInfo buf)
{
	appendStringInfoCharMacro(buf, '1');
}

void
sio_encode_ping(StringInfo buf)
{
	appendStringInfoCharMacro(buf, '2');
}

void
sio_encode_pong(StringInfo buf, const char *data, size_t len)
{
	appendStringInfoCharMacro(buf, '3');
	if (data != NULL && len > 0)
		appendBinaryStringInfo(buf, data, (int) len);
}

void
sio_encode_noop(StringInfo buf)
{
	appendStringInfoCharMacro(buf, '6');
}

void
sio_encode_connect(StringInfo buf, const char *nsp, const char *sid)
{
	appendBinaryStringInfo(buf, "40", 2);
	append_nsp(buf, nsp);
	appendStringInfoString(buf, "{\"sid\":");
	sio_json_escape(buf, sid);
	appendStringInfoCharMacro(buf, '}');
}

void
sio_encode_connect_error(StringInfo buf, const char *nsp, const char *message,
						 const char *code)
{
	/* socket.io-client hands this object to connect_error as err.message/err.data */
	appendBinaryStringInfo(buf, "44", 2);
	append_nsp(buf, nsp);
	appendStringInfoString(buf, "{\"message\":");
	sio_json_escape(buf, message);
	if (code != NULL)
	{
		appendStringInfoString(buf, ",\"data\":{\"code\":");
		sio_json_escape(buf, code);
		appendStringInfoCharMacro(buf, '}');
	}
	appendStringInfoCharMacro(buf, '}');
}

void
sio_encode_disconnect(StringInfo buf, const char *nsp)
{
	appendBinaryStringInfo(buf, "41", 2);
	append_nsp(buf, nsp);
}

void
sio_event_begin(StringInfo buf, const char *nsp, const char *event,
				int64 ack_id)
{
	appendBinaryStringInfo(buf, "42", 2);
	append_nsp(buf, nsp);
	if (ack_id >= 0)
		sio_append_int64(buf, ack_id);
	appendStringInfoCharMacro(buf, '[');
	sio_json_escape(buf, event);
}

void
sio_ack_begin(StringInfo buf, const char *nsp, int64 ack_id)
{
	Assert(ack_id >= 0);
	appendBinaryStringInfo(buf, "43", 2);
	append_nsp(buf, nsp);
	sio_append_int64(buf, ack_id);
	appendStringInfoCharMacro(buf, '[');
}

void
sio_arg_begin(StringInfo buf)
{
	/*
	 * Only an array opened by sio_*_begin with nothing in it yet ends in
	 * '['; a complete JSON value never does, so no separator state is
	 * needed.
	 */
	if (buf->len > 0 && buf->data[buf->len - 1] != '[')
		appendStringInfoCharMacro(buf, ',');
}

void
sio_packet_end(StringInfo buf)
{
	appendStringInfoCharMacro(buf, ']');
}

void
sio_encode_event(StringInfo buf, const char *nsp, const char *event,
				 int64 ack_id, const char *arg, size_t arg_len)
{
	sio_event_begin(buf, nsp, event, ack_id);
	if (arg != NULL)
	{
		sio_arg_begin(buf);
		appendBinaryStringInfo(buf, arg, (int) arg_len);
	}
	sio_packet_end(buf);
}

void
sio_encode_ack(StringInfo buf, const char *nsp, int64 ack_id,
			   const char *arg, size_t arg_len)
{
	sio_ack_begin(buf, nsp, ack_id);
	if (arg != NULL)
	{
		sio_arg_begin(buf);
		appendBinaryStringInfo(buf, arg, (int) arg_len);
	}
	sio_packet_end(buf);
}
