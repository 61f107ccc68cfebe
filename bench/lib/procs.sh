# Sourced by the bench scripts: the processes a script starts, each stopped by its pid.
# The script sets WORK (its work dir) and PIDS=() before calling these.

# stop_started: every process start() ran, newest first: SIGTERM, up to 5 s, then SIGKILL.
stop_started() {
  local i pid n
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid="${PIDS[$i]}"
    kill -TERM "$pid" 2>/dev/null || continue
    for ((n = 0; n < 50; n++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start NAME CPU CMD...: runs CMD pinned to CPU, output in $WORK/NAME.log; sets PID_NAME.
start() {
  local name="$1" cpu="$2"; shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  printf -v "PID_$name" '%s' "$!"
}
