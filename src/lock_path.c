/*-------------------------------------------------------------------------
 *
 * lock_path.c
 *	  Serialization of lock decisions on a resource path with
 *	  transaction-level locks in a key space of collab's own.
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
 * locks without waiting, and leaves a busy path alone.  Joins take the
 * access locks of a path (access.c), a second kind of key on the same
 * hashes, and the registration of a connection a third, on its user id.
 *
 * The lock tag is LOCKTAG_USERLOCK, which no SQL function takes: the
 * pg_advisory_* functions use LOCKTAG_ADVISORY, so a role that computes a
 * key (collab.lock_key() is public, and so is the hash) and takes it with
 * pg_advisory_lock() locks nothing of collab's.  Only a transaction that
 * calls collab's functions holds these locks, and then only on what it
 * decides about.  pg_locks shows them as locktype 'userlock' (classid and
 * objid the two halves of the key, objsubid the kind).
 *
 * In a collab worker (collab_worker_session) the locks never wait: a path
 * that another session holds raises ERRCODE_LOCK_NOT_AVAILABLE at once,
 * and the lock that was busy is remembered for the job runner, which parks
 * the request and asks collab_blocker_gone() before trying it again.
 * Backends wait, as PostgreSQL's own locks do.
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

/* The lock that the worker's last conditional acquisition found busy. */
static CollabBlocker last_blocker = {0, COLLAB_LOCK_NONE, NoLock};

static uint64
path_key(const char *s, int len)
{
	return hash_bytes_extended((const unsigned char *) s, len, COLLAB_LOCK_SEED);
}

static void
set_tag(LOCKTAG *tag, uint64 key, CollabLockKind kind)
{
	tag->locktag_field1 = MyDatabaseId;
	tag->locktag_field2 = (uint32) (key >> 32);
	tag->locktag_field3 = (uint32) key;
	tag->locktag_field4 = (uint16) kind;
	tag->locktag_type = LOCKTAG_USERLOCK;
	tag->locktag_lockmethodid = USER_LOCKMETHOD;
}

/*
 * A transaction lock on key; in a worker, without waiting: a busy lock is
 * remembered (collab_take_blocker) and raises ERRCODE_LOCK_NOT_AVAILABLE.
 * The locks taken before it are released with the (sub)transaction that
 * the error aborts.
 */
static void
xact_lock(uint64 key, CollabLockKind kind, LOCKMODE mode)
{
	LOCKTAG		tag;

	set_tag(&tag, key, kind);
	if (!collab_worker_session)
	{
		(void) LockAcquire(&tag, mode, false, false);
		return;
	}
	if (LockAcquire(&tag, mode, false, true) != LOCKACQUIRE_NOT_AVAIL)
		return;
	last_blocker.key = key;
	last_blocker.kind = kind;
	last_blocker.mode = mode;
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("another transaction is deciding about this resource path"),
			 errdetail("The collab worker does not wait for locks; the request is tried again.")));
}

/*
 * Moves the lock that the last conditional acquisition found busy into *b
 * (kind COLLAB_LOCK_NONE if there is none).
 */
void
collab_take_blocker(CollabBlocker *b)
{
	*b = last_blocker;
	last_blocker.kind = COLLAB_LOCK_NONE;
}

/*
 * Could the lock that b names be taken now?  Tried as a session lock and
 * given back at once, outside any transaction, so that a parked request is
 * run again only once what held it up has gone.  It may be taken again
 * meanwhile: the request then finds it busy and is parked again.
 */
bool
collab_blocker_gone(const CollabBlocker *b)
{
	LOCKTAG		tag;

	if (b->kind == COLLAB_LOCK_NONE)
		return true;
	set_tag(&tag, b->key, b->kind);
	if (LockAcquire(&tag, b->mode, true, true) == LOCKACQUIRE_NOT_AVAIL)
		return false;
	LockRelease(&tag, b->mode, true);
	return true;
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
			xact_lock(path_key(s, i), COLLAB_LOCK_PATH, ShareLock);
	xact_lock(path_key(s, len), COLLAB_LOCK_PATH, ExclusiveLock);
	PG_RETURN_VOID();
}

/* The locks of collab._lock_path(), for C callers (resource_id a text Datum). */
void
collab_lock_path_of(Datum resource_id)
{
	DirectFunctionCall1(collab_lock_path, resource_id);
}

/*
 * The access locks of the path s (len bytes, a valid id): shared, one on
 * each segment, root first; exclusive, the one of the resource itself.
 * See access.c.
 */
void
collab_lock_access_of(const char *s, int len, bool exclusive)
{
	for (int i = exclusive ? len : 0; i <= len; i++)
		if (i == len || s[i] == '/')
			xact_lock(path_key(s, i), COLLAB_LOCK_ACCESS, exclusive ? ExclusiveLock : ShareLock);
}

/*
 * collab._lock_user(user_id text): serializes the registrations of one
 * user's connections, so that their number is counted exactly across
 * workers (collab.ws_connect).
 */
PG_FUNCTION_INFO_V1(collab_lock_user);
Datum
collab_lock_user(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	xact_lock(path_key(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)), COLLAB_LOCK_USER, ExclusiveLock);
	PG_RETURN_VOID();
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
		set_tag(&taken[ntaken], path_key(s, i), COLLAB_LOCK_PATH);
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

/* collab.lock_key(resource_id text): the lock key of a path */
PG_FUNCTION_INFO_V1(collab_lock_key);
Datum
collab_lock_key(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64((int64) path_key(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}
