#!/usr/bin/env python3
"""Checks that what `lowrank train` and `lowrank merge` write loads in PEFT and transformers and gives
the loss `lowrank eval` gives: trains LoRA, rsLoRA, DoRA and PEFT-field (rank_pattern, alpha_pattern,
layers_to_transform, layers_pattern, exclude_modules; LoRA+, gaussian A), trainable-token-row and modules_to_save adapters for a few steps on the tiny Llama
fixture, loads each with `PeftModel.from_pretrained`, merges each with `lowrank merge` and loads the
result with `AutoModelForCausalLM.from_pretrained`, and compares the mean loss over the fixture data.

Then a LoRA adapter trained on the Q4_0 GGUF fixture, in PEFT on transformers' GGUF loader's model and
merged. Then the bf16 Qwen2 fixture, with a short DoRA fine-tune at a small learning rate: `lowrank merge
--dtype f32` must keep the adapter's loss as above, where the default merge (bf16, the checkpoint's
dtype) and PEFT's `merge_and_unload()` cast to bf16 round most of the update away; the script prints
those losses and `lowrank merge`'s warning.

    pip install torch transformers peft safetensors numpy
    swift build
    python3 tools/check_peft_roundtrip.py [--lowrank .build/debug/lowrank] [--device cpu]

Exits non-zero when a loss differs by more than 1e-4 relative.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "llama")
MODEL, DATA = os.path.join(FIXTURES, "tiny-llama"), os.path.join(FIXTURES, "data.jsonl")
BF16_MODEL = os.path.join(FIXTURES, "tiny-qwen2-bf16")


def loss(model):
    ids = torch.from_numpy(np.load(os.path.join(FIXTURES, "data.npy")))
    with torch.no_grad():
        return model.double().eval()(input_ids=ids, labels=ids).loss.item()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lowrank", default=os.path.join(ROOT, ".build", "debug", "lowrank"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    lowrank = lambda *a: subprocess.run([args.lowrank, *a, "--device", args.device], check=True, capture_output=True, text=True).stdout
    lowrank_stderr = lambda *a: subprocess.run([args.lowrank, *a, "--device", args.device], check=True, capture_output=True, text=True).stderr
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags in [("lora", []), ("rslora", ["--rslora", "--targets", "all-linear"]), ("dora", ["--dora", "--targets", "q_proj,k_proj,down_proj"]),
                            ("patterns", ["--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "--rank-pattern", r"q_proj=2,layers\.1\.mlp\.down_proj=6",
                                          "--alpha-pattern", "v_proj=4", "--layers", "1", "--layers-pattern", "layers",
                                          "--exclude-modules", "up_proj", "--loraplus-lr-ratio", "16", "--init", "gaussian"]),
                            ("tokens", ["--targets", "q_proj,v_proj", "--trainable-token-indices", "27,2,11,63"]),
                            ("modules", ["--targets", "q_proj,v_proj", "--modules-to-save", "embed_tokens,lm_head,norm"])]:
            out, merged = os.path.join(tmp, name), os.path.join(tmp, name + "-merged")
            lowrank("train", "--model", MODEL, "--data", DATA, "--adapter-out", out, "--steps", "4", "--batch-size", "2",
                    "--lr", "0.02", "--r", "4", "--alpha", "8", *flags)
            ours = json.loads(lowrank("eval", "--model", MODEL, "--adapter", out, "--data", DATA, "--json"))["loss"]
            peft_loss = loss(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32), out))
            lowrank("merge", "--model", MODEL, "--adapter", out, "--out", merged)
            merged_loss = loss(AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32))
            base = loss(AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32))
            errors = [abs(ours - peft_loss) / peft_loss, abs(merged_loss - peft_loss) / peft_loss]
            worst = max(worst, *errors)
            print(f"{name}: base {base:.6f}; lowrank eval {ours:.6f}, PEFT from_pretrained {peft_loss:.6f}, "
                  f"transformers on lowrank merge {merged_loss:.6f}; relative differences {errors[0]:.2e}, {errors[1]:.2e}")
            if abs(base - peft_loss) < 1e-6:
                print(f"{name}: the trained adapter did not change the loss", file=sys.stderr)
                return 1

        # A GGUF base (Q4_0, QLoRA on the file as it is): the adapter is PEFT's for the model transformers'
        # GGUF loader builds, and the merged folder is that model with the update.
        gguf_folder, gguf_name = os.path.join(ROOT, "Tests", "Fixtures", "gguf"), "tiny-llama.q4_0.gguf"
        gguf_path = os.path.join(gguf_folder, gguf_name)
        out, merged = os.path.join(tmp, "gguf-lora"), os.path.join(tmp, "gguf-lora-merged")
        lowrank("train", "--model", gguf_path, "--data", DATA, "--adapter-out", out, "--steps", "4", "--batch-size", "2",
                "--lr", "0.02", "--r", "4", "--alpha", "8", "--targets", "all-linear")
        ours = json.loads(lowrank("eval", "--model", gguf_path, "--adapter", out, "--data", DATA, "--json"))["loss"]
        gguf_model = lambda: AutoModelForCausalLM.from_pretrained(gguf_folder, gguf_file=gguf_name, dtype=torch.float32)
        peft_loss = loss(PeftModel.from_pretrained(gguf_model(), out))
        lowrank("merge", "--model", gguf_path, "--adapter", out, "--out", merged)
        merged_loss = loss(AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32))
        errors = [abs(ours - peft_loss) / peft_loss, abs(merged_loss - peft_loss) / peft_loss]
        worst = max(worst, *errors)
        print(f"gguf q4_0 lora: base {loss(gguf_model()):.6f}; lowrank eval {ours:.6f}, PEFT on transformers' GGUF model {peft_loss:.6f}, "
              f"transformers on lowrank merge {merged_loss:.6f}; relative differences {errors[0]:.2e}, {errors[1]:.2e}")

        # A bf16 checkpoint: transformers loads each merged folder in the dtype its config.json names.
        out = os.path.join(tmp, "qwen2-dora")
        lowrank("train", "--model", BF16_MODEL, "--data", DATA, "--adapter-out", out, "--steps", "10", "--batch-size", "2",
                "--lr", "1e-4", "--r", "4", "--alpha", "8", "--dora", "--targets", "all-linear")
        base = loss(AutoModelForCausalLM.from_pretrained(BF16_MODEL))
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BF16_MODEL, dtype=torch.float32), out)
        peft_loss = loss(adapted)
        peft_bf16 = loss(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BF16_MODEL, dtype=torch.float32), out)
                         .merge_and_unload().to(torch.bfloat16))
        merged_loss = {}
        for dtype in ["bf16", "f32"]:
            merged = os.path.join(tmp, "qwen2-dora-merged-" + dtype)
            warning = lowrank_stderr("merge", "--model", BF16_MODEL, "--adapter", out, "--out", merged, *(["--dtype", dtype] if dtype == "f32" else []))
            print(f"lowrank merge{' --dtype f32' if dtype == 'f32' else ''}: {warning.strip() or 'no warning'}")
            merged_loss[dtype] = loss(AutoModelForCausalLM.from_pretrained(merged))
        error = abs(merged_loss["f32"] - peft_loss) / peft_loss
        worst = max(worst, error)
        print(f"qwen2 bf16 dora: base {base:.6f}; PEFT from_pretrained {peft_loss:.6f}; merged in f32 {merged_loss['f32']:.6f} "
              f"(relative difference {error:.2e}); merged in bf16 {merged_loss['bf16']:.6f}, PEFT merge_and_unload in bf16 {peft_bf16:.6f}")
    print(f"worst relative difference {worst:.2e} (bound 1e-4)")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
