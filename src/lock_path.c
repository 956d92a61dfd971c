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
 * two unrelated resources wait for each other.  The sweep takes the same
 * locks without waiting, and leaves a busy path alone.
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
set_tag(LOCKTAG *tag, uint64 key)
{
	/* Same tag as pg_advisory_xact_lock(bigint): visible in pg_locks. */
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, 1);
}

static void
advisory_xact_lock(uint64 key, LOCKMODE mode)
{
	LOCKTAG		tag;

	set_tag(&tag, key);
	(void) LockAcquire(&tag, mode, false, false);
}

static void
check_id(const char *s, int len)
{
	size_t		offset;

	if (resource_id_check(s, len, &offset) != RID_OK)
		ereport(ERROR,
				(errcode(collab_errcode(CE_RESOURCE_ID_INVALID)),
				 errmsg("invalid resource id")));
}

/* collab._lock_path(resource_id text) */
PG_FUNCTION_INFO_V1(collab_lock_path);
Datum
collab_lock_path(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);

	check_id(s, len);
	for (int i = 0; i < len; i++)
		if (s[i] == '/')
			advisory_xact_lock(path_key(s, i), ShareLock);
	advisory_xact_lock(path_key(s, len), ExclusiveLock);
	PG_RETURN_VOID();
}

/* The locks of collab._lock_path(), for C callers (resource_id a text Datum). */
void
collab_lock_path_of(Datum resource_id)
{
	DirectFunctionCall1(collab_lock_path, resource_id);
}

/*
 * collab._try_lock_path(resource_id text): the locks of _lock_path without
 * waiting.  False, holding none of the locks this call took, when another
 * transaction holds a conflicting one.  The sweep takes paths this way while
 * it holds row locks of other leases: waiting there could close a cycle with
 * an operation that holds the path and waits for one of those rows.
 */
PG_FUNCTION_INFO_V1(collab_try_lock_path);
Datum
collab_try_lock_path(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	LOCKTAG		taken[RESOURCE_ID_MAX_SEGMENTS];
	LOCKMODE	modes[RESOURCE_ID_MAX_SEGMENTS];
	int			ntaken = 0;

	/* a valid id has at most RESOURCE_ID_MAX_SEGMENTS segments */
	check_id(s, len);
	for (int i = 0; i <= len; i++)
	{
		LOCKMODE	mode;

		if (i < len && s[i] != '/')
			continue;
		mode = i < len ? ShareLock : ExclusiveLock;
		set_tag(&taken[ntaken], path_key(s, i));
		if (LockAcquire(&taken[ntaken], mode, false, true) == LOCKACQUIRE_NOT_AVAIL)
		{
			while (ntaken-- > 0)
				LockRelease(&taken[ntaken], modes[ntaken], false);
			PG_RETURN_BOOL(false);
		}
		modes[ntaken++] = mode;
	}
	PG_RETURN_BOOL(true);
}

/* collab.lock_key(resource_id text): the advisory lock key of a path */
PG_FUNCTION_INFO_V1(collab_lock_key);
Datum
collab_lock_key(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64((int64) path_key(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}
