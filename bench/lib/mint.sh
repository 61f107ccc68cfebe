# Sourced by the bench scripts: builds bench/mint_session.c against a build tree's authd_core.
#   build_mint_session ROOT BUILD OUT LOG   → 0 with OUT built, else 1 with the reason in LOG
build_mint_session() {
  local root=$1 build=$2 out=$3 logf=$4 libs
  local cflags=(-std=c17 -D_GNU_SOURCE -O2 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes
                -Wmissing-prototypes -Wvla -Werror)
  rm -f "$out"
  [[ -f "$build/authd/libauthd_core.a" && -f "$build/common/libpccommon.a" ]] ||
    { echo "no authd_core/pccommon in $build" >"$logf"; return 1; }
  # What authd_core and pccommon link (authd/CMakeLists.txt, common/CMakeLists.txt).
  libs="$(pkg-config --libs jansson yaml-0.1 libcurl libcrypto libssl 2>"$logf")" || return 1
  # shellcheck disable=SC2086
  cc "${cflags[@]}" -I"$root/authd/src" -I"$root/common/include" "$root/bench/mint_session.c" \
    "$build/authd/libauthd_core.a" "$build/common/libpccommon.a" $libs -lpthread \
    -o "$out" 2>"$logf" || { rm -f "$out"; return 1; }
}
