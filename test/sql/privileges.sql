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

-- a plain UPDATE needs the live token in collab.lock_token, in the same transaction
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'x', version = 99 WHERE id = 'document:priv/tab:t'$$);
SELECT pg_temp.try($$INSERT INTO collab.resources (id, kind) VALUES ('document:forged', 'document')$$);
BEGIN;
SELECT set_config('collab.lock_token', (:tk + 1000000)::text, true) IS NOT NULL AS token_set;
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'stale token' WHERE id = 'document:priv/tab:t'$$);
ROLLBACK;
BEGIN;
SET LOCAL collab.lock_token = 'not a number';
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'garbage token' WHERE id = 'document:priv/tab:t'$$);
ROLLBACK;
BEGIN;
SELECT set_config('collab.lock_token', :'tk', true) IS NOT NULL AS token_set;
UPDATE collab.resources SET content = 'plain update with the live token' WHERE id = 'document:priv/tab:t';
COMMIT;
-- SET LOCAL ended with the transaction: the next UPDATE presents nothing
SELECT current_setting('collab.lock_token') = '' AS token_gone;
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'after commit' WHERE id = 'document:priv/tab:t'$$);
SELECT content, version FROM collab.resources WHERE id = 'document:priv/tab:t';
-- superuser settings stay out of reach: no longer locks, no larger contents, no secret
SELECT pg_temp.try($$SET collab.lock_ttl = '1h'$$);
SELECT pg_temp.try($$SET collab.max_content_size = '256MB'$$);
SELECT pg_temp.try($$SELECT current_setting('collab.jwt_secret')$$);
SELECT count(*) AS secret_rows FROM pg_settings WHERE name = 'collab.jwt_secret';
SELECT pg_temp.try($$SHOW collab.ssl_key_file$$);
SELECT pg_temp.try($$SELECT * FROM collab.pending_events()$$);
-- the worker's functions are the worker's alone
SELECT pg_temp.try($$SELECT collab.ws_worker_start('collab worker 0')$$);
SELECT pg_temp.try($$SELECT collab.ws_disconnect('c1', 'disconnected')$$);
SELECT pg_temp.try($$SELECT collab.ws_save('c1', 'document:priv/tab:t', 'x', NULL, NULL)$$);
RESET ROLE;

-- the administrator can do everything the application can
SELECT pg_has_role('collab_admin', 'collab_app', 'MEMBER') AS admin_is_app;
SET ROLE collab_test_admin;
SELECT collab.force_release('document:priv/tab:t', 'supervisor override');
SELECT action, resource_id, actor, reason FROM collab.audit_log
 WHERE resource_id LIKE 'document:priv%' ORDER BY id;
RESET ROLE;

-- No role but the superuser (the worker) may run a ws_* function or read
-- the leases table; the administrator may not either.
SELECT p.oid::regprocedure AS function,
       has_function_privilege('collab_test_nobody', p.oid, 'EXECUTE') AS nobody,
       has_function_privilege('collab_test_app', p.oid, 'EXECUTE') AS app,
       has_function_privilege('collab_test_admin', p.oid, 'EXECUTE') AS admin
  FROM pg_proc p
 WHERE p.pronamespace = 'collab'::regnamespace AND p.proname LIKE 'ws\_%'
 ORDER BY 1::text;
SELECT r AS role, has_table_privilege(r, 'collab.leases', 'SELECT') AS leases,
       has_table_privilege(r, 'collab.audit', 'SELECT') AS audit,
       has_column_privilege(r, 'collab.resources', 'version', 'UPDATE') AS update_version
  FROM unnest(ARRAY['collab_test_nobody', 'collab_test_app', 'collab_test_admin']) r;
SET ROLE collab_test_admin;
SELECT pg_temp.try($$SELECT collab.ws_worker_start('collab worker 0')$$);
SELECT pg_temp.try($$SELECT token FROM collab.leases$$);
RESET ROLE;

