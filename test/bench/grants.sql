-- Bench fixtures, after their documents exist: where collab has access
-- control (collab.grant exists), a document is open only to the subjects it
-- is granted to, so every top-level document (its tabs inherit) is granted
-- to any authenticated user for editing.  The same fixtures then serve
-- collab with and without access control.
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_proc WHERE proname = 'grant' AND pronamespace = 'collab'::regnamespace) THEN
		PERFORM collab.grant(id, '*', 'edit') FROM collab.resources WHERE parent_id IS NULL;
	END IF;
END
$$;
