#!/usr/bin/env bash
# scripts/fresh-root.sh - proves the install steps on a machine that has nothing installed
# (`make fresh-root`, part of `make test`; docs/testing.md). A minimal Debian root
# (debootstrap --variant=minbase), a fresh copy of it for every run, the git-tracked tree
# copied into /src, chrooted; inside, scripts/deps.sh, then `make check` (unit tests plain and
# under ASan+UBSan) and `make fuzz-replay` must pass. A package that this machine happens to
# have but deps.sh does not install fails here.
#
# Cached under $PORTCULLIS_CACHE/fresh-root (PORTCULLIS_CACHE defaults to ~/.cache/portcullis):
#   SUITE-ARCH-minbase-MONTH-KEY.tar  the root as debootstrap left it, before deps.sh (KEY: a
#                                     hash of suite, arch, mirror); rebuilt each month
#   debs/              the .debs apt fetched inside (bind-mounted as /var/cache/apt/archives)
#   debootstrap-debs/  debootstrap's own .debs
#   last-run.log       everything the last run printed inside the root
#
# Environment:
#   PORTCULLIS_SKIP_FRESH_ROOT=1      skip the check (quick local runs of `make test`)
#   PORTCULLIS_DEBIAN_MIRROR          default: this machine's apt source for SUITE
#   PORTCULLIS_DEBIAN_SECURITY_MIRROR default: this machine's apt source for SUITE-security
#   PORTCULLIS_FRESH_ROOT_SUITE       default: bookworm
#   PORTCULLIS_FRESH_ROOT_TIMEOUT     seconds for the run inside the root (default 1800)
#   PORTCULLIS_FRESH_ROOT_KEEP=1      keep the used root (path printed) to look into
#   JOBS                              parallel build jobs inside (default 2)
set -euo pipefail

if [ "${PORTCULLIS_SKIP_FRESH_ROOT:-0}" = 1 ]; then
    echo "fresh-root: skipped (PORTCULLIS_SKIP_FRESH_ROOT=1)"
    exit 0
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
DIR=$CACHE/fresh-root
SUITE=${PORTCULLIS_FRESH_ROOT_SUITE:-bookworm}
TIMEOUT=${PORTCULLIS_FRESH_ROOT_TIMEOUT:-1800}
JOBS=${JOBS:-2}

