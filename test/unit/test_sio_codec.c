/*-------------------------------------------------------------------------
 *
 * test_sio_codec.c
 *	  Unit tests for src/sio_codec.c, built frontend-style against
 *	  libpgcommon so that the same JSON lexer and UTF-8 verifier the
 *	  backend uses are exercised here.
 *
 * Packet examples come from the protocol documents and test suites:
 *
 *	 [SIO-README]  socketio/socket.io-protocol, Readme.md
 *				   ("Packet encoding" tables and "Sample session")
 *	 [SIO-SUITE]   socketio/socket.io-protocol, test-suite/test-suite.js
 *				   (EIO=4 version)
 *	 [EIO-README]  socketio/engine.io-protocol, README.md (v4)
 *	 [EIO-SUITE]   socketio/engine.io-protocol, test-suite/test-suite.js
 *
 * Each case prints nothing when it passes; failures name the case and
 * the expectation.  The last line is "N passed, M failed", which
 * test/unit/Makefile sums over all unit test programs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "sio_codec.h"

static int	n_passed;
static int	n_failed;
static bool case_ok;
static const char *case_name;
static SioFrame fr;

#define BEGIN_CASE(name) \
	do { \
		case_name = (name); \
		case_ok = true;

#define EXPECT(cond) \
		do { \
			if (!(cond)) \
			{ \
				case_ok = false; \
				fprintf(stderr, "FAIL [%s] line %d: %s\n", case_name, __LINE__, #cond); \
			} \
		} while (0)

#define END_CASE() \
		finish_case(); \
	} while (0)

static void
finish_case(void)
{
	if (case_ok)
		n_passed++;
	else
		n_failed++;
}

/* parse a NUL-terminated frame into the global fr */
static SioParseError
P(const char *s)
{
	return sio_parse_frame(s, strlen(s), &fr);
}

static bool
span_is(const char *p, size_t len, const char *expected)
{
	if (p == NULL)
		return expected == NULL;
	if (expected == NULL)
		return false;
	return len == strlen(expected) && memcmp(p, expected, len) == 0;
}

static bool
buf_is(StringInfo buf, const char *expected)
{
	bool		ok = (size_t) buf->len == strlen(expected) &&
		memcmp(buf->data, expected, buf->len) == 0;

	if (!ok)
		fprintf(stderr, "  [%s] got:      %.*s\n  [%s] expected: %s\n",
				case_name, buf->len, buf->data, case_name, expected);
	return ok;
}

/* One case: the frame (of len bytes) must fail with exactly err. */
static void
expect_err_len(const char *name, const char *frame, size_t len, SioParseError err)
{
	SioParseError got;

	BEGIN_CASE(name);
	got = sio_parse_frame(frame, len, &fr);
	if (got != err)
		fprintf(stderr, "  [%s] got %s (%s), expected %s\n", name,
				sio_error_name(got), fr.errmsg, sio_error_name(err));
	EXPECT(got == err);
	EXPECT(fr.errmsg != NULL && (err == SIO_OK || fr.errmsg[0] != '\0'));
	END_CASE();
}

static void
expect_err(const char *name, const char *frame, SioParseError err)
{
	expect_err_len(name, frame, strlen(frame), err);
}

/* De-escape a JSON string with PostgreSQL's own lexer (frontend, UTF-8). */
static bool
pg_decode_json_string(const char *json, size_t len, StringInfo out)
{
	JsonLexContext *lex;
	bool		ok;

	lex = makeJsonLexContextCstringLen(unconstify(char *, json), (int) len,
									   PG_UTF8, true);
	ok = json_lex(lex) == JSON_SUCCESS && lex->token_type == JSON_TOKEN_STRING;
	if (ok)
		appendBinaryStringInfo(out, lex->strval->data, lex->strval->len);
	ok = ok && json_lex(lex) == JSON_SUCCESS && lex->token_type == JSON_TOKEN_END;
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
	return ok;
}

/* ----------------------------------------------------------------
 * Valid packets from the protocol documents
 * ----------------------------------------------------------------
 */
