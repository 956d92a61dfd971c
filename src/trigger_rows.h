/*-------------------------------------------------------------------------
 *
 * trigger_rows.h
 *	  What collab's C triggers read of the rows they are given
 *	  (trigger_rows.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef COLLAB_TRIGGER_ROWS_H
#define COLLAB_TRIGGER_ROWS_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "utils/relcache.h"

extern int	collab_attnum(Relation rel, const char *name);
extern bool collab_column_unchanged(HeapTuple a, HeapTuple b, TupleDesc desc, int att);

#endif							/* COLLAB_TRIGGER_ROWS_H */