log() { echo "fresh-root: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then
    # debootstrap, mount and chroot need root.
    command -v sudo >/dev/null || die "needs root (debootstrap, mount, chroot)"
    exec sudo env PORTCULLIS_CACHE="$CACHE" PORTCULLIS_FRESH_ROOT_SUITE="$SUITE" \
        PORTCULLIS_FRESH_ROOT_TIMEOUT="$TIMEOUT" JOBS="$JOBS" \
        PORTCULLIS_DEBIAN_MIRROR="${PORTCULLIS_DEBIAN_MIRROR:-}" \
        PORTCULLIS_DEBIAN_SECURITY_MIRROR="${PORTCULLIS_DEBIAN_SECURITY_MIRROR:-}" \
        PORTCULLIS_FRESH_ROOT_KEEP="${PORTCULLIS_FRESH_ROOT_KEEP:-0}" bash "$0" "$@"
fi
for t in debootstrap unshare chroot git tar flock timeout; do
    command -v "$t" >/dev/null || die "$t not found (scripts/deps.sh installs debootstrap)"
done
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 || die "$ROOT is not a git checkout"

# apt_source SUITE: the URI of this machine's apt source for SUITE (either sources format).
apt_source() {
    apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
        awk -v s="$1" '$1 == s { print $2; exit }'
}
MIRROR=${PORTCULLIS_DEBIAN_MIRROR:-$(apt_source "$SUITE")}
[ -n "$MIRROR" ] || die "no apt source for $SUITE on this machine; set PORTCULLIS_DEBIAN_MIRROR"
SECURITY=${PORTCULLIS_DEBIAN_SECURITY_MIRROR:-$(apt_source "$SUITE-security")}
UPDATES=$(apt_source "$SUITE-updates")
ARCH=$(dpkg --print-architecture)
KEY=$(printf '%s\n' "$SUITE" "$ARCH" "$MIRROR" | sha256sum | cut -c1-12)
PRISTINE=$DIR/$SUITE-$ARCH-minbase-$(date -u +%Y-%m)-$KEY.tar

mkdir -p "$DIR/debs/partial" "$DIR/debootstrap-debs"
exec 9>"$DIR/.lock"              # one run at a time (parallel sessions share the cache)
flock -w "$TIMEOUT" 9 || die "another fresh-root run holds $DIR/.lock"
# the mount points of earlier runs that were killed (their tmpfs went with their namespace)
find "$DIR" -maxdepth 1 -name 'run.*' -type d -empty -delete

# rm_root DIR: removes a root, never crossing into a mounted file system.
rm_root() {
    [ -d "$1" ] || return 0
    if grep -qF " $1/" /proc/self/mountinfo; then
        log "still mounted under $1; not removing it"
        return 1
    fi
    rm -rf --one-file-system "$1"
}

# --- the pristine root, made once (debootstrap) --------------------------------------------
if [ ! -s "$PRISTINE" ]; then
    start=$SECONDS
    tmp=$DIR/pristine.tmp
    includes=()
    case "$MIRROR$SECURITY" in *https:*) includes=(--include=ca-certificates) ;; esac
    for attempt in 1 2 3; do
        rm_root "$tmp"
        mkdir -p "$tmp"
        log "debootstrap --variant=minbase $SUITE from $MIRROR (attempt $attempt)"
        # its own mount namespace: whatever debootstrap mounts inside goes away with it
        if timeout 900 unshare --mount --propagation private debootstrap --variant=minbase \
            "${includes[@]}" --cache-dir="$DIR/debootstrap-debs" "$SUITE" "$tmp" "$MIRROR" \
            >"$DIR/debootstrap.log" 2>&1; then
            break
        fi
        tail -n 20 "$DIR/debootstrap.log" >&2
        [ "$attempt" = 3 ] && die "debootstrap failed 3 times (log: $DIR/debootstrap.log)"
        sleep $((attempt * 5))
    done
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    tar -C "$tmp" --numeric-owner -cf "$PRISTINE.tmp" .
    mv "$PRISTINE.tmp" "$PRISTINE"
    rm_root "$tmp"
    find "$DIR" -maxdepth 1 -name '*-minbase-*.tar' ! -path "$PRISTINE" -delete
    log "pristine root made in $((SECONDS - start)) s: $PRISTINE ($(du -h "$PRISTINE" | cut -f1))"
fi

# --- a fresh copy for this run, and the run ------------------------------------------------
# Everything from here runs in the run's own mount and PID namespaces: the root is a tmpfs
# mounted there (on disk under $DIR with PORTCULLIS_FRESH_ROOT_KEEP=1), so the root, every
# mount and every process started inside end with the run, on a timeout too (--kill-child).

