#!/usr/bin/env python3
"""Writes Tests/Fixtures/torch_adamw.safetensors: three steps of PyTorch's torch.optim.AdamW
(single-tensor implementation) on one f32 parameter, for the test that our AdamW follows it.

    pip install torch safetensors
    python3 tools/make_adamw_fixture.py

Tensors: `param0` (the start), `grad1..3`, and after step k `param{k}`, `m{k}` (exp_avg) and
`v{k}` (exp_avg_sq). Metadata: lr, betas, eps, weight_decay and the torch version.
"""
import os

import torch
from safetensors.torch import save_file

LR, BETAS, EPS, WEIGHT_DECAY = 1e-2, (0.9, 0.999), 1e-8, 0.1


def main():
    torch.manual_seed(5)
    param = torch.nn.Parameter(torch.randn(1000) * 0.5)
    optimizer = torch.optim.AdamW([param], lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY, foreach=False, fused=False)
    tensors = {"param0": param.detach().clone()}
    for step in (1, 2, 3):
        # Gradients of three magnitudes, the middle one small enough that eps matters.
        param.grad = torch.randn(1000) * (1e-5 if step == 2 else 1.0)
        tensors[f"grad{step}"] = param.grad.clone()
        optimizer.step()
        state = optimizer.state[param]
        tensors[f"param{step}"] = param.detach().clone()
        tensors[f"m{step}"] = state["exp_avg"].clone()
        tensors[f"v{step}"] = state["exp_avg_sq"].clone()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "Tests/Fixtures/torch_adamw.safetensors")
    save_file(tensors, path, metadata={"lr": str(LR), "beta1": str(BETAS[0]), "beta2": str(BETAS[1]), "eps": str(EPS),
                                       "weight_decay": str(WEIGHT_DECAY), "source": f"torch {torch.__version__} AdamW(foreach=False)"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
