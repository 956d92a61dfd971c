/*-------------------------------------------------------------------------
 *
 * test_json_object.c
 *	  Unit tests for src/json_object.c, built as a frontend program
 *	  (-DFRONTEND, libpgcommon/libpgport); no server needed.
 *
 * Prints failures (every check with VERBOSE=1) and ends with the line
 * "<program>: N passed, M failed" that the Makefile adds up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "lib/stringinfo.h"

#include "json_object.h"

static int	n_pass;
static int	n_fail;
static bool verbose;

#define CHECK(cond, name) check((cond), (name), __LINE__)

static void
check(bool ok, const char *name, int line)
{
	if (ok)
		n_pass++;
	else
		n_fail++;
	if (!ok || verbose)
		printf("%s json_object: %s (line %d)\n", ok ? "ok  " : "FAIL", name, line);
}

static bool
parse(const char *s, JsonObject *obj)
{
	char	   *err = NULL;
	bool		ok = json_object_parse(s, strlen(s), obj, &err);

	if (!ok && err == NULL)
		printf("FAIL json_object: no message for rejected input\n");
	if (verbose && err)
		printf("     (%s)\n", err);
	if (err)
		pfree(err);
	return ok;
}

static bool
rejects(const char *s)
{
	JsonObject	obj;

	if (parse(s, &obj))
	{
		json_object_free(&obj);
		return false;
	}
	return obj.nmembers == 0 && obj.members == NULL;
}

static bool
rejects_len(const char *s, size_t len)
{
	JsonObject	obj;
	char	   *err = NULL;

	if (json_object_parse(s, len, &obj, &err))
	{
		json_object_free(&obj);
		return false;
	}
	return err != NULL;
}

/* The string value of key in the one-object text s, or NULL. */
static char *
string_of(const char *s, const char *key)
{
	JsonObject	obj;
	const char *v;
	char	   *res = NULL;

	if (!parse(s, &obj))
		return NULL;
	if (json_object_get_string(&obj, key, &v, NULL) == JSON_GET_OK)
		res = pstrdup(v);
	json_object_free(&obj);
	return res;
}

static bool
string_is(const char *s, const char *key, const char *expect)
{
	char	   *v = string_of(s, key);
	bool		ok = v && strcmp(v, expect) == 0;

	if (v)
		pfree(v);
	return ok;
}

/* json_member_int64 on the lexeme 'num', expecting result r and value v */
static bool
int_is(const char *num, JsonGetResult r, int64 v)
{
	char	   *text = psprintf("{\"n\": %s}", num);
	JsonObject	obj;
	int64		got = -12345;
	JsonGetResult res;

	if (!parse(text, &obj))
	{
		pfree(text);
		return false;
	}
	res = json_object_get_int64(&obj, "n", &got);
	json_object_free(&obj);
	pfree(text);
	return res == r && (r != JSON_GET_OK || got == v);
}

