#!/usr/bin/env python3
"""Writes `expected-bf16.json` beside the bf16 models of Tests/Fixtures/llama and
Tests/Fixtures/deep-llama: each model's mean next-token loss over its fixture data as transformers
(+ PEFT) computes the model in bfloat16, for the tests of the CPU's default `medium` matmul
precision (`LlamaFixtureTests`, `DeepModelPrecisionTests`). The fixtures' `expected.json` hold the
same losses in float64; the distance of these from them is PyTorch's own bf16 rounding, the scale
the tests bound `medium` by.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_bf16_compute_fixtures.py

What it writes:
- `Tests/Fixtures/llama/expected-bf16.json`: `tiny-qwen2-bf16` (the model alone) and `qwen2-lora`
  (PEFT's adapter on it; PEFT keeps the adapter's weights in f32, `autocast_adapter_dtype`).
- `Tests/Fixtures/deep-llama/expected-bf16.json`: `loss`, the deep bf16 model's.
Every matrix product multiplies bf16 operands with f32 sums (PyTorch's CPU bf16 GEMM), and every
op's output is rounded to bf16; transformers' loss upcasts the logits to f32.
"""
import json
import os

import numpy as np
import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LLAMA = os.path.join(ROOT, "Tests", "Fixtures", "llama")
DEEP = os.path.join(ROOT, "Tests", "Fixtures", "deep-llama")


def bf16_loss(model, ids):
    with torch.no_grad():
        return model.eval()(input_ids=ids, labels=ids).loss.item()


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)


def write(folder, losses):
    losses = dict(losses, versions={"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__})
    with open(os.path.join(folder, "expected-bf16.json"), "w") as f:
        json.dump(losses, f, indent=1)
    print(json.dumps(losses))


def main():
    torch.manual_seed(0)
    ids = torch.from_numpy(np.load(os.path.join(LLAMA, "data.npy")))
    qwen = os.path.join(LLAMA, "tiny-qwen2-bf16")
    write(LLAMA, {"tiny-qwen2-bf16": bf16_loss(load(qwen), ids),
                  "qwen2-lora": bf16_loss(PeftModel.from_pretrained(load(qwen), os.path.join(LLAMA, "qwen2-lora")), ids)})
    with open(os.path.join(DEEP, "data.jsonl")) as f:
        rows = torch.tensor([json.loads(line)["input_ids"] for line in f])
    write(DEEP, {"loss": bf16_loss(load(os.path.join(DEEP, "model")), rows)})


if __name__ == "__main__":
    main()
