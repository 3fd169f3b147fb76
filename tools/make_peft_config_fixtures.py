#!/usr/bin/env python3
"""Writes Tests/Fixtures/peft/: PEFT adapters on the tiny Llama of Tests/Fixtures/llama that use
LoraConfig's module-selection fields, with the losses PEFT gives after loading them and after 3
steps of AdamW, plain and LoRA+ (`create_loraplus_optimizer`), for the tests of
`ModelAdapter`, `AdapterSettings` and the trainer.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_llama_fixtures.py     # first, if Tests/Fixtures/llama is missing
    python3 tools/make_peft_config_fixtures.py [OUTDIR]

What it writes (OUTDIR defaults to Tests/Fixtures/peft):
- `patterns/`: the seven projections, `rank_pattern` {"q_proj": 2, "layers.1.mlp.down_proj": 6},
  `alpha_pattern` {"v_proj": 4, "o_proj": 32}, `exclude_modules` ["up_proj"].
- `layers/`: q, v and gate, `layers_to_transform` [1], `layers_pattern` "layers", `exclude_modules`
  the pattern ".*\\.1\\.self_attn\\.v_proj".
- `layer0/`: q and down, `layers_to_transform` 0 (an integer), no `layers_pattern`.
- `pissa/`: `init_lora_weights="pissa"` (exact SVD) on q, v, down, r 4, alpha 8: PEFT's A and B as
  initialised, and `pissa-residual.safetensors`, the base weights it leaves (W - s·B·A).
- `train3-pissa/`: 3 AdamW steps from that PiSSA start, saved with
  `path_initial_model_for_weight_conversion` (PEFT's conversion to a rank-2r LoRA adapter on the
  original model: A' = [A; A0], B' = [B, -B0], alpha 2·alpha); its losses, and `pissa-trained`, the
  loss of the converted adapter on the original model (which equals the trained model's).
- `expected.json`: for each adapter the mean next-token cross-entropy over the fixture data in
  float64 (as make_llama_fixtures.py computes it); for `patterns` and `layers` the three losses of
  torch.optim.AdamW (lr 1e-2, weight decay 0.01, batches of 2 rows in order) with the adapter after
  them in `train3-<name>/`; and `loraplus`: the same 3 steps from `patterns` with
  `create_loraplus_optimizer(lr=1e-2, loraplus_lr_ratio=16, loraplus_weight_decay=0.01)`, its
  adapter in `train3-loraplus/`.
- `tokens/`: q and v, and `trainable_token_indices` [27, 2, 11, 63] (the embedding rows of those
  ids train; 63 is in no batch), the rows moved from the model's; its loss, and 3 AdamW steps
  (`train3-tokens/`); `tokens-tied/`: the same on the tiny Qwen2, whose tied LM head PEFT gives the
  same rows (its TrainableTokensWrapper tied to the embedding's), and 3 AdamW steps (`train3-tokens-tied/`).
- `modules/`: q and v, and `modules_to_save` ["embed_tokens", "lm_head"] (both trained in full, as
  copies), the copies moved from the model's; its loss, and 3 AdamW steps (`train3-modules/`).
- `modules-tied/`: the same on the tiny Qwen2, whose LM head is its embedding (tie_word_embeddings):
  PEFT's default (`ensure_weight_tying=False`) copies each apart, so they are moved apart; its loss,
  and 3 AdamW steps (`train3-modules-tied/`); `modules-tied-shared/`: the same with
  `ensure_weight_tying=True`, PEFT's one copy for both (saved under both names), moved; its loss, 3
  AdamW steps (`train3-modules-tied-shared/`), and `modules-tied-shared-merged`, the loss of
  `merge_and_unload()` of it (the tied model again, its table the copy).
- `modules-proj/`: q and v, and `modules_to_save` ["q_proj", "down_proj"]: each projection trained in
  full as a copy (q_proj, also a target, is then the copy only: PEFT's ModulesToSaveWrapper wins over
  LoRA), moved; `modules-proj-qwen2/`: v, and `modules_to_save` ["q_proj"] on the tiny Qwen2, whose
  q_proj copy holds its bias too, moved; their losses and 3 AdamW steps (`train3-modules-proj*/`).
- `modules-norms/`: q and v, and `modules_to_save` ["input_layernorm", "model.norm"] (each block's
  input RMSNorm and the final one trained in full, the post-attention ones not); its loss, and 3
  AdamW steps (`train3-modules-norms/`).
- `bias-lora-only/` and `bias-all/`: on the tiny Qwen2 (q/k/v biases), `bias="lora_only"` with q and
  o adapted, and `bias="all"` with v and gate adapted; the saved biases moved from the model's so
  that loading them matters; their losses, and 3 AdamW steps from each (`train3-bias-*/`).
"""
import json
import os
import shutil
import sys

