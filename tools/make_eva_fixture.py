#!/usr/bin/env python3
"""Writes Tests/Fixtures/peft-eva/: PEFT's data-driven EVA initialisation (`init_lora_weights="eva"`,
`peft.tuners.lora.eva.initialize_lora_eva_weights`) on the tiny Llama of Tests/Fixtures/llama, for
the tests of `--init eva`.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_eva_fixture.py [OUTDIR]

The data loader gives PEFT's `initialize_lora_eva_weights` the fixture rows in batches of 2, in order
(dicts of input_ids and labels, as a language-modelling DataLoader does), cycled until every layer's
components converge. The configuration is sized so that PEFT's incremental PCA, which calls
torch.svd_lowrank with q = 2·round(r·rho) (a Gaussian test matrix from torch's generator), is exact:
every targeted layer has 32 inputs and q = 32, so the test matrix spans them all and the result is the
exact SVD, which any implementation reproduces (the signs are fixed by PCA's svd_flip: each
component's largest entry is positive).

What it writes (OUTDIR defaults to Tests/Fixtures/peft-eva):
- `eva/`: q, k, v, o, gate and up (down has 64 inputs), r 8, alpha 16, `EvaConfig()` (rho 2, tau
  0.99, the label mask, no whitening, scaling factors adjusted): A as EVA set it (each layer's top
  principal directions of its inputs), B = 0, and the ranks and alphas it redistributed by explained
  variance in `rank_pattern` and `alpha_pattern`, `target_modules` the modules that kept a rank.
- `eva-masked/`: the same modules with `EvaConfig(whiten=True, adjust_scaling_factors=False)` and
  labels -100 on each row's first 2 positions (so the label mask leaves 14 of 16 tokens a row).
- `train3-eva/`: 3 AdamW steps from `eva/` (lr 1e-2, weight decay 0.01, batches of 2 rows in order).
- `expected.json`: the 3 training losses and the initialised model's loss (that of the base model:
  B = 0), each the mean next-token cross-entropy over the fixture data in float64.
"""
import peft
import torch
from peft import EvaConfig, LoraConfig, get_peft_model
from peft.tuners.lora.eva import initialize_lora_eva_weights

from make_llama_fixtures import mean_loss, save_adapter as save
from make_peft_config_fixtures import BATCH, adamw, finish, load, output, steps

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"]
MASKED_POSITIONS = 2


def eva_model(ids, labels, **eva):
    model = get_peft_model(load(), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, init_lora_weights="eva",
                                              eva_config=EvaConfig(**eva), target_modules=TARGETS))
    batches = [dict(input_ids=ids[i:i + BATCH], labels=labels[i:i + BATCH]) for i in range(0, len(ids), BATCH)]
    initialize_lora_eva_weights(model, batches, show_progress_bar=False)
    return model


def main():
    path, ids = output("peft-eva")
    expected = {"versions": {"torch": torch.__version__, "peft": peft.__version__}, "loss": {}, "train": {},
                "masked_positions": MASKED_POSITIONS}
    originals = {k: v.clone() for k, v in load().state_dict().items()}

    model = eva_model(ids, ids)
    save(model, path("eva"))
    model.train()
    expected["train"]["eva"] = steps(model, adamw(model), ids)
    save(model, path("train3-eva"))
    expected["loss"]["eva"] = mean_loss(eva_model(ids, ids), ids)

    labels = ids.clone()
    labels[:, :MASKED_POSITIONS] = -100
    save(eva_model(ids, labels, whiten=True, adjust_scaling_factors=False), path("eva-masked"))
    finish(originals, expected, path("expected.json"))


if __name__ == "__main__":
    main()
