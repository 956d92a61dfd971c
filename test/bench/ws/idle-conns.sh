#!/bin/bash
# Many idle connections held by one worker: its memory per connection and a
# lock round trip with all of them open (idle-conns.mjs).  A throwaway
# cluster, destroyed on exit.  Needs root to raise the descriptor limit.
#
#   IDLE_N=50000 IDLE_PROCS=4 bash test/bench/ws/idle-conns.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$(pwd)
N=${IDLE_N:-50000}

die() { echo "idle-conns: $*" >&2; exit 1; }

# the worker and the clients each need one descriptor per connection; the
# worker inherits this shell's limit (raising the hard limit needs
# CAP_SYS_RESOURCE, which a container may not grant)
want=$((N + 1000))
ulimit -Hn "$want" 2>/dev/null || true
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
	echo "idle-conns: the descriptor limit is $hard: measuring $((hard - 1000)) connections instead of $N" >&2
	N=$((hard - 1000))
	want=$hard
fi
ulimit -n "$want"

WORK=$(mktemp -d /tmp/collab-idle.XXXXXX)
chmod 755 "$WORK"
CLUSTER=$WORK/cluster
trap 'bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

WS_PORT=$(bash "$ROOT/scripts/cluster.sh" free-port)
SECRET="idle-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
# cluster.sh keeps this shell's descriptor limit for the server (setpriv)
bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" \
	"collab.database = 'postgres'" "collab.port = $WS_PORT" "collab.listen_addresses = '127.0.0.1'" \
	"collab.jwt_secret = '$SECRET'" "collab.rate_limit = 0" \
	"collab.max_connections = $((N + 1000))" >/dev/null || die "could not start the cluster"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres PGDATABASE=postgres
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION collab" \
	-c "SELECT collab.create_document('bench', 'idle', ARRAY['lock'])" \
	-c "SELECT collab.grant('document:bench', '*', 'edit')" >/dev/null
bash "$ROOT/scripts/cluster.sh" wait-port "$WS_PORT" || true
wpid=$(psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'")
[ -n "$wpid" ] || die "the collab worker is not running"
echo "idle-conns: worker $wpid, descriptor limit $(awk '/^Max open files/ { print $4 }' "/proc/$wpid/limits")"
COLLAB_WS_URL="http://127.0.0.1:$WS_PORT" COLLAB_JWT_SECRET="$SECRET" WORKER_PID=$wpid IDLE_N=$N \
	node --max-old-space-size=4096 "$ROOT/test/bench/ws/idle-conns.mjs"
echo "registered connections: $(psql -X -At -c 'SELECT count(*) FROM collab.ws_connections')"
grep -E "ERROR|WARNING|refuses" "$CLUSTER/server.log" | tail -5 || true
