#!/usr/bin/env bash
# What Envoy's own ext_authz client costs, by the protocol it speaks to the authorizer.
#
#   bench/ext_authz_client.sh
#
# One Envoy (--concurrency 1) alone on the server core, four listeners, each routing to the
# same nginx `return 200` app:
#   none   no ext_authz filter (the ceiling)
#   http1  ext_authz http_service over HTTP/1.1 (what Istio's envoyExtAuthzHttp renders)
#   http2  the same http_service over HTTP/2 (h2c prior knowledge)
#   grpc   ext_authz grpc_service (envoyExtAuthzGrpc) to an allow-all Go authorizer
# The authorizers (nginx `return 200` for HTTP, bench/grpc-authz for gRPC), the app and wrk
# share the client core, so every listener's throughput is bounded by Envoy alone, and
# Envoy's CPU per request (utime + stime from /proc) is the number that compares. The Envoy
# config is hand-written: this measures Envoy's client, not what istiod renders (bench/authd.sh
# has the istiod-driven chains).
#
# Environment: BENCH_DURATION (8s) BENCH_RUNS (3) BENCH_CONNECTIONS (64) BENCH_SERVER_CPU (1)
#   BENCH_CLIENT_CPU (0) PORTCULLIS_CACHE (~/.cache/portcullis) PORTCULLIS_ENVOY
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}"
DURATION="${BENCH_DURATION:-8s}"
RUNS="${BENCH_RUNS:-3}"
CONNS="${BENCH_CONNECTIONS:-64}"
SCPU="${BENCH_SERVER_CPU:-1}"
CCPU="${BENCH_CLIENT_CPU:-0}"
TARGETS=(none http1 http2 grpc)

log() { echo "ext_authz_client: $*" >&2; }

for t in wrk taskset curl python3 nginx go; do
  command -v "$t" >/dev/null || { log "missing $t"; exit 1; }
done
ENVOY="${PORTCULLIS_ENVOY:-}"
[[ -z "$ENVOY" && -f "$CACHE/peers.env" ]] && ENVOY="$(sed -n 's/^PORTCULLIS_ENVOY=//p' "$CACHE/peers.env")"
if [[ ! -x "$ENVOY" ]]; then
  PORTCULLIS_FETCH_SKIP="keycloak" bash "$ROOT/scripts/fetch-peers.sh" >&2
  ENVOY="$(sed -n 's/^PORTCULLIS_ENVOY=//p' "$CACHE/peers.env")"
fi

# shellcheck source=bench/lib/procs.sh
. "$ROOT/bench/lib/procs.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench-extauthz.XXXXXX")"
PIDS=()
trap 'stop_started; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
wait_http() { # NAME URL
  local name="$1" pidvar="PID_$1" end=$((SECONDS + 30))
  while ((SECONDS < end)); do
    kill -0 "${!pidvar}" 2>/dev/null || { log "$name exited:"; tail -20 "$WORK/$name.log" >&2; exit 1; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$2")" == 200 ]] && return 0
    sleep 0.2
  done
  log "$name: no 200 at $2 after 30 s"; tail -20 "$WORK/$name.log" >&2; exit 1
}

# The allow-all gRPC authorizer, built once per source into the cache.
src="$ROOT/bench/grpc-authz"
hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-8)
GRPC_AUTHZ="$CACHE/bin/grpc-authz-$hash"
if [[ ! -x "$GRPC_AUTHZ" ]]; then
  log "building bench/grpc-authz"
  mkdir -p "$CACHE/bin"
  for i in 1 2 3; do
    (cd "$src" && GOFLAGS="-mod=mod -buildvcs=false" go build -o "$GRPC_AUTHZ.tmp" .) && break
    [[ $i == 3 ]] && { log "go build failed 3 times"; exit 1; }
    sleep $((i * 5))
  done
  mv "$GRPC_AUTHZ.tmp" "$GRPC_AUTHZ"
fi

