/*-------------------------------------------------------------------------
 *
 * owner.c
 *	  Running a C function's queries as the extension's owner.
 *
 * The SQL functions written in C (the save guard, acquire and release)
 * read and write tables that only the owner may touch, as SECURITY DEFINER
 * functions do.  A SECURITY DEFINER C function would pay for a GUC frame on
 * every call; these switch the user around their own queries instead, and
 * qualify every name and operator, so that the caller's search_path cannot
 * redirect them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "utils/syscache.h"

#include "collab.h"

/* Switches to the owner of function fn (an extension function). */
void
collab_become_owner(Oid fn, CollabOwner *oc)
{
	HeapTuple	tp = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for function %u", fn);
	owner = ((Form_pg_proc) GETSTRUCT(tp))->proowner;
	ReleaseSysCache(tp);
	GetUserIdAndSecContext(&oc->saved_uid, &oc->saved_ctx);
	SetUserIdAndSecContext(owner, oc->saved_ctx | SECURITY_LOCAL_USERID_CHANGE);
}

void
collab_restore_user(CollabOwner *oc)
{
	SetUserIdAndSecContext(oc->saved_uid, oc->saved_ctx);
}
