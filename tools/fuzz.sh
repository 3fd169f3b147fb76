#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, AddressSanitizer) of every parser of untrusted input: the
# safetensors header, JSON, config.json, adapter_config.json, .npy, token JSONL and GGUF. Each target
# runs for SECONDS (default 15) from its committed seeds (fuzz/Corpus/<target>), growing a corpus
# in .build-fuzz/corpus; any crash, sanitizer report, hang (over 10 s) or leak of memory past
# 2 GiB fails the run and leaves its input in .build-fuzz/artifacts.
#   tools/fuzz.sh                 # CI: 15 s per target
#   tools/fuzz.sh 600 npy jsonl   # longer, some targets
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-15}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors json llama-config adapter-config npy jsonl gguf)

# Every module gets ASan and libFuzzer's coverage; fuzz/Package.swift links libFuzzer into the
# targets alone (the build's own tools, such as the shader embedder, must keep their main).
# (The linker's "Cannot export local symbol" notes are filtered out; a failed build still fails.)
swift build --package-path fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp 2>&1 \
    | { grep -v "Cannot export local symbol" || true; }
bin="$(swift build --package-path fuzz --scratch-path .build-fuzz --show-bin-path)"

# Allocations the engine checks (HostBuffer) must fail as they do without ASan; the Swift
# runtime's metadata caches live for the whole process, which LeakSanitizer would call leaks.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=0"
mkdir -p .build-fuzz/artifacts
total=0
for target in "${targets[@]}"; do
    corpus=".build-fuzz/corpus/$target"
    mkdir -p "$corpus"
    log=".build-fuzz/fuzz-$target.log"
    if ! "$bin/fuzz-$target" "$corpus" "fuzz/Corpus/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=8192 -artifact_prefix=".build-fuzz/artifacts/$target-" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz-$target failed: its input is in .build-fuzz/artifacts/" >&2
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')"
    total=$((total + runs))
    echo "fuzz-$target: $runs inputs in ${seconds} s, corpus $(ls "$corpus" | wc -l) files, no crash"
done
echo "fuzzing: $total inputs in all, no crash"
