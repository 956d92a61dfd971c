/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  Statements prepared once per backend and kept for its life.
 *
 * The C functions (leases.c, save_guard.c) and the worker's jobs run the
 * same few statements over and over: each is prepared on its first use and
 * kept (SPI_keepplan).  A statement is a string constant whose address is
 * its key, so a lookup hashes a pointer, not the text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/hsearch.h"

#include "collab.h"

typedef struct PlanEntry
{
	const char *sql;			/* hash key: the statement's address */
	SPIPlanPtr	plan;
	int			nargs;
} PlanEntry;

static HTAB *plans = NULL;

/*
 * The plan of sql (a string constant), prepared within SPI on first use
 * with argtypes and cursor_options (CURSOR_OPT_GENERIC_PLAN for a generic
 * plan from the start, 0 to let the plan cache choose).
 */
SPIPlanPtr
collab_plan(const char *sql, int nargs, const Oid *argtypes, int cursor_options)
{
	PlanEntry  *entry;
	bool		found;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(const char *);
		ctl.entrysize = sizeof(PlanEntry);
		plans = hash_create("collab prepared statements", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(plans, &sql, HASH_ENTER, &found);
	if (found && entry->plan != NULL)
	{
		Assert(entry->nargs == nargs);
		return entry->plan;
	}
	/* until prepared: a statement that fails to prepare is tried again */
	entry->plan = NULL;
	entry->plan = SPI_prepare_cursor(sql, nargs, unconstify(Oid *, argtypes), cursor_options);
	if (entry->plan == NULL)
		elog(ERROR, "collab could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	entry->nargs = nargs;
	SPI_keepplan(entry->plan);
	return entry->plan;
}