import numpy as np
import peft
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.optimizers import create_loraplus_optimizer
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

from make_llama_fixtures import ALL_PROJECTIONS, adamw_steps, mean_loss, save_adapter as save, tidy

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LLAMA = os.path.join(ROOT, "Tests", "Fixtures", "llama")
MODEL = os.path.join(LLAMA, "tiny-llama")
QWEN2 = os.path.join(LLAMA, "tiny-qwen2-bf16")
LR, WEIGHT_DECAY, BATCH, STEPS, LORAPLUS_RATIO = 1e-2, 0.01, 2, 3, 16.0
# Ids of the fixture data (27, 2 and 11 in every batch) and one it never holds (63), out of order.
TOKENS = [27, 2, 11, 63]

CONFIGS = {
    "patterns": dict(target_modules=ALL_PROJECTIONS, rank_pattern={"q_proj": 2, "layers.1.mlp.down_proj": 6},
                     alpha_pattern={"v_proj": 4, "o_proj": 32}, exclude_modules=["up_proj"]),
    "layers": dict(target_modules=["q_proj", "v_proj", "gate_proj"], layers_to_transform=[1], layers_pattern="layers",
                   exclude_modules=r".*\.1\.self_attn\.v_proj"),
    "layer0": dict(target_modules=["q_proj", "down_proj"], layers_to_transform=0),
}
BIAS_CONFIGS = {
    "bias-lora-only": dict(target_modules=["q_proj", "o_proj"], bias="lora_only"),
    "bias-all": dict(target_modules=["v_proj", "gate_proj"], bias="all"),
}
ROWS = dict(target_modules=["q_proj", "v_proj"], trainable_token_indices=TOKENS)
SAVED = dict(target_modules=["q_proj", "v_proj"], modules_to_save=["embed_tokens", "lm_head"])
# Each on the untied Llama and on the tied Qwen2; the norms on the Llama.
NORMS = dict(target_modules=["q_proj", "v_proj"], modules_to_save=["input_layernorm", "model.norm"])
EMBEDDING_CONFIGS = {"tokens": (ROWS, MODEL), "tokens-tied": (ROWS, QWEN2), "modules": (SAVED, MODEL), "modules-tied": (SAVED, QWEN2),
                     "modules-norms": (NORMS, MODEL), "modules-tied-shared": (dict(SAVED, ensure_weight_tying=True), QWEN2),
                     "modules-proj": (dict(target_modules=["q_proj", "v_proj"], modules_to_save=["q_proj", "down_proj"]), MODEL),
                     "modules-proj-qwen2": (dict(target_modules=["v_proj"], modules_to_save=["q_proj"]), QWEN2)}


def load(model_dir=MODEL):
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def adamw(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=WEIGHT_DECAY)


def steps(model, optimizer, ids):
    """STEPS AdamW steps on batches of BATCH rows in order; returns the losses."""
    return adamw_steps(model, optimizer, ids, STEPS, BATCH)


def train(adapter_dir, out, ids, loraplus, model_dir=MODEL):
    model = PeftModel.from_pretrained(load(model_dir), adapter_dir, is_trainable=True)
    model.train()
    if loraplus:
        optimizer = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=LORAPLUS_RATIO,
                                              loraplus_weight_decay=WEIGHT_DECAY, betas=(0.9, 0.999), eps=1e-8)
    else:
        optimizer = adamw(model)
    losses = steps(model, optimizer, ids)
    save(model, out)
    return losses


def output(name):
    """The fixture folder (the first argument, else Tests/Fixtures/NAME), emptied, as a joiner of
    paths in it; and the fixture's token rows."""
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Tests", "Fixtures", name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    return (lambda *p: os.path.join(out, *p)), torch.from_numpy(np.load(os.path.join(LLAMA, "data.npy")))


