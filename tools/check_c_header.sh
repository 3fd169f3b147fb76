#!/usr/bin/env bash
# Checks the hand-written C header against the Swift that implements it: the compiler prints the
# C declarations of the @c functions, and one C translation unit that includes both headers fails on
# any function whose parameters or result differ; the two lists of lowrank_* names must be equal.
# Needs the debug build (its module files).
set -euo pipefail
cd "$(dirname "$0")/.."
generated=.build/LowRankC-Swift.h
swiftc -typecheck -parse-as-library -module-name LowRankC -I .build/debug/Modules -I Sources/CLowRank \
    -I Sources/CShaderc -I Sources/COpenBLAS -Xcc -fmodule-map-file=.build/debug/CVulkan.build/module.modulemap \
    -Xcc -fmodule-map-file=.build/debug/CMPI.build/module.modulemap -Xcc -fmodule-map-file=.build/debug/CBFloat16GEMM.build/module.modulemap \
    -emit-clang-header-path "$generated" Sources/LowRankC/*.swift
printf '#include "lowrank.h"\n#include "LowRankC-Swift.h"\n' \
    | clang -fsyntax-only -Werror=incompatible-function-pointer-types -x c -I Sources/CLowRank -I .build -
names() { grep -o 'lowrank_[a-z_0-9]*(' "$1" | tr -d '(' | sort -u; }
if ! diff <(names Sources/CLowRank/lowrank.h) <(names "$generated"); then
    echo "check_c_header: lowrank.h (<) and the @c functions of Sources/LowRankC (>) name different functions" >&2
    exit 1
fi
# A comment per function: the declaration's previous non-blank line ends one.
undocumented=$(awk '/^[a-z0-9_ ]+[ *]lowrank_[a-z0-9_]+\(/ { if (prev !~ /\*\/$/) print "  line " NR ": " $0 } NF { prev = $0 }' Sources/CLowRank/lowrank.h)
if [ -n "$undocumented" ]; then
    printf 'check_c_header: these declarations of lowrank.h have no comment before them:\n%s\n' "$undocumented" >&2
    exit 1
fi
echo "check_c_header: lowrank.h matches the $(names "$generated" | wc -l) functions of Sources/LowRankC"
