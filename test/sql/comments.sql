-- Every object of the extension says what it is for (COMMENT ON), so that
-- \df+ collab.*, \dv+ collab.* and \dt+ collab.* explain it.
CREATE FUNCTION pg_temp.undocumented() RETURNS TABLE (object text) LANGUAGE sql AS $$
	SELECT 'function ' || p.oid::regprocedure
	  FROM pg_proc p
	 WHERE p.pronamespace = 'collab'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
	UNION ALL
	SELECT CASE c.relkind WHEN 'v' THEN 'view ' WHEN 'm' THEN 'view ' WHEN 'S' THEN 'sequence ' ELSE 'table ' END
		   || c.oid::regclass
	  FROM pg_class c
	 WHERE c.relnamespace = 'collab'::regnamespace AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
	   AND obj_description(c.oid, 'pg_class') IS NULL
	UNION ALL
	SELECT 'type ' || t.oid::regtype
	  FROM pg_type t
	 WHERE t.typnamespace = 'collab'::regnamespace
	   AND t.typrelid = 0				-- not the row type of a table or view
	   AND t.typtype IN ('b', 'd', 'e', 'r')
	   AND NOT EXISTS (SELECT FROM pg_type e WHERE e.typarray = t.oid)	-- not an array type
	   AND obj_description(t.oid, 'pg_type') IS NULL
	UNION ALL
	-- the roles the schema is granted to (collab_app, collab_admin, ...)
	SELECT 'role ' || r.rolname
	  FROM pg_roles r
	 WHERE r.oid IN (SELECT (aclexplode(n.nspacl)).grantee FROM pg_namespace n WHERE n.nspname = 'collab')
	   AND r.oid <> (SELECT nspowner FROM pg_namespace WHERE nspname = 'collab')
	   AND shobj_description(r.oid, 'pg_authid') IS NULL
	UNION ALL
	SELECT 'schema collab' WHERE obj_description('collab'::regnamespace, 'pg_namespace') IS NULL
	ORDER BY 1
$$;
SELECT * FROM pg_temp.undocumented();

-- the check sees every kind of object: each is present
SELECT (SELECT count(*) FROM pg_proc WHERE pronamespace = 'collab'::regnamespace) > 0 AS functions,
	   (SELECT count(*) FROM pg_class WHERE relnamespace = 'collab'::regnamespace AND relkind = 'r') > 0 AS tables,
	   (SELECT count(*) FROM pg_class WHERE relnamespace = 'collab'::regnamespace AND relkind = 'v') > 0 AS views,
	   (SELECT count(*) FROM pg_type WHERE typnamespace = 'collab'::regnamespace AND typtype IN ('d', 'e')) > 0 AS types,
	   (SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a WHERE n.nspname = 'collab' AND a.grantee <> n.nspowner) > 0 AS roles;

-- and an object without a comment is named
BEGIN;
CREATE FUNCTION collab.undocumented_example() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE TABLE collab.undocumented_table (x int);
CREATE VIEW collab.undocumented_view AS SELECT 1 AS x;
CREATE TYPE collab.undocumented_type AS ENUM ('a');
CREATE ROLE collab_undocumented_role;
GRANT USAGE ON SCHEMA collab TO collab_undocumented_role;
COMMENT ON SCHEMA collab IS NULL;
SELECT * FROM pg_temp.undocumented();
ROLLBACK;
SELECT * FROM pg_temp.undocumented();
