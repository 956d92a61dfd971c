/*-------------------------------------------------------------------------
 *
 * json_object.c
 *	  Reader for one flat JSON object (or array), built on common/jsonapi.h.
 *
 * How it works: a cheap pre-scan checks UTF-8 validity and nesting depth,
 * pg_parse_json() then validates the whole text, and a second walk with
 * json_lex() picks out the top-level members.
 *
 * We run the jsonapi lexer WITHOUT de-escaping (need_escapes = false) and
 * de-escape strings ourselves.  In the backend, jsonapi converts \uXXXX
 * escapes to the server encoding with pg_unicode_to_server(), which raises
 * an ERROR for characters the encoding cannot represent (always the case
 * for non-ASCII in SQL_ASCII, the encoding of a worker that is not yet
 * connected to a database).  Being able to make the worker throw with a
 * crafted payload is not acceptable, and we want UTF-8 output in any case.
 *
 * See json_object.h for the API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include <limits.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "json_object.h"

/* the longest key we quote in an error message */
#define MAX_QUOTED_KEY 64

static bool precheck_input(const char *json, size_t len, char **errmsg);
static const char *parse_error_text(JsonParseErrorType rc);
static bool parse_container(const char *json, size_t len, bool want_object,
							bool validated, JsonMember **members, int *count,
							char **errmsg);
static bool decode_string(const char *tok, size_t toklen, char **out,
						  size_t *outlen, const char **err);
static bool check_duplicates(JsonMember *members, int count, char **errmsg);
static void free_members(JsonMember *members, int count);

static void
set_error(char **errmsg, const char *msg)
{
	if (errmsg)
		*errmsg = pstrdup(msg);
}

bool
json_object_parse(const char *json, size_t len, JsonObject *out, char **errmsg)
{
	out->nmembers = 0;
	out->members = NULL;
	if (errmsg)
		*errmsg = NULL;

	if (!parse_container(json, len, true, false, &out->members, &out->nmembers,
						 errmsg))
		return false;
	if (!check_duplicates(out->members, out->nmembers, errmsg))
	{
		json_object_free(out);
		return false;
	}
	return true;
}

bool
json_array_parse(const char *json, size_t len, JsonArray *out, char **errmsg)
{
	out->nelems = 0;
	out->elems = NULL;
	if (errmsg)
		*errmsg = NULL;

	return parse_container(json, len, false, false, &out->elems, &out->nelems,
						   errmsg);
}

/*
 * A member's object or array value: a part of a text that an earlier parse
 * has validated whole, so only its top level is walked.
 */
bool
json_member_object(const JsonMember *m, JsonObject *out)
{
	out->nmembers = 0;
	out->members = NULL;
	if (m == NULL || m->kind != JSON_KIND_OBJECT ||
		!parse_container(m->value, m->len, true, true, &out->members, &out->nmembers, NULL))
		return false;
	if (!check_duplicates(out->members, out->nmembers, NULL))
	{
		json_object_free(out);
		return false;
	}
	return true;
}

bool
json_member_array(const JsonMember *m, JsonArray *out)
{
	out->nelems = 0;
	out->elems = NULL;
	if (m == NULL || m->kind != JSON_KIND_ARRAY)
		return false;
	return parse_container(m->value, m->len, false, true, &out->elems, &out->nelems, NULL);
}

void
json_object_free(JsonObject *obj)
{
	free_members(obj->members, obj->nmembers);
	obj->members = NULL;
	obj->nmembers = 0;
}

void
json_array_free(JsonArray *arr)
{
	free_members(arr->elems, arr->nelems);
	arr->elems = NULL;
	arr->nelems = 0;
}

const JsonMember *
json_object_get(const JsonObject *obj, const char *key)
{
	for (int i = 0; i < obj->nmembers; i++)
	{
		if (strcmp(obj->members[i].key, key) == 0)
			return &obj->members[i];
	}
	return NULL;
}

const char *
json_kind_name(JsonKind kind)
{
	switch (kind)
	{
		case JSON_KIND_STRING:
			return "string";
		case JSON_KIND_NUMBER:
			return "number";
		case JSON_KIND_BOOL:
			return "boolean";
		case JSON_KIND_NULL:
			return "null";
		case JSON_KIND_OBJECT:
			return "object";
		case JSON_KIND_ARRAY:
			return "array";
	}
	return "unknown";
}

static JsonGetResult
check_kind(const JsonMember *m, JsonKind kind)
{
	if (m == NULL)
		return JSON_GET_MISSING;
	if (m->kind == kind)
		return JSON_GET_OK;
	if (m->kind == JSON_KIND_NULL)
		return JSON_GET_NULL;
	return JSON_GET_WRONG_TYPE;
}

