#!/usr/bin/env bash
# Builds the Go peers of the end-to-end tests (docs/design.md §6) into the cache,
# keyed by version, and copies the Istio CRDs beside them:
#
#   $PORTCULLIS_CACHE/bin/kubeserver-<k8s version>-<src hash>        etcd + kube-apiserver
#   $PORTCULLIS_CACHE/bin/istio-validate-<istio version>-<src hash>  offline Istio validation
#   $PORTCULLIS_CACHE/istio/<api version>/crds.yaml         Istio CRDs
#
# PORTCULLIS_CACHE defaults to ~/.cache/portcullis. A binary already in the
# cache is not rebuilt, so running this again is cheap. With --print-env it
# prints the resulting paths as shell assignments (for the test harness).
# A cold kubeserver build takes 7 minutes on two idle cores (15 when they are
# busy); the modules it downloads are 84 MB (450 MB unpacked).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
bindir=$cache/bin
# -mod=mod lets go fill in go.sum lines for a newer toolchain; -buildvcs=false
# because the module directories sit inside the portcullis checkout.
export GOFLAGS="-mod=mod -buildvcs=false"

log() { echo "build-e2e-tools: $*" >&2; }

# retry CMD...: up to three attempts, for steps that touch the network.
retry() {
    local i
    for i in 1 2 3; do
        if "$@"; then
            return 0
        fi
        log "attempt $i of 3 failed: $*"
        [ "$i" -lt 3 ] && sleep $((i * 5))
    done
    return 1
}

# srchash DIR [EXTRA]: a short hash of DIR's go.mod, go.sum and Go files
# (and EXTRA, e.g. link flags), so an edited tool is rebuilt, not reused.
srchash() {
    { cat "$1/go.mod" "$1/go.sum" "$1"/*.go; echo "${2:-}"; } | sha256sum | cut -c1-8
}

# modversion DIR MODULE: the version of MODULE that DIR's go.mod selects.
modversion() {
    (cd "$1" && go list -m -f '{{.Version}}' "$2")
}

# build NAME DIR OUT [LDFLAGS]: downloads DIR's modules and builds its main
# into OUT.
build() {
    local name=$1 dir=$2 out=$3 ldflags=${4:-} start tmp
    if [ -x "$out" ]; then
        log "$name: cached $out"
        return 0
    fi
    start=$(date +%s)
    log "$name: downloading modules"
    (cd "$dir" && retry go mod download)
    log "$name: building (slow on a cold cache)"
    tmp="$out.tmp.$$"
    (cd "$dir" && go build -trimpath -ldflags="-s -w $ldflags" -o "$tmp" .)
    mv -f "$tmp" "$out"
    log "$name: built $out in $(($(date +%s) - start))s ($(du -h "$out" | cut -f1))"
}

mkdir -p "$bindir"

kdir=$root/e2e/k8s
kver=$(modversion "$kdir" k8s.io/kubernetes)
# Stamp the release as Kubernetes' own build does, so /version (and clients
# that check it) see v1.x.y rather than v0.0.0-master.
kminor=${kver#v1.}
kminor=${kminor%%.*}
vpkg=k8s.io/component-base/version
kflags="-X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$kminor -X $vpkg.gitTreeState=clean"
kubeserver=$bindir/kubeserver-$kver-$(srchash "$kdir" "$kflags")
build kubeserver "$kdir" "$kubeserver" "$kflags"

idir=$root/e2e/istio-validate
iver=$(modversion "$idir" istio.io/istio)
istio_validate=$bindir/istio-validate-$iver-$(srchash "$idir")
build istio-validate "$idir" "$istio_validate"

# The CRDs come from the istio.io/api version that istio-validate links, so
# the apiserver and the validator agree on the schema.
aver=$(modversion "$idir" istio.io/api)
crds=$cache/istio/$aver/crds.yaml
if [ -s "$crds" ]; then
    log "istio crds: cached $crds"
else
    log "istio crds: downloading istio.io/api@$aver"
    adir=$(cd "$idir" && retry go mod download -json "istio.io/api@$aver" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$(dirname "$crds")"
    cp "$adir/kubernetes/customresourcedefinitions.gen.yaml" "$crds.tmp.$$"
    mv -f "$crds.tmp.$$" "$crds"
    log "istio crds: copied to $crds"
fi

if [ "${1:-}" = "--print-env" ]; then
    printf 'PORTCULLIS_KUBESERVER=%s\n' "$kubeserver"
    printf 'PORTCULLIS_ISTIO_VALIDATE=%s\n' "$istio_validate"
    printf 'PORTCULLIS_ISTIO_CRDS=%s\n' "$crds"
fi
