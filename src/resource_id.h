/*-------------------------------------------------------------------------
 *
 * resource_id.h
 *	  Validation of resource ids ("document:123/tab:diagnosis").
 *
 * Pure C with no PostgreSQL dependency, so that the worker, the SQL
 * functions and standalone fuzz harnesses share one implementation.
 *
 *-------------------------------------------------------------------------
 */
#ifndef RESOURCE_ID_H
#define RESOURCE_ID_H

#include <stddef.h>

#define RESOURCE_ID_MAX_SEGMENT_BYTES	128
#define RESOURCE_ID_MAX_SEGMENTS		8
/* 8 segments of 128 bytes and 7 separators */
#define RESOURCE_ID_MAX_BYTES \
	(RESOURCE_ID_MAX_SEGMENTS * RESOURCE_ID_MAX_SEGMENT_BYTES + RESOURCE_ID_MAX_SEGMENTS - 1)

typedef enum ResourceIdError
{
	RID_OK = 0,
	RID_EMPTY,					/* zero-length id */
	RID_EMPTY_SEGMENT,			/* leading, trailing or doubled '/' */
	RID_SEGMENT_TOO_LONG,		/* a segment over 128 bytes */
	RID_TOO_MANY_SEGMENTS,		/* deeper than RESOURCE_ID_MAX_SEGMENTS */
	RID_NO_COLON,				/* a segment without ':' */
	RID_EMPTY_KIND,				/* ":key" */
	RID_EMPTY_KEY,				/* "kind:" */
	RID_BAD_CHARACTER,			/* whitespace, control character, NUL */
	RID_BAD_UTF8				/* not valid UTF-8 */
} ResourceIdError;

/*
 * Check an id of len bytes.  On failure *offset (if not NULL) is the byte
 * offset of the problem.
 */
extern ResourceIdError resource_id_check(const char *id, size_t len, size_t *offset);

/* A sentence describing the error, for messages. */
extern const char *resource_id_error_message(ResourceIdError err);

/* Number of segments of a valid id. */
extern int	resource_id_depth(const char *id, size_t len);

#endif							/* RESOURCE_ID_H */