JsonGetResult
json_member_string(const JsonMember *m, const char **val, size_t *len)
{
	JsonGetResult r = check_kind(m, JSON_KIND_STRING);

	if (r == JSON_GET_OK)
	{
		*val = m->value;
		if (len)
			*len = m->len;
	}
	return r;
}

JsonGetResult
json_member_bool(const JsonMember *m, bool *val)
{
	JsonGetResult r = check_kind(m, JSON_KIND_BOOL);

	if (r == JSON_GET_OK)
		*val = (m->value[0] == 't');
	return r;
}

/*
 * A JSON number is -?INT(.FRAC)?([eE][+-]?EXP)?, already validated by the
 * lexer.  Its value is the digit string D = INT FRAC with the decimal point
 * moved to position point = len(INT) + EXP.  It is an integer iff every
 * digit of D at or after 'point' is zero; then the digits before 'point',
 * followed by (point - len(D)) zeros, are its value.  Exact decimal
 * reasoning, no floating point, so 1700000000.0 and 1.7e9 are integers but
 * 1700000000.5 is not.
 */
JsonGetResult
json_member_int64(const JsonMember *m, int64 *val)
{
	JsonGetResult r = check_kind(m, JSON_KIND_NUMBER);
	const char *p;
	const char *end;
	const char *int_start;
	const char *frac_start;
	int			nint;
	int			nfrac = 0;
	long		exp10 = 0;
	long		point;
	bool		neg = false;
	uint64		acc = 0;

	if (r != JSON_GET_OK)
		return r;

	p = m->value;
	end = p + m->len;
	if (p < end && *p == '-')
	{
		neg = true;
		p++;
	}
	int_start = p;
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	nint = p - int_start;
	frac_start = p;
	if (p < end && *p == '.')
	{
		frac_start = ++p;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
		nfrac = p - frac_start;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		bool		eneg = false;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			eneg = (*p++ == '-');
		while (p < end && *p >= '0' && *p <= '9')
		{
			/* saturate: anything this large overflows or underflows anyway */
			if (exp10 < 1000000)
				exp10 = exp10 * 10 + (*p - '0');
			p++;
		}
		if (eneg)
			exp10 = -exp10;
	}
	if (p != end || nint == 0)
		return JSON_GET_OUT_OF_RANGE;	/* cannot happen after the lexer */

	point = nint + exp10;
	for (int i = 0; i < nint + nfrac; i++)
	{
		int			d = (i < nint ? int_start[i] : frac_start[i - nint]) - '0';

		if (i < point)
		{
			if (acc > (PG_UINT64_MAX - d) / 10)
				return JSON_GET_OUT_OF_RANGE;
			acc = acc * 10 + d;
		}
		else if (d != 0)
			return JSON_GET_OUT_OF_RANGE;	/* has a fractional part */
	}
	for (long i = nint + nfrac; i < point && acc != 0; i++)
	{
		if (acc > PG_UINT64_MAX / 10)
			return JSON_GET_OUT_OF_RANGE;
		acc *= 10;
	}

	if (neg)
	{
		if (acc > (uint64) PG_INT64_MAX + 1)
			return JSON_GET_OUT_OF_RANGE;
		*val = (acc == (uint64) PG_INT64_MAX + 1) ? PG_INT64_MIN : -(int64) acc;
	}
	else
	{
		if (acc > (uint64) PG_INT64_MAX)
			return JSON_GET_OUT_OF_RANGE;
		*val = (int64) acc;
	}
	return JSON_GET_OK;
}

JsonGetResult
json_object_get_string(const JsonObject *obj, const char *key,
					   const char **val, size_t *len)
{
	return json_member_string(json_object_get(obj, key), val, len);
}

JsonGetResult
json_object_get_int64(const JsonObject *obj, const char *key, int64 *val)
{
	return json_member_int64(json_object_get(obj, key), val);
}

JsonGetResult
json_object_get_bool(const JsonObject *obj, const char *key, bool *val)
{
	return json_member_bool(json_object_get(obj, key), val);
}

/* See json_object.h. */
JsonDepthResult
json_depth_check(const char *json, size_t len, int max_depth)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = json[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > max_depth)
				return JSON_DEPTH_EXCEEDED;
		}
		else if (c == '}' || c == ']')
		{
			if (--depth < 0)
				return JSON_DEPTH_UNBALANCED;
		}
	}
	return JSON_DEPTH_OK;
}

