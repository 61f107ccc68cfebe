#!/usr/bin/env bash
# Installs what building and testing portcullis needs, only what is missing: Debian packages
# (build dependencies, clang and its sanitizer/libFuzzer runtime for the fuzz targets, the test
# peers nginx and Chromium, wrk for benchmarks) and the Python modules the end-to-end tests use.
# Then proves the compilers work: plain, ASan+UBSan (cc) and libFuzzer+ASan (clang) programs
# must compile, link and run. Idempotent.
#
# Assumed present, not installed (every developer and CI machine has them; see
# docs/testing.md): Go, Node.js with npm, a JDK with Maven, kubectl. Their check is the last
# step; PORTCULLIS_DEPS_TOOLS=0 leaves it out (scripts/fresh-root.sh, which runs no e2e test).
set -euo pipefail

# build, unit tests, the ASan+UBSan build (gcc: libasan/libubsan come with build-essential)
# and the fuzz targets (clang; libclang-rt-dev is its runtime: libclang_rt.fuzzer, .asan, ...,
# which clang only Recommends)
debs=(build-essential cmake pkg-config
      libcurl4-openssl-dev libyaml-dev libjansson-dev libwebsockets-dev libssl-dev
      libhiredis-dev zlib1g-dev libev-dev libcmocka-dev clang libclang-rt-dev)
# end-to-end tests and benchmarks: peers (redis-server: the session store), openssl (the harness makes the API server's keys),
# wrk, taskset (util-linux), pgrep (procps), images (buildah, debootstrap), the network
# namespaces of the Gateway API and sidecar tests (iproute2, iptables), set_escape_uri for
# the nginx configured as ingress-nginx renders auth-signin (libnginx-mod-http-set-misc)
debs+=(nginx-light chromium redis-server openssl wrk curl unzip ca-certificates procps
       util-linux buildah debootstrap iproute2 iptables libnginx-mod-http-set-misc)

# The Python modules the e2e harness imports. A Debian python3 (or none) gets them from Debian
# (pip refuses to install into it), with python3-venv for the Envoy venv of fetch-peers.sh;
# another python3 on PATH (pyenv, a venv) gets them with pip.
py_modules=(pytest yaml)
py_pip=(pytest pyyaml)
debian_python=0
if ! command -v python3 >/dev/null 2>&1 ||
   python3 -c 'import sys; sys.exit(sys.prefix != "/usr" or sys.prefix != sys.base_prefix)'; then
    debian_python=1
    debs+=(python3 python3-venv python3-pytest python3-yaml)
fi

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
               -o Acquire::Retries=3 "${missing[@]}" >/dev/null; then
            break
        fi
        [ "$attempt" = 3 ] && { echo "deps: apt-get failed 3 times" >&2; exit 1; }
        echo "deps: apt-get failed, retrying in $((attempt * 5)) s"
        sleep $((attempt * 5))
    done
else
    echo "deps: Debian packages present"
fi

if ! python3 -c "import $(IFS=,; echo "${py_modules[*]}")" 2>/dev/null; then
    if [ "$debian_python" = 1 ]; then
        echo "deps: python3 cannot import ${py_modules[*]} although their Debian packages are installed" >&2
        exit 1
    fi
    echo "deps: installing Python test modules"
    for attempt in 1 2 3; do
        python3 -m pip install -q "${py_pip[@]}" && break
        [ "$attempt" = 3 ] && { echo "deps: pip failed 3 times" >&2; exit 1; }
        sleep $((attempt * 5))
    done
fi

# What was installed must work: a package set that installs but cannot link a sanitizer or
# fuzzer program (clang without its runtime) fails here, not half-way through `make test`.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-deps.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/main.c" <<'EOF'
#include <stdio.h>
int main(void) { puts("ok"); return 0; }
EOF
cat >"$tmp/fuzz.c" <<'EOF'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { (void)data; (void)size; return 0; }
EOF
# probe NAME CMD...: runs CMD (compile, link or run) in $tmp; on failure names NAME.
probe() {
    local name=$1; shift
    if ! (cd "$tmp" && "$@") >"$tmp/out" 2>&1; then
        echo "deps: $name does not work after the install:" >&2
        echo "  \$ $*" >&2
        sed 's/^/  /' "$tmp/out" | tail -n 20 >&2
        return 1
    fi
}
probe "cc" cc -o plain main.c
probe "cc" ./plain
probe "cc -fsanitize=address,undefined (gcc's libasan/libubsan)" \
    cc -fsanitize=address,undefined -o asan main.c
probe "cc -fsanitize=address,undefined (gcc's libasan/libubsan)" ./asan
probe "clang -fsanitize=fuzzer,address,undefined (clang's runtime, libclang-rt-dev; resource dir $(clang -print-resource-dir 2>/dev/null))" \
    clang -fsanitize=fuzzer,address,undefined -o fuzz fuzz.c
probe "clang -fsanitize=fuzzer,address,undefined (clang's runtime, libclang-rt-dev)" ./fuzz -runs=1
echo "deps: cc, cc with ASan+UBSan and clang with libFuzzer+ASan+UBSan compile, link and run"

if [ "${PORTCULLIS_DEPS_TOOLS:-1}" = 1 ]; then
    # tool → what needs it; assumed present on developer and CI machines, not installed here
    absent=()
    for t in "kubectl:the e2e tests drive the API server with it" \
             "go:scripts/build-e2e-tools.sh builds kube-apiserver, bench builds oauth2-proxy" \
             "npm:scripts/fetch-peers.sh installs the node IdP and browser driver" \
             "node:the e2e IdP (oidc-provider) and browser driver" \
             "java:Keycloak" "mvn:scripts/fetch-peers.sh fetches Keycloak"; do
        command -v "${t%%:*}" >/dev/null 2>&1 || absent+=("${t%%:*} (${t#*:})")
    done
    if [ ${#absent[@]} -gt 0 ]; then
        echo "deps: not on PATH (expected on the machine, not installed by deps.sh; docs/testing.md):" >&2
        printf '  %s\n' "${absent[@]}" >&2
        exit 1
    fi
fi
