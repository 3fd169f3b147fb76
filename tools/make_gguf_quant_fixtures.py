#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf_quant.safetensors: GGML-quantized weights as the `gguf` package
(llama.cpp's gguf-py) encodes and decodes them, for the tests that the engine reads every GGML type
it supports (`GGUFQuantizationTests`) exactly, and multiplies by it on each backend.

    pip install gguf numpy safetensors
    python3 tools/make_gguf_quant_fixtures.py

For each type t (`q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q4_k`, `q5_k`, `q6_k`, as `DType` names them):
  `t.blocks`  u8  [rows, bytes per row]: the raw blocks of a [rows, columns] weight W. The 32-value
              types come from `gguf.quants.quantize` of random f32 rows; gguf-py only decodes the
              K-quants, so their blocks are random bytes with finite f16 scales of moderate size
              (every such byte string is a valid block).
  `t.values`  f32 [rows, columns]: `gguf.quants.dequantize` of those blocks (exact in f32).
  `t.x`       f32 [tokens, columns]: random activations.
  `t.xwt`     u8  [tokens, rows, 8]: x·Wᵀ in float64 by numpy from the dequantized W, as its
              little-endian bytes (safetensors readers here take no F64).
Metadata: the gguf and numpy versions.
"""
import importlib.metadata
import os

import gguf
import numpy as np
from safetensors.numpy import save_file

T = gguf.GGMLQuantizationType
TOKENS = 5
# (type, rows, columns): three blocks of 32 per row, or two super-blocks of 256.
TYPES = [
    ("q8_0", T.Q8_0, 24, 96),
    ("q4_0", T.Q4_0, 24, 96),
    ("q4_1", T.Q4_1, 24, 96),
    ("q5_0", T.Q5_0, 24, 96),
    ("q5_1", T.Q5_1, 24, 96),
    ("q4_k", T.Q4_K, 12, 512),
    ("q5_k", T.Q5_K, 12, 512),
    ("q6_k", T.Q6_K, 12, 512),
]


def f16_bytes(rng, count, low, high):
    """`count` f16 values of magnitude in [low, high) and either sign, as 2 bytes each."""
    v = rng.uniform(low, high, count) * rng.choice([-1.0, 1.0], count)
    return v.astype(np.float16).view(np.uint8).reshape(count, 2)


def k_quant_blocks(rng, qtype, blocks):
    """Random K-quant super-blocks: random bytes, with d (and dmin) set to moderate f16 values
    so that W's values are of order 1."""
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    raw = rng.integers(0, 256, (blocks, size), dtype=np.uint8)
    if qtype == T.Q6_K:
        raw[:, 208:210] = f16_bytes(rng, blocks, 1e-3, 4e-3)  # d is last; the int8 scales are whole bytes
    else:
        raw[:, 0:2] = f16_bytes(rng, blocks, 5e-4, 2e-3)  # d
        raw[:, 2:4] = f16_bytes(rng, blocks, 5e-4, 2e-3)  # dmin
    return raw


def main():
    rng = np.random.default_rng(23)
    tensors = {}
    for name, qtype, rows, columns in TYPES:
        block_elements, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        if block_elements == 256:
            blocks = k_quant_blocks(rng, qtype, rows * columns // 256).reshape(rows, -1)
        else:
            source = rng.standard_normal((rows, columns)).astype(np.float32) * np.float32(0.5)
            blocks = gguf.quants.quantize(source, qtype)
        assert blocks.shape == (rows, columns // block_elements * block_bytes)
        values = gguf.quants.dequantize(blocks, qtype).astype(np.float32)
        assert values.shape == (rows, columns) and np.isfinite(values).all()
        x = rng.standard_normal((TOKENS, columns)).astype(np.float32)
        tensors[f"{name}.blocks"] = np.ascontiguousarray(blocks, dtype=np.uint8)
        tensors[f"{name}.values"] = np.ascontiguousarray(values)
        tensors[f"{name}.x"] = x
        xwt = x.astype(np.float64) @ values.astype(np.float64).T
        tensors[f"{name}.xwt"] = np.ascontiguousarray(xwt.astype("<f8")).view(np.uint8).reshape(TOKENS, rows, 8)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf_quant.safetensors")
    save_file(tensors, path, metadata={"gguf": importlib.metadata.version("gguf"), "numpy": np.__version__})
    print(f"wrote {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
