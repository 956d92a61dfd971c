-- Editor locks: grants, conflicts on a path, renewal, release, expiry, audit.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
-- what a holder sees, without times or token values
CREATE FUNCTION pg_temp.acq(r text, u text, n text, h text DEFAULT NULL)
RETURNS TABLE (granted boolean, has_token boolean, renewed boolean, holder text, holder_on text, ttl_ok boolean)
LANGUAGE sql AS $$
	SELECT a.granted, a.token IS NOT NULL, a.renewed, a.holder_username, a.holder_resource_id,
	       a.expires_at > clock_timestamp()
	  FROM collab.acquire(r, u, n, h) a
$$;

SELECT collab.create_document('12', NULL, ARRAY['a']);
SELECT collab.create_document('123', NULL, ARRAY['diagnosis', 'procedure-notes']);

-- the first editor gets the lock; the TTL is collab.lock_ttl (default 5 minutes)
SHOW collab.lock_ttl;
SELECT token AS t1, expires_at - acquired_at = interval '5 minutes' AS five_minutes
  FROM collab.acquire('document:123/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'conn-1') \gset
SELECT :'five_minutes' AS five_minutes;

-- a second user is denied, naming the holder; never an error
SELECT * FROM pg_temp.acq('document:123/tab:diagnosis', 'u-ben', 'Dr. Ben Kaya', 'conn-2');
-- the same user on another connection is another holder: denied too
SELECT * FROM pg_temp.acq('document:123/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'conn-9');
-- the parent conflicts with a locked child, and names where the lock is
SELECT * FROM pg_temp.acq('document:123', 'u-ben', 'Dr. Ben Kaya', 'conn-2');
-- a sibling tab does not conflict
SELECT * FROM pg_temp.acq('document:123/tab:procedure-notes', 'u-ben', 'Dr. Ben Kaya', 'conn-2');
-- whole segments: document:12 is not an ancestor of document:123
SELECT * FROM pg_temp.acq('document:12', 'u-cleo', 'Cleo', 'conn-3');
SELECT * FROM pg_temp.acq('document:12/tab:a', 'u-cleo', 'Cleo', 'conn-3');

-- acquiring again as the same holder renews: same token, later expiry
SELECT token = :t1 AS same_token, renewed FROM collab.acquire('document:123/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'conn-1');

-- the views show who holds what, never the token
SELECT resource_id, user_id, username, holder_id FROM collab.locks ORDER BY resource_id;
SELECT count(*) AS token_columns FROM information_schema.columns
 WHERE table_schema = 'collab' AND table_name IN ('locks', 'audit_log') AND column_name = 'token';

-- renew by token
SELECT resource_id, token = :t1 AS same_token FROM collab.renew(:t1);
SELECT pg_temp.try('SELECT collab.renew(NULL)');
SELECT pg_temp.try('SELECT collab.renew(999999)');

-- an expired lease cannot be released; it is reported as expired
SELECT collab.create_document('exp', NULL, ARRAY['t']);
SELECT token AS tx FROM collab.acquire('document:exp/tab:t', 'u-eli', 'Eli', 'conn-5') \gset
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second' WHERE token = :tx;
SELECT pg_temp.try(format('SELECT collab.release(%s)', :tx));
SELECT count(*) AS expired_lease_still_there FROM collab.leases WHERE token = :tx;
DELETE FROM collab.leases WHERE token = :tx;

-- release by token: the lock is free, the next acquirer gets a greater token
SELECT collab.release(:t1);
SELECT pg_temp.try(format('SELECT collab.release(%s)', :t1));
SELECT pg_temp.try(format('SELECT collab.renew(%s)', :t1));
SELECT pg_temp.try(format('SELECT collab.release(%s, %L)', :t1, 'forced'));
SELECT pg_temp.try('SELECT collab.release(NULL)');
SELECT token AS t2, token > :t1 AS greater FROM collab.acquire('document:123/tab:diagnosis', 'u-ben', 'Dr. Ben Kaya', 'conn-2') \gset
SELECT :'greater' AS greater;

-- expiry: a lease whose time has passed is free for the next acquirer even
-- before any sweep, and the takeover records the expiry
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second' WHERE token = :t2;
SELECT resource_id FROM collab.locks WHERE resource_id = 'document:123/tab:diagnosis';
SELECT granted, token > :t2 AS greater, holder_username
  FROM collab.acquire('document:123/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'conn-1');
SELECT pg_temp.try(format('SELECT collab.renew(%s)', :t2));

-- the sweep frees expired leases and reports each one once
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second'
 WHERE resource_id IN ('document:12', 'document:123/tab:procedure-notes');
SELECT resource_id, user_id, username, holder_id FROM collab.sweep() ORDER BY resource_id;
SELECT count(*) AS again FROM collab.sweep();
SELECT resource_id FROM collab.locks ORDER BY resource_id;

-- release_holder frees everything one connection held
SELECT * FROM pg_temp.acq('document:12/tab:a', 'u-ben', 'Dr. Ben Kaya', 'conn-2');
SELECT collab.release_holder('conn-2', 'disconnected');
SELECT collab.release_holder('conn-2', 'disconnected');
SELECT pg_temp.try($$SELECT collab.release_holder('conn-2', 'forced')$$);

-- force_release needs a reason, and records who and why
SELECT pg_temp.try($$SELECT collab.force_release('document:123/tab:diagnosis', NULL)$$);
SELECT pg_temp.try($$SELECT collab.force_release('document:123/tab:diagnosis', '  ')$$);
SELECT collab.force_release('document:123/tab:diagnosis', 'signed by chief surgeon');
SELECT collab.force_release('document:123/tab:diagnosis', 'nothing to release');
SELECT pg_temp.try($$SELECT collab.force_release('document:none', 'x')$$);

-- bad input
SELECT pg_temp.try($$SELECT collab.acquire('document:nope', 'u', 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire('bad id', 'u', 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire(NULL, 'u', 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', NULL, 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', '', 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', 'u', NULL)$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', repeat('u', 257), 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', 'u', 'U', repeat('h', 257))$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', 'u', 'U', '')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', E'u\x01', 'U')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:123', 'u', E'Dr.\nEvil')$$);
-- the worst identity that passes still fits every event it appears in
SELECT granted FROM collab.acquire('document:123/tab:procedure-notes', repeat('"', 256), repeat('\', 256), repeat('"', 256));
SELECT granted FROM collab.acquire('document:123', repeat('\', 256), repeat('"', 256), repeat('\', 256));
SELECT collab.release_holder(repeat('"', 256));

-- lock decisions need READ COMMITTED: a snapshot could miss a concurrent grant
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.try($$SELECT collab.acquire('document:123', 'u', 'U')$$);
ROLLBACK;

-- a short TTL is honoured
SET collab.lock_ttl = '2s';
SELECT expires_at - acquired_at AS ttl FROM collab.acquire('document:123', 'u-dora', 'Dora', 'conn-4');
RESET collab.lock_ttl;
SELECT pg_temp.try($$SET collab.lock_ttl = '10ms'$$);

-- the audit trail: every grant, denial, renewal, release, expiry and force-release
SELECT action, resource_id, left(user_id, 10) AS user_id, left(holder_id, 10) AS holder_id, actor, reason
  FROM collab.audit_log ORDER BY id;

-- a grant on a path without leases finds that out through the index, however
-- many leases there are elsewhere: a plan that read every lease once made the
-- lock round trip 13 times slower with 10^6 resources
INSERT INTO collab.resources (id, parent_id, kind)
SELECT 'document:many' || d, NULL, 'document' FROM generate_series(1, 2001) d;
INSERT INTO collab.resources (id, parent_id, kind)
SELECT 'document:many' || d || '/tab:a', 'document:many' || d, 'tab' FROM generate_series(1, 2001) d;
INSERT INTO collab.leases (resource_id, token, user_id, username, holder_id, acquired_at, renewed_at, expires_at)
SELECT 'document:many' || d || '/tab:a', 1000000000 + d, 'u-many', 'Many', 'many-' || d, now(), now(), now() + interval '1 hour'
  FROM generate_series(1, 2000) d;
ANALYZE collab.leases;
-- the counts below are this session's since its last report of statistics
SELECT pg_stat_force_next_flush();
BEGIN;
SELECT granted FROM collab.acquire('document:many2001/tab:a', 'u-free', 'Free', 'free-1');
SELECT pg_stat_get_xact_numscans('collab.leases'::regclass) AS sequential_scans_of_leases;
ROLLBACK;
DELETE FROM collab.resources WHERE id LIKE 'document:many%';
