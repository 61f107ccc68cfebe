#!/usr/bin/env bash
# bench/controller.sh [BUILD_DIR] [controller_bench.py options] - portcullis-controller against a
# real kube-apiserver: 1000 ProtectedHosts at once → all AuthorizationPolicies; 100 single spec
# changes → policy updated (p50/p99); controller peak RSS. See bench/controller_bench.py.
# The etcd/kube-apiserver binary and the Istio CRDs come from scripts/build-e2e-tools.sh (cached).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true
if [[ -f "$BUILD/CMakeCache.txt" ]]; then
  # An older binary is not the source being measured: a failed build fails the benchmark.
  log=$(mktemp)
  cmake --build "$BUILD" --target portcullis-controller -j2 >"$log" 2>&1 || {
    echo "[bench/controller] FAILED: cmake --build of portcullis-controller failed:" >&2
    tail -20 "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
fi
exec python3 "$ROOT/bench/controller_bench.py" "$BUILD" "$@"
