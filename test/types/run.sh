#!/usr/bin/env bash
# Type checks for types/collab.d.ts:
#   1. tsc --strict --noEmit on a sample client (test/types/tsconfig.json),
#      against socket.io-client's own types;
#   2. check-dts.mjs: the .d.ts against the events, fields and error codes
#      the C and SQL code actually define.
# Needs `npm install` in test/ (typescript is a devDependency there).
# Exits non-zero if either fails.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
testdir="$(dirname "$here")"
root="$(dirname "$testdir")"
status=0

echo "== tsc -p test/types/tsconfig.json"
if [ ! -f "$testdir/node_modules/typescript/package.json" ] ||
   [ ! -f "$testdir/node_modules/socket.io-client/package.json" ]; then
	echo "typescript or socket.io-client is missing: run 'npm install' in test/ first" >&2
	status=1
else
	# --no: use test/'s own typescript, never download a package named "tsc"
	if (cd "$testdir" && npx --no -- tsc --version && npx --no -- tsc -p types/tsconfig.json); then
		echo "tsc: ok"
	else
		echo "tsc: FAILED" >&2
		status=1
	fi
fi

echo "== node test/types/check-dts.mjs"
if ! node "$here/check-dts.mjs" "$root"; then
	status=1
fi

if [ "$status" -eq 0 ]; then echo "types: all checks passed"; else echo "types: FAILED" >&2; fi
exit "$status"
