#!/usr/bin/env bash
# Keeps deploy/ and the Helm chart in step with crds/: kustomize's load restrictor forbids
# `../crds/...` in a base, and Helm installs only the CRDs inside the chart's crds/, so both hold
# a byte-identical copy of the CRD. Edit crds/, then run this.
#
#   scripts/sync-deploy.sh           copy each crds/<name>.yaml to deploy/crd-<name>.yaml and
#                                    charts/portcullis/crds/<name>.yaml
#   scripts/sync-deploy.sh --check   exit 1 (with a diff) when a copy is stale
set -euo pipefail
cd "$(dirname "$0")/.."

stale=0
for src in crds/*.yaml; do
    name=$(basename "$src")
    for dst in "deploy/crd-$name" "charts/portcullis/crds/$name"; do
        if [ "${1:-}" = --check ]; then
            if ! cmp -s "$src" "$dst"; then
                echo "sync-deploy: $dst differs from $src; run scripts/sync-deploy.sh" >&2
                diff -u "$src" "$dst" >&2 || true
                stale=1
            fi
        else
            mkdir -p "$(dirname "$dst")"
            cp "$src" "$dst"
            echo "sync-deploy: $dst updated from $src"
        fi
    done
done
exit "$stale"