static void
test_basic(void)
{
	JsonObject	obj;
	const JsonMember *m;
	const char *s;
	size_t		len;
	int64		i;
	bool		b;

	CHECK(parse(" {\"a\": \"x\", \"n\": -12, \"t\": true, \"f\": false, \"z\": null,"
				" \"o\": {\"k\": [1, {\"d\": 2}]}, \"arr\": [\"p\", \"q\"]} \n", &obj),
		  "object with all value kinds parses");
	CHECK(obj.nmembers == 7, "seven members");
	CHECK(strcmp(obj.members[0].key, "a") == 0 && strcmp(obj.members[6].key, "arr") == 0,
		  "members in document order");
	CHECK(json_object_get_string(&obj, "a", &s, &len) == JSON_GET_OK &&
		  strcmp(s, "x") == 0 && len == 1, "string getter");
	CHECK(json_object_get_int64(&obj, "n", &i) == JSON_GET_OK && i == -12, "int64 getter");
	CHECK(json_object_get_bool(&obj, "t", &b) == JSON_GET_OK && b, "bool getter true");
	CHECK(json_object_get_bool(&obj, "f", &b) == JSON_GET_OK && !b, "bool getter false");
	CHECK(json_object_get_string(&obj, "z", &s, NULL) == JSON_GET_NULL, "null gives JSON_GET_NULL");
	CHECK(json_object_get_string(&obj, "nope", &s, NULL) == JSON_GET_MISSING, "missing key");
	CHECK(json_object_get_string(&obj, "n", &s, NULL) == JSON_GET_WRONG_TYPE, "number is not a string");
	CHECK(json_object_get_int64(&obj, "a", &i) == JSON_GET_WRONG_TYPE, "string is not a number");
	CHECK(json_object_get_bool(&obj, "n", &b) == JSON_GET_WRONG_TYPE, "number is not a bool");

	m = json_object_get(&obj, "o");
	CHECK(m && m->kind == JSON_KIND_OBJECT && strcmp(m->value, "{\"k\": [1, {\"d\": 2}]}") == 0 &&
		  m->len == strlen(m->value), "nested object kept as its exact raw text");
	if (m)
	{
		JsonObject	inner;

		CHECK(json_object_parse(m->value, m->len, &inner, NULL) && inner.nmembers == 1 &&
			  inner.members[0].kind == JSON_KIND_ARRAY &&
			  strcmp(inner.members[0].value, "[1, {\"d\": 2}]") == 0,
			  "nested object parses again");
		json_object_free(&inner);
	}
	m = json_object_get(&obj, "arr");
	CHECK(m && m->kind == JSON_KIND_ARRAY, "array member");
	if (m)
	{
		JsonArray	arr;

		CHECK(json_array_parse(m->value, m->len, &arr, NULL) && arr.nelems == 2 &&
			  arr.elems[0].key == NULL &&
			  json_member_string(&arr.elems[1], &s, NULL) == JSON_GET_OK &&
			  strcmp(s, "q") == 0, "array re-parsed as elements");
		json_array_free(&arr);
	}
	CHECK(strcmp(json_kind_name(json_object_get(&obj, "z")->kind), "null") == 0, "kind names");
	json_object_free(&obj);
	CHECK(obj.nmembers == 0 && obj.members == NULL, "free resets the object");

	CHECK(parse("{}", &obj) && obj.nmembers == 0, "empty object");
	json_object_free(&obj);
	CHECK(parse("{\"resourceId\":\"document:1/tab:diagnosis\",\"mode\":\"editor\"}", &obj) &&
		  json_object_get_string(&obj, "mode", &s, NULL) == JSON_GET_OK &&
		  strcmp(s, "editor") == 0, "event payload example");
	json_object_free(&obj);

	{
		JsonArray	arr;

		CHECK(json_array_parse("[]", 2, &arr, NULL) && arr.nelems == 0, "empty array");
		json_array_free(&arr);
		CHECK(!json_array_parse("{}", 2, &arr, NULL), "array parser rejects an object");
		CHECK(!json_array_parse("[1,]", 4, &arr, NULL), "array parser rejects trailing comma");
	}
}

static void
test_escapes(void)
{
	CHECK(string_is("{\"s\": \"caf\\u00e9\"}", "s", "caf\xc3\xa9"), "\\u00e9 decodes to UTF-8");
	CHECK(string_is("{\"s\": \"\\u20AC\"}", "s", "\xe2\x82\xac"), "\\u20AC (upper-case hex)");
	CHECK(string_is("{\"s\": \"\\ud83d\\ude00\"}", "s", "\xf0\x9f\x98\x80"), "surrogate pair decodes");
	CHECK(string_is("{\"s\": \"a\\nb\\tc\\r\\b\\f\"}", "s", "a\nb\tc\r\b\f"), "control escapes");
	CHECK(string_is("{\"s\": \"q\\\"b\\\\s\\/\"}", "s", "q\"b\\s/"), "quote, backslash, slash");
	CHECK(string_is("{\"s\": \"caf\xc3\xa9 \xf0\x9f\x98\x80\"}", "s", "caf\xc3\xa9 \xf0\x9f\x98\x80"),
		  "raw UTF-8 passes through");
	CHECK(string_is("{\"k\\u0065y\": 1, \"s\": \"v\"}", "s", "v"), "escaped key parses");
	{
		JsonObject	obj;

		CHECK(parse("{\"k\\u0065y\": 1}", &obj) && json_object_get(&obj, "key") != NULL,
			  "escaped key is de-escaped");
		json_object_free(&obj);
	}
	CHECK(rejects("{\"s\": \"\\ud83d\"}"), "lone high surrogate");
	CHECK(rejects("{\"s\": \"\\ude00\"}"), "lone low surrogate");
	CHECK(rejects("{\"s\": \"\\ud83dx\"}"), "high surrogate followed by a character");
	CHECK(rejects("{\"s\": \"\\ud83d\\u0041\"}"), "high surrogate followed by non-surrogate");
	CHECK(rejects("{\"s\": \"\\ud83d\\ud83d\"}"), "two high surrogates");
	CHECK(rejects("{\"s\": \"a\\u0000b\"}"), "\\u0000 rejected");
	CHECK(rejects("{\"\\u0000\": 1}"), "\\u0000 in key rejected");
	CHECK(rejects("{\"s\": \"\\x41\"}"), "unknown escape");
	CHECK(rejects("{\"s\": \"\\u12G4\"}"), "bad hex in \\u");
	CHECK(rejects("{\"s\": \"a\nb\"}"), "raw newline in string");
	CHECK(rejects("{\"s\": \"a\tb\"}"), "raw tab in string");
}

