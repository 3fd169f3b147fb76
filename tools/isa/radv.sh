# Sourced by tools/isa-report.sh and tools/isa-peer.sh: Mesa's RADV driver on its null device (a real AMD GPU's
# compiler, no hardware) and tools/isa/radvstats.c built against it. Mesa 25.0 from Debian bookworm-backports, the
# last with the null device (26.2 removed it), downloaded from the Debian archive apt already uses here and
# unpacked into $ISA_STATS_CACHE (default ~/.cache/lowrank-isa-stats), not installed; the set-up is the one of
# ../shared/tools/isa-stats/isa-stats.sh. Needs a C compiler (CC, else clang or gcc), libvulkan-dev and apt.
#
#   radv_stats FAMILY [radvstats options and files...]   one JSON object per shader (tools/isa/radvstats.c)

isa_cache=${ISA_STATS_CACHE:-$HOME/.cache/lowrank-isa-stats}
isa_tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

radv_setup() {
  local lib="$isa_cache/mesa/usr/lib/x86_64-linux-gnu/libvulkan_radeon.so"
  if [ ! -f "$lib" ]; then
    mkdir -p "$isa_cache/apt/parts" "$isa_cache/apt/lists/partial" "$isa_cache/apt/cache/archives/partial" "$isa_cache/mesa"
    local uri
    uri=$(grep -h -m1 -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -1)
    [ -n "$uri" ] || uri=$(grep -h -m1 -E '^deb .* bookworm ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')
    [ -n "$uri" ] || { echo "isa: no Debian archive found in apt's sources" >&2; return 1; }
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" > "$isa_cache/apt/parts/bpo.sources"
    local o=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$isa_cache/apt/parts" -o Dir::State::Lists="$isa_cache/apt/lists" -o Dir::Cache="$isa_cache/apt/cache")
    apt-get "${o[@]}" update -qq >/dev/null 2>&1
    (cd "$isa_cache/apt" && apt-get "${o[@]}" download -qq mesa-vulkan-drivers/bookworm-backports >/dev/null 2>&1)
    dpkg -x "$isa_cache"/apt/mesa-vulkan-drivers_25.*_amd64.deb "$isa_cache/mesa"
    [ -f "$lib" ] || { echo "isa: the backports package has no RADV driver" >&2; return 1; }
  fi
  if [ ! -x "$isa_cache/radvstats-report" ] || [ "$isa_tools/radvstats.c" -nt "$isa_cache/radvstats-report" ]; then
    "${CC:-$(command -v clang || command -v gcc)}" -O1 -Wall -o "$isa_cache/radvstats-report" "$isa_tools/radvstats.c" -lvulkan
  fi
  printf '{ "ICD": { "api_version": "1.3.0", "library_path": "%s" }, "file_format_version": "1.0.0" }\n' "$lib" > "$isa_cache/radv_null.json"
}

radv_stats() {
  local family=$1; shift
  VK_ICD_FILENAMES="$isa_cache/radv_null.json" VK_DRIVER_FILES="$isa_cache/radv_null.json" RADV_FORCE_FAMILY="$family" \
    XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp} MESA_SHADER_CACHE_DISABLE=true "$isa_cache/radvstats-report" "$@" 2> >(grep -v "invalid pci bus info" >&2)
}
