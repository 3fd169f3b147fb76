#!/usr/bin/env python3
"""Writes Tests/Fixtures/llama/: tiny random Llama-family checkpoints, PEFT adapters on them, token
data, and the losses and trained adapters transformers + PEFT + PyTorch give, for the tests of
`lowrank eval`, `lowrank train` and the checkpoint and adapter formats.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_llama_fixtures.py [OUTDIR]

What it writes (OUTDIR defaults to Tests/Fixtures/llama):
- `tiny-llama/`: LlamaForCausalLM, f32, one `model.safetensors`, untied LM head, 4 query over
  2 KV heads, llama3 RoPE scaling.
- `tiny-qwen2-bf16/`: Qwen2ForCausalLM (q, k, v biases), bf16, tied embeddings, sharded into
  `model-0000k-of-0000n.safetensors` with `model.safetensors.index.json`.
- `data.jsonl` (one `{"input_ids": [...]}` per line) and `data.npy` (int64 [6, 16]): the same rows.
- Adapters saved by PEFT's `save_pretrained`, with non-zero B (and a magnitude moved off its start):
  `lora/` (q, v), `rslora/` (all-linear), `dora/` (all seven projections), `lora-f16/` (the lora
  adapter's weights stored as F16), `qwen2-lora/` (BF16, on the Qwen2 model).
- `expected.json`: for each model and adapter, the mean next-token cross-entropy over every
  predicted token of data (labels = input_ids, shifted as transformers does), computed in float64
  from the stored weights; and the five losses of each training run below.
- `train5-lora/`, `train5-dora/`: the `lora` and `dora` adapters after five steps of
  torch.optim.AdamW (lr 1e-2, betas (0.9, 0.999), eps 1e-8, weight decay 0.01) on the PEFT model in
  float32, batches of 2 rows taken in order (rows 0-1, 2-3, 4-5, 0-1, 2-3), sequence length 16.
"""
import json
import os
import shutil
import sys

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

VOCAB, ROWS, SEQ = 64, 6, 16
LR, WEIGHT_DECAY, BATCH, STEPS = 1e-2, 0.01, 2, 5
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama_config():
    return LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
                       rope_theta=10000.0, tie_word_embeddings=False,
                       rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16})


def qwen2_config():
    return Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6,
                       rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False)


def random_model(config, seed):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    # from_config draws N(0, 0.02): too small for losses that tell a wrong op from a right one.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    return model


def perturb_adapter(model, seed):
    """B (zero at PEFT's start) and the magnitude (‖W‖ at start) moved, so every factor matters."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn_like(p))
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn_like(p))


def tidy(adapter_dir):
    """PEFT's model card is boilerplate, and the base model's path is this machine's: name it relatively."""
    os.remove(os.path.join(adapter_dir, "README.md"))
    config_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["base_model_name_or_path"] = os.path.basename(os.path.normpath(config["base_model_name_or_path"]))
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)


def save_adapter(model, adapter_dir):
    model.save_pretrained(adapter_dir)
    tidy(adapter_dir)


def load(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)


def mean_loss(model, ids):
    model = model.double().eval()
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def adapter_loss(model_dir, adapter_dir, ids):
    return mean_loss(PeftModel.from_pretrained(load(model_dir), adapter_dir), ids)


def make_adapter(model_dir, out_dir, seed, **config):
    model = get_peft_model(load(model_dir), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, **config))
    perturb_adapter(model, seed)
    save_adapter(model, out_dir)
    return model


def adamw_steps(model, optimizer, ids, steps=STEPS, batch_size=BATCH):
    """`steps` optimizer steps on batches of `batch_size` rows of ids in order, cycling; returns the losses."""
    losses = []
    for step in range(steps):
        start = (step % (len(ids) // batch_size)) * batch_size
        batch = ids[start:start + batch_size]
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def train(model_dir, adapter_dir, out_dir, ids):
    model = PeftModel.from_pretrained(load(model_dir), adapter_dir, is_trainable=True)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=WEIGHT_DECAY)
    losses = adamw_steps(model, optimizer, ids)
    save_adapter(model, out_dir)
    return losses


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "llama")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    path = lambda *p: os.path.join(out, *p)

    llama, qwen = path("tiny-llama"), path("tiny-qwen2-bf16")
    random_model(llama_config(), 1).save_pretrained(llama)
    random_model(qwen2_config(), 2).to(torch.bfloat16).save_pretrained(qwen, max_shard_size="20KB")

    rng = np.random.default_rng(3)
    data = rng.integers(0, VOCAB, size=(ROWS, SEQ), dtype=np.int64)
    np.save(path("data.npy"), data)
    with open(path("data.jsonl"), "w") as f:
        for row in data:
            f.write(json.dumps({"input_ids": [int(t) for t in row]}) + "\n")
    ids = torch.from_numpy(data)

    make_adapter(llama, path("lora"), 10, target_modules=["q_proj", "v_proj"])
    make_adapter(llama, path("rslora"), 11, target_modules="all-linear", use_rslora=True)
    make_adapter(llama, path("dora"), 12, target_modules=ALL_PROJECTIONS, use_dora=True)
    save_adapter(PeftModel.from_pretrained(load(llama), path("lora")).half(), path("lora-f16"))
    qwen_model = get_peft_model(AutoModelForCausalLM.from_pretrained(qwen, torch_dtype=torch.bfloat16),
                                LoraConfig(r=4, lora_alpha=16, lora_dropout=0.0, init_lora_weights=False,
                                           target_modules=["q_proj", "k_proj", "down_proj"]))
    perturb_adapter(qwen_model, 13)
    save_adapter(qwen_model.to(torch.bfloat16), path("qwen2-lora"))

    expected = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
        "tokens": ROWS * (SEQ - 1),
        "loss": {
            "tiny-llama": mean_loss(load(llama), ids),
            "tiny-qwen2-bf16": mean_loss(load(qwen), ids),
            "lora": adapter_loss(llama, path("lora"), ids),
            "rslora": adapter_loss(llama, path("rslora"), ids),
            "dora": adapter_loss(llama, path("dora"), ids),
            "lora-f16": adapter_loss(llama, path("lora-f16"), ids),
            "qwen2-lora": adapter_loss(qwen, path("qwen2-lora"), ids),
        },
        "train": {"lr": LR, "weight_decay": WEIGHT_DECAY, "batch_size": BATCH, "seq_len": SEQ, "steps": STEPS},
    }
    for kind in ["lora", "dora"]:
        expected["train"][kind] = train(llama, path(kind), path(f"train5-{kind}"), ids)
    with open(path("expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
