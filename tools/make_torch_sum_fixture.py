#!/usr/bin/env python3
"""Writes Tests/Fixtures/torch_sum.safetensors: PyTorch's f32 `sum()` and `mean()` of contiguous
tensors of many lengths on the CPU, in one thread, for the test that `TorchSum` (and with it the
mean bitsandbytes takes in double quantization) adds in PyTorch's order.

    pip install torch safetensors
    python3 tools/make_torch_sum_fixture.py

Tensors: `values{n}` (n positive f32 values of varied magnitude, as absmax values are), and
`sum{n}`, `mean{n}` (one f32 each). Metadata: the lengths and the torch version.
"""
import os

import torch
from safetensors.torch import save_file

# Short ones (the scalar path below 8, rows of 4 vectors, the leftovers), and long ones that run
# every level of the cascade.
LENGTHS = [1, 2, 3, 5, 7, 8, 9, 15, 31, 32, 33, 40, 100, 127, 129, 1000, 1321, 4097, 20000, 40000]


def main():
    torch.manual_seed(9)
    torch.set_num_threads(1)
    tensors = {}
    for n in LENGTHS:
        values = torch.rand(n) * torch.logspace(-2, 1, n)[torch.randperm(n)]
        tensors[f"values{n}"] = values
        tensors[f"sum{n}"] = values.sum().reshape(1)
        tensors[f"mean{n}"] = values.mean().reshape(1)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "torch_sum.safetensors")
    save_file(tensors, path, metadata={"lengths": ",".join(map(str, LENGTHS)), "torch": torch.__version__})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
