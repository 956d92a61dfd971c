# The save benchmarks' fixtures, sourced by test/bench/run.sh and
# test/bench/save_profile.sh so that both measure the same saves.
#
#   save_fixtures_sql N     SQL: document:bench with tabs 0..N-1, a lease on
#                           each (bench_tokens: client N holds tab N), and the
#                           baseline's tables: bench_plain (collab.resources'
#                           shape and rows, no trigger) and bench_history
#   save_content BYTES      BYTES of clinical prose (compressible like real text)
#   save_scripts DIR VAR    pgbench scripts DIR/plain.sql, history.sql and
#                           fenced.sql; VAR names the client's number (pgbench's
#                           client_id, or a -D variable)
#   save_script_head VAR    their first lines: the client's tab and token, once,
#                           and a random prefix that makes each save's content new

save_fixtures_sql() {
	local n=$1
	cat <<SQL
\\o /dev/null
SELECT collab.create_document('bench', 'Operation report (bench)',
	array(SELECT g::text FROM generate_series(0, $n - 1) g));
\\o
CREATE TABLE bench_tokens (client int PRIMARY KEY, resource_id text NOT NULL, token bigint NOT NULL);
INSERT INTO bench_tokens
SELECT g, a.resource_id, a.token
  FROM generate_series(0, $n - 1) g,
	   LATERAL collab.acquire('document:bench/tab:' || g, 'user-' || g, 'Dr. Bench ' || g, 'bench-conn-' || g) a
 WHERE a.granted;
DO \$\$ BEGIN
	IF (SELECT count(*) FROM bench_tokens) <> $n THEN RAISE 'not every bench lock was granted'; END IF;
END \$\$;
CREATE TABLE bench_plain (LIKE collab.resources INCLUDING ALL);
ALTER TABLE bench_plain ADD FOREIGN KEY (parent_id) REFERENCES bench_plain (id) ON DELETE CASCADE;
INSERT INTO bench_plain SELECT * FROM collab.resources ORDER BY id;
-- A hand-written history: one row per save, written with the UPDATE.
CREATE TABLE bench_history (
	resource_id	text COLLATE "C" NOT NULL,
	version		bigint NOT NULL,
	content		text NOT NULL,
	saved_by	text NOT NULL,
	saved_at	timestamptz NOT NULL,
	PRIMARY KEY (resource_id, version)
);
VACUUM ANALYZE;
SQL
}

save_content() {
	local bytes=$1 content=""
	RANDOM=42
	local words=(patient presented with acute abdominal pain laparoscopic appendectomy was performed under
		general anesthesia the appendix inflamed without perforation hemostasis achieved irrigation
		trocar sites closed with absorbable sutures estimated blood loss minimal no complications
		postoperative course uneventful diagnosis confirmed histology pending antibiotics continued
		for hours vital signs stable discharge planned follow-up in clinic days wound care instructions
		given allergies none known medication paracetamol ibuprofen mobilisation encouraged)
	while [ ${#content} -lt "$bytes" ]; do content+="${words[RANDOM % ${#words[@]}]} "; done
	printf '%s' "${content:0:$bytes}"
}

save_script_head() {
	printf '%s\n' '\if :tok = 0' \
		"SELECT resource_id AS rid, token AS tok FROM bench_tokens WHERE client = :$1 \\gset" \
		'\endif' '\set r random(1, 1000000000)'
}

save_scripts() {
	local dir=$1 var=$2 head
	head=$(save_script_head "$var")
	printf '%s\n%s\n' "$head" \
		"UPDATE bench_plain SET content = :r::text || :content::text, version = version + 1, saved_at = clock_timestamp() WHERE id = :rid;" \
		>"$dir/plain.sql"
	printf '%s\n%s\n%s\n' "$head" \
		"WITH u AS (UPDATE bench_plain SET content = :r::text || :content::text, version = version + 1, saved_at = clock_timestamp() WHERE id = :rid RETURNING id, version, content, saved_at)" \
		"INSERT INTO bench_history SELECT id, version, content, 'user-' || :$var::text, saved_at FROM u;" \
		>"$dir/history.sql"
	printf '%s\n%s\n' "$head" \
		"SELECT collab.save(:rid, :tok, :r::text || :content::text);" \
		>"$dir/fenced.sql"
}
