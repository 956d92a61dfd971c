/*-------------------------------------------------------------------------
 *
 * resource_id_sql.c
 *	  SQL-callable functions over resource ids: validation with the
 *	  RESOURCE_ID_INVALID error, parent and ancestor paths.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "collab.h"
#include "resource_id.h"

/*
 * Raise RESOURCE_ID_INVALID.  The id itself is not echoed: it is untrusted
 * input of any size and content, and it would end up in the server log.
 */
static void
raise_invalid(ResourceIdError err, size_t offset)
{
	ereport(ERROR,
			(errcode(collab_errcode(CE_RESOURCE_ID_INVALID)),
			 errmsg("invalid resource id: %s", resource_id_error_message(err)),
			 errdetail("The problem is at byte offset %zu.", offset),
			 errhint("A resource id is kind:key segments separated by '/', e.g. document:123/tab:diagnosis; each segment is at most %d bytes of visible characters.",
					 RESOURCE_ID_MAX_SEGMENT_BYTES)));
}

static void
check_text(text *t)
{
	size_t		offset;
	ResourceIdError err;

	err = resource_id_check(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &offset);
	if (err != RID_OK)
		raise_invalid(err, offset);
}

/* For C callers: raises RESOURCE_ID_INVALID unless t (maybe NULL) is valid. */
void
collab_require_resource_id(text *t)
{
	if (t == NULL)
		raise_invalid(RID_EMPTY, 0);
	check_text(t);
}

/* collab.resource_id_valid(text) returns boolean */
PG_FUNCTION_INFO_V1(collab_resource_id_valid);
Datum
collab_resource_id_valid(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_BOOL(resource_id_check(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), NULL) == RID_OK);
}

/* collab.check_resource_id(text): raises RESOURCE_ID_INVALID, NULL included */
PG_FUNCTION_INFO_V1(collab_check_resource_id);
Datum
collab_check_resource_id(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		raise_invalid(RID_EMPTY, 0);
	check_text(PG_GETARG_TEXT_PP(0));
	PG_RETURN_VOID();
}

/* collab.parent_id(text): the id without its last segment, or NULL */
PG_FUNCTION_INFO_V1(collab_parent_id);
Datum
collab_parent_id(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);

	check_text(t);
	for (int i = len - 1; i > 0; i--)
		if (s[i] == '/')
			PG_RETURN_TEXT_P(cstring_to_text_with_len(s, i));
	PG_RETURN_NULL();
}

/* collab.ancestors(text): proper ancestors, root first */
PG_FUNCTION_INFO_V1(collab_ancestors);
Datum
collab_ancestors(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	Datum		elems[RESOURCE_ID_MAX_SEGMENTS];
	int			n = 0;

	check_text(t);
	for (int i = 0; i < len; i++)
		if (s[i] == '/')
			elems[n++] = PointerGetDatum(cstring_to_text_with_len(s, i));
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}
