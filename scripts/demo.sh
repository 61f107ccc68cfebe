#!/usr/bin/env bash
# make demo: fetches/builds the local peers (cached) and runs e2e/demo.py.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
echo "[demo] fetching test peers (cached after the first run)"
scripts/fetch-peers.sh
echo "[demo] building kube-apiserver, istio-validate and istiod (cached after the first run)"
scripts/build-e2e-tools.sh
export PORTCULLIS_AUTHD="$PWD/$build/authd/portcullis-authd"
export PORTCULLIS_CONTROLLER="$PWD/$build/controller/portcullis-controller"
exec python3 -m e2e.demo
