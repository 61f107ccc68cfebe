#!/usr/bin/env bash
# Installs what building and testing portcullis needs, only what is missing: Debian packages
# (build dependencies, clang for the fuzz targets, the test peers nginx and Chromium, wrk for
# benchmarks) and the Python modules the end-to-end tests use. Idempotent.
set -euo pipefail

debs=(build-essential cmake pkg-config
      libcurl4-openssl-dev libyaml-dev libjansson-dev libwebsockets-dev libssl-dev
      libcmocka-dev clang
      nginx-light chromium wrk curl unzip ca-certificates procps buildah debootstrap)

missing=()
for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" = 0 ] || sudo_cmd=sudo
    for attempt in 1 2 3; do
        if $sudo_cmd apt-get update -qq && \
           DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends \
               "${missing[@]}" >/dev/null; then
            break
        fi
        [ "$attempt" = 3 ] && { echo "deps: apt-get failed 3 times" >&2; exit 1; }
        echo "deps: apt-get failed, retrying in $((attempt * 5)) s"
        sleep $((attempt * 5))
    done
else
    echo "deps: Debian packages present"
fi

if ! command -v kubectl >/dev/null 2>&1; then
    echo "deps: kubectl is not on PATH; the end-to-end tests drive the API server with it" >&2
    exit 1
fi

if ! python3 -c 'import pytest, requests, yaml' 2>/dev/null; then
    echo "deps: installing Python test modules"
    for attempt in 1 2 3; do
        python3 -m pip install -q pytest requests pyyaml && break
        [ "$attempt" = 3 ] && { echo "deps: pip failed 3 times" >&2; exit 1; }
        sleep $((attempt * 5))
    done
fi
