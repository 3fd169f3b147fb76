#!/usr/bin/env python3
"""Writes Tests/Fixtures/llama/generation.json: the greedy generations transformers (+ PEFT) gives
on the tiny fixture models of tools/make_llama_fixtures.py, for `GenerationTests`.

    pip install torch transformers peft safetensors numpy
    python3 tools/make_generation_fixture.py [FIXTURE_DIR]

For each model (tiny-llama; tiny-qwen2-bf16 loaded in float32) with no adapter and with each
adapter fixture made for it (lora and dora on tiny-llama, qwen2-lora on Qwen2; applied unmerged, as
PeftModel runs them), and for prompts of 1, 5 and 11 tokens taken from data.npy:
`generate(do_sample=False, max_new_tokens=12)` with EOS stopping off (`eos_token_id=None`), so every
case runs its 12 steps; and one case per model stopped at an EOS id chosen from its own greedy ids
(the fourth generated token), where the generation must end with that token.
Each case records the logits' margin between the chosen and the runner-up token at every step,
so a test can tell a genuine near-tie from a wrong id.
"""
import json
import os
import sys

import numpy as np
import torch
import transformers
import peft
from peft import PeftModel
from transformers import AutoModelForCausalLM

NEW_TOKENS = 12
PROMPT_LENGTHS = [1, 5, 11]
MODELS = {"tiny-llama": [None, "lora", "dora"], "tiny-qwen2-bf16": [None, "qwen2-lora"]}


def load(root, model_dir, adapter):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(root, model_dir), dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, os.path.join(root, adapter))
    return model.eval()


def greedy(model, prompt, eos):
    ids = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=NEW_TOKENS, eos_token_id=eos, pad_token_id=0,
                             output_scores=True, return_dict_in_generate=True)
    generated = out.sequences[0, len(prompt):].tolist()
    margins = []
    for step, scores in enumerate(out.scores[:len(generated)]):
        top = torch.topk(scores[0].double(), 2).values
        margins.append(float(top[0] - top[1]))
    return generated, margins


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "llama")
    rows = np.load(os.path.join(root, "data.npy"))
    cases = []
    for model_dir, adapters in MODELS.items():
        for adapter in adapters:
            model = load(root, model_dir, adapter)
            for i, length in enumerate(PROMPT_LENGTHS):
                prompt = rows[i, :length].tolist()
                generated, margins = greedy(model, prompt, None)
                cases.append({"model": model_dir, "adapter": adapter, "prompt": prompt, "eos": [],
                              "generated": generated, "margins": margins})
            if adapter is None:
                prompt = rows[3, :4].tolist()
                free, _ = greedy(model, prompt, None)
                eos = free[3]
                generated, margins = greedy(model, prompt, eos)
                assert generated[-1] == eos and len(generated) <= 4
                cases.append({"model": model_dir, "adapter": None, "prompt": prompt, "eos": [eos],
                              "generated": generated, "margins": margins})
    out = {"generator": f"transformers {transformers.__version__}, peft {peft.__version__}, torch {torch.__version__}",
           "max_new_tokens": NEW_TOKENS, "cases": cases}
    with open(os.path.join(root, "generation.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