static void
test_rejects(void)
{
	char	   *deep;
	int			i;

	CHECK(rejects("{\"a\": 1, \"a\": 2}"), "duplicate key");
	CHECK(rejects("{\"a\": 1, \"b\": 0, \"\\u0061\": 2}"), "duplicate key via escape");
	CHECK(rejects("{\"sub\": \"x\", \"sub\": \"x\"}"), "duplicate key with equal values");
	{
		JsonObject	obj;

		JsonObject	inner;

		CHECK(parse("{\"a\": {\"x\": 1, \"x\": 2}}", &obj) &&
			  !json_object_parse(obj.members[0].value, obj.members[0].len, &inner, NULL),
			  "nested duplicate caught when the nested object is parsed");
		json_object_free(&obj);
	}
	CHECK(rejects("[1, 2]"), "top-level array");
	CHECK(rejects("\"str\""), "top-level string");
	CHECK(rejects("42"), "top-level number");
	CHECK(rejects("null"), "top-level null");
	CHECK(rejects("true"), "top-level true");
	CHECK(rejects(""), "empty input");
	CHECK(rejects("   \n"), "whitespace only");
	CHECK(rejects("{\"a\": 1"), "truncated: missing }");
	CHECK(rejects("{\"a\":"), "truncated: missing value");
	CHECK(rejects("{\"a\": \"xy"), "truncated: unterminated string");
	CHECK(rejects("{\"a\": \"\\u00"), "truncated: inside \\u escape");
	CHECK(rejects("{\"a"), "truncated: inside key");
	CHECK(rejects("{"), "truncated: lone {");
	CHECK(rejects("{} x"), "trailing garbage");
	CHECK(rejects("{}{}"), "two objects");
	CHECK(rejects("{\"a\": 1,}"), "trailing comma");
	CHECK(rejects("{a: 1}"), "unquoted key");
	CHECK(rejects("{'a': 1}"), "single quotes");
	CHECK(rejects("{\"a\": 01}"), "leading zero");
	CHECK(rejects("{\"a\": NaN}"), "NaN");
	CHECK(rejects("{\"a\": tru}"), "bad keyword");
	CHECK(rejects("{\"a\": [1, 2}"), "mismatched brackets");
	CHECK(rejects("{\"a\": 1} // c"), "comment");
	CHECK(rejects_len("{\"a\": 1}\0", 9), "NUL byte after the object");
	CHECK(rejects_len("{\"a\": \"x\0y\"}", 12), "NUL byte inside a string");
	{
		JsonObject	obj;

		CHECK(!json_object_parse(NULL, 0, &obj, NULL), "NULL input");
	}

	/* invalid UTF-8 (jsonapi itself does not check it) */
	CHECK(rejects("{\"a\": \"\xc3\x28\"}"), "invalid UTF-8: bad continuation");
	CHECK(rejects("{\"a\": \"\xc0\xaf\"}"), "invalid UTF-8: overlong");
	CHECK(rejects("{\"a\": \"\xed\xa0\x80\"}"), "invalid UTF-8: encoded surrogate");
	CHECK(rejects("{\"a\": \"\xf5\x80\x80\x80\"}"), "invalid UTF-8: above U+10FFFF");
	CHECK(rejects("{\"a\": \"\xff\"}"), "invalid UTF-8: 0xFF");
	CHECK(rejects("{\"a\": \"\xe2\x82\"}"), "invalid UTF-8: truncated sequence");
	CHECK(rejects("{\"\xc3\": 1}"), "invalid UTF-8 in key");

	/* nesting limit */
	deep = palloc(2 * (JSON_OBJECT_MAX_DEPTH + 1) + 16);
	strcpy(deep, "{\"a\":");
	for (i = 1; i < JSON_OBJECT_MAX_DEPTH; i++)
		strcat(deep, "[");
	for (i = 1; i < JSON_OBJECT_MAX_DEPTH; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	{
		JsonObject	obj;

		CHECK(parse(deep, &obj), "nesting at the limit accepted");
		json_object_free(&obj);
	}
	strcpy(deep, "{\"a\":");
	for (i = 0; i < JSON_OBJECT_MAX_DEPTH; i++)
		strcat(deep, "[");
	for (i = 0; i < JSON_OBJECT_MAX_DEPTH; i++)
		strcat(deep, "]");
	strcat(deep, "}");
	CHECK(rejects(deep), "nesting beyond the limit rejected");
	pfree(deep);
	{
		StringInfoData buf;
		JsonObject	obj;

		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"a\": \"");
		for (i = 0; i < 2 * JSON_OBJECT_MAX_DEPTH; i++)
			appendStringInfoString(&buf, "[{\\\"");
		appendStringInfoString(&buf, "\"}");
		CHECK(parse(buf.data, &obj), "brackets and escaped quotes inside strings do not count as nesting");
		json_object_free(&obj);
		pfree(buf.data);
	}
}

