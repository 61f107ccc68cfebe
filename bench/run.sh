#!/usr/bin/env bash
# bench/run.sh [BUILD_DIR] - every benchmark (`make bench`). Numbers are printed, nothing is
# asserted; the exit status is non-zero when a benchmark could not measure everything.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
rc=0
for b in authd authd_memory controller propagation; do
  echo "=== bench/$b.sh $BUILD"
  "$ROOT/bench/$b.sh" "$BUILD" || { echo "=== bench/$b.sh: exit $?"; rc=1; }
done
exit $rc
