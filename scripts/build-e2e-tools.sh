#!/usr/bin/env bash
# Builds the Go peers of the end-to-end tests (docs/design.md §6) into the cache,
# keyed by version, and copies the Istio CRDs beside them:
#
#   $PORTCULLIS_CACHE/bin/helm-<helm version>-<src hash>              the helm CLI (chart tests)
#   $PORTCULLIS_CACHE/bin/monitoring-check-<prometheus version>-<hash> the chart's alerts, dashboard
#   $PORTCULLIS_CACHE/bin/kubeserver-<k8s version>-<src hash>        etcd + kube-apiserver
#   $PORTCULLIS_CACHE/bin/istio-validate-<istio version>-<src hash>  offline Istio validation
#   $PORTCULLIS_CACHE/bin/istiod-<istio version>-<src hash>          pilot-discovery
#   $PORTCULLIS_CACHE/istio/<api version>/crds.yaml         Istio CRDs
#   $PORTCULLIS_CACHE/gateway-api/<version>/crds.yaml       Gateway API CRDs (standard)
#
# PORTCULLIS_CACHE defaults to ~/.cache/portcullis. A binary already in the
# cache is not rebuilt, so running this again is cheap. With --print-env it
# prints the resulting paths as shell assignments (for the test harness).
# A cold kubeserver build takes 7 minutes on two idle cores (15 when they are
# busy); the modules it downloads are 84 MB (450 MB unpacked). A cold istiod
# (pilot-discovery) build takes 10-11 minutes and 15 CPU-minutes on two cores
# with about 2.3 GB peak RSS; a warm rebuild about 20 s.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
bindir=$cache/bin
# -mod=mod lets go fill in go.sum lines for a newer toolchain; -buildvcs=false
# because the module directories sit inside the portcullis checkout.
export GOFLAGS="-mod=mod -buildvcs=false"

log() { echo "build-e2e-tools: $*" >&2; }
# shellcheck source=lib/progress.sh
. "$root/scripts/lib/progress.sh"

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

# build NAME DIR OUT [LDFLAGS] [PKG]: downloads DIR's modules and builds PKG
# (default: DIR's main) into OUT, showing the bytes downloaded and the packages
# compiled of those not in Go's build cache.
build() {
    local name=$1 dir=$2 out=$3 ldflags=${4:-} pkg=${5:-.} start tmp dl base total vlog
    if [ -x "$out" ]; then
        log "$name: cached $out"
        return 0
    fi
    start=$(date +%s)
    log "$name: downloading modules"
    dl=$(go env GOMODCACHE)/cache/download
    base=$(du -sb "$dl" 2>/dev/null | cut -f1)
    progress_run "build-e2e-tools: $name: downloading" "progress_bytes $dl ${base:-0} downloaded" \
        retry_in "$dir" go mod download
    total=$(cd "$dir" && go list -deps -trimpath -f '{{if .Stale}}x{{end}}' "$pkg" | grep -c x || true)
    log "$name: building, $total packages to compile (slow on a cold cache)"
    tmp="$out.tmp.$$"
    vlog="$out.build.$$.log"
    if ! progress_run "build-e2e-tools: $name: building" "progress_lines $vlog $total" \
        gobuild "$dir" "$tmp" "$ldflags" "$pkg" "$vlog"; then
        tail -40 "$vlog" >&2
        rm -f "$vlog" "$tmp"
        return 1
    fi
    rm -f "$vlog"
    mv -f "$tmp" "$out"
    log "$name: built $out in $(($(date +%s) - start))s ($(du -h "$out" | cut -f1))"
}

# retry_in DIR CMD...: retry CMD in DIR.
retry_in() {
    (cd "$1" && shift && retry "$@")
}