APP=$(free_port) AZ1=$(free_port) AZ2=$(free_port) AZG=$(free_port) ADMIN=$(free_port)
declare -A PORT
for t in "${TARGETS[@]}"; do PORT[$t]=$(free_port); done

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$APP; location / { return 200 "hello from the app\n"; } }
  server { listen 127.0.0.1:$AZ1; location / { return 200; } }
  server { listen 127.0.0.1:$AZ2 http2; http2_max_requests 1000000; location / { return 200; } }
}
EOF

# listener NAME FILTERS: one listener on PORT[NAME] with the given http_filters before the router.
listener() {
  cat <<EOF
  - name: $1
    address: {socket_address: {address: 127.0.0.1, port_value: ${PORT[$1]}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          route_config:
            virtual_hosts: [{name: all, domains: ["*"], routes: [{match: {prefix: "/"}, route: {cluster: app}}]}]
          http_filters:
$2
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
EOF
}
http_authz() { # CLUSTER
  cat <<EOF
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              http_service:
                server_uri: {uri: "http://authz", cluster: $1, timeout: 2s}
                path_prefix: /ext-authz
              allowed_headers: {patterns: [{exact: cookie, ignore_case: true}, {exact: authorization, ignore_case: true}]}
EOF
}
cluster() { # NAME PORT [h2]
  cat <<EOF
  - name: $1
    connect_timeout: 1s
    load_assignment: {cluster_name: $1, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $2}}}}]}]}
EOF
  [[ "${3:-}" == h2 ]] && cat <<EOF
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
EOF
  return 0
}
{
  echo "admin: {address: {socket_address: {address: 127.0.0.1, port_value: $ADMIN}}}"
  echo "static_resources:"
  echo "  listeners:"
  listener none ""
  listener http1 "$(http_authz authz_http1)"
  listener http2 "$(http_authz authz_http2)"
  listener grpc "$(cat <<EOF
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              grpc_service: {envoy_grpc: {cluster_name: authz_grpc}, timeout: 2s}
EOF
)"
  echo "  clusters:"
  cluster app "$APP"
  cluster authz_http1 "$AZ1"
  cluster authz_http2 "$AZ2" h2
  cluster authz_grpc "$AZG" h2
} >"$WORK/envoy.yaml"

start nginx "$CCPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
start grpc "$CCPU" "$GRPC_AUTHZ" "127.0.0.1:$AZG"
start envoy "$SCPU" "$ENVOY" -c "$WORK/envoy.yaml" --concurrency 1 --use-dynamic-base-id -l warn
for t in "${TARGETS[@]}"; do wait_http envoy "http://127.0.0.1:${PORT[$t]}/"; done

echo "Envoy's ext_authz client, $(date -u +%FT%TZ), $("$ENVOY" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1)"
echo "  method: Envoy alone on core $SCPU; app, authorizers and wrk on core $CCPU;" \
     "wrk -t1 -c$CONNS -d$DURATION, $RUNS rounds interleaved; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A RPS US
for ((r = 1; r <= RUNS; r++)); do
  for t in "${TARGETS[@]}"; do
    c0=$(awk '{print $14 + $15}' "/proc/$PID_envoy/stat")
    out=$(taskset -c "$CCPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:${PORT[$t]}/" 2>&1)
    c1=$(awk '{print $14 + $15}' "/proc/$PID_envoy/stat")
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    [[ -n "$bad" ]] && { log "$t: $bad non-2xx answers"; exit 1; }
    RPS[$t]+="$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out") "
    US[$t]+="$(python3 -c "import os,sys; print(round((int(sys.argv[2])-int(sys.argv[1]))*1e6/os.sysconf('SC_CLK_TCK')/int(sys.argv[3]),1))" "$c0" "$c1" "$n") "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-8s %16s %26s   %s\n' target "req/s (median)" "Envoy µs/request (median)" "rounds (µs)"
for t in "${TARGETS[@]}"; do
  printf '%-8s %16s %26s   %s\n' "$t" "$(median <<<"${RPS[$t]}")" "$(median <<<"${US[$t]}")" "${US[$t]}"
done
