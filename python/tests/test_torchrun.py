"""Gradients out of and into the engine: a torch.distributed script that all-reduces them trains
as one process with all the processes' rows."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lowrank

from conftest import REPOSITORY, cli_path, read_safetensors

EXAMPLES = REPOSITORY / "python" / "examples"
sys.path.insert(0, str(EXAMPLES))
import train_default  # noqa: E402


def test_gradients_round_trip_and_sum_as_one_batch(tmp_path):
    """gradients() of two micro-batches, added, and set back on a model that ran neither, take the
    step that accumulating both takes; set gradients, like accumulated ones, refuse a checkpoint
    before their step."""
    rows = train_default.corpus_rows()
    halves = [train_default.pad(rows[0:2]), train_default.pad(rows[2:4])]
    with lowrank.Engine("cpu") as engine:
        models = [lowrank.Model.default(engine) for _ in range(3)]
        for model in models:
            model.add_adapter(r=4, targets="all-linear", seed=5)
            model.configure_training(lr=1e-2, seed=5)
        empty, tokens = models[0].gradients()
        assert tokens == 0 and not empty.any()
        parts = []
        for half in halves:
            models[0].forward_backward(*half)
            parts.append(models[0].gradients())
            models[0].set_gradients(np.zeros_like(parts[-1][0]), 0)  # each part alone
        for half in halves:
            models[1].forward_backward(*half)
        summed, summed_tokens = models[1].gradients()
        assert summed_tokens == parts[0][1] + parts[1][1] > 0
        np.testing.assert_allclose(parts[0][0] + parts[1][0], summed, rtol=1e-5, atol=1e-6 * np.abs(summed).max())
        models[1].optimizer_step()
        models[2].set_gradients(parts[0][0] + parts[1][0], summed_tokens)
        with pytest.raises(lowrank.InvalidArgumentError, match="await their optimizer step"):
            models[2].save_checkpoint(tmp_path / "checkpoint")
        models[2].optimizer_step()
        for name, want in models[1].adapter_state_dict().items():
            got = models[2].get_adapter_tensor(name)
            assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want), name
        with pytest.raises(lowrank.ShapeError):
            models[2].set_gradients(summed[:-1], summed_tokens)
        with pytest.raises(lowrank.DTypeError):
            models[2].set_gradients(summed.astype(np.int32), summed_tokens)
        with pytest.raises(ValueError):
            models[2].set_gradients(summed, -1)
        summed[3] = np.nan
        with pytest.raises(lowrank.NumericalError, match="lora_A"):
            models[2].set_gradients(summed, summed_tokens)


STEPS, BATCH, SEED = 3, 2, 7


@pytest.fixture(scope="module")
def torchrun_adapter(tmp_path_factory):
    """The adapter of `torchrun --nproc-per-node 2` of the example, 2 rows a process."""
    try:
        import torch  # noqa: F401
    except ImportError as error:
        pytest.skip(f"torch is not importable here ({error}); the example needs torch.distributed")
    out = tmp_path_factory.mktemp("torchrun") / "adapter"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(EXAMPLES / "train_torchrun.py"), "--steps", str(STEPS), "--batch-size", str(BATCH),
                             "--seed", str(SEED), "--device", "cpu", "--adapter-out", str(out)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr}"
    return read_safetensors(out / "adapter_model.safetensors")


def test_torchrun_example_matches_one_process_with_both_shares(torchrun_adapter, tmp_path):
    """The example's two processes give the adapter of one process with 4 rows a step, within 1e-5
    relative per tensor (the bound of the mpirun tests: the sums of a batch and of its parts round
    differently)."""
    import train_torchrun

    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.default(engine)
        train_torchrun.configure(model, STEPS, SEED)
        batches = train_torchrun.global_batches(2 * BATCH, 1)
        for step in range(STEPS):
            model.step(*train_default.pad(batches[step % len(batches)]))
        model.save_adapter(tmp_path / "one")
    one = read_safetensors(tmp_path / "one" / "adapter_model.safetensors")
    assert torchrun_adapter.keys() == one.keys()
    worst = 0.0
    for name, want in one.items():
        difference, norm = np.linalg.norm(torchrun_adapter[name] - want), np.linalg.norm(want)
        assert norm > 0 and difference <= 1e-5 * norm, f"{name}: relative error {difference / norm}"
        worst = max(worst, difference / norm)
    print(f"torchrun × 2 against one process: worst relative error {worst:.3g}")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed (Debian: openmpi-bin libopenmpi-dev)")
def test_torchrun_example_matches_mpirun(torchrun_adapter, tmp_path):
    """The example is the default job of `lowrank train --no-shuffle`, and its two processes sum
    what two mpirun ranks sum in the same order: the adapters are the same bits."""
    command = [shutil.which("mpirun"), "--allow-run-as-root", "--oversubscribe", "-np", "2", str(cli_path()),
                            "train", "--device", "cpu", "--steps", str(STEPS), "--batch-size", str(BATCH), "--no-shuffle",
                            "--seed", str(SEED), "--adapter-out", str(tmp_path / "mpi")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, f"mpirun failed:\n{result.stdout}\n{result.stderr}"
    mpi = read_safetensors(tmp_path / "mpi" / "adapter_model.safetensors")
    assert torchrun_adapter.keys() == mpi.keys()
    for name, want in mpi.items():
        assert np.array_equal(torchrun_adapter[name], want), name
