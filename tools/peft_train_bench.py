#!/usr/bin/env python3
"""The benchmark of record for a whole training step on the CPU: transformers + PEFT on PyTorch
beside `lowrank-bench --suite train-model`, on the same model, batch and adapter, in interleaved
rounds.

    pip install torch transformers peft
    swift build -c release --product lowrank-bench
    nice python3 tools/peft_train_bench.py --lowrank .build/release/lowrank-bench --rounds 3
    python3 tools/peft_train_bench.py --adapter lora --rounds 1     # PEFT alone

The model is a Llama decoder of TinyLlama's shape by default (hidden 2048, intermediate 5632, 32
heads over 4 KV heads of 64 columns, vocabulary 32000) with 4 layers, random weights in bf16;
LoRA (or DoRA) r = 16, alpha = 2r, no dropout, on all seven projections of every block, the
adapters in f32 (PEFT's default autocast), LowRank at LOWRANK_MATMUL_PRECISION=medium (--precision:
the activations that meet a bf16 weight rounded to bf16, as PyTorch's bf16 layers compute); 2 rows of 256 tokens (`lowrank-bench`'s token formula);
AdamW at lr 1e-4. A step is the forward pass with the mean next-token loss, the backward pass and
the optimizer step, as `lowrank train` takes one.

Each round runs, for each adapter, one PEFT process and one `lowrank-bench` process (which goes
first alternates by round), each loading the model, taking --warmup steps and then --steps timed
ones. The report gives, per adapter, the median step time of each side over all rounds (the
median of the rounds' medians), the median of the rounds' ratios (PEFT over LowRank: above 1 means
LowRank is faster), and each side's peak resident memory (the process's RSS high-water mark, from
wait4, loading included). With --json, one object per adapter on stdout.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

VOCABULARY = 32000
LAYERS = 4
ROWS = 2
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def token(row, i):
    """BenchContext.trainModelToken: the same batch on both sides."""
    return (row * 100_003 + i * 7919 + 13) % VOCABULARY


def peft_worker(args):
    """One PEFT process: load, warm up, time --steps steps; one JSON line on stdout."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    heads = max(1, args.hidden // 64)
    config = LlamaConfig(vocab_size=VOCABULARY, hidden_size=args.hidden, intermediate_size=args.intermediate,
                         num_hidden_layers=LAYERS, num_attention_heads=heads, num_key_value_heads=heads // 8 if heads % 8 == 0 else 1,
                         rms_norm_eps=1e-5, max_position_embeddings=max(2048, args.tokens), tie_word_embeddings=False)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[args.dtype]))
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=PROJECTIONS,
                                             use_dora=args.adapter == "dora", task_type="CAUSAL_LM"))
    model.train()
    sequence = args.tokens // ROWS
    ids = torch.tensor([[token(row, i) for i in range(sequence)] for row in range(ROWS)], dtype=torch.long)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        loss = step()
        times.append((time.perf_counter() - start) * 1000)
    print(json.dumps({"ms": times, "loss": loss, "threads": torch.get_num_threads(), "torch": torch.__version__}))


