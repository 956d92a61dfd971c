-- Documents and tabs as hierarchical rows.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;

SELECT collab.create_document('op-1', 'Operation report 1', ARRAY['patient-info', 'diagnosis', 'procedure-notes']);
SELECT collab.add_tab('document:op-1', 'anesthesia', 'Anesthesia');
SELECT id, parent_id, kind, title, content, version, saved_by, saved_at
  FROM collab.resources ORDER BY id;

-- bad input: every case names its error code
SELECT pg_temp.try($$SELECT collab.create_document('op-1')$$);
SELECT pg_temp.try($$SELECT collab.create_document(NULL)$$);
SELECT pg_temp.try($$SELECT collab.create_document('')$$);
SELECT pg_temp.try($$SELECT collab.create_document('a/b')$$);
SELECT pg_temp.try($$SELECT collab.create_document('with space')$$);
SELECT pg_temp.try($$SELECT collab.create_document('op-2', repeat('t', 1025))$$);
SELECT pg_temp.try($$SELECT collab.create_document('op-3', 'x', ARRAY['ok', 'bad/tab'])$$);
SELECT pg_temp.try($$SELECT collab.add_tab('document:nope', 'x')$$);
SELECT pg_temp.try($$SELECT collab.add_tab('document:op-1', 'diagnosis')$$);
SELECT pg_temp.try($$SELECT collab.add_tab('document:op-1', NULL)$$);
SELECT pg_temp.try($$SELECT collab.add_tab('document:op-1', '')$$);
SELECT pg_temp.try($$SELECT collab.add_tab('document:op-1', repeat('k', 125))$$);
SELECT pg_temp.try($$SELECT collab.add_tab('not an id', 'x')$$);
SELECT pg_temp.try($$SELECT collab.add_tab('document:op-1/tab:diagnosis', 'x')$$);

-- a failed creation left nothing behind (op-3 and its first tab rolled back)
SELECT count(*) AS rows, count(*) FILTER (WHERE id LIKE 'document:op-3%') AS op3 FROM collab.resources;

-- a tab key at the segment limit: "tab:" + 124 bytes = 128
SELECT collab.add_tab('document:op-1', repeat('k', 124)) = 'document:op-1/tab:' || repeat('k', 124) AS at_limit;

-- rows keep their invariants even when written directly
SELECT pg_temp.try($$INSERT INTO collab.resources (id, parent_id, kind) VALUES ('document:x/tab:y', 'document:op-1', 'tab')$$);
SELECT pg_temp.try($$INSERT INTO collab.resources (id, kind) VALUES ('bad', 'bad')$$);
SELECT pg_temp.try($$UPDATE collab.resources SET id = 'document:op-9' WHERE id = 'document:op-1/tab:anesthesia'$$);

-- a title change needs no lock and does not bump the version
UPDATE collab.resources SET title = 'Anesthesia record' WHERE id = 'document:op-1/tab:anesthesia';
SELECT title, version, saved_by FROM collab.resources WHERE id = 'document:op-1/tab:anesthesia';