# gobuild DIR OUT LDFLAGS PKG LOG: go build -v, one line per compiled package into LOG.
gobuild() {
    (cd "$1" && go build -v -trimpath -ldflags="-s -w $3" -o "$2" "$4" 2>"$5")
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

# helm, built from its Go module for the chart tests; the version flags as helm's
# own Makefile sets them, so `helm version` and the default Capabilities match.
hdir=$root/e2e/helm
hver=$(modversion "$hdir" helm.sh/helm/v3)
hk8s=$(modversion "$hdir" k8s.io/client-go)
hk8s=${hk8s#v0.}
hpkg=helm.sh/helm/v3
hflags="-X $hpkg/internal/version.version=$hver -X $hpkg/internal/version.gitTreeState=clean"
for v in pkg/lint/rules pkg/chartutil; do
    hflags="$hflags -X $hpkg/$v.k8sVersionMajor=1 -X $hpkg/$v.k8sVersionMinor=${hk8s%%.*}"
done
helm=$bindir/helm-$hver-$(srchash "$hdir" "$hflags")
build helm "$hdir" "$helm" "$hflags" "$hpkg/cmd/helm"
mdir=$root/e2e/monitoring-check
monitoring_check=$bindir/monitoring-check-$(modversion "$mdir" github.com/prometheus/prometheus)-$(srchash "$mdir")
build monitoring-check "$mdir" "$monitoring_check"

idir=$root/e2e/istio-validate
iver=$(modversion "$idir" istio.io/istio)
istio_validate=$bindir/istio-validate-$iver-$(srchash "$idir")
build istio-validate "$idir" "$istio_validate"

# istiod is pilot-discovery from the same istio.io/istio version as
# istio-validate: what the tests validate offline is what they run.
sdir=$root/e2e/istiod
sver=$(modversion "$sdir" istio.io/istio)
if [ "$sver" != "$iver" ]; then
    log "istiod: e2e/istiod links istio.io/istio $sver, e2e/istio-validate $iver: make them equal"
    exit 1
fi
istiod=$bindir/istiod-$sver-$(srchash "$sdir")
build istiod "$sdir" "$istiod"

# copycrds NAME MODULE@VERSION OUT SUBDIR...: concatenates the YAML files under
# each SUBDIR glob of the downloaded module into OUT (once; cached by version).
copycrds() {
    local name=$1 modv=$2 out=$3 mdir sub f
    shift 3
    if [ -s "$out" ]; then
        log "$name: cached $out"
        return 0
    fi
    log "$name: downloading $modv"
    mdir=$(cd "$idir" && retry go mod download -json "$modv" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    mkdir -p "$(dirname "$out")"
    : >"$out.tmp.$$"
    for sub in "$@"; do
        for f in "$mdir"/$sub; do
            # CRDs only: the channel also ships a ValidatingAdmissionPolicy.
            grep -q '^kind: CustomResourceDefinition' "$f" || continue
            printf -- '---\n' >>"$out.tmp.$$"
            cat "$f" >>"$out.tmp.$$"
        done
    done
    mv -f "$out.tmp.$$" "$out"
    log "$name: copied to $out"
}

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

# Gateway API CRDs (standard channel) at the version istiod links.
gver=$(modversion "$sdir" sigs.k8s.io/gateway-api)
gwcrds=$cache/gateway-api/$gver/crds.yaml
copycrds "gateway-api crds" "sigs.k8s.io/gateway-api@$gver" "$gwcrds" \
    'config/crd/standard/gateway.networking.k8s.io_*.yaml'

if [ "${1:-}" = "--print-env" ]; then
    printf 'PORTCULLIS_HELM=%s\n' "$helm"
    printf 'PORTCULLIS_MONITORING_CHECK=%s\n' "$monitoring_check"
    printf 'PORTCULLIS_KUBESERVER=%s\n' "$kubeserver"
    printf 'PORTCULLIS_ISTIO_VALIDATE=%s\n' "$istio_validate"
    printf 'PORTCULLIS_ISTIO_CRDS=%s\n' "$crds"
    printf 'PORTCULLIS_ISTIOD=%s\n' "$istiod"
    printf 'PORTCULLIS_GATEWAY_API_CRDS=%s\n' "$gwcrds"
fi
