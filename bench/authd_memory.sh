#!/usr/bin/env bash
# bench/authd_memory.sh [BUILD_DIR] [--counts 1,2000,10000] - authd's peak RSS in
# --watch-config mode with 1, 2,000 and 10,000 rendered hosts, against a real kube-apiserver
# (bench/authd_memory.py). The Go peers come from scripts/build-e2e-tools.sh (cached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# An older binary is not the source being measured: a failed build fails the benchmark.
cmake --build "$BUILD" --target portcullis-authd portcullis-controller -j2 >"$WORK/build.log" 2>&1 ||
  { echo "[bench/authd_memory] FAILED: build" >&2; tail -20 "$WORK/build.log" >&2; exit 1; }
"$ROOT/scripts/build-e2e-tools.sh" >&2
python3 "$ROOT/bench/authd_memory.py" "$BUILD" "$@"
