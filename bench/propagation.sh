#!/usr/bin/env bash
# bench/propagation.sh [BUILD_DIR] [propagation_bench.py options] - policy changes at 10,000
# ProtectedHosts: until all are enforced at two authd replicas, one change → enforced at both
# (p50/p99), peak RSS, config bytes per host, check req/s with 10,000 hosts against one. See
# bench/propagation_bench.py. The Go peers come from scripts/build-e2e-tools.sh (cached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true
# shellcheck source=bench/lib/mint.sh
. "$ROOT/bench/lib/mint.sh"
for t in wrk taskset cc; do
  command -v "$t" >/dev/null || { echo "[bench/propagation] missing $t" >&2; exit 1; }
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# An older binary is not the source being measured: a failed build fails the benchmark.
cmake --build "$BUILD" --target portcullis-authd portcullis-controller authd_core pccommon -j2 \
  >"$WORK/build.log" 2>&1 || { echo "[bench/propagation] FAILED: build" >&2; tail -20 "$WORK/build.log" >&2; exit 1; }
build_mint_session "$ROOT" "$BUILD" "$WORK/mint_session" "$WORK/mint.log" ||
  { echo "[bench/propagation] FAILED: mint_session did not build" >&2; cat "$WORK/mint.log" >&2; exit 1; }
"$ROOT/scripts/build-e2e-tools.sh" >&2
python3 "$ROOT/bench/propagation_bench.py" "$BUILD" "$WORK/mint_session" "$@"
