#!/usr/bin/env bash
# A device with cooperative matrices for the checks: Debian sid's lavapipe (Mesa 26, VK_KHR_cooperative_matrix
# 8×8×8 f16×f16→f32), in a minimal sid system made with debootstrap, running a release `lowrank` built here.
#
#   tools/coopmat-check.sh [ARGS…]          e.g. tools/coopmat-check.sh --golden ../shared/golden
#   tools/coopmat-check.sh --swift-tests [FILTER]   the Swift test suites (or those FILTER matches) there
#
# Validates the committed SPIR-V with sid's spirv-val, then runs `lowrank devices` and
# `lowrank check --device vulkan ARGS…` inside that system with the validation layer on; the check prints,
# for every case, the kernel path that ran (`coopmat` or `scalar`, with the tile). Paths among ARGS that exist
# here are bound into the system at the same place. The system is kept in $COOPMAT_SID_DIR (default
# .build-sid/root; ~1.3 GB, made once in about 75 s plus the packages), from the Debian archive apt already
# uses. Needs root (debootstrap, chroot, bind mounts); every mount is undone on exit, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${COOPMAT_SID_DIR:-$PWD/.build-sid/root}
[ "$(id -u)" -eq 0 ] || { echo "coopmat-check: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }

# The validation layer checks every dispatch there; sid's spirv-tools validates the committed SPIR-V
# (bookworm's spirv-val predates SPV_KHR_cooperative_matrix).
packages="mesa-vulkan-drivers libvulkan1 libopenblas0 vulkan-validationlayers spirv-tools"
if [ ! -f "$root/.lowrank-ready" ]; then
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    uri=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -1)
    [ -n "$uri" ] || uri=$(grep -h -m1 -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
    [ -n "$uri" ] || { echo "coopmat-check: no Debian archive found in apt's sources" >&2; exit 1; }
    # Never remove a system with something still mounted in it (its /dev would go with it).
    if grep -q " $root/" /proc/mounts; then echo "coopmat-check: $root has mounts left; unmount them first" >&2; exit 1; fi
    rm -rf "$root" && mkdir -p "$root"
    echo "coopmat-check: making a Debian sid system in $root from $uri"
    debootstrap --variant=minbase sid "$root" "$uri" >/dev/null
    touch "$root/.lowrank-ready"
fi
if [ "$(cat "$root/.lowrank-ready")" != "$packages" ]; then
    # shellcheck disable=SC2086
    chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
    echo "$packages" > "$root/.lowrank-ready"
fi

mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM
bind() {  # bind $1 (a folder or file here) at the same path inside the system, read-only when $2 is ro
    local target="$root$1"
    if [ -d "$1" ]; then mkdir -p "$target"; else mkdir -p "$(dirname "$target")"; touch "$target"; fi
    mount --bind "$1" "$target"
    mounts+=("$target")
    if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$target"; fi
}

bind /proc
bind /dev
in_sid() { chroot "$root" /usr/bin/env HOME=/root LOWRANK_CACHE_DIR=/root/.cache/lowrank LOWRANK_VALIDATION=1 "$@"; }

if [ "${1:-}" = "--swift-tests" ]; then
    # The debug test binary with the toolchain's runtime bound in, and copies of the host libraries it
    # links that sid lacks (bookworm's libxml2 and ICU sonames); the package and ../shared at their paths.
    swift build --build-tests >&2
    tests=$PWD/.build/debug/LowRankPackageTests.xctest
    bind "$(dirname "$(dirname "$(dirname "$(realpath "$(command -v swift)")")")")" ro
    bind "$PWD"
    if [ -d ../shared ]; then bind "$(realpath ../shared)" ro; fi
    libs=/opt/lowrank-host-libs
    mkdir -p "$root$libs"
    # Until nothing is missing: a copied library can need others sid lacks (libxml2 needs ICU).
    while missing=$(in_sid LD_LIBRARY_PATH=$libs ldd "$tests" | awk '/not found/ {print $1}') && [ -n "$missing" ]; do
        for lib in $missing; do
            host=$(ldconfig -p | awk -v l="$lib" '$1 == l && !found {print $NF; found = 1}')
            [ -n "$host" ] || { echo "coopmat-check: $lib is in neither system" >&2; exit 1; }
            cp -L "$host" "$root$libs/"
        done
    done
    in_sid LD_LIBRARY_PATH=$libs "$tests" --testing-library swift-testing ${2:+--filter "$2"}
    exit
fi

swift build -c release --product lowrank -Xswiftc -static-stdlib >&2
install -m 755 .build/release/lowrank "$root/usr/local/bin/lowrank"
bind "$PWD/Shaders/spirv" ro
for arg in "$@"; do
    if [ -e "$arg" ]; then bind "$(realpath "$arg")" ro; fi
done
args=()
for arg in "$@"; do if [ -e "$arg" ]; then args+=("$(realpath "$arg")"); else args+=("$arg"); fi; done

for f in "$PWD"/Shaders/spirv/*.spv; do in_sid spirv-val --target-env vulkan1.2 "$f"; done
echo "spirv-val (sid): $(ls Shaders/spirv/*.spv | wc -l) modules valid"
in_sid lowrank devices | grep -E '^\*? *vulkan|cooperative matrix' || true
in_sid lowrank check --device vulkan "${args[@]}"
