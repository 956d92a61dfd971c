#!/bin/bash
# A throwaway demo cluster with collab and a sample operation report.
#
#   demo.sh start   (re)create the demo cluster in /tmp/collab-demo, seed it, print how to use it
#   demo.sh stop    stop the demo cluster and remove /tmp/collab-demo
#
# 'make demo' runs 'demo.sh start' after installing the packages and building and
# installing the extension; 'make demo-stop' runs 'demo.sh stop'.  Run as root:
# the cluster itself runs as the 'postgres' system user (see scripts/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO_DIR=/tmp/collab-demo
DOC_KEY=op-2026-0042
DOC_ID="document:$DOC_KEY"
DOC2_KEY=op-2026-0043
DOC2_ID="document:$DOC2_KEY"
APP_ROLE=collab_demo_app

die() {
	echo "demo: $*" >&2
	exit 1
}

free_port() { bash scripts/cluster.sh free-port; }

# base64url without padding (RFC 7515), of stdin
b64url() {
	openssl base64 -A | tr '+/' '-_' | tr -d '='
}

# An HS256 JWT for user $2 with display name $3, valid for 12 hours, signed
# with the secret in file $1.  Plain bash and openssl: no Node needed.
make_jwt() {
	local secret_file=$1 sub=$2 name=$3 now header payload sig
	now=$(date +%s)
	header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	payload=$(printf '{"sub":"%s","name":"%s","iat":%d,"exp":%d}' \
		"$sub" "$name" "$now" $((now + 12 * 3600)) | b64url)
	# the worker's key is the bytes of collab.jwt_secret, as -hmac takes them
	sig=$(printf '%s' "$header.$payload" |
		openssl dgst -sha256 -hmac "$(cat "$secret_file")" -binary | b64url)
	printf '%s.%s.%s\n' "$header" "$payload" "$sig"
}