-- No view in schema collab has a column called token, or one computed from
-- collab.leases.token (the dependencies of the views' rewrite rules).
SELECT table_name, string_agg(column_name::text, ', ' ORDER BY ordinal_position) AS columns
  FROM information_schema.columns
 WHERE table_schema = 'collab'
   AND table_name IN (SELECT table_name FROM information_schema.views WHERE table_schema = 'collab')
 GROUP BY table_name ORDER BY table_name;
SELECT count(*) AS token_columns
  FROM information_schema.columns c JOIN information_schema.views v USING (table_schema, table_name)
 WHERE c.table_schema = 'collab' AND c.column_name ILIKE '%token%';
SELECT count(*) AS views_reading_token
  FROM pg_depend d
  JOIN pg_rewrite r ON r.oid = d.objid
  JOIN pg_class v ON v.oid = r.ev_class
  JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
   AND v.relnamespace = 'collab'::regnamespace AND v.relkind = 'v'
   AND a.attrelid = 'collab.leases'::regclass AND a.attname = 'token';

-- By PostgreSQL's design, members of pg_read_all_settings (and pg_monitor,
-- which includes it) read superuser-only settings, the JWT secret included
-- (docs/settings.md, "Secrets"); pg_settings still leaves it out.
CREATE ROLE collab_test_reader IN ROLE pg_read_all_settings;
CREATE ROLE collab_test_monitor IN ROLE pg_monitor;
SET ROLE collab_test_reader;
SELECT length(current_setting('collab.jwt_secret')) > 0 AS reader_reads_secret;
SELECT count(*) AS secret_rows FROM pg_settings WHERE name = 'collab.jwt_secret';
SELECT pg_temp.try($$SELECT * FROM collab.locks$$);
RESET ROLE;
SET ROLE collab_test_monitor;
SELECT length(current_setting('collab.jwt_secret')) > 0 AS monitor_reads_secret;
RESET ROLE;
DROP ROLE collab_test_reader, collab_test_monitor;

-- The C lock functions run as the owner under the caller's search_path, and
-- call SQL helpers on their rarer paths (errors, the hand-off): an operator
-- of the caller's own schema must never run in their place, as the owner.
SELECT collab.create_document('priv2', NULL, ARRAY['t']);
SELECT collab.grant('document:priv2', '*', 'edit');
SELECT collab.ws_connect('priv-h1', 'collab worker 1', 1, 'u-h1', 'Hal', NULL, NULL);
SELECT collab.ws_connect('priv-h2', 'collab worker 1', 1, 'u-h2', 'Ida', NULL, NULL);
SELECT count(*) FROM collab.ws_join('priv-h1', 'document:priv2/tab:t', 'editor');
SELECT count(*) FROM collab.ws_join('priv-h2', 'document:priv2/tab:t', 'viewer');
SELECT collab.ws_request('priv-h2', 'document:priv2/tab:t')::jsonb->'ack'->'requested' AS requested;
SELECT token AS htk FROM collab.leases WHERE resource_id = 'document:priv2/tab:t' \gset
CREATE SCHEMA collab_trap AUTHORIZATION collab_test_app;
SET ROLE collab_test_app;
CREATE FUNCTION collab_trap.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'trap ran as %', current_user;
END
$$;
CREATE OPERATOR collab_trap.= (LEFTARG = text, RIGHTARG = text, FUNCTION = collab_trap.text_eq);
SET search_path = collab_trap, pg_catalog;
SELECT pg_temp.try($$SELECT 'a'::text = 'a'::text$$) AS the_trap_works;
SELECT pg_temp.try($$SELECT collab.acquire('document:priv', '', 'Ann')$$) AS bad_user;
SELECT pg_temp.try($$SELECT collab.acquire('document:nope', 'u', 'U')$$) AS no_resource;
SELECT pg_temp.try($$SELECT collab.release(999999)$$) AS dead_token;
SELECT pg_temp.try($$SELECT collab.save('document:priv2/tab:t', 999999, 'x')$$) AS dead_token_save;
SELECT pg_temp.try(format('SELECT collab.release(%s)', :htk)) AS release_with_hand_off;
RESET search_path;
RESET ROLE;
SELECT resource_id, holder_id FROM collab.locks WHERE resource_id = 'document:priv2/tab:t';
SELECT connection_id, role, user_json::jsonb->>'role' AS json_role FROM collab.ws_presence
 WHERE resource_id = 'document:priv2/tab:t' ORDER BY 1;
SELECT collab.ws_disconnect('priv-h1');
SELECT collab.ws_disconnect('priv-h2');
DROP SCHEMA collab_trap CASCADE;

-- Revisions: no role can change or delete them, nor the purge anchors;
-- collab_app (and so collab_admin) reads history for the backend; only a
-- superuser purges.
SELECT token AS rtk FROM collab.acquire('document:priv/tab:t', 'u1', 'Ann', 'c1') \gset
SELECT collab.save('document:priv/tab:t', :rtk, 'a revision');
SELECT collab.release(:rtk);
SELECT r AS role, p AS privilege,
       has_table_privilege(r, 'collab.revisions', p) AS revisions,
       has_table_privilege(r, 'collab.revision_purges', p) AS purges
  FROM unnest(ARRAY['collab_test_nobody', 'collab_test_app', 'collab_test_admin']) r,
       unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
 WHERE has_table_privilege(r, 'collab.revisions', p) OR has_table_privilege(r, 'collab.revision_purges', p);
