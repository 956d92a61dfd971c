/*-------------------------------------------------------------------------
 *
 * json_object.h
 *	  Reader for one flat JSON object (or array), built on PostgreSQL's
 *	  common/jsonapi.h.
 *
 * Used for JWT headers and claims and for Socket.IO event payloads.  The
 * whole input is validated (strict JSON, valid UTF-8, bounded nesting) and
 * the top-level members are returned in document order: scalars de-escaped,
 * nested objects and arrays as their raw JSON text so that a caller can
 * parse them again.  Duplicate top-level keys are rejected, comparing the
 * de-escaped keys, so "a" and "\u0061" count as the same key.
 *
 * Works unchanged in the backend and in frontend programs (-DFRONTEND,
 * linked with libpgcommon/libpgport).  Never raises an error: failures are
 * returned to the caller.  All memory is palloc'd in the current context.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_JSON_OBJECT_H
#define COLLAB_JSON_OBJECT_H

/*
 * Deepest nesting of objects/arrays accepted anywhere in the input.  The
 * jsonapi parser is recursive and in the backend raises "stack depth limit
 * exceeded" on very deep input; we refuse such input before parsing.
 */
#define JSON_OBJECT_MAX_DEPTH 256

typedef enum JsonKind
{
	JSON_KIND_STRING,
	JSON_KIND_NUMBER,
	JSON_KIND_BOOL,
	JSON_KIND_NULL,
	JSON_KIND_OBJECT,
	JSON_KIND_ARRAY
} JsonKind;

/*
 * A top-level member of an object, or an element of an array (key == NULL).
 *
 * value/len by kind (value is always NUL-terminated, len excludes the NUL):
 *	STRING	de-escaped UTF-8; never contains NUL (\u0000 is rejected)
 *	NUMBER	the number as written, e.g. "-1.5e3"
 *	BOOL	"true" or "false"
 *	NULL	"null"
 *	OBJECT, ARRAY	the raw JSON text of the value, for json_object_parse()
 *					or json_array_parse()
 */
typedef struct JsonMember
{
	char	   *key;
	JsonKind	kind;
	char	   *value;
	size_t		len;
} JsonMember;

typedef struct JsonObject
{
	int			nmembers;
	JsonMember *members;		/* document order */
} JsonObject;

typedef struct JsonArray
{
	int			nelems;
	JsonMember *elems;			/* key is NULL */
} JsonArray;

/* Result of the typed getters. */
typedef enum JsonGetResult
{
	JSON_GET_OK,
	JSON_GET_MISSING,			/* no such key (or member pointer is NULL) */
	JSON_GET_NULL,				/* present, JSON null */
	JSON_GET_WRONG_TYPE,		/* present, another JSON type */
	JSON_GET_OUT_OF_RANGE		/* number that is not an integer in int64 */
} JsonGetResult;

/*
 * Parse 'len' bytes at 'json' (need not be NUL-terminated) that must hold
 * exactly one JSON object (resp. array), optionally surrounded by JSON
 * whitespace.  On success fill *out and return true.  On failure return
 * false, leave *out empty and, if errmsg is not NULL, set *errmsg to a
 * palloc'd message readable by a person (it may quote a short part of the
 * input, never more than a token).
 */
extern bool json_object_parse(const char *json, size_t len, JsonObject *out,
							  char **errmsg);
extern bool json_array_parse(const char *json, size_t len, JsonArray *out,
							 char **errmsg);
extern void json_object_free(JsonObject *obj);
extern void json_array_free(JsonArray *arr);

/*
 * The object (array) value of a member of a parsed text, which that parse
 * validated: false if m is NULL or not an object (array).
 */
extern bool json_member_object(const JsonMember *m, JsonObject *out);
extern bool json_member_array(const JsonMember *m, JsonArray *out);

/* Member by de-escaped key, or NULL. */
extern const JsonMember *json_object_get(const JsonObject *obj,
										 const char *key);

/*
 * Typed access to one member or array element; 'm' may be NULL (MISSING).
 * json_member_int64 accepts any JSON number whose value is exactly an
 * integer in int64 range: 42, -7, 4.2e1 and 42.0 give 42; 42.5 and 1e19
 * give JSON_GET_OUT_OF_RANGE.  The string getter's *len may be NULL.
 */
extern JsonGetResult json_member_string(const JsonMember *m, const char **val,
										size_t *len);
extern JsonGetResult json_member_int64(const JsonMember *m, int64 *val);
extern JsonGetResult json_member_bool(const JsonMember *m, bool *val);

/* Shorthands: json_member_xxx(json_object_get(obj, key), ...). */
extern JsonGetResult json_object_get_string(const JsonObject *obj,
											const char *key,
											const char **val, size_t *len);
extern JsonGetResult json_object_get_int64(const JsonObject *obj,
										   const char *key, int64 *val);
extern JsonGetResult json_object_get_bool(const JsonObject *obj,
										  const char *key, bool *val);

/* "string", "number", ... for messages. */
extern const char *json_kind_name(JsonKind kind);

/*
 * The two steps that every reader of untrusted JSON here needs around
 * pg_parse_json() (sio_codec.c uses them too):
 *
 * json_depth_check() bounds the nesting before the recursive parser sees
 * the text.  It counts brackets outside strings, with the lexer's view of
 * strings (a '"' opens and closes one, a backslash hides the next byte).
 * Up to the first lexical error that view is exact, and the parser stops at
 * that error, so the count bounds the parser's recursion.  An unmatched
 * closing bracket is invalid JSON: the scan stops there.
 *
 * json_string_decode() de-escapes one string token (quotes included) into a
 * palloc'd NUL-terminated UTF-8 string, checking what the lexer without
 * de-escaping does not: surrogate pairs, and no \u0000 (callers use C
 * strings).
 */
typedef enum JsonDepthResult
{
	JSON_DEPTH_OK,
	JSON_DEPTH_EXCEEDED,		/* nested deeper than max_depth */
	JSON_DEPTH_UNBALANCED		/* a closing bracket without its opening one */
} JsonDepthResult;

typedef enum JsonStringError
{
	JSON_STRING_OK,
	JSON_STRING_MALFORMED,		/* not a quoted token */
	JSON_STRING_BAD_ESCAPE,		/* unknown escape, or \u without four hex digits */
	JSON_STRING_SURROGATE,		/* an unpaired UTF-16 surrogate */
	JSON_STRING_NUL				/* \u0000 */
} JsonStringError;

extern JsonDepthResult json_depth_check(const char *json, size_t len, int max_depth);
extern JsonStringError json_string_decode(const char *tok, size_t toklen,
										  char **out, size_t *outlen);

#endif							/* COLLAB_JSON_OBJECT_H */
