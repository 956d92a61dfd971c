#!/bin/bash
# Installs what collab needs to build and test, on Debian 12, as root.
# Idempotent: packages already present are not touched, apt runs only when needed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
	postgresql-15 postgresql-server-dev-15 postgresql-contrib
	libwebsockets-dev libwebsockets-evlib-ev libev-dev libssl-dev
	gcc make perl openssl
	clang libclang-rt-14-dev
	nodejs
	chromium fonts-dejavu-core
	redis-server gnuplot-nox
)

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages (${missing[*]}); run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages for the integration, browser and benchmark clients.
if [ -f test/package.json ] && command -v npm >/dev/null; then
	if [ ! -d test/node_modules ] || [ test/package.json -nt test/node_modules/.package-lock.json ]; then
		echo "deps: installing npm packages in test/"
		(cd test && npm install --no-audit --no-fund --loglevel=error)
	fi
fi
echo "deps: ok"