/*
 * Checks that jsonapi does not do for us.
 *
 * UTF-8: jsonapi copies bytes >= 0x80 through unchecked (the backend
 * normally hands it text already verified against the database encoding),
 * but our input is raw bytes off a socket or out of a token.  We require
 * the whole text to be valid UTF-8, as RFC 8259 does; that also excludes
 * NUL bytes.
 *
 * Depth: pg_parse_json() recurses once per nesting level and, in the
 * backend, raises an ERROR when the stack runs low: json_depth_check()
 * gives up past JSON_OBJECT_MAX_DEPTH first.  Unbalanced text is left to
 * the parser, which names the problem.
 */
static bool
precheck_input(const char *json, size_t len, char **errmsg)
{
	if (len >= (size_t) INT_MAX)
	{
		set_error(errmsg, "JSON text is too large");
		return false;
	}
	if (pg_encoding_verifymbstr(PG_UTF8, json, (int) len) != (int) len)
	{
		set_error(errmsg, "JSON text is not valid UTF-8 or contains a NUL byte");
		return false;
	}
	if (json_depth_check(json, len, JSON_OBJECT_MAX_DEPTH) == JSON_DEPTH_EXCEEDED)
	{
		set_error(errmsg, "JSON text is nested too deeply");
		return false;
	}
	return true;
}

static const char *
parse_error_text(JsonParseErrorType rc)
{
	switch (rc)
	{
		case JSON_SUCCESS:
			break;
		case JSON_ESCAPING_INVALID:
			return "invalid escape sequence in string";
		case JSON_ESCAPING_REQUIRED:
			return "unescaped control character in string";
		case JSON_EXPECTED_ARRAY_FIRST:
			return "expected an array element or \"]\"";
		case JSON_EXPECTED_ARRAY_NEXT:
			return "expected \",\" or \"]\"";
		case JSON_EXPECTED_COLON:
			return "expected \":\"";
		case JSON_EXPECTED_END:
			return "unexpected data after the end of the JSON value";
		case JSON_EXPECTED_JSON:
			return "expected a JSON value";
		case JSON_EXPECTED_MORE:
			return "unexpected end of input";
		case JSON_EXPECTED_OBJECT_FIRST:
			return "expected a string key or \"}\"";
		case JSON_EXPECTED_OBJECT_NEXT:
			return "expected \",\" or \"}\"";
		case JSON_EXPECTED_STRING:
			return "expected a string key";
		case JSON_INVALID_TOKEN:
			return "invalid token or unterminated string";
		case JSON_UNICODE_CODE_POINT_ZERO:
			return "\\u0000 is not allowed";
		case JSON_UNICODE_ESCAPE_FORMAT:
			return "\\u must be followed by four hexadecimal digits";
		case JSON_UNICODE_HIGH_ESCAPE:
			return "unsupported Unicode escape";
		case JSON_UNICODE_HIGH_SURROGATE:
		case JSON_UNICODE_LOW_SURROGATE:
			return "unpaired Unicode surrogate";
	}
	return "invalid JSON";
}

/* Advance the lexer; false on a lexing error (not expected after pass 1). */
static bool
next_token(JsonLexContext *lex)
{
	return json_lex(lex) == JSON_SUCCESS;
}

/*
 * Validate json[0..len) and collect the members (want_object) or elements
 * of the top-level container.  validated: json is known valid (a value
 * taken from a text parsed before), only its top level is walked.
 */
