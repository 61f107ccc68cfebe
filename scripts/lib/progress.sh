# shellcheck shell=bash
# Long steps say they are alive: sourced by the scripts that build and fetch the test peers.
#
#   progress_run LABEL PROBE CMD...
#
# runs CMD (its exit status is progress_run's) and, while it runs, reports LABEL, the time
# elapsed and what PROBE prints (a command or function that prints a short text such as
# "412/965 packages" or "38 MB", or "" for none). On a terminal (stderr is a TTY) that is one
# line updated every second and cleared when CMD ends; elsewhere (CI, logs) one line every
# $PORTCULLIS_PROGRESS_INTERVAL seconds (30). PORTCULLIS_PROGRESS=tty or lines forces the mode.
#
# Probes for the usual cases:
#   progress_lines FILE [TOTAL]   lines in FILE (of TOTAL): `go build -v` prints one per package
#   progress_bytes PATH [BASE [WORDS...]]  bytes under PATH (less BASE, e.g. the size before a
#                                 download), then WORDS ("of about 150 MB")

# progress_elapsed SECONDS: 42s, 3m05s, 1h02m.
progress_elapsed() {
    local s=$1
    if ((s < 60)); then
        printf '%ds' "$s"
    elif ((s < 3600)); then
        printf '%dm%02ds' $((s / 60)) $((s % 60))
    else
        printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60))
    fi
}

# progress_size BYTES: 512 B, 3.2 MB, 1.4 GB.
progress_size() {
    awk -v b="$1" 'BEGIN {
        if (b < 1000000) printf "%d kB", b / 1000;
        else if (b < 1000000000) printf "%.1f MB", b / 1e6;
        else printf "%.2f GB", b / 1e9 }'
}

progress_lines() {
    local n=0
    [ -f "$1" ] && n=$(wc -l <"$1")
    if [ -n "${2:-}" ]; then
        printf '%d/%d packages' "$n" "$2"
    else
        printf '%d packages' "$n"
    fi
}

progress_bytes() {
    local b
    b=$(du -sb "$1" 2>/dev/null | cut -f1)
    b=$((${b:-0} - ${2:-0}))
    ((b < 0)) && b=0
    shift 2 2>/dev/null || shift
    printf '%s%s' "$(progress_size "$b")" "${*:+ $*}"
}

# The reporting loop, run in the background by progress_run.
_progress_tick() {
    local label=$1 probe=$2 tty=$3 every=$4 start=$SECONDS now text next=$4
    while sleep 1; do
        now=$((SECONDS - start))
        if [ "$tty" = 1 ] || ((now >= next)); then
            text=""
            [ -n "$probe" ] && text=$(eval "$probe" 2>/dev/null || true)
            if [ "$tty" = 1 ]; then
                printf '\r\033[K%s: %s%s' "$label" "$(progress_elapsed "$now")" \
                    "${text:+, $text}" >&2
            else
                printf '%s: still running, %s%s\n' "$label" "$(progress_elapsed "$now")" \
                    "${text:+, $text}" >&2
                next=$((next + every))
            fi
        fi
    done
}

progress_run() {
    local label=$1 probe=$2 tty=0 ticker rc=0
    shift 2
    case ${PORTCULLIS_PROGRESS:-} in
    tty) tty=1 ;;
    lines) tty=0 ;;
    *) [ -t 2 ] && tty=1 ;;
    esac
    _progress_tick "$label" "$probe" "$tty" "${PORTCULLIS_PROGRESS_INTERVAL:-30}" &
    ticker=$!
    "$@" || rc=$?
    kill "$ticker" 2>/dev/null || true
    wait "$ticker" 2>/dev/null || true
    [ "$tty" = 1 ] && printf '\r\033[K' >&2
    return "$rc"
}
