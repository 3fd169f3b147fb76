#!/usr/bin/env python3
"""Times Hugging Face PEFT's LoRA and DoRA on PyTorch at lowrank-bench's shapes, so both sides can
be read together: the same presets and shape options, the same case names (suite, op) with the
variant "PEFT", and with --json the same JSON line schema as `lowrank-bench --json` (the roofline
fields are zero: this script does not probe the device).

    pip install torch peft
    python3 tools/peft_bench.py --preset paper                  # a table
    python3 tools/peft_bench.py --preset paper --json > peft.json
    .build/release/lowrank-bench --suite dora --preset paper --device cpu
    python3 tools/peft_bench.py --preset paper --device cuda --dtype bf16   # on a GPU (tools/gpu-record.sh)

The layer is a torch.nn.Linear(d_in, d_out) with bias in f32 (or --dtype), wrapped by
LoraConfig(r, lora_alpha=2r, use_dora=...), so the scale is 2 as in lowrank-bench; B is non-zero.
forward+backward is y = layer(x), then y.backward(G) with x requiring its gradient (dx, dA, dB and
DoRA's dm), as a training step runs it in any layer but the first.
"""
import argparse
import json
import statistics
import time

import torch

PRESETS = {
    "tiny": [(16, 64, 48, 4)],
    "small": [(128, 256, 256, 16)],
    "paper": [(512, 2048, 2048, 16)],
    "paper-sweep": [(512, d, d, r) for d in (4096, 8192) for r in (16, 32, 64, 128, 256, 384)],
    "llama-7b": [(512, 4096, 4096, 16), (512, 4096, 11008, 16), (512, 11008, 4096, 16)],
    "llama-8b": [(512, 4096, 4096, 16), (512, 4096, 1024, 16), (512, 4096, 14336, 16), (512, 14336, 4096, 16)],
}


def int_list(text):
    return [int(v) for v in text.split(",")]


def shapes(args):
    out = []
    for t, d_in, d_out, r in PRESETS[args.preset]:
        for tt in args.tokens or [t]:
            for i in args.d_in or [d_in]:
                for o in args.d_out or [d_out]:
                    for rr in args.rank or [r]:
                        if (tt, i, o, rr) not in out:
                            out.append((tt, i, o, rr))
    return out


def layer(d_in, d_out, r, dora, dtype):
    from peft import LoraConfig, get_peft_model

    class Wrapper(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(d_in, d_out, bias=True)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    model = get_peft_model(Wrapper(), LoraConfig(r=r, lora_alpha=2 * r, target_modules=["lin"], use_dora=dora, lora_dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return model.to(dtype)


def measure(body, runs, warmup, min_time, device):
    # A GPU runs the work asynchronously: each run ends when the device has finished it.
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        body()
    sync()
    times = []
    while len(times) < runs or (sum(times) < min_time * 1000 and len(times) < 100 * runs):
        start = time.perf_counter()
        body()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    q = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else [times[0]] * 3
    median = statistics.median(times)
    return median, times[0], 100 * (q[2] - q[0]) / median if median else 0, len(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--tokens", type=int_list)
    parser.add_argument("--d-in", type=int_list)
    parser.add_argument("--d-out", type=int_list)
    parser.add_argument("--rank", type=int_list)
    parser.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.25)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--device", default="cpu", help="a torch device: cpu (default), cuda, cuda:N")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    import peft

    if device.type == "cuda":
        backend, device_name = "torch-cuda", torch.cuda.get_device_name(device)
        driver = f"PyTorch {torch.__version__}, PEFT {peft.__version__}, CUDA {torch.version.cuda}"
    else:
        backend, device_name = "torch-cpu", "CPU"
        driver = f"PyTorch {torch.__version__}, PEFT {peft.__version__}, {torch.get_num_threads()} threads"
    rows = []
    for t, d_in, d_out, r in shapes(args):
        # x needs its gradient, as every layer but the first in a model does (and as lowrank-bench computes dx).
        x = torch.randn(t, d_in, dtype=dtype, device=device, requires_grad=True)
        g = torch.randn(t, d_out, dtype=dtype, device=device)
        lora_forward = 2.0 * (t * d_in * d_out + t * d_in * r + t * r * d_out)
        lora_backward = 2.0 * (2 * t * d_out * r + t * r * d_in + t * d_out * d_in + t * r * d_in)
        for suite, dora in (("lora", False), ("dora", True)):
            model = layer(d_in, d_out, r, dora, dtype).to(device)

            def forward():
                return model(x)

            def step():
                model.zero_grad(set_to_none=True)
                x.grad = None
                model(x).backward(g)

            for op, body, flops in (("forward", forward, lora_forward), ("forward+backward", step, lora_forward + lora_backward)):
                median, low, spread, n = measure(body, args.runs, args.warmup, args.min_time, device)
                rows.append({
                    "suite": suite, "op": op, "variant": "PEFT", "backend": backend, "device": device_name, "driver": driver,
                    "dtype": args.dtype, "T": t, "d_in": d_in, "d_out": d_out, "r": r, "ms_median": median, "ms_min": low,
                    "spread_percent": spread, "runs": n, "gflops": flops / median / 1e6, "gbytes_per_s": 0.0,
                    "bound": "unknown", "roofline_share": 0.0, "peak_gbytes_per_s": 0.0, "peak_gflops": 0.0,
                    "timing": "monotonic clock", "transient_bytes": None, "weight_bits_per_parameter": None,
                    "lowrank_version": "PEFT",
                })
                if args.json:
                    print(json.dumps(rows[-1], sort_keys=True), flush=True)
    if not args.json:
        print(f"{driver}")
        print(f"{'suite':6} {'op':17} {'T x d_in x d_out':22} {'ms median':>10} {'±IQR':>6} {'ms min':>10} {'GFLOP/s':>8}")
        for row in rows:
            shape = f"{row['T']}x{row['d_in']}x{row['d_out']} r{row['r']}"
            print(f"{row['suite']:6} {row['op']:17} {shape:22} {row['ms_median']:10.3f} {row['spread_percent']:5.0f}% "
                  f"{row['ms_min']:10.3f} {row['gflops']:8.2f}")


if __name__ == "__main__":
    main()