static bool
parse_container(const char *json, size_t len, bool want_object, bool validated,
				JsonMember **members, int *count, char **errmsg)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType rc;
	JsonTokenType open_tok = want_object ? JSON_TOKEN_OBJECT_START : JSON_TOKEN_ARRAY_START;
	JsonTokenType close_tok = want_object ? JSON_TOKEN_OBJECT_END : JSON_TOKEN_ARRAY_END;
	JsonMember *items = NULL;
	int			nitems = 0;
	int			cap = 0;
	const char *err = NULL;

	if (json == NULL)
	{
		json = "";
		len = 0;
	}
	if (!validated)
	{
		if (!precheck_input(json, len, errmsg))
			return false;

		/* Pass 1: full validation by jsonapi, no callbacks needed. */
		memset(&sem, 0, sizeof(sem));
		lex = makeJsonLexContextCstringLen(unconstify(char *, json), (int) len,
										   PG_UTF8, false);
		rc = pg_parse_json(lex, &sem);
		pfree(lex);
		if (rc != JSON_SUCCESS)
		{
			if (errmsg)
				*errmsg = psprintf("invalid JSON: %s", parse_error_text(rc));
			return false;
		}
	}

	/* Pass 2: walk the top level of the (now known valid) text. */
	lex = makeJsonLexContextCstringLen(unconstify(char *, json), (int) len,
									   PG_UTF8, false);
	if (!next_token(lex) || lex->token_type != open_tok)
	{
		err = want_object ? "JSON value is not an object" : "JSON value is not an array";
		goto fail;
	}
	if (!next_token(lex))
		goto fail;

	while (lex->token_type != close_tok)
	{
		JsonMember *m;
		const char *vstart;

		if (nitems == cap)
		{
			cap = cap ? cap * 2 : 8;
			items = items ? repalloc(items, cap * sizeof(JsonMember))
				: palloc(cap * sizeof(JsonMember));
		}
		m = &items[nitems];
		memset(m, 0, sizeof(JsonMember));

		if (want_object)
		{
			size_t		keylen;

			if (lex->token_type != JSON_TOKEN_STRING)
				goto fail;
			if (!decode_string(lex->token_start,
							   lex->token_terminator - lex->token_start,
							   &m->key, &keylen, &err))
				goto fail;
			nitems++;			/* from here on, m owns memory to free */
			if (!next_token(lex) || lex->token_type != JSON_TOKEN_COLON ||
				!next_token(lex))
				goto fail;
		}
		else
			nitems++;

		vstart = lex->token_start;
		switch (lex->token_type)
		{
			case JSON_TOKEN_STRING:
				m->kind = JSON_KIND_STRING;
				if (!decode_string(vstart, lex->token_terminator - vstart,
								   &m->value, &m->len, &err))
					goto fail;
				break;
			case JSON_TOKEN_NUMBER:
			case JSON_TOKEN_TRUE:
			case JSON_TOKEN_FALSE:
			case JSON_TOKEN_NULL:
				m->kind = (lex->token_type == JSON_TOKEN_NUMBER) ? JSON_KIND_NUMBER :
					(lex->token_type == JSON_TOKEN_NULL) ? JSON_KIND_NULL :
					JSON_KIND_BOOL;
				m->len = lex->token_terminator - vstart;
				m->value = pnstrdup(vstart, m->len);
				break;
			case JSON_TOKEN_OBJECT_START:
			case JSON_TOKEN_ARRAY_START:
				{
					int			depth = 1;

					m->kind = (lex->token_type == JSON_TOKEN_OBJECT_START) ?
						JSON_KIND_OBJECT : JSON_KIND_ARRAY;
					while (depth > 0)
					{
						if (!next_token(lex) || lex->token_type == JSON_TOKEN_END)
							goto fail;
						if (lex->token_type == JSON_TOKEN_OBJECT_START ||
							lex->token_type == JSON_TOKEN_ARRAY_START)
							depth++;
						else if (lex->token_type == JSON_TOKEN_OBJECT_END ||
								 lex->token_type == JSON_TOKEN_ARRAY_END)
							depth--;
					}
					m->len = lex->token_terminator - vstart;
					m->value = pnstrdup(vstart, m->len);
				}
				break;
			default:
				goto fail;
		}

		/* ',' then the next item, or the closing bracket */
		if (!next_token(lex))
			goto fail;
		if (lex->token_type == JSON_TOKEN_COMMA)
		{
			if (!next_token(lex) || lex->token_type == close_tok)
				goto fail;
		}
		else if (lex->token_type != close_tok)
			goto fail;
	}
	if (!next_token(lex) || lex->token_type != JSON_TOKEN_END)
		goto fail;

	pfree(lex);
	*members = items;
	*count = nitems;
	return true;

fail:
	pfree(lex);
	free_members(items, nitems);
	if (errmsg)
		*errmsg = psprintf("invalid JSON: %s", err ? err : "unexpected token");
	return false;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at p (bounds checked by the caller), or -1. */
static int
hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		int			h = hex_value(p[i]);

		if (h < 0)
			return -1;
		v = (v << 4) | h;
	}
	return v;
}

