#!/usr/bin/env bash
# Builds tests/interop/cid/cidpeer: a DTLS 1.2 client/server with RFC 9146 connection IDs,
# linked statically against mbedTLS built from Debian's own source package with
# MBEDTLS_SSL_DTLS_CONNECTION_ID turned on (Debian's binary libmbedtls has it off). The
# source comes through apt with a private deb-src list, so the system's apt configuration
# is left as it is. Called by scripts/setup.sh; rebuilds only when cidpeer.c is newer.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=tests/interop/cid
out=$dir/cidpeer
[[ -x $out && ! $dir/cidpeer.c -nt $out ]] && exit 0
version=2.28.3-1 # Debian 12's mbedtls
work=build/mbedtls-cid
src=$work/mbedtls-${version%-*}
if [[ ! -f $src/library/libmbedtls.a ]]; then
  printf '\033[1m[setup]\033[0m %s\n' "mbedtls $version: Debian source, CIDs on, into $work"
  rm -rf "$work"
  mkdir -p "$work/lists/partial"
  echo "deb-src http://deb.debian.org/debian bookworm main" >"$work/sources.list"
  apt=(-o "Dir::Etc::SourceList=$PWD/$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$PWD/$work/lists" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update -qq
  (cd "$work" && apt-get "${apt[@]}" source -qq "mbedtls=$version" >/dev/null)
  python3 "$src/scripts/config.py" -f "$src/include/mbedtls/config.h" \
    set MBEDTLS_SSL_DTLS_CONNECTION_ID
  make -s -j"$(nproc)" -C "$src/library" libmbedtls.a libmbedx509.a libmbedcrypto.a >/dev/null
fi
gcc -O2 -Wall -Wextra -Werror -I"$src/include" -o "$out" "$dir/cidpeer.c" \
  "$src/library/libmbedtls.a" "$src/library/libmbedx509.a" "$src/library/libmbedcrypto.a"
