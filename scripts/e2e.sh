#!/usr/bin/env bash
# End-to-end and integration tests against real peers (docs/design.md §6): fetches and builds the
# peers (cached under ${PORTCULLIS_CACHE:-~/.cache/portcullis}), then runs pytest on e2e/tests.
# PORTCULLIS_SKIP_E2E=1 skips them; extra arguments go to pytest (e.g. -k controller).
set -euo pipefail
build=${1:-build}
shift || true
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "${PORTCULLIS_SKIP_E2E:-0}" = 1 ]; then
    echo "e2e: skipped (PORTCULLIS_SKIP_E2E=1)"
    exit 0
fi
scripts/fetch-peers.sh
scripts/build-e2e-tools.sh

export PORTCULLIS_AUTHD="$root/$build/authd/portcullis-authd"
export PORTCULLIS_CONTROLLER="$root/$build/controller/portcullis-controller"
export PORTCULLIS_ROOT="$root"
exec python3 -m pytest -p no:cacheprovider -ra "$@" e2e/tests