static void
test_many_keys(void)
{
	StringInfoData buf;
	JsonObject	obj;
	int64		v;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < 5000; i++)
		appendStringInfo(&buf, "%s\"k%d\":%d", i ? "," : "", i, i);
	appendStringInfoChar(&buf, '}');
	CHECK(parse(buf.data, &obj) && obj.nmembers == 5000 &&
		  json_object_get_int64(&obj, "k4999", &v) == JSON_GET_OK && v == 4999,
		  "5000 distinct keys");
	json_object_free(&obj);
	buf.len--;
	appendStringInfoString(&buf, ",\"k1234\":0}");
	CHECK(rejects(buf.data), "duplicate among 5001 keys");
	pfree(buf.data);
}

static void
test_int64(void)
{
	CHECK(int_is("0", JSON_GET_OK, 0), "0");
	CHECK(int_is("-0", JSON_GET_OK, 0), "-0");
	CHECK(int_is("1700000000", JSON_GET_OK, 1700000000), "plain integer");
	CHECK(int_is("1700000000.0", JSON_GET_OK, 1700000000), "integer with .0");
	CHECK(int_is("1.7e9", JSON_GET_OK, 1700000000), "exponent form");
	CHECK(int_is("17E+8", JSON_GET_OK, 1700000000), "E+ form");
	CHECK(int_is("170000000000e-2", JSON_GET_OK, 1700000000), "negative exponent, integral");
	CHECK(int_is("0.5e1", JSON_GET_OK, 5), "fraction times ten");
	CHECK(int_is("0e-99999999999999999999", JSON_GET_OK, 0), "zero with huge negative exponent");
	CHECK(int_is("0e99999999999999999999", JSON_GET_OK, 0), "zero with huge exponent");
	CHECK(int_is("9223372036854775807", JSON_GET_OK, PG_INT64_MAX), "int64 max");
	CHECK(int_is("-9223372036854775808", JSON_GET_OK, PG_INT64_MIN), "int64 min");
	CHECK(int_is("9223372036854775808", JSON_GET_OUT_OF_RANGE, 0), "int64 max + 1");
	CHECK(int_is("-9223372036854775809", JSON_GET_OUT_OF_RANGE, 0), "int64 min - 1");
	CHECK(int_is("99999999999999999999999", JSON_GET_OUT_OF_RANGE, 0), "far beyond uint64");
	CHECK(int_is("1700000000.5", JSON_GET_OUT_OF_RANGE, 0), "fraction");
	CHECK(int_is("1.5", JSON_GET_OUT_OF_RANGE, 0), "1.5");
	CHECK(int_is("1e-1", JSON_GET_OUT_OF_RANGE, 0), "1e-1");
	CHECK(int_is("1e400", JSON_GET_OUT_OF_RANGE, 0), "1e400");
	CHECK(int_is("1e-400", JSON_GET_OUT_OF_RANGE, 0), "1e-400");
	CHECK(int_is("\"5\"", JSON_GET_WRONG_TYPE, 0), "numeric string is not a number");
	CHECK(int_is("null", JSON_GET_NULL, 0), "null is not a number");
	CHECK(int_is("true", JSON_GET_WRONG_TYPE, 0), "true is not a number");
	CHECK(int_is("[1]", JSON_GET_WRONG_TYPE, 0), "array is not a number");
	{
		int64		v;

		CHECK(json_member_int64(NULL, &v) == JSON_GET_MISSING, "NULL member is missing");
	}
}

int
main(void)
{
	verbose = getenv("VERBOSE") != NULL;
	test_basic();
	test_escapes();
	test_rejects();
	test_many_keys();
	test_int64();
	printf("test_json_object: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
