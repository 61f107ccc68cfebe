#!/usr/bin/env bash
# Keeps deploy/ in step with crds/: kustomize's load restrictor forbids `../crds/...` in a
# base, so deploy/ holds a byte-identical copy of the CRD. Edit crds/, then run this.
#
#   scripts/sync-deploy.sh           copy crds/protectedhost.yaml to deploy/
#   scripts/sync-deploy.sh --check   exit 1 (with a diff) when the copy is stale
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds/protectedhost.yaml
dst=deploy/crd-protectedhost.yaml

if [ "${1:-}" = --check ]; then
    if ! cmp -s "$src" "$dst"; then
        echo "sync-deploy: $dst differs from $src; run scripts/sync-deploy.sh" >&2
        diff -u "$src" "$dst" >&2 || true
        exit 1
    fi
    exit 0
fi
cp "$src" "$dst"
echo "sync-deploy: $dst updated from $src"
