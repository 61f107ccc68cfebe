#!/usr/bin/env bash
# Keeps deploy/ and the Helm chart in step with crds/: kustomize's load restrictor forbids
# `../crds/...` in a base, and Helm installs only the CRDs inside the chart's crds/, so both hold
# a byte-identical copy of the CRD. Edit crds/, then run this.
#
#   scripts/sync-deploy.sh           copy crds/protectedhost.yaml to deploy/ and the chart
#   scripts/sync-deploy.sh --check   exit 1 (with a diff) when a copy is stale
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds/protectedhost.yaml
copies=(deploy/crd-protectedhost.yaml charts/portcullis/crds/protectedhost.yaml)

if [ "${1:-}" = --check ]; then
    stale=0
    for dst in "${copies[@]}"; do
        if ! cmp -s "$src" "$dst"; then
            echo "sync-deploy: $dst differs from $src; run scripts/sync-deploy.sh" >&2
            diff -u "$src" "$dst" >&2 || true
            stale=1
        fi
    done
    exit "$stale"
fi
for dst in "${copies[@]}"; do
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    echo "sync-deploy: $dst updated from $src"
done
