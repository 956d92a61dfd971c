/*-------------------------------------------------------------------------
 *
 * lock_path.c
 *	  Serialization of lock decisions on a resource path with
 *	  transaction-level advisory locks.
 *
 * Every operation that decides about the lease of a resource (acquire,
 * renew, release, save) first takes a share lock on each proper ancestor
 * and an exclusive lock on the resource itself, always root first.  Two
 * operations on the same resource, or on an ancestor and a descendant,
 * therefore run one after the other, while siblings share their parents'
 * locks and run in parallel.  Transaction-level locks are released at
 * commit, after the decision is visible, and they work behind transaction
 * pooling.  Keys are 64-bit hashes of the path: a collision only makes
 * two unrelated resources wait for each other.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

#include "collab.h"
#include "resource_id.h"

/* Seed of the key hash: "coll" */
#define COLLAB_LOCK_SEED	UINT64CONST(0x636f6c6c)

static uint64
path_key(const char *s, int len)
{
	return hash_bytes_extended((const unsigned char *) s, len, COLLAB_LOCK_SEED);
}

static void
advisory_xact_lock(uint64 key, LOCKMODE mode)
{
	LOCKTAG		tag;

	/* Same tag as pg_advisory_xact_lock(bigint): visible in pg_locks. */
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, 1);
	(void) LockAcquire(&tag, mode, false, false);
}

/* collab._lock_path(resource_id text) */
PG_FUNCTION_INFO_V1(collab_lock_path);
Datum
collab_lock_path(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	size_t		offset;

	if (resource_id_check(s, len, &offset) != RID_OK)
		ereport(ERROR,
				(errcode(collab_errcode(CE_RESOURCE_ID_INVALID)),
				 errmsg("invalid resource id")));
	for (int i = 0; i < len; i++)
		if (s[i] == '/')
			advisory_xact_lock(path_key(s, i), ShareLock);
	advisory_xact_lock(path_key(s, len), ExclusiveLock);
	PG_RETURN_VOID();
}

/* collab.lock_key(resource_id text): the advisory lock key of a path */
PG_FUNCTION_INFO_V1(collab_lock_key);
Datum
collab_lock_key(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64((int64) path_key(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}
