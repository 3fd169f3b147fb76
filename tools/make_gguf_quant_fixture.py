#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf/quants.safetensors: blocks of values and their Q8_0 and Q4_0 bytes as the
`gguf` package's `gguf.quants.quantize` makes them (bit for bit ggml's reference quantizers), for the
test that the engine's Quantizer, which `lowrank merge --gguf-type q8_0|q4_0` writes with, gives the
same bytes.

    pip install gguf numpy safetensors
    python3 tools/make_gguf_quant_fixture.py

Tensors: `values` (f32, [rows, 64]: normal values at scales from 1e-6 to 1e4, blocks of zeros, of one
value, of ties at the rounding midpoints, with the largest magnitude negative or positive, and a scale
that f16 flushes to zero; subnormal and f16-overflowing scales are left out, where ggml's results are undefined), `q8_0` and `q4_0`
(u8, [rows, 2 × block bytes]). Metadata: the gguf version.
"""
import os
from importlib.metadata import version

import gguf
import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf", "quants.safetensors")


def main():
    rng = np.random.default_rng(23)
    rows = [rng.standard_normal(64) * scale for scale in np.logspace(-6, 4, 24)]
    rows.append(np.zeros(64))
    rows.append(np.full(64, 0.3))
    rows.append(np.full(64, -7.25))
    # Values at k + 1/2 steps of a block whose largest value is 127 (Q8_0) or −8 (Q4_0): rounding ties.
    rows.append(np.concatenate([np.arange(-62.5, 0.5, 1.0), [127.0]]))
    rows.append(np.concatenate([np.linspace(-8, 8, 63), [-8.0]]) + 0.0625)
    rows.append(np.concatenate([[-8.0], (np.arange(63) % 16 - 8) + 0.5]))
    for sign in (1, -1):
        row = rng.uniform(-1, 1, 64)
        row[rng.integers(64)] = 3.0 * sign
        rows.append(row)
    rows.append(rng.standard_normal(64) * 1e-30)
    values = np.stack(rows).astype(np.float32)
    tensors = {"values": values}
    for name, qtype in [("q8_0", gguf.GGMLQuantizationType.Q8_0), ("q4_0", gguf.GGMLQuantizationType.Q4_0)]:
        tensors[name] = gguf.quants.quantize(values, qtype).astype(np.uint8)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(tensors, OUT, metadata={"gguf": version("gguf")})
    print(f"wrote {OUT}: {values.shape[0]} rows, Q8_0 {tensors['q8_0'].shape}, Q4_0 {tensors['q4_0'].shape}")


if __name__ == "__main__":
    main()