SELECT f AS function,
       has_function_privilege('collab_test_nobody', f, 'EXECUTE') AS nobody,
       has_function_privilege('collab_test_app', f, 'EXECUTE') AS app,
       has_function_privilege('collab_test_admin', f, 'EXECUTE') AS admin
  FROM unnest(ARRAY['collab.history(text,bigint,integer)', 'collab.revision(text,bigint)',
		'collab.verify_history(text)', 'collab.revision_hash(bytea,text,bigint,text,text,text,timestamptz,bigint,text,bigint)',
		'collab.save(text,bigint,text,bigint,bigint)', 'collab._save(text,bigint,text,bigint,bigint,text)',
		'collab.purge_revisions(timestamptz)', 'collab._verify_chain(text,timestamptz,bigint)',
		'collab._revisions_immutable()']::regprocedure[]) f
 ORDER BY 1::text;
SET ROLE collab_test_app;
SELECT version, saved_by, saved_by_name, size, path FROM collab.history('document:priv/tab:t');
SELECT content FROM collab.revision('document:priv/tab:t', 1);
SELECT ok, revisions FROM collab.verify_history('document:priv/tab:t');
SELECT pg_temp.try($$SELECT * FROM collab.revisions$$);
SELECT pg_temp.try($$UPDATE collab.revisions SET content = 'x'$$);
SELECT pg_temp.try($$DELETE FROM collab.revisions$$);
SELECT pg_temp.try($$TRUNCATE collab.revisions$$);
SELECT pg_temp.try($$INSERT INTO collab.revisions (resource_id, resource_created_at, version, content, saved_at, path, hash)
	VALUES ('document:priv/tab:t', now(), 99, 'forged', now(), 'sql', '\x00')$$);
SELECT pg_temp.try($$DELETE FROM collab.revision_purges$$);
SELECT pg_temp.try($$TRUNCATE collab.revision_purges$$);
SELECT pg_temp.try($$SELECT collab.purge_revisions(now())$$);
-- the path is the worker's to name
SELECT pg_temp.try(format($$SELECT collab._save('document:priv/tab:t', %s, 'x', NULL, NULL, 'ws')$$, :rtk));
RESET ROLE;
SET ROLE collab_test_admin;
SELECT count(*) AS admin_reads FROM collab.history('document:priv/tab:t');
SELECT pg_temp.try($$UPDATE collab.revisions SET content = 'x'$$);
SELECT pg_temp.try($$DELETE FROM collab.revisions$$);
SELECT pg_temp.try($$TRUNCATE collab.revisions$$);
SELECT pg_temp.try($$SELECT collab.purge_revisions(now())$$);
RESET ROLE;
SET ROLE collab_test_nobody;
SELECT pg_temp.try($$SELECT * FROM collab.history('document:priv/tab:t')$$);
SELECT pg_temp.try($$SELECT * FROM collab.revision('document:priv/tab:t', 1)$$);
RESET ROLE;
-- granted it anyway, a non-superuser still may not purge
GRANT EXECUTE ON FUNCTION collab.purge_revisions(timestamptz) TO collab_test_admin;
SET ROLE collab_test_admin;
SELECT pg_temp.try($$SELECT collab.purge_revisions(now())$$);
RESET ROLE;
REVOKE EXECUTE ON FUNCTION collab.purge_revisions(timestamptz) FROM collab_test_admin;
-- a live lock's token is the holder's credential: revision() withholds it
-- from the application (a session of its own), not from a superuser's
SELECT token AS rtk FROM collab.acquire('document:priv/tab:t', 'u1', 'Ann', 'c1') \gset
SELECT collab.save('document:priv/tab:t', :rtk, 'under a live lock') AS live_version \gset
SET SESSION AUTHORIZATION collab_test_app;
SELECT version = :live_version AS newest, token IS NULL AS withheld FROM collab.revision('document:priv/tab:t', :live_version);
SELECT token IS NULL AS withheld_earlier FROM collab.revision('document:priv/tab:t', :live_version - 1);
RESET SESSION AUTHORIZATION;
SELECT token = :rtk AS shown_to_superuser FROM collab.revision('document:priv/tab:t', :live_version);
SELECT collab.release(:rtk);
SET SESSION AUTHORIZATION collab_test_app;
SELECT token = :rtk AS shown_once_released FROM collab.revision('document:priv/tab:t', :live_version);
RESET SESSION AUTHORIZATION;

DROP ROLE collab_test_nobody, collab_test_app, collab_test_admin;
