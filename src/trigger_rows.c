/*-------------------------------------------------------------------------
 *
 * trigger_rows.c
 *	  What collab's C triggers read of the rows they are given: a column's
 *	  number by name, and whether an UPDATE left a column as it was.
 *
 * The guard and the shape check of collab.resources (save_guard.c) and the
 * PresenceUser trigger of collab.ws_presence (payloads.c) find their
 * columns by name, so that a column added by an upgrade does not move
 * them, and compare values by their stored image, as a WHEN clause's
 * IS NOT DISTINCT FROM would for the types they look at.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "utils/datum.h"
#include "utils/rel.h"

#include "trigger_rows.h"

/* The number of rel's column name; an error if it has none. */
int
collab_attnum(Relation rel, const char *name)
{
	int			n = SPI_fnumber(RelationGetDescr(rel), name);

	if (n <= 0)
		elog(ERROR, "collab.%s has no column \"%s\"", RelationGetRelationName(rel), name);
	return n;
}

/* Are column att of rows a and b both NULL, or the same value? */
bool
collab_column_unchanged(HeapTuple a, HeapTuple b, TupleDesc desc, int att)
{
	bool		na,
				nb;
	Datum		va = heap_getattr(a, att, desc, &na);
	Datum		vb = heap_getattr(b, att, desc, &nb);
	Form_pg_attribute fa = TupleDescAttr(desc, att - 1);

	if (na || nb)
		return na == nb;
	return datum_image_eq(va, vb, fa->attbyval, fa->attlen);
}
