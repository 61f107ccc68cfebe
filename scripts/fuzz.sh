#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and either replays their corpora (replay) or fuzzes
# each for a number of seconds (run). Corpora live in */fuzz/corpus/<target>/ (or <target> without its fuzz_ prefix).
set -euo pipefail
mode=${1:?usage: fuzz.sh replay|run BUILD_DIR [SECONDS]}
build=${2:?build dir}
seconds=${3:-60}
cd "$(dirname "$0")/.."

CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DPORTCULLIS_FUZZ=ON \
    -DPORTCULLIS_TESTS=OFF >/dev/null
cmake --build "$build" -j"${JOBS:-2}"

status=0
count=0
for bin in $(find "$build" -type f -name 'fuzz_*' -perm -u+x | sort); do
    name=$(basename "$bin")
    short=${name#fuzz_}
    corpus=$(find . -path "./build*" -prune -o -type d \( -path "*/fuzz/corpus/$name" -o \
             -path "*/fuzz/corpus/$short" \) -print | head -n1)
    if [ -z "$corpus" ]; then
        echo "fuzz: $name has no corpus directory (*/fuzz/corpus/$name)" >&2
        status=1
        continue
    fi
    count=$((count + 1))
    if [ "$mode" = replay ]; then
        if ! "$bin" $(find "$corpus" -type f | sort) >"$build/$name.log" 2>&1; then
            echo "fuzz: $name FAILED on its corpus"; tail -n 40 "$build/$name.log"; status=1
        else
            echo "fuzz: $name replayed $(find "$corpus" -type f | wc -l) inputs"
        fi
    else
        work="$build/corpus-$name"
        mkdir -p "$work"
        "$bin" -max_total_time="$seconds" -print_final_stats=1 "$work" "$corpus" 2>&1 |
            grep -E 'stat::number_of_executed_units|ERROR|SUMMARY' || true
    fi
done
echo "fuzz: $count targets, status $status"
exit $status
