"""Data-parallel training from Python with torch.distributed: each process launched by torchrun
trains the built-in model (as examples/train_default.py does) on its contiguous share of every
global batch, and the processes all-reduce the adapter's gradients before each optimizer step,
so N processes with --batch-size B train exactly as one process with batch size N*B, as
`mpirun -np N lowrank train` ranks do. Gloo all-reduces on the CPU; any backend works.

    torchrun --nproc-per-node 2 examples/train_torchrun.py --steps 20 --batch-size 4 --device cpu
"""
import argparse

import torch
import torch.distributed as dist

import lowrank
from train_default import corpus_rows, pad


def configure(model: "lowrank.Model", steps: int, seed: int) -> None:
    """The adapter and optimizer every process starts from: the same seed gives the same adapter."""
    model.add_adapter(r=8, alpha=16, targets="all-linear", seed=seed)
    model.configure_training(lr=1e-2, warmup=steps // 20, schedule="cosine", total_steps=steps, seed=seed)


def global_batches(batch_size: int, processes: int) -> list:
    """The corpus rows in order, cut into global batches of batch_size * processes rows."""
    rows, size = corpus_rows(), batch_size * processes
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def all_reduce_gradients(model: "lowrank.Model", local_loss: float) -> float:
    """Sums the accumulated gradients and their token counts over every process (one all-reduce
    of the fused vector), hands them back to the engine, and returns the step's loss: the mean
    over every predicted token of every process."""
    vector, tokens = model.gradients()
    gradients = torch.from_numpy(vector)
    # Token counts and token-weighted losses in float64: exact counts, and the loss only reported.
    counts = torch.tensor([tokens, local_loss * tokens], dtype=torch.float64)
    dist.all_reduce(gradients)
    dist.all_reduce(counts)
    model.set_gradients(gradients.numpy(), int(counts[0].item()))
    return counts[1].item() / counts[0].item()


def train(steps: int, batch_size: int, seed: int = 0, device: str = "cpu", adapter_out=None, report=print) -> list:
    """Trains for `steps` steps as this process's share of the torch.distributed group (begun
    here from torchrun's environment if need be); returns each step's loss, and rank 0 saves the
    adapter to `adapter_out`."""
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    rank, processes = dist.get_rank(), dist.get_world_size()
    batches = global_batches(batch_size, processes)
    losses = []
    with lowrank.Engine(device) as engine:
        model = lowrank.Model.default(engine)
        configure(model, steps, seed)
        for step in range(steps):
            share = batches[step % len(batches)][rank * batch_size:(rank + 1) * batch_size]
            # A share past the end of a short last batch adds nothing, as in a single process:
            # the process still joins the all-reduce, with zeros.
            local_loss = model.forward_backward(*pad(share)) if share else 0.0
            losses.append(all_reduce_gradients(model, local_loss))
            model.optimizer_step()
            if report and rank == 0 and (step + 1) % max(1, steps // 10) == 0:
                report(f"step {step + 1}/{steps}: loss {losses[-1]:.4f}")
        if adapter_out and rank == 0:
            model.save_adapter(adapter_out)
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4, help="rows per process per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="auto, cpu, vulkan or vulkan:N")
    parser.add_argument("--adapter-out", default="lowrank-torchrun-adapter")
    args = parser.parse_args()
    losses = train(args.steps, args.batch_size, args.seed, args.device, args.adapter_out)
    if dist.get_rank() == 0:
        print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps on {dist.get_world_size()} processes; "
              f"adapter saved to {args.adapter_out}/")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
