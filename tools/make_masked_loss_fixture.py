#!/usr/bin/env python3
"""Writes Tests/Fixtures/text_data/masked_loss.json: the tiny Llama fixture's loss over its data with
a prompt of each row masked out of the labels (-100), as transformers computes it (labels shifted
inside the model, mean over the tokens not ignored), in float64 from the stored weights: the loss
that completion-only training takes.

    pip install torch transformers
    python3 tools/make_masked_loss_fixture.py
"""
import json
import pathlib

import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/Fixtures/text_data/masked_loss.json"


def main():
    rows = [json.loads(line)["input_ids"] for line in (ROOT / "Tests/Fixtures/llama/data.jsonl").read_text().splitlines() if line.strip()]
    # Each row's first 3 + (row index) tokens are its "prompt"; rows differ in length, so padding is masked too.
    labels = [[-100] * (3 + i) + row[3 + i:] for i, row in enumerate(rows)]
    model = AutoModelForCausalLM.from_pretrained(ROOT / "Tests/Fixtures/llama/tiny-llama", dtype=torch.float64).eval()
    longest = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    target = torch.tensor([l + [-100] * (longest - len(l)) for l in labels])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=target).loss.item()
    OUT.write_text(json.dumps({"generator": "tools/make_masked_loss_fixture.py", "transformers": transformers.__version__,
                               "torch": torch.__version__, "labels": labels, "loss": loss,
                               "tokens": sum(sum(1 for t in l[1:] if t != -100) for l in labels)}) + "\n")
    print(f"loss {loss} over {OUT}")


if __name__ == "__main__":
    main()
