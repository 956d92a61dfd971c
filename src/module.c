/*-------------------------------------------------------------------------
 *
 * module.c
 *	  The module's entry point: _PG_init defines the settings and, when
 *	  loaded by shared_preload_libraries, sets up shared memory and
 *	  registers the WebSocket background workers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "collab.h"
#include "event_queue.h"
#include "metrics.h"
#include "worker.h"

PG_MODULE_MAGIC;

/* True in every process forked from a postmaster that preloaded us. */
static bool collab_preloaded = false;

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * Without preloading, defining the restart-only settings would fail the
	 * session; skip them so that CREATE EXTENSION can say what is wrong.
	 */
	if (process_shared_preload_libraries_in_progress)
		collab_define_postmaster_settings();

	collab_define_reloadable_settings();
	MarkGUCPrefixReserved("collab");

	if (!process_shared_preload_libraries_in_progress)
		return;
	collab_preloaded = true;
	event_queue_init();
	metrics_init();
	collab_register_workers();
}

/*
 * collab._check_preloaded(): the install script calls this so that a
 * missing shared_preload_libraries entry is a clear error, not a silent
 * absence of the worker.
 */
PG_FUNCTION_INFO_V1(collab_check_preloaded);
Datum
collab_check_preloaded(PG_FUNCTION_ARGS)
{
	if (!collab_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("collab must be loaded via shared_preload_libraries"),
				 errhint("Add collab to shared_preload_libraries in postgresql.conf and restart the server.")));
	PG_RETURN_VOID();
}