def residual(model):
    """The base weights a PEFT model holds under its adapters, by the original model's names."""
    return {k.removeprefix("base_model.model.").replace(".base_layer", ""): v.detach().clone().contiguous()
            for k, v in model.state_dict().items() if k.endswith("base_layer.weight")}


def finish(originals, expected, path):
    """Checks the fixture model was left as it was, and writes `expected` to `path`."""
    assert all(torch.equal(originals[k], v) for k, v in load().state_dict().items())
    with open(path, "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps(expected, indent=1))


def train_converted(init, out, ids, prepare=None, **fields):
    """3 AdamW steps from the start `init` (an init_lora_weights that splits the weights: pissa,
    olora, ...) on q, v and down, saved converted to a LoRA adapter on the original model.
    `prepare(model, config)` runs on the base model first (CorDA's preprocess_corda); `fields` are
    further LoraConfig fields."""
    base, config = load(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=init,
                                      target_modules=["q_proj", "v_proj", "down_proj"], **fields)
    if prepare:
        prepare(base, config)
    model = get_peft_model(base, config)
    initial = out + "-initial"
    model.save_pretrained(initial)  # the factors it started from, which the conversion subtracts
    model.train()
    losses = steps(model, adamw(model), ids)
    model.save_pretrained(out, path_initial_model_for_weight_conversion=initial)
    tidy(out)
    shutil.rmtree(initial)
    return losses


def main():
    path, ids = output("peft")
    expected = {"versions": {"torch": torch.__version__, "peft": peft.__version__}, "loss": {},
                "train": {"lr": LR, "weight_decay": WEIGHT_DECAY, "batch_size": BATCH, "seq_len": ids.shape[1], "steps": STEPS,
                          "loraplus_lr_ratio": LORAPLUS_RATIO}}

    configs = [(name, fields, MODEL) for name, fields in CONFIGS.items()] + [(name, fields, QWEN2) for name, fields in BIAS_CONFIGS.items()] \
        + [(name, fields, model_dir) for name, (fields, model_dir) in EMBEDDING_CONFIGS.items()]
    for seed, (name, fields, model_dir) in enumerate(configs):
        torch.manual_seed(20 + seed)  # init_lora_weights=False draws A and B from torch's generator
        model = get_peft_model(load(model_dir), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False, **fields))
        with torch.no_grad():  # B is zero at PEFT's start and a bias the model's: move them so every tensor matters.
            for key, p in model.named_parameters():
                if "lora_B" in key:
                    p.copy_(0.2 * torch.randn_like(p))
                elif p.requires_grad and (key.endswith("bias") or "trainable_tokens_delta" in key or "modules_to_save" in key):
                    p.add_(0.2 * torch.randn_like(p))
        save(model, path(name))
        expected["loss"][name] = mean_loss(PeftModel.from_pretrained(load(model_dir), path(name)), ids)
    for name in ["patterns", "layers"]:
        expected["train"][name] = train(path(name), path(f"train3-{name}"), ids, loraplus=False)
    expected["train"]["loraplus"] = train(path("patterns"), path("train3-loraplus"), ids, loraplus=True)
    for name in BIAS_CONFIGS:
        expected["train"][name] = train(path(name), path(f"train3-{name}"), ids, loraplus=False, model_dir=QWEN2)
    for name, (_, model_dir) in EMBEDDING_CONFIGS.items():
        expected["train"][name] = train(path(name), path(f"train3-{name}"), ids, loraplus=False, model_dir=model_dir)
    shared = PeftModel.from_pretrained(load(QWEN2), path("modules-tied-shared")).merge_and_unload()
    assert shared.lm_head.weight is shared.model.embed_tokens.weight
    expected["loss"]["modules-tied-shared-merged"] = mean_loss(shared, ids)

    base = load()
    originals = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights="pissa",
                                            target_modules=["q_proj", "v_proj", "down_proj"]))
    save(model, path("pissa"))
    save_file(residual(model), path("pissa-residual.safetensors"))
    expected["loss"]["pissa"] = mean_loss(model, ids)
    expected["loss"]["pissa-base"] = mean_loss(AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32), ids)
    expected["train"]["pissa"] = train_converted("pissa", path("train3-pissa"), ids)
    expected["loss"]["pissa-trained"] = mean_loss(PeftModel.from_pretrained(load(), path("train3-pissa")), ids)
    finish(originals, expected, path("expected.json"))


if __name__ == "__main__":
    main()
