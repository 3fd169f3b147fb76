#!/usr/bin/env python3
"""Writes Tests/Fixtures/peft-corda/: PEFT's data-driven CorDA initialisation
(`init_lora_weights="corda"`, `peft.tuners.lora.corda.preprocess_corda`) on the tiny Llama of
Tests/Fixtures/llama (q, v and down, r 4, alpha 8), for the tests of `--init corda`.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_corda_fixture.py [OUTDIR]

`preprocess_corda`'s run_model forwards the fixture rows one at a time (its hooks take one sequence
per call), each targeted layer's input covariance X^T X / max(X)^2 averaged over them; the adapter
is then the top (`ipm`) or bottom (`kpm`) r singular triplets of W·C (C damped until it inverts),
A = sqrt(S/s)·V^T C^-1, B = U·sqrt(S/s), and the weights keep W - s·B·A, as PiSSA's do.

What it writes (OUTDIR defaults to Tests/Fixtures/peft-corda):
- `corda/`, `corda-kpm/`: A and B as CorDA initialised them (`corda_method` "ipm", the default, and
  "kpm"), and `corda-residual.safetensors`, `corda-kpm-residual.safetensors`: the base weights each leaves.
- `train3-corda/`: 3 AdamW steps from the ipm start (lr 1e-2, weight decay 0.01, batches of 2 rows in
  order), saved with `path_initial_model_for_weight_conversion` (a rank-2r LoRA adapter on the
  original model, as PiSSA's).
- `expected.json`: the 3 training losses, the initialised models' losses (the base model's: the
  split leaves the model unchanged) and the converted adapter's on the original model.
"""
import peft
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.config import CordaConfig
from peft.tuners.lora.corda import preprocess_corda
from safetensors.torch import save_file

from make_llama_fixtures import mean_loss, save_adapter as save
from make_peft_config_fixtures import finish, load, output, residual, train_converted

TARGETS = ["q_proj", "v_proj", "down_proj"]  # as train_converted's


def preprocess(ids):
    """preprocess_corda over the fixture rows, one forward each."""
    def run(model, config):
        preprocess_corda(model, config, run_model=lambda: [model(input_ids=row[None]) for row in ids])
    return run


def main():
    path, ids = output("peft-corda")
    expected = {"versions": {"torch": torch.__version__, "peft": peft.__version__}, "loss": {}, "train": {}}
    originals = {k: v.clone() for k, v in load().state_dict().items()}
    for name, method in [("corda", "ipm"), ("corda-kpm", "kpm")]:
        base = load()
        config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights="corda", target_modules=TARGETS,
                            corda_config=CordaConfig(corda_method=method))
        preprocess(ids)(base, config)
        model = get_peft_model(base, config)
        save(model, path(name))
        save_file(residual(model), path(f"{name}-residual.safetensors"))
        expected["loss"][name] = mean_loss(model, ids)
    expected["train"]["corda"] = train_converted("corda", path("train3-corda"), ids, prepare=preprocess(ids),
                                                 corda_config=CordaConfig(corda_method="ipm"))
    expected["loss"]["corda-trained"] = mean_loss(PeftModel.from_pretrained(load(), path("train3-corda")), ids)
    finish(originals, expected, path("expected.json"))


if __name__ == "__main__":
    main()
