#!/usr/bin/env python3
"""Writes Tests/Fixtures/deep-llama/: a random Llama 24 blocks deep with a 16384-token vocabulary,
token data, and its mean next-token loss in float64, for the test that holds the CPU and Vulkan
backends within 2e-6 of float64 on a deep model (`DeepModelPrecisionTests.swift`).

    pip install torch transformers safetensors numpy
    python3 tools/make_deep_llama_fixture.py [OUTDIR]

The 2-layer fixtures of tools/make_llama_fixtures.py hide precision defects that a real model
shows (SmolLM2-135M-Instruct: 30 layers, 49152 tokens). This model is shaped like one where it
matters: tied embeddings (N(0, 1)) and a final norm (0.55) that put the current token's logit
a median 16 above the rest, a long tail of 16384 tokens whose terms fall below an f32 running
sum's rounding step, projections ~N(0, 0.09/d_in) so 24 blocks refine the residual without
drowning the embedding, norms ~1, and rows of tokens repeated 3-8 times, so the current token
is mostly the next one and the loss is a real model's few nats (3.2).

What it writes (OUTDIR defaults to Tests/Fixtures/deep-llama):
- `model/`: LlamaForCausalLM, BF16 weights (one `model.safetensors`, 1.5 MB), config.json.
- `data.jsonl`: 4 rows of 64 token ids.
- `expected.json`: `loss`, the mean next-token cross-entropy over every predicted token, computed
  in float64 throughout: the model in float64, RoPE's angles and their cosines in float64 (transformers
  forms them in f32 even for a float64 model) and the cross-entropy in float64 from float64 logits
  (transformers' loss upcasts logits to f32); `loss_pytorch_f32`, transformers' own loss in f32;
  and `old_cpu_relative_error`, what a sequential f32 sum of each row's exponentials (the CPU
  backend's cross-entropy before it summed in f64) makes of the float64 logits, relative to `loss`.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig
from transformers.models.llama import modeling_llama

VOCAB, LAYERS, HIDDEN, FF, ROWS, SEQ = 16384, 24, 32, 64, 4, 64


def config():
    return LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FF, num_hidden_layers=LAYERS,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                       rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)


def random_model(seed=0):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config(), dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "model.norm.weight":
                p.copy_(0.55 + 0.05 * torch.randn_like(p))
            elif "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif "embed_tokens" in name:
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p) / p.shape[1] ** 0.5)
    return model.to(torch.bfloat16).float()


def data(seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(ROWS):
        row = []
        while len(row) < SEQ:
            row += [int(rng.integers(3, VOCAB))] * int(rng.integers(3, 9))
        rows.append(row[:SEQ])
    return rows


def float64_rotary(self, x, position_ids):
    freqs = position_ids[..., None].double() * self.inv_freq.double()
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def float64_loss_and_logits(model, ids):
    with torch.no_grad():
        logits = model.double()(input_ids=ids).logits[:, :-1].double()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1)).item()
    return loss, logits.reshape(-1, VOCAB).numpy()


def sequential_f32_loss(logits, labels):
    """The old CPU cross-entropy: f32 exponentials summed left to right in f32."""
    logits = logits.astype(np.float32)
    largest = logits.max(1, keepdims=True)
    sums = np.cumsum(np.exp(logits - largest), axis=1, dtype=np.float32)[:, -1]
    lse = largest[:, 0] + np.log(sums)
    return float(np.mean(lse.astype(np.float64) - logits[np.arange(len(labels)), labels]))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "deep-llama")
    os.makedirs(out, exist_ok=True)
    model = random_model().eval()
    ids = torch.tensor(data())
    with torch.no_grad():
        f32 = model(input_ids=ids, labels=ids).loss.item()
    model.to(torch.bfloat16).save_pretrained(os.path.join(out, "model"))
    modeling_llama.LlamaRotaryEmbedding.forward = float64_rotary
    loss, logits = float64_loss_and_logits(model, ids)
    old = sequential_f32_loss(logits, ids[:, 1:].reshape(-1).numpy())
    with open(os.path.join(out, "data.jsonl"), "w") as f:
        for row in ids.tolist():
            f.write(json.dumps({"input_ids": row}) + "\n")
    expected = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "tokens": ROWS * (SEQ - 1), "loss": loss, "loss_pytorch_f32": f32,
                "old_cpu_relative_error": abs(old - loss) / loss}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
