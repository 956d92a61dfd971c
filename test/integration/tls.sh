#!/bin/bash
# wss:// end to end: a self-signed certificate for localhost/127.0.0.1, a
# throwaway cluster of its own whose worker serves TLS with it
# (collab.ssl_cert_file and collab.ssl_key_file need a server start, so the
# main test cluster is left alone), then integration/tls.test.mjs.
#
# Environment: COLLAB_TEST_WORK (scratch directory; a temporary one when
# unset) and COLLAB_JWT_SECRET (a random one when unset).
#
#   bash test/integration/tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_DIR=$(pwd)
ROOT=$(cd .. && pwd)

if [ ! -d node_modules/socket.io-client ] || [ ! -d node_modules/ws ] || [ ! -d node_modules/pg ]; then
	npm install --no-audit --no-fund >/dev/null
fi

own_work=
if [ -z "${COLLAB_TEST_WORK:-}" ]; then
	own_work=1
	COLLAB_TEST_WORK=$(mktemp -d /tmp/collab-tls-test.XXXXXX)
	chmod 755 "$COLLAB_TEST_WORK"
fi
export COLLAB_TEST_WORK
export COLLAB_JWT_SECRET=${COLLAB_JWT_SECRET:-"tls-test-secret-$(openssl rand -hex 16)"}

TLS="$COLLAB_TEST_WORK/tls"
CLUSTER="$COLLAB_TEST_WORK/tls-cluster"

cleanup() {
	status=$?
	if [ $status -ne 0 ] && [ -f "$CLUSTER/server.log" ]; then
		echo "--- tls cluster server log (last 60 lines)"
		tail -60 "$CLUSTER/server.log" || true
	fi
	if [ "${KEEP_TEST_WORK:-}" = "" ]; then
		bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
		rm -rf "$TLS"
		if [ -n "$own_work" ]; then rm -rf "$COLLAB_TEST_WORK"; fi
	else
		echo "kept $TLS and $CLUSTER (remove the cluster with scripts/cluster.sh destroy $CLUSTER)"
	fi
	exit $status
}
trap cleanup EXIT

# Certificate and key: the server reads both as the postgres user; the key
# is readable by it alone.
rm -rf "$TLS"
mkdir -p "$TLS"
chmod 755 "$TLS"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$TLS/server.key" -out "$TLS/server.crt" -days 2 \
	-subj "/CN=localhost" \
	-addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
	-addext "basicConstraints=critical,CA:FALSE" \
	-addext "keyUsage=critical,digitalSignature" \
	-addext "extendedKeyUsage=serverAuth" 2>"$TLS/openssl.log" ||
	{ cat "$TLS/openssl.log" >&2; exit 1; }
chmod 644 "$TLS/server.crt"
chown postgres: "$TLS/server.key"
chmod 600 "$TLS/server.key"

WSPORT=$(bash "$ROOT/scripts/cluster.sh" free-port)
bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" \
	"collab.port = $WSPORT" \
	"collab.listen_addresses = '127.0.0.1'" \
	"collab.jwt_secret = '$COLLAB_JWT_SECRET'" \
	"collab.ssl_cert_file = '$TLS/server.crt'" \
	"collab.ssl_key_file = '$TLS/server.key'" >/dev/null
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres PGDATABASE=postgres
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE EXTENSION IF NOT EXISTS collab" >/dev/null

# The worker waits for the extension, then listens.
listening=
for _ in $(seq 1 100); do
	if grep -Eq 'collab worker [0-9]+ listening' "$CLUSTER/server.log"; then listening=1; break; fi
	# a TLS file the worker cannot use: lws prints the cause, the worker exits
	if grep -q 'collab worker could not listen' "$CLUSTER/server.log"; then
		echo "the collab worker could not start its TLS listener" >&2
		exit 1
	fi
	sleep 0.1
done
if [ -z "$listening" ]; then
	echo "the collab worker did not report 'collab worker 1 listening' within 10 s" >&2
	exit 1
fi
echo "tls cluster: $CLUSTER (pg port $PGPORT), worker on https://127.0.0.1:$WSPORT"

export COLLAB_WSS_URL="https://127.0.0.1:$WSPORT"
export COLLAB_TLS_CA="$TLS/server.crt"
# helpers.mjs speaks to COLLAB_WS_URL: the same TLS worker here
export COLLAB_WS_URL="$COLLAB_WSS_URL"
unset NODE_TLS_REJECT_UNAUTHORIZED NODE_EXTRA_CA_CERTS
node --test --test-reporter=spec integration/tls.test.mjs
