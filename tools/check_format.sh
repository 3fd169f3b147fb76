#!/usr/bin/env bash
# swift-format with the committed .swift-format: no Swift line wider than its lineLength. That
# width is what the code held when the check came (263), so the check fails only on growth; lower
# it as over-wide lines are rewrapped. The formatter's other findings (its indentation and line
# breaks differ from the aligned continuations used here) are not enforced.
set -euo pipefail
cd "$(dirname "$0")/.."
wide=$(swift format lint --configuration .swift-format --recursive Sources Tests fuzz 2>&1 | grep '\[LineLength\]' || true)
if [ -n "$wide" ]; then
    echo "$wide"
    echo "lines wider than .swift-format's lineLength: rewrap them" >&2
    exit 1
fi
