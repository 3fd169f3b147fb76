#!/usr/bin/env python3
"""Writes Tests/Fixtures/bnb_blockwise8.safetensors: values and the 8-bit codes and
scales that bitsandbytes' own CPU library gives them, for the test of our copy of its coder.

bitsandbytes codes the absmax values of NF4's double quantization with `quantize_blockwise`
(blocks of 256, its signed dynamic map). On the CPU that is `cquantize_blockwise_cpu_fp32` in
`libbitsandbytes_cpu.so`, which rounds through a 65536-point grid rather than to the nearest code,
so a value close to the midpoint of two codes can take either. This script calls that function
directly with ctypes (no torch needed): it downloads the bitsandbytes wheel from PyPI with pip.

    python3 tools/make_bnb_coder_fixture.py [--wheel bitsandbytes-0.50.2-...whl]

Inputs (one f32 tensor `values`, n = 8·256 + 100 so the last block is partial):
  block 0-3: 1.0 first (scale 1, so each value is its own normalized value), then values within a
             few grid steps of each midpoint of the dynamic map, and of its end points;
  block 4-6: normal values at three magnitudes, one of them cubed (heavy tails);
  block 7:   all zeros (bitsandbytes writes code 0);
  block 8:   100 values, a partial block.
Outputs: `codes` (u8, n), `scales` (f32, one per block), `code_map` (f32[256], the map used), and
metadata naming the bitsandbytes version.
"""
import argparse
import ctypes
import glob
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

VERSION = "0.50.2"
BLOCK = 256


def dynamic_map(root):
    """bitsandbytes' signed dynamic map, read from QuantizationTables.swift (whose bits the golden
    tests check against the map bitsandbytes stores)."""
    text = open(os.path.join(root, "Sources/LowRankCore/QuantizationTables.swift")).read()
    body = text[text.index("dynamicBits"):]
    body = body[body.index("= [") + 3:body.index("]\n")]
    bits = [int(h, 16) for h in re.findall(r"0x([0-9A-F]{8})", body)]
    assert len(bits) == 256
    return np.array(bits, dtype=np.uint32).view(np.float32)


def library(wheel):
    if wheel is None:
        folder = tempfile.mkdtemp()
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        f"bitsandbytes=={VERSION}", "-d", folder], check=True)
        wheel = glob.glob(os.path.join(folder, "bitsandbytes-*.whl"))[0]
    out = tempfile.mkdtemp()
    with zipfile.ZipFile(wheel) as z:
        z.extract("bitsandbytes/libbitsandbytes_cpu.so", out)
    return ctypes.CDLL(os.path.join(out, "bitsandbytes/libbitsandbytes_cpu.so"))


def inputs(code):
    rng = np.random.default_rng(7)
    step = np.float32(2.0 / 65535)
    mids = (np.float32(0.5) * (code[:-1] + code[1:])).astype(np.float32)
    near = np.concatenate([mids + k * step / 2 for k in range(-3, 4)] + [code[:1], code[-1:]])
    near = np.clip(near.astype(np.float32), -1, 1)
    rng.shuffle(near)
    blocks = []
    for b in range(4):
        chunk = near[b * (BLOCK - 1):(b + 1) * (BLOCK - 1)]
        chunk = np.concatenate([chunk, rng.uniform(-1, 1, BLOCK - 1 - len(chunk)).astype(np.float32)])
        blocks.append(np.concatenate([[np.float32(1.0)], chunk]))
    blocks.append(rng.standard_normal(BLOCK) * 0.05)
    blocks.append(rng.standard_normal(BLOCK) ** 3 * 3.0)
    blocks.append(rng.standard_normal(BLOCK) * 1e-4)
    blocks.append(np.zeros(BLOCK))
    blocks.append(rng.standard_normal(100) * 0.3)
    return np.concatenate(blocks).astype(np.float32)


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, (dtype, array) in tensors.items():
        blob = np.ascontiguousarray(array).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wheel", help="a bitsandbytes wheel already downloaded")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lib = library(args.wheel)
    code = dynamic_map(root)
    values = inputs(code)
    n = len(values)
    blocks = -(-n // BLOCK)
    scales = np.zeros(blocks, dtype=np.float32)
    codes = np.zeros(n, dtype=np.uint8)
    map_copy = code.copy()
    p = lambda a: a.ctypes.data_as(ctypes.c_void_p)
    lib.cquantize_blockwise_cpu_fp32(p(map_copy), p(values), p(scales), p(codes),
                                     ctypes.c_longlong(BLOCK), ctypes.c_longlong(n))
    path = os.path.join(root, "Tests/Fixtures/bnb_blockwise8.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_safetensors(path, {"values": ("F32", values), "codes": ("U8", codes), "scales": ("F32", scales),
                             "code_map": ("F32", code)},
                      {"source": f"bitsandbytes {VERSION} libbitsandbytes_cpu.so cquantize_blockwise_cpu_fp32",
                       "blocksize": str(BLOCK)})
    nearest = np.array([np.argmin(np.abs(v * (np.float32(1) / s) - code)) if s else 0
                        for v, s in zip(values, np.repeat(scales, BLOCK)[:n])])
    print(f"wrote {path}: {n} values, {int((nearest != codes).sum())} codes differ from the nearest")


if __name__ == "__main__":
    main()