def run_child(command, env=None):
    """Runs `command`; its stdout, and its peak RSS in bytes. The child is reaped by wait4 (not
    Popen.wait), whose rusage is that child's alone; its ru_maxrss is in KiB."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=env)
        out = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            err.seek(0)
            sys.exit(f"{' '.join(command)} failed with status {process.returncode}:\n{err.read().decode(errors='replace')}")
    return out.decode(), usage.ru_maxrss * 1024


def peft_round(args, adapter):
    command = [sys.executable, __file__, "--worker", "--adapter", adapter, "--tokens", str(args.tokens), "--hidden", str(args.hidden),
               "--intermediate", str(args.intermediate), "--rank", str(args.rank), "--dtype", args.dtype,
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    out, peak = run_child(command)
    result = json.loads(out.strip().splitlines()[-1])
    return statistics.median(result["ms"]), peak, result


def lowrank_round(args, adapter):
    command = [args.lowrank, "--suite", "train-model", "--device", "cpu", "--json", "--adapter", adapter, "--dtype", args.dtype,
               "--tokens", str(args.tokens), "--d-in", str(args.hidden), "--d-out", str(args.intermediate), "--rank", str(args.rank),
               "--runs", str(args.steps), "--warmup", str(args.warmup), "--min-time", "0"]
    out, peak = run_child(command, env=dict(os.environ, LOWRANK_MATMUL_PRECISION=args.precision))
    record = json.loads(out.strip().splitlines()[-1])
    return record["ms_median"], peak, record


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lowrank", help="path of lowrank-bench (release build); without it, PEFT alone")
    parser.add_argument("--adapter", default="lora,dora", help="lora, dora or lora,dora")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per process first")
    parser.add_argument("--tokens", type=int, default=512, help="tokens per step, over 2 rows")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--intermediate", type=int, default=5632)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    parser.add_argument("--precision", default="medium", choices=["medium", "highest"],
                        help="LowRank's LOWRANK_MATMUL_PRECISION: medium rounds the activations that meet a bf16 weight "
                             "to bf16, as PyTorch's bf16 model computes; highest keeps LowRank's products f32")
    parser.add_argument("--json", action="store_true", help="one JSON object per adapter")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    adapters = args.adapter.split(",")
    if not adapters or any(a not in ("lora", "dora") for a in adapters) or args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--adapter takes lora, dora or lora,dora; --rounds and --steps must be positive, --warmup non-negative")
    if args.tokens % ROWS or args.tokens < 2 * ROWS:
        parser.error(f"--tokens must be a multiple of {ROWS}, at least {2 * ROWS}")
    if args.worker:
        return peft_worker(args)

    sides = {a: {"PEFT": [], "LowRank": []} for a in adapters}
    for round_index in range(args.rounds):
        for adapter in adapters:
            order = [("PEFT", peft_round), ("LowRank", lowrank_round)] if args.lowrank else [("PEFT", peft_round)]
            for name, body in order if round_index % 2 == 0 else reversed(order):
                ms, peak, _ = body(args, adapter)
                sides[adapter][name].append((ms, peak))
                print(f"round {round_index + 1} {adapter} {name}: {ms:.0f} ms a step, peak RSS {peak / 2**30:.2f} GiB", file=sys.stderr)

    for adapter in adapters:
        peft, lowrank = sides[adapter]["PEFT"], sides[adapter]["LowRank"]
        summary = {"adapter": adapter, "tokens": args.tokens, "hidden": args.hidden, "intermediate": args.intermediate, "layers": LAYERS,
                   "vocabulary": VOCABULARY, "rank": args.rank, "dtype": args.dtype, "rounds": args.rounds, "steps_per_round": args.steps,
                   "peft_ms_median": statistics.median(m for m, _ in peft), "peft_peak_rss_bytes": max(p for _, p in peft)}
        if lowrank:
            summary["lowrank_ms_median"] = statistics.median(m for m, _ in lowrank)
            summary["lowrank_peak_rss_bytes"] = max(p for _, p in lowrank)
            summary["speedup_median"] = statistics.median(p / l for (p, _), (l, _) in zip(peft, lowrank))
        if args.json:
            print(json.dumps(summary))
            continue
        line = f"{adapter}: PEFT {summary['peft_ms_median']:.0f} ms a step, peak {summary['peft_peak_rss_bytes'] / 2**30:.2f} GiB"
        if lowrank:
            line += (f"; LowRank {summary['lowrank_ms_median']:.0f} ms, peak {summary['lowrank_peak_rss_bytes'] / 2**30:.2f} GiB;"
                     f" PEFT/LowRank median ratio {summary['speedup_median']:.2f}x over {args.rounds} rounds")
        print(line)


if __name__ == "__main__":
    main()
