-- A realistic grant set for the A/B benchmark (test/bench/ab/run.sh, unless
-- AB_ACL=open), after grants.sql: no document is open to every user; the
-- benchmark's users are in 5 groups (BENCH_TOKEN_GROUPS), one of which may
-- edit every document; 10^4 grants in all, the others to users and groups
-- the benchmark's users are not, spread over every resource, so that each
-- decision looks its subjects up among ten or so grants per resource.
DELETE FROM collab.acl WHERE subject = '*';
INSERT INTO collab.acl (resource_id, subject, permission)
SELECT id, 'group:surgery', 'edit' FROM collab.resources WHERE parent_id IS NULL;
INSERT INTO collab.acl (resource_id, subject, permission)
SELECT r.id,
	   CASE WHEN g % 4 = 0 THEN 'group:team-' || (r.n * 10 + g) % 997 ELSE 'user:u-staff-' || (r.n * 10 + g) % 4999 END,
	   (ARRAY['view', 'edit', 'admin'])[1 + g % 3]::collab.permission
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM collab.resources) r,
	   generate_series(1, 20) g
 ORDER BY r.n, g
 LIMIT 10000 - (SELECT count(*) FROM collab.acl)
ON CONFLICT DO NOTHING;
ANALYZE collab.acl;
SELECT count(*) AS grants FROM collab.acl;
