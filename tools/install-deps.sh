#!/usr/bin/env bash
# Installs the Debian 12 packages vmcmux needs to build and test. Does nothing when
# they are all present. Usage: tools/install-deps.sh [build|test]
set -euo pipefail

build_pkgs=(meson ninja-build pkg-config gcc libglib2.0-dev libspice-protocol-dev libssl-dev
            libspice-server-dev libjson-glib-dev)
test_pkgs=(clang libspice-client-glib-2.0-dev spice-vdagent valgrind strace socat)

want=("${build_pkgs[@]}")
if [ "${1:-build}" = test ]; then
    want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
