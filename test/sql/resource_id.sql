-- Resource id grammar: kind:key segments separated by '/'.
\set VERBOSITY terse

-- valid ids
SELECT encode(convert_to(left(id, 40), 'UTF8'), 'escape') AS id, octet_length(id) AS bytes,
       collab.resource_id_valid(id) AS valid
  FROM (VALUES ('document:123'), ('document:123/tab:diagnosis'), ('a:b'),
               ('document:urn:uuid:1'), ('Dok:Befund-ärztlich'), ('document:😀'),
               ('x:' || repeat('k', 126)),
               ('a:1/b:2/c:3/d:4/e:5/f:6/g:7/h:8')) AS t(id);

-- invalid ids
SELECT encode(convert_to(left(id, 40), 'UTF8'), 'escape') AS id, octet_length(id) AS bytes,
       collab.resource_id_valid(id) AS valid
  FROM (VALUES (''), ('document'), ('document:'), (':123'), ('/document:1'),
               ('document:1/'), ('document:1//tab:x'), ('document:1 '), (' document:1'),
               ('document: 1'), (E'document:1\t'), (E'document:1\n'), ('document:1/tab'),
               ('x:' || repeat('k', 127)),
               ('a:1/b:2/c:3/d:4/e:5/f:6/g:7/h:8/i:9'),
               (E'document:\u00a0x'), (E'document:\u200bx'), (E'document:\u2028x'),
               (E'document:\ufeffx'), (E'document:\u0085x'), (E'doc\u007fument:1'),
               (E'document:\u00adx'), (E'document:\u202ex'), (E'document:\u2066x'), (E'document:\u2060x')) AS t(id);

-- the error code and message of each rule (the id itself is never echoed)
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
SELECT pg_temp.try(format('SELECT collab.check_resource_id(%L)', id))
  FROM (VALUES ('document:1'), (''), ('//'), ('document:1/'), ('document'), (':x'), ('x:'),
               ('x:' || repeat('k', 127)), ('a:1/b:2/c:3/d:4/e:5/f:6/g:7/h:8/i:9'),
               ('a b:c')) AS t(id);
SELECT pg_temp.try('SELECT collab.check_resource_id(NULL)');

-- invalid UTF-8 cannot reach a text value in a UTF8 database: the server refuses it first
SELECT pg_temp.try($$SELECT collab.check_resource_id(convert_from('\x646f633a80'::bytea, 'UTF8'))$$);

-- parent and ancestors
SELECT collab.parent_id('document:123/tab:diagnosis'), collab.parent_id('document:123');
SELECT collab.ancestors('a:1/b:2/c:3'), collab.ancestors('a:1');
SELECT pg_temp.try($$SELECT collab.ancestors('a:1//b:2')$$);

-- advisory lock keys: distinct for prefixes that are not whole segments
SELECT collab.lock_key('document:12') <> collab.lock_key('document:123') AS distinct_keys;
