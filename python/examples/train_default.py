"""Trains the engine's built-in default model from Python: the job `lowrank train` runs with no
arguments (a byte-level, 2-block Llama with fixed random weights; LoRA r=8 on every projection),
with the batches taken in corpus order as `lowrank train --no-shuffle` takes them.

    python examples/train_default.py --steps 200 --device cpu --adapter-out default-adapter
"""
import argparse

import numpy as np

import lowrank

SEQUENCE = 64  # tokens per row (bytes of the corpus)
BATCH = 8


def corpus_rows(sequence: int = SEQUENCE) -> list:
    """The built-in corpus as rows of `sequence` byte tokens (a shorter last one kept if it
    predicts anything)."""
    data = np.frombuffer(lowrank.default_corpus().encode("utf-8"), dtype=np.uint8).astype(np.int32)
    rows = [data[i:i + sequence] for i in range(0, len(data), sequence)]
    return [row for row in rows if len(row) >= 2]


def pad(rows: list) -> tuple:
    """Rows padded on the right to the longest; the padding's labels are -100, so the loss skips it."""
    length = max(len(row) for row in rows)
    ids = np.zeros((len(rows), length), dtype=np.int32)
    labels = np.full((len(rows), length), -100, dtype=np.int32)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        labels[i, :len(row)] = row
    return ids, labels


def train(steps: int = 200, seed: int = 0, device: str = "auto", warmup: int = None, adapter_out=None,
          report=print) -> list:
    """Trains for `steps` steps and returns the loss of each; saves the adapter (PEFT's format)
    to `adapter_out` when given. Warm-up: 5% of the steps unless given, as `lowrank train`."""
    warmup = steps // 20 if warmup is None else warmup
    with lowrank.Engine(device) as engine:
        model = lowrank.Model.default(engine)
        model.add_adapter(r=8, alpha=16, targets="all-linear", seed=seed)
        model.configure_training(lr=1e-2, warmup=warmup, schedule="cosine", total_steps=steps, seed=seed)
        rows = corpus_rows()
        batches = [pad(rows[i:i + BATCH]) for i in range(0, len(rows), BATCH)]
        losses = []
        for step in range(steps):
            ids, labels = batches[step % len(batches)]
            losses.append(model.step(ids, labels))
            if report and (step + 1) % max(1, steps // 10) == 0:
                report(f"step {step + 1}/{steps}: loss {losses[-1]:.4f}")
        if adapter_out:
            model.save_adapter(adapter_out)
        return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of the steps)")
    parser.add_argument("--device", default="auto", help="auto, cpu, vulkan or vulkan:N")
    parser.add_argument("--adapter-out", default="lowrank-default-adapter-python")
    args = parser.parse_args()
    losses = train(args.steps, args.seed, args.device, args.warmup, args.adapter_out)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps; adapter saved to {args.adapter_out}/")


if __name__ == "__main__":
    main()
