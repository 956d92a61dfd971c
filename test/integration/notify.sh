#!/bin/bash
# Runs the NOTIFY delivery test with Node's test runner against the test cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
exec node --test --test-reporter=spec integration/notify.test.mjs