# setup_root R: a fresh copy of the pristine root at R, with this machine's resolver and its
# apt sources and transport settings (a mirror, a proxy), so the root reaches the same mirror
# (nothing else of the machine), and the git-tracked files of the checkout in R/src.
setup_root() {
    local r=$1
    tar -C "$r" -xf "$PRISTINE"
    chmod 755 "$r"   # it becomes /: readable by the users apt and the tests drop to
    cp /etc/resolv.conf /etc/hosts "$r/etc/"
    {
        echo "deb $MIRROR $SUITE main"
        [ -z "$UPDATES" ] || echo "deb $UPDATES $SUITE-updates main"
        [ -z "$SECURITY" ] || echo "deb $SECURITY $SUITE-security main"
    } >"$r/etc/apt/sources.list"
    apt-config dump Acquire 2>/dev/null | grep -E '^Acquire::' | grep -v '^Acquire::IndexTargets' \
        >"$r/etc/apt/apt.conf.d/00machine-acquire" || true
    # No service starts inside (nginx's postinst would start it on this machine's port 80);
    # dpkg need not fsync a root that is thrown away.
    printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
    chmod 755 "$r/usr/sbin/policy-rc.d"
    echo force-unsafe-io >"$r/etc/dpkg/dpkg.cfg.d/fresh-root-unsafe-io"
    mkdir -p "$r/src"
    git -C "$ROOT" ls-files -z --cached | (cd "$ROOT" && xargs -0 sh -c \
        'for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh) |
        tar -C "$ROOT" --null -T - -cf - | tar -C "$r/src" -xf -
    cat >"$r/fresh-root-run.sh" <<'EOF'
set -euo pipefail
cd /src
step() {
    local name=$1 t=$SECONDS; shift
    echo "fresh-root: == $name"
    "$@"
    echo "fresh-root: == $name passed in $((SECONDS - t)) s"
}
step "scripts/deps.sh" scripts/deps.sh
apt-get autoclean -qq   # the .deb cache keeps only what can still be downloaded
step "make check" make check JOBS="$JOBS"
step "make fuzz-replay" make fuzz-replay JOBS="$JOBS"
EOF
}

# run_root R: (in the namespaces) makes the root at R, mounts /proc, a minimal /dev and the
# .deb cache, and runs fresh-root-run.sh chrooted with a clean environment.
run_root() {
    local r=$1 n t=$SECONDS
    [ "${PORTCULLIS_FRESH_ROOT_KEEP:-0}" = 1 ] || mount -t tmpfs -o mode=755,size=12g fresh-root "$r"
    setup_root "$r"
    echo "fresh-root: == a fresh copy of the root and the tree ready in $((SECONDS - t)) s"
    mount -t proc proc "$r/proc"
    mount -t tmpfs -o mode=755,nosuid,size=16m dev "$r/dev"
    for n in null zero full random urandom tty; do
        touch "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"
    done
    ln -s /proc/self/fd "$r/dev/fd"
    ln -s /proc/self/fd/0 "$r/dev/stdin"
    ln -s /proc/self/fd/1 "$r/dev/stdout"
    ln -s /proc/self/fd/2 "$r/dev/stderr"
    mkdir "$r/dev/shm" "$r/dev/pts"
    mount -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$r/dev/pts"
    ln -s pts/ptmx "$r/dev/ptmx"
    mount --bind "$DIR/debs" "$r/var/cache/apt/archives"
    exec chroot "$r" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive PORTCULLIS_DEPS_TOOLS=0 JOBS="$JOBS" \
        /bin/bash /fresh-root-run.sh
}

WORK=$(mktemp -d "$DIR/run.XXXXXX")
cleanup() {
    local m
    # The mounts live in the run's namespace and end with it; this only catches one that
    # escaped it.
    for m in $(awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    if [ "${PORTCULLIS_FRESH_ROOT_KEEP:-0}" = 1 ]; then
        log "kept the used root at $WORK"
    else
        rm_root "$WORK" || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export ROOT DIR SUITE MIRROR UPDATES SECURITY PRISTINE JOBS
export -f setup_root run_root
start=$SECONDS
rc=0
timeout --kill-after=30 "$TIMEOUT" \
    unshare --mount --propagation private --pid --fork --kill-child \
    bash -euo pipefail -c 'run_root "$1"' fresh-root "$WORK" </dev/null >"$DIR/last-run.log" 2>&1 || rc=$?
grep -E '^(fresh-root:|deps:|fuzz: [0-9]+ targets|[0-9]+% tests passed)' "$DIR/last-run.log" >&2 || true
if [ "$rc" != 0 ]; then
    [ "$rc" = 124 ] && log "timed out after $TIMEOUT s"
    log "last lines inside the root (all of it: $DIR/last-run.log):"
    tail -n 60 "$DIR/last-run.log" >&2
    log "FAILED (exit $rc) after $((SECONDS - start)) s: scripts/deps.sh, make check or make fuzz-replay on a fresh $SUITE minbase root"
    exit 1
fi
log "passed in $((SECONDS - start)) s: scripts/deps.sh, make check and make fuzz-replay on a fresh $SUITE minbase root"