/* See json_object.h. */
JsonStringError
json_string_decode(const char *tok, size_t toklen, char **out, size_t *outlen)
{
	StringInfoData buf;
	const char *p = tok + 1;
	const char *stop = tok + toklen - 1;	/* the closing quote */
	JsonStringError err = JSON_STRING_BAD_ESCAPE;

	/*
	 * The lexer has checked the token's shape, but callers re-check bounds
	 * rather than rely on that.  Raw bytes are copied through: the input is
	 * known to be valid UTF-8, and the code points we encode are neither NUL
	 * nor lone surrogates, so the result is valid UTF-8 too.
	 */
	if (toklen < 2 || tok[0] != '"' || *stop != '"')
		return JSON_STRING_MALFORMED;

	initStringInfo(&buf);
	while (p < stop)
	{
		const char *q = p;

		while (q < stop && *q != '\\')
			q++;
		appendBinaryStringInfo(&buf, p, q - p);
		if (q >= stop)
			break;
		p = q + 1;				/* the character after the backslash */
		if (p >= stop)
			goto fail;
		switch (*p++)
		{
			case '"':
				appendStringInfoChar(&buf, '"');
				break;
			case '\\':
				appendStringInfoChar(&buf, '\\');
				break;
			case '/':
				appendStringInfoChar(&buf, '/');
				break;
			case 'b':
				appendStringInfoChar(&buf, '\b');
				break;
			case 'f':
				appendStringInfoChar(&buf, '\f');
				break;
			case 'n':
				appendStringInfoChar(&buf, '\n');
				break;
			case 'r':
				appendStringInfoChar(&buf, '\r');
				break;
			case 't':
				appendStringInfoChar(&buf, '\t');
				break;
			case 'u':
				{
					int			cp;
					unsigned char utf8[8];

					if (stop - p < 4 || (cp = hex4(p)) < 0)
						goto fail;
					p += 4;
					if (is_utf16_surrogate_first(cp))
					{
						int			lo;

						if (stop - p < 6 || p[0] != '\\' || p[1] != 'u' ||
							(lo = hex4(p + 2)) < 0 ||
							!is_utf16_surrogate_second(lo))
						{
							err = JSON_STRING_SURROGATE;
							goto fail;
						}
						cp = surrogate_pair_to_codepoint(cp, lo);
						p += 6;
					}
					else if (is_utf16_surrogate_second(cp))
					{
						err = JSON_STRING_SURROGATE;
						goto fail;
					}
					if (cp == 0)
					{
						err = JSON_STRING_NUL;
						goto fail;
					}
					unicode_to_utf8((pg_wchar) cp, utf8);
					appendBinaryStringInfo(&buf, (char *) utf8,
										   pg_utf_mblen(utf8));
				}
				break;
			default:
				goto fail;
		}
	}

	*out = buf.data;
	*outlen = buf.len;
	return JSON_STRING_OK;

fail:
	pfree(buf.data);
	return err;
}

/* json_string_decode() with the message of a failure for errmsg. */
static bool
decode_string(const char *tok, size_t toklen, char **out, size_t *outlen,
			  const char **err)
{
	switch (json_string_decode(tok, toklen, out, outlen))
	{
		case JSON_STRING_OK:
			return true;
		case JSON_STRING_MALFORMED:
			*err = "malformed string";
			break;
		case JSON_STRING_BAD_ESCAPE:
			*err = "invalid escape sequence in string";
			break;
		case JSON_STRING_SURROGATE:
			*err = "unpaired Unicode surrogate";
			break;
		case JSON_STRING_NUL:
			*err = "\\u0000 is not allowed";
			break;
	}
	return false;
}

static int
cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * Reject duplicate keys.  Parsers disagree on which duplicate wins, which
 * lets a crafted token or payload mean one thing to a checker and another
 * to a consumer.  Sorting keeps this O(n log n) for large payloads.
 */
static bool
check_duplicates(JsonMember *members, int count, char **errmsg)
{
	const char **keys;
	const char *dup = NULL;

	if (count < 2)
		return true;

	keys = palloc(count * sizeof(char *));
	for (int i = 0; i < count; i++)
		keys[i] = members[i].key;
	qsort(keys, count, sizeof(char *), cmp_keys);
	for (int i = 1; i < count && dup == NULL; i++)
	{
		if (strcmp(keys[i - 1], keys[i]) == 0)
			dup = keys[i];
	}

	if (dup && errmsg)
	{
		bool		quotable = strlen(dup) <= MAX_QUOTED_KEY;

		for (const char *c = dup; quotable && *c; c++)
			quotable = (*c >= 0x20 && *c < 0x7f && *c != '"' && *c != '\\');
		if (quotable)
			*errmsg = psprintf("invalid JSON: duplicate key \"%s\"", dup);
		else
			*errmsg = pstrdup("invalid JSON: duplicate key");
	}
	pfree(keys);
	return dup == NULL;
}

static void
free_members(JsonMember *members, int count)
{
	if (members == NULL)
		return;
	for (int i = 0; i < count; i++)
	{
		if (members[i].key)
			pfree(members[i].key);
		if (members[i].value)
			pfree(members[i].value);
	}
	pfree(members);
}
