-- Events queued for NOTIFY collab_events at commit, one payload per transaction.
\set VERBOSITY terse
SELECT collab.create_document('ev', NULL, ARRAY['t1', 't2']);

BEGIN;
SELECT granted FROM collab.acquire('document:ev/tab:t1', 'u1', 'Ann', 'c1');
SELECT granted FROM collab.acquire('document:ev/tab:t1', 'u2', 'Bob', 'c2');
SELECT e::jsonb - 'acquiredAt' - 'expiresAt' AS event FROM collab.pending_events() e;
COMMIT;
-- nothing pending after commit
SELECT count(*) FROM collab.pending_events();

-- events of a rolled-back subtransaction are dropped, the rest kept
BEGIN;
SELECT granted FROM collab.acquire('document:ev/tab:t2', 'u2', 'Bob', 'c2');
SAVEPOINT s1;
SELECT token AS t FROM collab.locks l JOIN collab.leases USING (resource_id)
 WHERE l.resource_id = 'document:ev/tab:t1' \gset
SELECT collab.save('document:ev/tab:t1', :t, 'draft');
ROLLBACK TO s1;
SAVEPOINT s2;
SELECT collab.save('document:ev/tab:t1', :t, 'final');
RELEASE s2;
SELECT e::jsonb->>'event' AS event, e::jsonb->>'resourceId' AS resource, e::jsonb->'version' AS version
  FROM collab.pending_events() e;
COMMIT;

-- a rolled-back transaction publishes nothing and leaves no lease
SELECT collab.create_document('ev-rb');
BEGIN;
SELECT granted FROM collab.acquire('document:ev-rb', 'u3', 'Cy', 'c3');
ROLLBACK;
SELECT count(*) FROM collab.pending_events();
SELECT resource_id, username FROM collab.locks WHERE resource_id LIKE 'document:ev%' ORDER BY 1;
SELECT count(*) AS grants FROM collab.audit_log WHERE resource_id = 'document:ev-rb';

-- payload shapes of release, expiry and force-release
BEGIN;
SELECT collab.release_holder('c2', 'left');
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second' WHERE holder_id = 'c1';
SELECT count(*) FROM collab.sweep();
SELECT granted FROM collab.acquire('document:ev/tab:t2', 'u4', 'Di', 'c4');
SELECT collab.force_release('document:ev/tab:t2', 'audit');
SELECT e::jsonb - 'acquiredAt' - 'expiresAt' - 'expiredAt' - 'releasedAt' AS event,
       (e::jsonb ?| ARRAY['acquiredAt', 'expiredAt', 'releasedAt']) AS has_time
  FROM collab.pending_events() e;
COMMIT;

-- times are ISO 8601 in UTC with milliseconds
BEGIN;
SELECT granted FROM collab.acquire('document:ev-rb', 'u5', 'Eve', 'c5');
SELECT (e::jsonb->>'acquiredAt') ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$' AS iso
  FROM collab.pending_events() e;
ROLLBACK;

-- no token in any payload
BEGIN;
SELECT granted FROM collab.acquire('document:ev-rb', 'u5', 'Eve', 'c5');
SELECT count(*) AS with_token FROM collab.pending_events() e WHERE e::jsonb ? 'token';
ROLLBACK;
