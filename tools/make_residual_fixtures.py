#!/usr/bin/env python3
"""Writes Tests/Fixtures/llama/residual-bf16/: the five AdamW steps of make_llama_fixtures.py's
`train5-lora` and `train5-dora`, with the hidden state between decoder blocks held in bfloat16, for
the tests of `TrainingSettings.residualDType` (`lowrank train --residual-dtype bf16`).

    pip install torch transformers peft safetensors numpy
    python3 tools/make_residual_fixtures.py     # after make_llama_fixtures.py

The PEFT model computes in float32 as in make_llama_fixtures.py; forward hooks round the token
embedding's output and each decoder layer's output to bfloat16 (to nearest even) and widen it again,
so the final norm and every block read the rounded value, and autograd rounds the gradient flowing
back through each of those casts to bfloat16 too, as PyTorch does for a bfloat16 model's hidden
states. What it writes: `expected.json` (the five losses of each adapter) and `train5-lora/`,
`train5-dora/` (the adapters after them).
"""
import json
import os

import numpy as np
import torch
from peft import PeftModel

from make_llama_fixtures import LR, WEIGHT_DECAY, adamw_steps, load, save_adapter

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "llama")


def held_in_bf16(module, args, output):
    rounded = lambda t: t.to(torch.bfloat16).to(torch.float32)
    return (rounded(output[0]),) + tuple(output[1:]) if isinstance(output, tuple) else rounded(output)


def train(kind, ids, out):
    model = PeftModel.from_pretrained(load(os.path.join(FIXTURES, "tiny-llama")), os.path.join(FIXTURES, kind), is_trainable=True)
    decoder = model.get_base_model().model
    for module in [decoder.embed_tokens, *decoder.layers]:
        module.register_forward_hook(held_in_bf16)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=WEIGHT_DECAY)
    losses = adamw_steps(model, optimizer, ids)
    save_adapter(model, os.path.join(out, f"train5-{kind}"))
    return losses


def main():
    out = os.path.join(FIXTURES, "residual-bf16")
    os.makedirs(out, exist_ok=True)
    ids = torch.from_numpy(np.load(os.path.join(FIXTURES, "data.npy")))
    expected = {kind: train(kind, ids, out) for kind in ["lora", "dora"]}
    with open(os.path.join(FIXTURES, "expected.json")) as f:
        unrounded = json.load(f)["train"]
    for kind, losses in expected.items():
        print(kind, losses, "largest difference from the f32 hidden state:", max(abs(a - b) for a, b in zip(losses, unrounded[kind])))
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


if __name__ == "__main__":
    main()
