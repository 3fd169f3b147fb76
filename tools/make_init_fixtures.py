#!/usr/bin/env python3
"""Writes Tests/Fixtures/peft-init/: PEFT's weight-splitting initialisations beyond exact PiSSA on the
tiny Llama of Tests/Fixtures/llama (q, v and down, r 4, alpha 8), for the tests of `--init olora` and
`--init pissa_niter_N`.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_init_fixtures.py [OUTDIR]

What it writes (OUTDIR defaults to Tests/Fixtures/peft-init):
- `olora/`: `init_lora_weights="olora"` (A = R[:r], B = Q[:, :r] of W's QR decomposition), and
  `olora-residual.safetensors`, the base weights it leaves (W - s·B·A).
- `train3-olora/`: 3 AdamW steps from that start (lr 1e-2, weight decay 0.01, batches of 2 rows in
  order), saved with `path_initial_model_for_weight_conversion` (PEFT's conversion to a rank-2r LoRA
  adapter on the original model).
- `pissa_niter_4/`: `init_lora_weights="pissa_niter_4"` (torch.svd_lowrank with 4 subspace
  iterations; its Gaussian test matrix comes from torch's generator, so no other implementation
  reproduces its factors: the tests compare how well each approximates the exact top-r SVD).
- `loftq-iter1/`, `loftq-iter2/`: `init_lora_weights="loftq"` with `LoftQConfig(loftq_bits=4,
  loftq_iter=1 | 2)` (alternating bitsandbytes NF4 quantization and an SVD of what it leaves; PEFT
  runs it on CUDA only, so here its own `loftq_init` runs with the device name changed to "cpu"), on
  down_proj alone: bitsandbytes 0.50's CPU `dequantize_4bit` mis-scales rows shorter than a block
  of 64 (the tiny model's other projections have 32 inputs), so only its 64-wide rows give a
  reference; and `loftq-iter*-base.safetensors`: the dequantized NF4 weights it leaves there.
- `train3-loftq-iter2/`: 3 AdamW steps from the LoftQ start with 2 iterations (its base kept).
- `expected.json`: the losses (mean next-token cross-entropy over the fixture data in float64) of
  each initialised model and of the converted OLoRA adapter on the original model, the 3 training
  losses, and for pissa_niter_4 each module's `‖W_r − s·B·A‖ / ‖W_r‖`, W_r the exact rank-r truncation.
"""
import copy
import inspect

import peft
import torch
import peft.tuners.lora.layer as lora_layer
import peft.utils.loftq_utils as loftq_utils
from peft import LoftQConfig, LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file

from make_llama_fixtures import mean_loss, save_adapter as save
from make_peft_config_fixtures import adamw, finish, load, output, residual, steps, train_converted

TARGETS = ["q_proj", "v_proj", "down_proj"]  # as train_converted's


def config(init):
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=init, target_modules=TARGETS)


def loftq_on_cpu():
    """PEFT's own loftq_init with its compute device, CUDA or XPU, replaced by the CPU (bitsandbytes
    quantizes to NF4 on the CPU too); the LoRA layer then calls it."""
    namespace = dict(vars(loftq_utils))
    exec(inspect.getsource(loftq_utils.loftq_init).replace('"cuda"', '"cpu"').replace('"xpu"', '"cpu"'), namespace)
    lora_layer.loftq_init = namespace["loftq_init"]


def main():
    path, ids = output("peft-init")
    expected = {"versions": {"torch": torch.__version__, "peft": peft.__version__}, "loss": {}, "train": {}, "svd_error": {}}
    originals = {k: v.clone() for k, v in load().state_dict().items()}

    model = get_peft_model(load(), config("olora"))
    save(model, path("olora"))
    save_file(residual(model), path("olora-residual.safetensors"))
    expected["loss"]["olora"] = mean_loss(model, ids)
    expected["train"]["olora"] = train_converted("olora", path("train3-olora"), ids)
    expected["loss"]["olora-trained"] = mean_loss(PeftModel.from_pretrained(load(), path("train3-olora")), ids)

    torch.manual_seed(0)
    model = get_peft_model(load(), config("pissa_niter_4"))
    save(model, path("pissa_niter_4"))
    expected["loss"]["pissa_niter_4"] = mean_loss(model, ids)
    scale = 8 / 4
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            w = originals[name.removeprefix("base_model.model.") + ".weight"].double()
            u, s, vh = torch.linalg.svd(w, full_matrices=False)
            truncated = u[:, :4] @ torch.diag(s[:4]) @ vh[:4]
            ba = scale * module.lora_B["default"].weight.double() @ module.lora_A["default"].weight.double()
            expected["svd_error"][name.removeprefix("base_model.model.")] = (torch.linalg.norm(truncated - ba) / torch.linalg.norm(truncated)).item()
    loftq_on_cpu()
    for iterations in (1, 2):
        name = f"loftq-iter{iterations}"
        model = get_peft_model(load(), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights="loftq", target_modules=["down_proj"],
                                                  loftq_config=LoftQConfig(loftq_bits=4, loftq_iter=iterations)))
        save(model, path(name))
        save_file(residual(model), path(f"{name}-base.safetensors"))
        if iterations == 2:
            trained = copy.deepcopy(model)
            trained.train()
            expected["train"][name] = steps(trained, adamw(trained), ids)
            save(trained, path(f"train3-{name}"))
        expected["loss"][name] = mean_loss(model, ids)
    expected["loss"]["base"] = mean_loss(load(), ids)
    finish(originals, expected, path("expected.json"))


if __name__ == "__main__":
    main()
