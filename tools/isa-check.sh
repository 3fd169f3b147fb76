#!/usr/bin/env bash
# CI's check of the machine code (tools/test.sh runs it): tools/isa-report.sh again, compared with the committed
# docs/isa/lowrank.jsonl by tools/isa/check.awk. It fails when a cooperative-matrix variant has no v_wmma in its
# main loop on NAVI31, when any variant spills registers, or when a variant's occupancy (subgroups per SIMD) drops
# below the committed figure. After a deliberate change, regenerate the table (docs/isa/README.md says how).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build/isa
tools/isa-report.sh --json > .build/isa/current.jsonl
awk -f tools/isa/check.awk docs/isa/lowrank.jsonl .build/isa/current.jsonl
