-- Least privilege: PUBLIC gets nothing, collab_app the API, collab_admin more.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	-- no collab function here: the unprivileged role cannot call any
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;
SELECT collab.create_document('priv', NULL, ARRAY['t']);
SELECT token AS tk FROM collab.acquire('document:priv/tab:t', 'u1', 'Ann', 'c1') \gset

CREATE ROLE collab_test_nobody;
CREATE ROLE collab_test_app IN ROLE collab_app;
CREATE ROLE collab_test_admin IN ROLE collab_admin;

SET ROLE collab_test_nobody;
SELECT pg_temp.try($$SELECT collab.acquire('document:priv', 'u', 'U')$$);
SELECT pg_temp.try($$SELECT * FROM collab.locks$$);
SELECT pg_temp.try($$SELECT * FROM collab.leases$$);
SELECT pg_temp.try($$SHOW collab.jwt_secret$$);
SELECT pg_temp.try($$SELECT current_setting('collab.jwt_secret')$$);
SELECT count(*) AS secret_rows FROM pg_settings WHERE name = 'collab.jwt_secret';
RESET ROLE;
-- the superuser can read it (it is set in the test cluster's configuration)
SELECT length(current_setting('collab.jwt_secret')) > 0 AS superuser_reads_secret;
-- and no setting shown to everyone carries it
SELECT count(*) AS leaked FROM pg_settings WHERE setting LIKE '%regress-secret%';

SET ROLE collab_test_app;
SELECT granted FROM collab.acquire('document:priv', 'u2', 'Bo', 'c2');
SELECT resource_id, username FROM collab.locks WHERE resource_id LIKE 'document:priv%';
SELECT pg_temp.try($$SELECT token FROM collab.leases$$);
SELECT pg_temp.try($$SELECT * FROM collab.audit$$);
SELECT pg_temp.try($$SELECT * FROM collab.audit_log$$);
SELECT pg_temp.try($$SELECT collab.force_release('document:priv/tab:t', 'x')$$);
SELECT pg_temp.try($$SELECT collab.sweep()$$);
SELECT pg_temp.try($$SELECT collab._publish('{}')$$);
SELECT pg_temp.try($$SELECT collab._next_token()$$);
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'x' WHERE id = 'document:priv/tab:t'$$);
SELECT pg_temp.try($$UPDATE collab.leases SET expires_at = now()$$);
SELECT pg_temp.try($$DELETE FROM collab.resources$$);
SELECT pg_temp.try($$SHOW collab.jwt_secret$$);
SELECT collab.save('document:priv/tab:t', :tk, 'saved by the app role');
RESET ROLE;

-- the administrator can do everything the application can
SELECT pg_has_role('collab_admin', 'collab_app', 'MEMBER') AS admin_is_app;
SET ROLE collab_test_admin;
SELECT collab.force_release('document:priv/tab:t', 'supervisor override');
SELECT action, resource_id, actor, reason FROM collab.audit_log
 WHERE resource_id LIKE 'document:priv%' ORDER BY id;
RESET ROLE;

DROP ROLE collab_test_nobody, collab_test_app, collab_test_admin;
