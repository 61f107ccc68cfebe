#!/usr/bin/env bash
# Builds the two images, portcullis-authd:<version> and portcullis-controller:<version>, with
# buildah (docs/design.md §6): no Docker engine and no registry. The base image debian:bookworm-slim
# is made here with `debootstrap --variant=minbase bookworm` from the Debian mirror apt on this
# machine already uses, cached as a rootfs tarball under ${PORTCULLIS_CACHE:-~/.cache/portcullis}
# and imported once into buildah's local storage.
#
#   scripts/images.sh              base (when missing), then both images
#   scripts/images.sh base         only the base image
#   scripts/images.sh authd        base + one image (authd | controller)
#
# Env: PORTCULLIS_IMAGE_TAG (default: the project version), PORTCULLIS_REBUILD_BASE=1 forces a
# new debootstrap, CMAKE_FLAGS (extra flags for the daemons' cmake, as in the Makefile),
# BUILDAH_LAYERS (default true: the two builds share their first stage's apt layer, and a
# rebuild after a source change starts at the COPY).
set -euo pipefail
cd "$(dirname "$0")/.."

cache=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}/images
suite=bookworm
base_image=debian:bookworm-slim
version=$(sed -n 's/^project(portcullis VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
tag=${PORTCULLIS_IMAGE_TAG:-$version}
export BUILDAH_LAYERS=${BUILDAH_LAYERS:-true}
export BUILDAH_ISOLATION=chroot

log() { printf 'images: %s\n' "$*" >&2; }

rootfs_tmp=
trap '[ -z "$rootfs_tmp" ] || rm -rf "$rootfs_tmp"' EXIT

need_tools() {
    if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
        log "installing buildah and debootstrap"
        PORTCULLIS_IMAGES=1 PORTCULLIS_DEPS_TOOLS=0 scripts/deps.sh >&2
    fi
}

# Prints the first URI apt uses for a suite (e.g. bookworm, bookworm-security), read from the
# one-line sources.list files and the deb822 .sources files.
apt_uri() {
    local want=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$want" '$1 == "deb" {
            i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == s) { print $i; exit }
        }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$want" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " s " "))
                    { split(uris, u, " "); print u[1]; found = 1 }
                types = uris = suites = ""; enabled = "yes"
            }
            BEGIN { enabled = "yes" }
            /^[ \t]*$/ { flush(); if (found) exit; next }
            /^#/ { next }
            /^Types:/ { sub(/^Types:[ \t]*/, ""); types = $0 }
            /^URIs:/ { sub(/^URIs:[ \t]*/, ""); uris = $0 }
            /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0 }
            /^Enabled:/ { sub(/^Enabled:[ \t]*/, ""); enabled = tolower($0) }
            END { if (!found) flush() }' "$f"
    done | head -n1
}

# Makes the slim rootfs tarball: minbase, the host's mirrors, no docs/man/locales, no apt
# caches, and the dpkg excludes Debian's official slim images use.
make_rootfs() {
    local out=$1 mirror security root
    mirror=$(apt_uri "$suite")
    security=$(apt_uri "$suite-security")
    [ -n "$mirror" ] || { log "no apt source for '$suite' in /etc/apt"; exit 1; }
    root=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-rootfs.XXXXXX")
    rootfs_tmp=$root
    log "debootstrap --variant=minbase $suite (from the mirror apt uses; a few minutes)"
    debootstrap --variant=minbase --arch=amd64 "$suite" "$root" "$mirror" >&2 ||
        { log "debootstrap failed: $(tail -n 5 "$root/debootstrap/debootstrap.log" 2>/dev/null)"; exit 1; }
    rm -f "$root/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' \
            "$mirror" "$suite" "$suite"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' \
                "$security" "$suite"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$root/etc/apt/sources.list.d/debian.sources"
    cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\nAcquire::Languages "none";\n' \
        >"$root/etc/apt/apt.conf.d/90slim"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/debootstrap
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"
    mkdir -p "$(dirname "$out")"
    tar --numeric-owner --xattrs -C "$root" -czf "$out.tmp" .
    mv "$out.tmp" "$out"
    rm -rf "$root"
    rootfs_tmp=
}

image_exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }

build_base() {
    if [ "${PORTCULLIS_REBUILD_BASE:-0}" != 1 ] && image_exists "$base_image"; then
        log "$base_image present"
        return
    fi
    local tarball="$cache/debian-$suite-minbase-amd64.tar.gz" ctr
    if [ "${PORTCULLIS_REBUILD_BASE:-0}" = 1 ] || [ ! -s "$tarball" ]; then
        make_rootfs "$tarball"
    fi
    log "importing $tarball as $base_image"
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$tarball" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash --os linux --arch amd64 "$ctr"
    buildah commit --rm --quiet "$ctr" "$base_image" >/dev/null
}

build_image() {
    local name=$1 start=$SECONDS
    log "building portcullis-$name:$tag"
    buildah bud --isolation chroot --pull=never --layers="$BUILDAH_LAYERS" \
        --build-arg "CMAKE_FLAGS=${CMAKE_FLAGS:-}" -f "Dockerfile.$name" -t "portcullis-$name:$tag" . >&2
    log "portcullis-$name:$tag built in $((SECONDS - start)) s"
}

if [ "$(id -u)" != 0 ]; then
    log "needs root (debootstrap, and buildah's local storage); run it with sudo"
    exit 1
fi
need_tools
case "${1:-all}" in
base) build_base ;;
authd | controller) build_base; build_image "$1" ;;
all) build_base; build_image authd; build_image controller ;;
*) echo "usage: $0 [all|base|authd|controller]" >&2; exit 2 ;;
esac