# The worker's URL, sample JWTs for three users (signed with the HS256
# secret in $secret_file, which is never printed) and a socket.io-client
# snippet.
print_worker_info() {
	local worker_port=$1 secret_file=$2 url anna ben carla
	url="http://127.0.0.1:$worker_port"
	anna=$(make_jwt "$secret_file" u-anna "Dr. Anna Berg")
	ben=$(make_jwt "$secret_file" u-ben "Dr. Ben Kaya")
	carla=$(make_jwt "$secret_file" u-carla "Carla Rossi, RN")

	# the worker starts listening within 2 s of CREATE EXTENSION
	if ! bash scripts/cluster.sh wait-port "$worker_port"; then
		echo "demo: warning: the WebSocket worker does not listen on port $worker_port yet (see $DEMO_DIR/server.log)" >&2
	fi

	cat <<EOF

Demo UI: open these URLs side by side (each takes the token from the URL).
Anna and Ben may edit $DOC_KEY; Carla, a nurse, may only view it;
$DOC2_KEY is Anna's alone (Ben and Carla are told there is no such report).

  Dr. Anna Berg   : $url/?doc=$DOC_KEY&token=$anna
  Dr. Ben Kaya    : $url/?doc=$DOC_KEY&token=$ben
  Carla Rossi, RN : $url/?doc=$DOC_KEY&token=$carla  (view only)
  Dr. Anna Berg   : $url/?doc=$DOC2_KEY&token=$anna  (her second report)

WebSocket worker (Socket.IO, protocol in docs/protocol.md):

  URL            : $url  (ws://127.0.0.1:$worker_port/socket.io/?EIO=4&transport=websocket)
  JWT, Dr. Anna Berg (sub u-anna), valid 12 h:
    $anna
  JWT, Dr. Ben Kaya (sub u-ben), valid 12 h:
    $ben
  JWT, Carla Rossi, RN (sub u-carla), valid 12 h:
    $carla

Join the diagnosis tab as editor as Anna and log every event (Node.js, run in
$(pwd)/test, where socket.io-client is installed; Ctrl-C stops it).
Run it again with Ben's token in a second terminal to see lock:denied and presence:

cd $(pwd)/test && node --input-type=module <<'JS'
import { io } from "socket.io-client";
const socket = io("$url", {
  auth: { token: "$anna" },
});
socket.on("connect", () => {
  console.log("connected, connection id", socket.id);
  socket.emit("presence:join", { resourceId: "$DOC_ID/tab:diagnosis", mode: "editor" },
    (ack) => console.log("presence:join ack", JSON.stringify(ack)));
});
socket.on("connect_error", (err) => console.log("connect_error", err.message, err.data?.code));
socket.onAny((event, payload) => console.log(event, JSON.stringify(payload)));
JS
EOF
}

stop_demo() {
	if [ -d "$DEMO_DIR" ]; then
		bash scripts/cluster.sh destroy "$DEMO_DIR"
		echo "demo: stopped and removed $DEMO_DIR"
	else
		echo "demo: no demo cluster in $DEMO_DIR"
	fi
}

start_demo() {
	[ "$(id -u)" -eq 0 ] || die "run as root (the cluster runs as the 'postgres' user)"
	command -v openssl >/dev/null || die "openssl is missing: run 'make deps'"
	[ -f "$(pg_config --pkglibdir)/collab.so" ] ||
		die "collab is not installed: run 'make demo' (or 'make && make install')"

	if [ -d "$DEMO_DIR" ]; then
		echo "demo: removing the previous demo cluster in $DEMO_DIR"
		bash scripts/cluster.sh destroy "$DEMO_DIR"
	fi

	local secret pg_port worker_port
	secret=$(openssl rand -hex 32)
	pg_port=$(free_port)
	worker_port=$(free_port)
	while [ "$worker_port" = "$pg_port" ]; do worker_port=$(free_port); done

	PGPORT_WANTED=$pg_port bash scripts/cluster.sh start "$DEMO_DIR" \
		"collab.jwt_secret = '$secret'" \
		"collab.port = $worker_port" >/dev/null ||
		die "the demo cluster did not start (see $DEMO_DIR/server.log)"

	# Kept for signing sample tokens; readable by root only.
	(umask 077 && echo "$secret" >"$DEMO_DIR/jwt-secret")
	echo "$worker_port" >"$DEMO_DIR/worker-port"

	psql -X -q -v ON_ERROR_STOP=1 -h "$DEMO_DIR" -p "$pg_port" -U postgres -d postgres \
		>"$DEMO_DIR/seed.log" 2>&1 <<SQL || { cat "$DEMO_DIR/seed.log" >&2; die "seeding failed"; }
CREATE EXTENSION collab;

SELECT collab.create_document('$DOC_KEY', 'Operation report OP-2026-0042');
SELECT collab.add_tab('$DOC_ID', 'patient-info', 'Patient information');
SELECT collab.add_tab('$DOC_ID', 'diagnosis', 'Diagnosis');
SELECT collab.add_tab('$DOC_ID', 'procedure-notes', 'Procedure notes');
SELECT collab.add_tab('$DOC_ID', 'anesthesia', 'Anesthesia');
-- Who may open it (docs/access-control.md): the two doctors of the tokens
-- below edit, the nurse reads.
SELECT collab.grant('$DOC_ID', 'user:u-anna', 'edit');
SELECT collab.grant('$DOC_ID', 'user:u-ben', 'edit');
SELECT collab.grant('$DOC_ID', 'user:u-carla', 'view');

-- A second report, Anna's alone.
SELECT collab.create_document('$DOC2_KEY', 'Operation report OP-2026-0043');
SELECT collab.add_tab('$DOC2_ID', 'diagnosis', 'Diagnosis');
SELECT collab.add_tab('$DOC2_ID', 'procedure-notes', 'Procedure notes');
SELECT collab.grant('$DOC2_ID', 'user:u-anna', 'edit');

-- Content is written only under a lock: take it, save, give it back.
DO \$\$
DECLARE
	t bigint;
BEGIN
	SELECT token INTO t FROM collab.acquire('$DOC_ID/tab:patient-info', 'u-admission', 'Admission desk', 'demo-seed');
	PERFORM collab.save('$DOC_ID/tab:patient-info', t,
		'Patient: Demo Patient, born 1961-04-12, MRN DEMO-0042. Ward 3B. Allergies: penicillin.');
	PERFORM collab.release(t);
END
\$\$;

CREATE ROLE $APP_ROLE LOGIN;
GRANT collab_app TO $APP_ROLE;
SQL

	cat <<EOF
demo: collab demo cluster ready
  data directory : $DEMO_DIR/data (owned by postgres)
  server log     : $DEMO_DIR/server.log
  PostgreSQL     : port $pg_port, Unix socket in $DEMO_DIR
  document       : $DOC_ID with tabs patient-info, diagnosis, procedure-notes, anesthesia
                   (u-anna and u-ben edit, u-carla views)
  second document: $DOC2_ID (u-anna only)
  app role       : $APP_ROLE (member of collab_app)
  WebSocket      : http://127.0.0.1:$worker_port (JWTs below; HS256 secret in $DEMO_DIR/jwt-secret, root only)

Connect as root with:

  psql -h $DEMO_DIR -p $pg_port -U postgres

Then try (the application's calls run as $APP_ROLE; :anna and :ben hold tokens):

  \\set SHOW_CONTEXT never
  LISTEN collab_events;          -- psql shows each event after the command that caused it
  SET ROLE $APP_ROLE;

  -- Dr. Anna Berg takes the diagnosis tab
  SELECT granted, token AS anna FROM collab.acquire('$DOC_ID/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'anna-laptop') \\gset
  \\echo granted=:granted token=:anna
  -- Dr. Ben Kaya asks for the same tab, then for the whole document: denied, told who holds it
  SELECT granted, holder_username, holder_resource_id, expires_at FROM collab.acquire('$DOC_ID/tab:diagnosis', 'u-ben', 'Dr. Ben Kaya', 'ben-tablet');
  SELECT granted, holder_username, holder_resource_id FROM collab.acquire('$DOC_ID', 'u-ben', 'Dr. Ben Kaya', 'ben-tablet');
  -- a sibling tab is free
  SELECT granted, token AS ben FROM collab.acquire('$DOC_ID/tab:procedure-notes', 'u-ben', 'Dr. Ben Kaya', 'ben-tablet') \\gset

  -- Anna saves with her token; Ben's token does not write her tab; no token writes nothing
  SELECT collab.save('$DOC_ID/tab:diagnosis', :anna, 'Acute appendicitis');
  SELECT collab.save('$DOC_ID/tab:diagnosis', :ben, 'Overwritten by Ben');
  UPDATE collab.resources SET content = 'sneaky' WHERE id = '$DOC_ID/tab:diagnosis';

  SELECT * FROM collab.locks;
  SELECT id, title, version, saved_by_name, saved_at FROM collab.resources ORDER BY id;

  -- Anna releases; Ben can take the tab now
  SELECT collab.release(:anna);
  SELECT granted, token AS ben2 FROM collab.acquire('$DOC_ID/tab:diagnosis', 'u-ben', 'Dr. Ben Kaya', 'ben-tablet') \\gset
  SELECT collab.save('$DOC_ID/tab:diagnosis', :ben2, 'Acute appendicitis, perforated', 1);

  -- every saved version is kept, hash-chained; Ben restores Anna's version 1
  SELECT version, saved_by_name, saved_at, size, path FROM collab.history('$DOC_ID/tab:diagnosis');
  SELECT collab.save('$DOC_ID/tab:diagnosis', :ben2, 'Acute appendicitis', NULL, 1);
  SELECT ok, revisions, head_hash FROM collab.verify_history('$DOC_ID/tab:diagnosis');

  RESET ROLE;                    -- the audit trail is for collab_admin members and superusers
  SELECT id, action, resource_id, username, holder_id, reason FROM collab.audit_log ORDER BY id;
EOF
	print_worker_info "$worker_port" "$DEMO_DIR/jwt-secret"
	echo
	echo "Stop and remove the demo with: make demo-stop"
}

case "${1:-}" in
start) start_demo ;;
stop) stop_demo ;;
*)
	echo "usage: demo.sh start|stop" >&2
	exit 2
	;;
esac
