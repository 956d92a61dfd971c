/*-------------------------------------------------------------------------
 *
 * resource_id.c
 *	  The resource id grammar.
 *
 * id      = segment *( "/" segment )      at most 8 segments
 * segment = kind ":" key                  1 to 128 bytes
 * kind    = 1*char-except-colon
 * key     = 1*char                        (may contain ':')
 * char    = a visible character: ASCII 0x21-0x7E except '/', or a valid
 *           UTF-8 sequence of a code point >= U+00A1 (no C1 controls, no
 *           no-break space, no surrogates, nothing above U+10FFFF)
 *
 * Whitespace is refused so that "document:1" and "document:1 " can never
 * name two different documents that look alike.
 *
 *-------------------------------------------------------------------------
 */
#include "resource_id.h"

/*
 * Decode the UTF-8 sequence at s (at most avail bytes).  Returns its length
 * and sets *cp, or returns 0 for a malformed sequence (truncated, overlong,
 * surrogate, above U+10FFFF).
 */
static size_t
utf8_decode(const unsigned char *s, size_t avail, unsigned int *cp)
{
	size_t		n;
	unsigned int c;

	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		n = 2, c = s[0] & 0x1F;
	else if (s[0] >= 0xE0 && s[0] <= 0xEF)
		n = 3, c = s[0] & 0x0F;
	else if (s[0] >= 0xF0 && s[0] <= 0xF4)
		n = 4, c = s[0] & 0x07;
	else
		return 0;
	if (n > avail)
		return 0;
	for (size_t i = 1; i < n; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
		(c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF)
		return 0;
	*cp = c;
	return n;
}

/*
 * Non-ASCII code points that are controls or invisible separators, which
 * would let two different ids look the same.
 */
static int
invisible_code_point(unsigned int cp)
{
	return cp <= 0xA0 ||		/* C1 controls, no-break space */
		cp == 0xAD ||			/* soft hyphen */
		cp == 0x61C || cp == 0x1680 || cp == 0x180E ||
		(cp >= 0x2000 && cp <= 0x200F) ||	/* spaces, zero-width, marks */
		(cp >= 0x2028 && cp <= 0x202F) ||	/* separators, bidi embedding */
		(cp >= 0x205F && cp <= 0x206F) ||	/* word joiner, bidi isolates */
		cp == 0x3000 || cp == 0xFEFF ||
		(cp >= 0xFFF9 && cp <= 0xFFFB);	/* interlinear annotation */
}

ResourceIdError
resource_id_check(const char *id, size_t len, size_t *offset)
{
	const unsigned char *s = (const unsigned char *) id;
	size_t		seg_start = 0;
	size_t		colon = 0;
	int			have_colon = 0;
	int			segments = 1;
	size_t		i = 0;

#define FAIL(e, at) do { if (offset) *offset = (at); return (e); } while (0)

	if (id == NULL || len == 0)
		FAIL(RID_EMPTY, 0);

	while (i <= len)
	{
		if (i == len || s[i] == '/')
		{
			size_t		seg_len = i - seg_start;

			if (seg_len == 0)
				FAIL(RID_EMPTY_SEGMENT, i);
			if (seg_len > RESOURCE_ID_MAX_SEGMENT_BYTES)
				FAIL(RID_SEGMENT_TOO_LONG, seg_start);
			if (!have_colon)
				FAIL(RID_NO_COLON, seg_start);
			if (colon == seg_start)
				FAIL(RID_EMPTY_KIND, seg_start);
			if (colon + 1 == i)
				FAIL(RID_EMPTY_KEY, colon);
			if (i == len)
				break;
			if (++segments > RESOURCE_ID_MAX_SEGMENTS)
				FAIL(RID_TOO_MANY_SEGMENTS, i);
			seg_start = i + 1;
			have_colon = 0;
			i++;
			continue;
		}
		if (s[i] < 0x80)
		{
			if (s[i] < 0x21 || s[i] > 0x7E)
				FAIL(RID_BAD_CHARACTER, i);
			if (s[i] == ':' && !have_colon)
			{
				have_colon = 1;
				colon = i;
			}
			i++;
		}
		else
		{
			unsigned int cp = 0;
			size_t		n = utf8_decode(s + i, len - i, &cp);

			if (n == 0)
				FAIL(RID_BAD_UTF8, i);
			if (invisible_code_point(cp))
				FAIL(RID_BAD_CHARACTER, i);
			i += n;
		}
	}
#undef FAIL
	if (offset)
		*offset = 0;
	return RID_OK;
}

const char *
resource_id_error_message(ResourceIdError err)
{
	switch (err)
	{
		case RID_OK:
			return "valid";
		case RID_EMPTY:
			return "the resource id is empty";
		case RID_EMPTY_SEGMENT:
			return "the resource id has an empty segment (leading, trailing or doubled '/')";
		case RID_SEGMENT_TOO_LONG:
			return "a segment is longer than 128 bytes";
		case RID_TOO_MANY_SEGMENTS:
			return "the resource id has more than 8 segments";
		case RID_NO_COLON:
			return "a segment is not of the form kind:key";
		case RID_EMPTY_KIND:
			return "a segment has an empty kind";
		case RID_EMPTY_KEY:
			return "a segment has an empty key";
		case RID_BAD_CHARACTER:
			return "the resource id contains whitespace or a control character";
		case RID_BAD_UTF8:
			return "the resource id is not valid UTF-8";
	}
	return "invalid resource id";
}

int
resource_id_depth(const char *id, size_t len)
{
	int			depth = 1;

	for (size_t i = 0; i < len; i++)
		if (id[i] == '/')
			depth++;
	return depth;
}