static void
test_valid_socketio(void)
{
	/* [SIO-README] connection to a namespace */
	BEGIN_CASE("SIO-README CONNECT main namespace: 40");
	EXPECT(P("40") == SIO_OK);
	EXPECT(fr.eio_type == SIO_EIO_MESSAGE);
	EXPECT(fr.sio_type == SIO_CONNECT);
	EXPECT(strcmp(fr.nsp, "/") == 0);
	EXPECT(!fr.has_ack);
	EXPECT(fr.data == NULL && fr.data_len == 0);
	END_CASE();

	BEGIN_CASE("SIO-README CONNECT reply with sid");
	EXPECT(P("40{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}") == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT);
	EXPECT(span_is(fr.data, fr.data_len, "{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}"));
	END_CASE();

	BEGIN_CASE("SIO-README CONNECT custom namespace: 40/admin,");
	EXPECT(P("40/admin,") == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(fr.data == NULL);
	END_CASE();

	BEGIN_CASE("SIO-README CONNECT custom namespace with sid");
	EXPECT(P("40/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}") == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(span_is(fr.data, fr.data_len, "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"));
	END_CASE();

	BEGIN_CASE("SIO-README CONNECT_ERROR: 44{\"message\":\"Not authorized\"}");
	EXPECT(P("44{\"message\":\"Not authorized\"}") == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT_ERROR);
	EXPECT(span_is(fr.data, fr.data_len, "{\"message\":\"Not authorized\"}"));
	END_CASE();

	/* [SIO-README] sending and receiving data */
	BEGIN_CASE("SIO-README EVENT: 42[\"foo\"]");
	EXPECT(P("42[\"foo\"]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_EVENT);
	EXPECT(strcmp(fr.nsp, "/") == 0);
	EXPECT(strcmp(fr.event, "foo") == 0);
	EXPECT(fr.nargs == 0 && fr.arg0 == NULL);
	EXPECT(!fr.has_ack);
	EXPECT(span_is(fr.data, fr.data_len, "[\"foo\"]"));
	END_CASE();

	BEGIN_CASE("SIO-README EVENT custom namespace: 42/admin,[\"bar\"]");
	EXPECT(P("42/admin,[\"bar\"]") == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(strcmp(fr.event, "bar") == 0);
	END_CASE();

	/* [SIO-README] acknowledgement */
	BEGIN_CASE("SIO-README EVENT with ack id: 4212[\"foo\"]");
	EXPECT(P("4212[\"foo\"]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_EVENT);
	EXPECT(fr.has_ack && fr.ack_id == 12);
	EXPECT(strcmp(fr.event, "foo") == 0);
	END_CASE();

	BEGIN_CASE("SIO-README ACK empty: 4312[]");
	EXPECT(P("4312[]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_ACK);
	EXPECT(fr.has_ack && fr.ack_id == 12);
	EXPECT(span_is(fr.data, fr.data_len, "[]"));
	END_CASE();

	BEGIN_CASE("SIO-README EVENT namespace + ack: 42/admin,13[\"foo\"]");
	EXPECT(P("42/admin,13[\"foo\"]") == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(fr.has_ack && fr.ack_id == 13);
	EXPECT(strcmp(fr.event, "foo") == 0);
	END_CASE();

	BEGIN_CASE("SIO-README ACK namespace + ack: 43/admin,13[\"bar\"]");
	EXPECT(P("43/admin,13[\"bar\"]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_ACK);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(fr.has_ack && fr.ack_id == 13);
	EXPECT(span_is(fr.data, fr.data_len, "[\"bar\"]"));
	END_CASE();

	BEGIN_CASE("SIO-README ACK: 4314[\"bar\"] and EVENT 4215[\"foo\"]");
	EXPECT(P("4314[\"bar\"]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_ACK && fr.ack_id == 14);
	EXPECT(P("4215[\"foo\"]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_EVENT && fr.ack_id == 15);
	END_CASE();

	/* [SIO-README] disconnection */
	BEGIN_CASE("SIO-README DISCONNECT: 41 and 41/admin,");
	EXPECT(P("41") == SIO_OK);
	EXPECT(fr.sio_type == SIO_DISCONNECT && strcmp(fr.nsp, "/") == 0);
	EXPECT(P("41/admin,") == SIO_OK);
	EXPECT(fr.sio_type == SIO_DISCONNECT && strcmp(fr.nsp, "/admin") == 0);
	END_CASE();

	/* [SIO-README] sample session */
	BEGIN_CASE("SIO-README sample session: 42/admin,1[\"tellme\"]");
	EXPECT(P("42/admin,1[\"tellme\"]") == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/admin") == 0 && fr.has_ack && fr.ack_id == 1);
	EXPECT(strcmp(fr.event, "tellme") == 0);
	END_CASE();

	BEGIN_CASE("SIO-README sample session: 42[\"hey\",\"Jude\"]");
	EXPECT(P("42[\"hey\",\"Jude\"]") == SIO_OK);
	EXPECT(strcmp(fr.event, "hey") == 0);
	EXPECT(fr.nargs == 1);
	EXPECT(span_is(fr.arg0, fr.arg0_len, "\"Jude\""));
	END_CASE();

	/* [SIO-SUITE] connect cases */
	BEGIN_CASE("SIO-SUITE CONNECT with auth payload: 40{\"token\":\"123\"}");
	EXPECT(P("40{\"token\":\"123\"}") == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT);
	EXPECT(span_is(fr.data, fr.data_len, "{\"token\":\"123\"}"));
	END_CASE();

	BEGIN_CASE("SIO-SUITE CONNECT custom namespace with payload");
	EXPECT(P("40/custom,{\"token\":\"abc\"}") == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/custom") == 0);
	EXPECT(span_is(fr.data, fr.data_len, "{\"token\":\"abc\"}"));
	END_CASE();

	/*
	 * [SIO-SUITE] "should disallow connection to an unknown namespace" sends
	 * 40/random without a comma: the namespace runs to the end of the
	 * frame.  Refusing it is the worker's job (44/random,{...}), not the
	 * parser's.
	 */
	BEGIN_CASE("SIO-SUITE CONNECT unknown namespace w/o comma: 40/random");
	EXPECT(P("40/random") == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT && strcmp(fr.nsp, "/random") == 0);
	EXPECT(fr.data == NULL);
	END_CASE();

	BEGIN_CASE("SIO-SUITE DISCONNECT custom namespace w/o comma: 41/custom");
	EXPECT(P("41/custom") == SIO_OK);
	EXPECT(fr.sio_type == SIO_DISCONNECT && strcmp(fr.nsp, "/custom") == 0);
	END_CASE();

	BEGIN_CASE("SIO-SUITE plain-text EVENT with 3 arguments");
	EXPECT(P("42[\"message\",1,\"2\",{\"3\":[true]}]") == SIO_OK);
	EXPECT(strcmp(fr.event, "message") == 0);
	EXPECT(fr.nargs == 3);
	EXPECT(span_is(fr.arg0, fr.arg0_len, "1"));
	END_CASE();

	BEGIN_CASE("SIO-SUITE EVENT with ack 456");
	EXPECT(P("42456[\"message-with-ack\",1,\"2\",{\"3\":[false]}]") == SIO_OK);
	EXPECT(fr.has_ack && fr.ack_id == 456);
	EXPECT(strcmp(fr.event, "message-with-ack") == 0);
	EXPECT(fr.nargs == 3);
	END_CASE();

	BEGIN_CASE("SIO-SUITE server ACK reply 43456[1,\"2\",{\"3\":[false]}]");
	EXPECT(P("43456[1,\"2\",{\"3\":[false]}]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_ACK && fr.ack_id == 456);
	END_CASE();

	/* the brief's example: namespace, ack id and an argument */
	BEGIN_CASE("EVENT 42/admin,456[\"project:delete\",123]");
	EXPECT(P("42/admin,456[\"project:delete\",123]") == SIO_OK);
	EXPECT(fr.sio_type == SIO_EVENT);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(fr.has_ack && fr.ack_id == 456);
	EXPECT(strcmp(fr.event, "project:delete") == 0);
	EXPECT(fr.nargs == 1);
	EXPECT(span_is(fr.arg0, fr.arg0_len, "123"));
	END_CASE();

	/* what socket.io-client sends for this product */
	BEGIN_CASE("EVENT presence:join with object argument and ack");
	EXPECT(P("427[\"presence:join\",{\"resourceId\":\"document:1/tab:a\",\"mode\":\"editor\"}]") == SIO_OK);
	EXPECT(strcmp(fr.event, "presence:join") == 0);
	EXPECT(fr.ack_id == 7 && fr.nargs == 1);
	EXPECT(span_is(fr.arg0, fr.arg0_len,
				   "{\"resourceId\":\"document:1/tab:a\",\"mode\":\"editor\"}"));
	END_CASE();

	BEGIN_CASE("EVENT arg0 span of nested value with whitespace");
	EXPECT(P("42[ \"e\" , {\"a\":[1,[2]],\"b\":{}} , 3 ]") == SIO_OK);
	EXPECT(strcmp(fr.event, "e") == 0);
	EXPECT(fr.nargs == 2);
	EXPECT(span_is(fr.arg0, fr.arg0_len, "{\"a\":[1,[2]],\"b\":{}}"));
	END_CASE();

	BEGIN_CASE("EVENT escaped, non-ASCII name is de-escaped to UTF-8");
	EXPECT(P("42[\"caf\\u00e9\\ud83d\\ude00\\/x\\\"y\\\\\",null]") == SIO_OK);
	EXPECT(strcmp(fr.event, "caf\xc3\xa9\xf0\x9f\x98\x80/x\"y\\") == 0);
	EXPECT(fr.nargs == 1 && span_is(fr.arg0, fr.arg0_len, "null"));
	END_CASE();

	BEGIN_CASE("EVENT name of exactly 64 bytes; raw UTF-8 name");
	EXPECT(P("42[\"0123456789012345678901234567890123456789012345678901234567890123\"]") == SIO_OK);
	EXPECT(strlen(fr.event) == 64);
	EXPECT(P("42[\"\xc3\xa9v\xc3\xa9nement\"]") == SIO_OK);
	EXPECT(strcmp(fr.event, "\xc3\xa9v\xc3\xa9nement") == 0);
	END_CASE();

	BEGIN_CASE("EVENT ack id 2^53-1 is accepted; leading zeros are decimal");
	EXPECT(P("429007199254740991[\"a\"]") == SIO_OK);
	EXPECT(fr.has_ack && fr.ack_id == INT64CONST(9007199254740991));
	EXPECT(P("42007[\"a\"]") == SIO_OK);
	EXPECT(fr.ack_id == 7);
	EXPECT(P("430[]") == SIO_OK);
	EXPECT(fr.has_ack && fr.ack_id == 0);
	END_CASE();

	BEGIN_CASE("CONNECT_ERROR with a string payload (v4 servers)");
	EXPECT(P("44\"Not authorized\"") == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT_ERROR);
	END_CASE();
}

static void
test_valid_engineio(void)
{
	/* [EIO-README] upgrade: 2probe / 3probe / 5 */
	BEGIN_CASE("EIO-README ping probe: 2probe");
	EXPECT(P("2probe") == SIO_OK);
	EXPECT(fr.eio_type == SIO_EIO_PING);
	EXPECT(span_is(fr.eio_data, fr.eio_data_len, "probe"));
	END_CASE();

	/* [EIO-README] heartbeat: server sends 2, client answers 3 */
	BEGIN_CASE("EIO-README pong: 3 and 3probe");
	EXPECT(P("3") == SIO_OK);
	EXPECT(fr.eio_type == SIO_EIO_PONG && fr.eio_data == NULL);
	EXPECT(P("3probe") == SIO_OK);
	EXPECT(fr.eio_type == SIO_EIO_PONG);
	EXPECT(span_is(fr.eio_data, fr.eio_data_len, "probe"));
	END_CASE();

	BEGIN_CASE("EIO-README close 1, upgrade 5, noop 6");
	EXPECT(P("1") == SIO_OK && fr.eio_type == SIO_EIO_CLOSE);
	EXPECT(P("5") == SIO_OK && fr.eio_type == SIO_EIO_UPGRADE);
	EXPECT(P("6") == SIO_OK && fr.eio_type == SIO_EIO_NOOP);
	END_CASE();
}

/* ----------------------------------------------------------------
 * Invalid formats from the test suites, then our own
 * ----------------------------------------------------------------
 */
static void
test_invalid(void)
{
	StringInfoData big;
	char		nul_frame[] = "42[\"a\0b\"]";

	/* [EIO-SUITE] "closes the session upon invalid packet format" */
	expect_err("EIO-SUITE invalid packet format: abc", "abc", SIO_ERR_EIO_TYPE);

	/* [SIO-SUITE] "should disallow connection with an invalid handshake" */
	/* [SIO-SUITE] "invalid format (unknown packet type)" */
	expect_err("SIO-SUITE unknown packet type: 4abc", "4abc", SIO_ERR_SIO_TYPE);
	/* [SIO-SUITE] "invalid format (invalid payload format)" */
	expect_err("SIO-SUITE invalid payload format: 42{}", "42{}", SIO_ERR_PAYLOAD);
	/* [SIO-SUITE] "invalid format (invalid ack id)" */
	expect_err("SIO-SUITE invalid ack id: 42abc[...]",
			   "42abc[\"message-with-ack\",1,\"2\",{\"3\":[false]}]", SIO_ERR_ACK_ID);

	/* [SIO-README] binary packets: refused with a distinct error */
	BEGIN_CASE("SIO-README BINARY_EVENT 451-[...] is refused distinctly");
	EXPECT(P("451-[\"baz\",{\"_placeholder\":true,\"num\":0}]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(fr.sio_type == SIO_BINARY_EVENT && fr.attachments == 1);
	EXPECT(!fr.has_ack && strcmp(fr.nsp, "/") == 0);
	END_CASE();

	BEGIN_CASE("SIO-README BINARY_EVENT with namespace 452-/admin,[...]");
	EXPECT(P("452-/admin,[\"baz\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(fr.attachments == 2 && strcmp(fr.nsp, "/admin") == 0);
	END_CASE();

	BEGIN_CASE("SIO-README BINARY_EVENT with ack 451-14[...] keeps the id");
	EXPECT(P("451-14[\"foo\",{\"_placeholder\":true,\"num\":0}]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(fr.has_ack && fr.ack_id == 14);
	END_CASE();

	BEGIN_CASE("SIO-README BINARY_ACK 461-15[...] / 461-/admin,1[...]");
	EXPECT(P("461-15[\"bar\",{\"_placeholder\":true,\"num\":0}]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(fr.sio_type == SIO_BINARY_ACK && fr.ack_id == 15);
	EXPECT(P("461-/admin,1[{\"_placeholder\":true,\"num\":0}]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(strcmp(fr.nsp, "/admin") == 0 && fr.ack_id == 1);
	END_CASE();

	BEGIN_CASE("SIO-SUITE binary with ack 452-789[...]; malformed headers");
	EXPECT(P("452-789[\"message-with-ack\",{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(fr.ack_id == 789 && fr.attachments == 2);
	EXPECT(P("45") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(P("45-[\"a\"]") == SIO_ERR_BINARY_UNSUPPORTED);
	EXPECT(fr.attachments == 0 && !fr.has_ack);
	EXPECT(P("46x") == SIO_ERR_BINARY_UNSUPPORTED);
	END_CASE();

	/* Engine.IO level */
	expect_err_len("empty frame", "", 0, SIO_ERR_EMPTY_FRAME);
	expect_err("open packet from a client", "0{\"sid\":\"x\"}", SIO_ERR_EIO_TYPE);
	expect_err("unknown Engine.IO type 7", "7", SIO_ERR_EIO_TYPE);
	expect_err("close with data", "1x", SIO_ERR_EIO_PAYLOAD);
	expect_err("upgrade with data", "5probe", SIO_ERR_EIO_PAYLOAD);
	expect_err("message without Socket.IO packet: 4", "4", SIO_ERR_SIO_TYPE);
	expect_err("EIO-SUITE plain engine message 4hello is not Socket.IO", "4hello",
			   SIO_ERR_SIO_TYPE);
	expect_err("unknown Socket.IO type 7", "47[\"a\"]", SIO_ERR_SIO_TYPE);

	/* CONNECT */
	expect_err("CONNECT with array payload", "40[]", SIO_ERR_PAYLOAD);
	expect_err("CONNECT with string payload", "40\"token\"", SIO_ERR_PAYLOAD);
	expect_err("CONNECT with null payload", "40null", SIO_ERR_SYNTAX);
	expect_err("CONNECT with ack id", "4012", SIO_ERR_ACK_ID);
	expect_err("CONNECT with truncated object", "40{\"token\":", SIO_ERR_JSON);

	/* DISCONNECT */
	expect_err("DISCONNECT with payload", "41{}", SIO_ERR_PAYLOAD);
	expect_err("DISCONNECT namespace with payload", "41/admin,[\"x\"]", SIO_ERR_PAYLOAD);

	/* EVENT */
	expect_err("EVENT without payload", "42", SIO_ERR_PAYLOAD);
	expect_err("EVENT with ack but no payload", "4212", SIO_ERR_PAYLOAD);
	expect_err("EVENT empty array", "42[]", SIO_ERR_PAYLOAD);
	expect_err("EVENT name not a string (number)", "42[1,2]", SIO_ERR_PAYLOAD);
	expect_err("EVENT name not a string (object)", "42[{\"a\":1}]", SIO_ERR_PAYLOAD);
	expect_err("EVENT name null", "42[null]", SIO_ERR_PAYLOAD);
	expect_err("EVENT string payload", "42\"foo\"", SIO_ERR_PAYLOAD);
	expect_err("EVENT name 65 bytes",
			   "42[\"01234567890123456789012345678901234567890123456789012345678901234\"]",
			   SIO_ERR_EVENT_NAME);
	expect_err("EVENT name 65 bytes after de-escaping",
			   "42[\"012345678901234567890123456789012345678901234567890123456789012\\u00e9\"]",
			   SIO_ERR_EVENT_NAME);
	expect_err("EVENT reserved name disconnect", "42[\"disconnect\"]", SIO_ERR_EVENT_NAME);
	expect_err("EVENT reserved name connect_error", "42[\"connect_error\",1]", SIO_ERR_EVENT_NAME);
	expect_err("EVENT name with lone high surrogate", "42[\"a\\ud83d\"]", SIO_ERR_EVENT_NAME);
	expect_err("EVENT name with lone low surrogate", "42[\"a\\ude00b\"]", SIO_ERR_EVENT_NAME);
	expect_err("EVENT name with \\u0000", "42[\"a\\u0000\"]", SIO_ERR_EVENT_NAME);
	expect_err("EVENT name with \\n", "42[\"a\\nb\"]", SIO_ERR_EVENT_NAME);
	expect_err("EVENT trailing garbage after array", "42[\"foo\"]x", SIO_ERR_JSON);
	expect_err("EVENT two JSON values", "42[\"foo\"][1]", SIO_ERR_JSON);
	expect_err("EVENT truncated JSON", "42[\"foo\",{\"a\":", SIO_ERR_JSON);
	expect_err("EVENT unterminated string", "42[\"foo", SIO_ERR_JSON);
	expect_err("EVENT raw control character in string", "42[\"a\tb\"]", SIO_ERR_JSON);
	expect_err("EVENT bad escape", "42[\"a\\qb\"]", SIO_ERR_JSON);
	expect_err("EVENT bad \\u escape", "42[\"a\",\"\\u12g4\"]", SIO_ERR_JSON);
	expect_err("EVENT single quotes", "42['foo']", SIO_ERR_JSON);
	expect_err("EVENT unbalanced close", "42[\"foo\"]]", SIO_ERR_JSON);
	expect_err("EVENT leading whitespace before payload", "42 [\"foo\"]", SIO_ERR_SYNTAX);

	/* ACK */
	expect_err("ACK without id", "43[]", SIO_ERR_ACK_ID);
	expect_err("ACK without id, namespace", "43/admin,[\"bar\"]", SIO_ERR_ACK_ID);
	expect_err("ACK object payload", "431{}", SIO_ERR_PAYLOAD);
	expect_err("ACK without payload", "4312", SIO_ERR_PAYLOAD);

	/* namespace */
	expect_err("namespace without leading slash", "42admin,[\"foo\"]", SIO_ERR_NAMESPACE);
	expect_err("garbage after namespace", "42/admin,xyz", SIO_ERR_SYNTAX);
	expect_err("space after namespace", "42/admin, [\"foo\"]", SIO_ERR_SYNTAX);
	expect_err("control character in namespace", "42/ad\x01min,[\"foo\"]", SIO_ERR_NAMESPACE);
	initStringInfo(&big);
	appendStringInfoString(&big, "40/");
	for (int i = 0; i < SIO_MAX_NAMESPACE; i++)
		appendStringInfoChar(&big, 'n');
	appendStringInfoChar(&big, ',');
	expect_err_len("namespace longer than 128 bytes", big.data, big.len, SIO_ERR_NAMESPACE);
	pfree(big.data);

	/* ack ids */
	expect_err("negative ack id", "42-1[\"foo\"]", SIO_ERR_ACK_ID);
	expect_err("ack id 2^53", "429007199254740992[\"a\"]", SIO_ERR_ACK_ID);
	expect_err("ack id overflowing int64", "4299999999999999999999999999[\"a\"]", SIO_ERR_ACK_ID);
	expect_err("fractional ack id", "4212.5[\"a\"]", SIO_ERR_ACK_ID);
	expect_err("exponent ack id", "421e3[\"a\"]", SIO_ERR_ACK_ID);
	expect_err("ack id on DISCONNECT", "415", SIO_ERR_ACK_ID);

	/* UTF-8 and NUL */
	expect_err("invalid UTF-8: 0xFF", "42[\"\xff\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: lone continuation 0x80", "42[\"\x80\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: overlong '/' C0 AF", "42[\"\xc0\xaf\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: overlong E0 80 AF", "42[\"\xe0\x80\xaf\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: overlong F0 80 80 AF", "42[\"\xf0\x80\x80\xaf\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: surrogate ED A0 80", "42[\"\xed\xa0\x80\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: surrogate pair as CESU-8",
			   "42[\"\xed\xa0\xbd\xed\xb8\x80\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: above U+10FFFF F4 90 80 80", "42[\"\xf4\x90\x80\x80\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: F5 lead byte", "42[\"\xf5\x80\x80\x80\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: truncated E2 82", "42[\"\xe2\x82\"]", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8: truncated at frame end", "42[\"a\"]\xe2\x82", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8 in namespace", "40/\xff,", SIO_ERR_INVALID_UTF8);
	expect_err("invalid UTF-8 in ping data", "2pr\xc3obe", SIO_ERR_INVALID_UTF8);
	expect_err_len("NUL byte inside a string", nul_frame, sizeof(nul_frame) - 1,
				   SIO_ERR_INVALID_UTF8);
	expect_err_len("NUL byte as the packet type", "\0" "2[\"a\"]", 7, SIO_ERR_INVALID_UTF8);
	expect_err("valid 4-byte UTF-8 is accepted", "42[\"e\",\"\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"]", SIO_OK);
}

/* ----------------------------------------------------------------
 * Hostile nesting
 * ----------------------------------------------------------------
 */
static void
nest(StringInfo buf, const char *prefix, int depth, const char *suffix)
{
	resetStringInfo(buf);
	appendStringInfoString(buf, prefix);
	for (int i = 0; i < depth; i++)
		appendStringInfoChar(buf, '[');
	for (int i = 0; i < depth; i++)
		appendStringInfoChar(buf, ']');
	appendStringInfoString(buf, suffix);
}

static void
test_nesting(void)
{
	StringInfoData buf;

	initStringInfo(&buf);

	/* outer array is level 1, so 63 more brackets reach the limit */
	nest(&buf, "42[\"x\",", SIO_MAX_JSON_DEPTH - 1, "]");
	expect_err_len("nesting exactly at the limit", buf.data, buf.len, SIO_OK);

	nest(&buf, "42[\"x\",", SIO_MAX_JSON_DEPTH, "]");
	expect_err_len("nesting one past the limit", buf.data, buf.len, SIO_ERR_JSON_DEPTH);

	nest(&buf, "42[\"x\",", 10000, "]");
	expect_err_len("10000 nested arrays", buf.data, buf.len, SIO_ERR_JSON_DEPTH);

	resetStringInfo(&buf);
	appendStringInfoString(&buf, "42");
	for (int i = 0; i < 10000; i++)
		appendStringInfoChar(&buf, '[');
	expect_err_len("10000 unclosed '['", buf.data, buf.len, SIO_ERR_JSON_DEPTH);

	resetStringInfo(&buf);
	appendStringInfoString(&buf, "40");
	for (int i = 0; i < 5000; i++)
		appendStringInfoString(&buf, "{\"a\":");
	expect_err_len("5000 nested objects in CONNECT", buf.data, buf.len, SIO_ERR_JSON_DEPTH);

	/* brackets inside strings, even after escaped quotes, do not count */
	resetStringInfo(&buf);
	appendStringInfoString(&buf, "42[\"x\",\"\\\"");
	for (int i = 0; i < 10000; i++)
		appendStringInfoChar(&buf, '[');
	appendStringInfoString(&buf, "\\\\\"]");
	expect_err_len("10000 '[' inside a string are not nesting", buf.data, buf.len, SIO_OK);

	BEGIN_CASE("sio_json_validate: 1,000,000 '[' fails fast without recursion");
	resetStringInfo(&buf);
	for (int i = 0; i < 1000000; i++)
		appendStringInfoChar(&buf, '[');
	EXPECT(sio_json_validate(buf.data, buf.len) == SIO_ERR_JSON_DEPTH);
	EXPECT(sio_json_validate("[1,{\"a\":[true,null]}]", strlen("[1,{\"a\":[true,null]}]")) == SIO_OK);
	EXPECT(sio_json_validate("[1,]", 4) == SIO_ERR_JSON);
	EXPECT(sio_json_validate("", 0) == SIO_ERR_JSON);
	END_CASE();

	pfree(buf.data);
}

/* ----------------------------------------------------------------
 * Encoders
 * ----------------------------------------------------------------
 */
static void
test_encoders(void)
{
	StringInfoData buf;

	initStringInfo(&buf);

	BEGIN_CASE("encode open packet (EIO-README handshake fields)");
	sio_encode_open(&buf, "lv_VI97HAXpY6yYWAAAC", false, 25000, 20000, 1000000);
	EXPECT(buf_is(&buf, "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[],"
				  "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}"));
	EXPECT(sio_json_validate(buf.data + 1, buf.len - 1) == SIO_OK);
	END_CASE();

	BEGIN_CASE("encode open packet of a long-polling session: upgrades [\"websocket\"]");
	resetStringInfo(&buf);
	sio_encode_open(&buf, "lv_VI97HAXpY6yYWAAAC", true, 25000, 20000, 1000000);
	EXPECT(buf_is(&buf, "0{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],"
				  "\"pingInterval\":25000,\"pingTimeout\":20000,\"maxPayload\":1000000}"));
	EXPECT(sio_json_validate(buf.data + 1, buf.len - 1) == SIO_OK);
	END_CASE();

	BEGIN_CASE("encode ping 2, pong 3probe, noop 6, close 1");
	resetStringInfo(&buf);
	sio_encode_ping(&buf);
	EXPECT(buf_is(&buf, "2"));
	resetStringInfo(&buf);
	sio_encode_pong(&buf, "probe", 5);
	EXPECT(buf_is(&buf, "3probe"));
	resetStringInfo(&buf);
	sio_encode_noop(&buf);
	EXPECT(buf_is(&buf, "6"));
	resetStringInfo(&buf);
	sio_encode_close(&buf);
	EXPECT(buf_is(&buf, "1"));
	END_CASE();

	BEGIN_CASE("encode CONNECT reply, main and custom namespace; round trip");
	resetStringInfo(&buf);
	sio_encode_connect(&buf, NULL, "wZX3oN0bSVIhsaknAAAI");
	EXPECT(buf_is(&buf, "40{\"sid\":\"wZX3oN0bSVIhsaknAAAI\"}"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT && strcmp(fr.nsp, "/") == 0);
	resetStringInfo(&buf);
	sio_encode_connect(&buf, "/", "x");
	EXPECT(buf_is(&buf, "40{\"sid\":\"x\"}"));
	resetStringInfo(&buf);
	sio_encode_connect(&buf, "/admin", "oSO0OpakMV_3jnilAAAA");
	EXPECT(buf_is(&buf, "40/admin,{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/admin") == 0);
	EXPECT(span_is(fr.data, fr.data_len, "{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}"));
	END_CASE();

	BEGIN_CASE("encode CONNECT_ERROR with code; round trip");
	resetStringInfo(&buf);
	sio_encode_connect_error(&buf, NULL, "Token \"expired\"", "AUTH_TOKEN_EXPIRED");
	EXPECT(buf_is(&buf, "44{\"message\":\"Token \\\"expired\\\"\",\"data\":{\"code\":\"AUTH_TOKEN_EXPIRED\"}}"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(fr.sio_type == SIO_CONNECT_ERROR);
	END_CASE();

	BEGIN_CASE("encode CONNECT_ERROR for unknown namespace matches SIO-SUITE");
	resetStringInfo(&buf);
	sio_encode_connect_error(&buf, "/random", "Invalid namespace", NULL);
	EXPECT(buf_is(&buf, "44/random,{\"message\":\"Invalid namespace\"}"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(strcmp(fr.nsp, "/random") == 0);
	END_CASE();

	BEGIN_CASE("encode DISCONNECT 41 and 41/admin,");
	resetStringInfo(&buf);
	sio_encode_disconnect(&buf, NULL);
	EXPECT(buf_is(&buf, "41"));
	resetStringInfo(&buf);
	sio_encode_disconnect(&buf, "/admin");
	EXPECT(buf_is(&buf, "41/admin,"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(fr.sio_type == SIO_DISCONNECT && strcmp(fr.nsp, "/admin") == 0);
	END_CASE();

	BEGIN_CASE("encode EVENT with namespace, ack and argument; round trip");
	resetStringInfo(&buf);
	sio_encode_event(&buf, "/admin", "project:delete", 456, "123", 3);
	EXPECT(buf_is(&buf, "42/admin,456[\"project:delete\",123]"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(strcmp(fr.event, "project:delete") == 0 && fr.ack_id == 456);
	EXPECT(span_is(fr.arg0, fr.arg0_len, "123"));
	END_CASE();

	BEGIN_CASE("encode EVENT without ack/argument: 42[\"hello\"]");
	resetStringInfo(&buf);
	sio_encode_event(&buf, NULL, "hello", SIO_NO_ACK, NULL, 0);
	EXPECT(buf_is(&buf, "42[\"hello\"]"));
	resetStringInfo(&buf);
	sio_encode_event(&buf, NULL, "hey", SIO_NO_ACK, "\"Jude\"", 6);
	EXPECT(buf_is(&buf, "42[\"hey\",\"Jude\"]"));
	END_CASE();

	BEGIN_CASE("encode ACK: 4312[] and 43456[{...}]; round trip");
	resetStringInfo(&buf);
	sio_encode_ack(&buf, NULL, 12, NULL, 0);
	EXPECT(buf_is(&buf, "4312[]"));
	resetStringInfo(&buf);
	sio_encode_ack(&buf, "/admin", 13, "\"bar\"", 5);
	EXPECT(buf_is(&buf, "43/admin,13[\"bar\"]"));
	resetStringInfo(&buf);
	sio_encode_ack(&buf, NULL, 456, "{\"ok\":true,\"version\":3}", 23);
	EXPECT(buf_is(&buf, "43456[{\"ok\":true,\"version\":3}]"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
	EXPECT(fr.sio_type == SIO_ACK && fr.ack_id == 456);
	END_CASE();

	BEGIN_CASE("streaming builder: event and ack with several arguments");
	resetStringInfo(&buf);
	sio_event_begin(&buf, NULL, "doc:saved", SIO_NO_ACK);
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "{\"version\":2}");
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "[1]");
	sio_packet_end(&buf);
	EXPECT(buf_is(&buf, "42[\"doc:saved\",{\"version\":2},[1]]"));
	EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK && fr.nargs == 2);
	resetStringInfo(&buf);
	sio_ack_begin(&buf, NULL, 7);
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "[]");
	sio_arg_begin(&buf);
	appendStringInfoString(&buf, "2");
	sio_packet_end(&buf);
	EXPECT(buf_is(&buf, "437[[],2]"));
	resetStringInfo(&buf);
	sio_ack_begin(&buf, NULL, 7);
	sio_packet_end(&buf);
	EXPECT(buf_is(&buf, "437[]"));
	END_CASE();

	BEGIN_CASE("encoders only append: headroom before the frame is kept");
	resetStringInfo(&buf);
	appendStringInfoSpaces(&buf, 16);
	sio_encode_event(&buf, NULL, "lock:released", SIO_NO_ACK, "{}", 2);
	EXPECT(buf.len == 16 + 22);
	EXPECT(memcmp(buf.data, "                ", 16) == 0);
	EXPECT(memcmp(buf.data + 16, "42[\"lock:released\",{}]", 22) == 0);
	END_CASE();

	BEGIN_CASE("event name with quotes, backslash, U+2028 survives round trip");
	{
		const char *name = "a\"b\\c\xe2\x80\xa8" "d\xc3\xa9";

		resetStringInfo(&buf);
		sio_encode_event(&buf, NULL, name, 3, NULL, 0);
		EXPECT(buf_is(&buf, "423[\"a\\\"b\\\\c\\u2028d\xc3\xa9\"]"));
		EXPECT(sio_parse_frame(buf.data, buf.len, &fr) == SIO_OK);
		EXPECT(strcmp(fr.event, name) == 0);
	}
	END_CASE();

	BEGIN_CASE("sio_append_int64 extremes");
	resetStringInfo(&buf);
	sio_append_int64(&buf, 0);
	appendStringInfoChar(&buf, ' ');
	sio_append_int64(&buf, PG_INT64_MAX);
	appendStringInfoChar(&buf, ' ');
	sio_append_int64(&buf, PG_INT64_MIN);
	appendStringInfoChar(&buf, ' ');
	sio_append_int64(&buf, -42);
	EXPECT(buf_is(&buf, "0 9223372036854775807 -9223372036854775808 -42"));
	END_CASE();

	pfree(buf.data);
}

/* ----------------------------------------------------------------
 * JSON escaper
 * ----------------------------------------------------------------
 */
static void
test_escaper(void)
{
	StringInfoData buf;
	StringInfoData dec;
	char		ctl[32];

	initStringInfo(&buf);
	initStringInfo(&dec);

	BEGIN_CASE("escape quotes, backslash, slash");
	sio_json_escape(&buf, "a\"b\\c/d");
	EXPECT(buf_is(&buf, "\"a\\\"b\\\\c/d\""));
	END_CASE();

	BEGIN_CASE("escape every control character 0x01-0x1F and keep DEL");
	for (int i = 1; i < 32; i++)
		ctl[i - 1] = (char) i;
	ctl[31] = '\0';
	resetStringInfo(&buf);
	sio_json_escape(&buf, ctl);
	EXPECT(buf_is(&buf, "\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n"
				  "\\u000b\\f\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014"
				  "\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d"
				  "\\u001e\\u001f\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "\x7f");
	EXPECT(buf_is(&buf, "\"\x7f\""));
	END_CASE();

	BEGIN_CASE("escape NUL with the length variant; empty string");
	resetStringInfo(&buf);
	sio_json_escape_len(&buf, "a\0b", 3);
	EXPECT(buf_is(&buf, "\"a\\u0000b\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "");
	EXPECT(buf_is(&buf, "\"\""));
	END_CASE();

	BEGIN_CASE("valid UTF-8 passes through, U+2028/U+2029 are escaped");
	resetStringInfo(&buf);
	sio_json_escape(&buf, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf");
	EXPECT(buf_is(&buf, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "x\xe2\x80\xa8y\xe2\x80\xa9z\xe2\x80\xaa");
	EXPECT(buf_is(&buf, "\"x\\u2028y\\u2029z\xe2\x80\xaa\""));
	END_CASE();

	BEGIN_CASE("malformed UTF-8 becomes U+FFFD per byte");
	resetStringInfo(&buf);
	sio_json_escape(&buf, "a\xff" "b");
	EXPECT(buf_is(&buf, "\"a\\ufffdb\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "\xc0\xaf");
	EXPECT(buf_is(&buf, "\"\\ufffd\\ufffd\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "\xed\xa0\x80");
	EXPECT(buf_is(&buf, "\"\\ufffd\\ufffd\\ufffd\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "\xf4\x90\x80\x80");
	EXPECT(buf_is(&buf, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""));
	resetStringInfo(&buf);
	sio_json_escape(&buf, "a\xe2\x82");
	EXPECT(buf_is(&buf, "\"a\\ufffd\\ufffd\""));
	END_CASE();

	/*
	 * PostgreSQL's lexer, with de-escaping on, is an independent decoder:
	 * every string we escape must come back byte for byte.
	 */
	BEGIN_CASE("escaper round-trips through PostgreSQL's JSON lexer");
	{
		static const char *const samples[] = {
			"plain", "quote\" back\\slash", "tab\tnl\ncr\r", "\x01\x1f\x7f",
			"\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "\xe2\x80\xa8\xe2\x80\xa9",
			"</script>", "\\u0041 is not an escape here",
		};
		char		all[128];

		for (int i = 1; i < 128; i++)
			all[i - 1] = (char) i;
		all[127] = '\0';

		for (int i = 0; i <= (int) lengthof(samples); i++)
		{
			const char *s = i < (int) lengthof(samples) ? samples[i] : all;

			resetStringInfo(&buf);
			resetStringInfo(&dec);
			sio_json_escape(&buf, s);
			EXPECT(sio_utf8_valid(buf.data, buf.len));
			EXPECT(sio_json_validate(buf.data, buf.len) == SIO_OK);
			EXPECT(pg_decode_json_string(buf.data, buf.len, &dec));
			EXPECT(strcmp(dec.data, s) == 0);
		}
	}
	END_CASE();

	/* deterministic pseudo-random bytes: output always valid UTF-8 JSON */
	BEGIN_CASE("fuzz: escaping arbitrary bytes always yields valid UTF-8 JSON");
	{
		uint32		seed = 12345;
		char		raw[64];

		for (int iter = 0; iter < 5000; iter++)
		{
			int			len = iter % 64;

			for (int i = 0; i < len; i++)
			{
				seed = seed * 1103515245 + 12345;
				raw[i] = (char) (seed >> 16);
			}
			resetStringInfo(&buf);
			sio_json_escape_len(&buf, raw, len);
			if (!sio_utf8_valid(buf.data, buf.len) ||
				sio_json_validate(buf.data, buf.len) != SIO_OK)
			{
				EXPECT(false);
				break;
			}
			/* valid UTF-8 input without NUL must decode back exactly */
			if (sio_utf8_valid(raw, len))
			{
				resetStringInfo(&dec);
				EXPECT(pg_decode_json_string(buf.data, buf.len, &dec) &&
					   dec.len == len && memcmp(dec.data, raw, len) == 0);
			}
		}
	}
	END_CASE();

	pfree(buf.data);
	pfree(dec.data);
}

/*
 * Mutate valid frames byte by byte: whatever the parser says, it must not
 * crash, must set errmsg, and on success must hand back spans inside the
 * frame.
 */
static void
test_mutation_fuzz(void)
{
	static const char *const seeds[] = {
		"42/admin,456[\"project:delete\",123]",
		"40{\"token\":\"abc\"}",
		"4312[{\"ok\":true}]",
		"452-/admin,7[\"x\",{\"_placeholder\":true,\"num\":0}]",
		"42[\"e\\u00e9\",{\"a\":[1,2,{\"b\":\"\\\"\"}]}]",
		"2probe",
	};
	uint32		seed = 777;
	char		frame[128];
	bool		ok = true;

	BEGIN_CASE("fuzz: 20000 mutated frames parse without crashing");
	for (int iter = 0; iter < 20000 && ok; iter++)
	{
		const char *s = seeds[iter % lengthof(seeds)];
		size_t		len = strlen(s);
		SioParseError err;

		memcpy(frame, s, len);
		for (int k = 0; k < 1 + iter % 3; k++)
		{
			seed = seed * 1103515245 + 12345;
			frame[(seed >> 8) % len] = (char) (seed >> 20);
		}
		seed = seed * 1103515245 + 12345;
		if (iter % 5 == 0)
			len = (seed >> 8) % (len + 1);	/* truncation */

		err = sio_parse_frame(frame, len, &fr);
		if (fr.errmsg == NULL)
			ok = false;
		if (err == SIO_OK && fr.eio_type == SIO_EIO_MESSAGE && fr.data != NULL &&
			(fr.data < frame || fr.data + fr.data_len > frame + len))
			ok = false;
		if (err == SIO_OK && fr.arg0 != NULL &&
			(fr.arg0 < fr.data || fr.arg0 + fr.arg0_len > fr.data + fr.data_len))
			ok = false;
		if (err == SIO_OK && fr.eio_type == SIO_EIO_MESSAGE &&
			fr.sio_type == SIO_EVENT && fr.data == NULL)
			ok = false;
	}
	EXPECT(ok);
	END_CASE();
}

int
main(void)
{
	test_valid_socketio();
	test_valid_engineio();
	test_invalid();
	test_nesting();
	test_encoders();
	test_escaper();
	test_mutation_fuzz();

	printf("test_sio_codec: %d passed, %d failed\n", n_passed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
