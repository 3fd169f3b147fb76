"""Shared fixtures: the `lowrank` CLI to compare against, the committed Llama fixtures, and the
devices this machine has."""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lowrank

REPOSITORY = Path(__file__).resolve().parents[2]
FIXTURES = REPOSITORY / "Tests" / "Fixtures" / "llama"


def cli_path() -> Path:
    named = os.environ.get("LOWRANK_CLI")
    candidates = [Path(named)] if named else [REPOSITORY / ".build" / c / "lowrank" for c in ("debug", "release")]
    for path in candidates:
        if path.is_file():
            return path
    pytest.fail(f"no lowrank CLI to compare with (looked for {', '.join(map(str, candidates))}); build it or set LOWRANK_CLI")


def run_cli(*arguments) -> subprocess.CompletedProcess:
    """Runs the CLI with this process's environment (LOWRANK_VALIDATION included)."""
    result = subprocess.run([str(cli_path()), *map(str, arguments)], capture_output=True, text=True)
    assert result.returncode == 0, f"lowrank {' '.join(map(str, arguments))} failed:\n{result.stderr}"
    return result


def cli_losses(adapter_out: Path, steps: int) -> list:
    """The per-step losses `lowrank train` recorded in its final checkpoint."""
    return json.loads((adapter_out / f"checkpoint-{steps}" / "trainer_state.json").read_text())["losses"]


def read_safetensors(path: Path) -> dict:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    data = raw[8 + length:]
    types = {"F32": np.float32, "F16": np.float16, "BF16": None}
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        assert types[entry["dtype"]] is not None, f"{name}: {entry['dtype']} is not read here"
        out[name] = np.frombuffer(data[begin:end], dtype=types[entry["dtype"]]).reshape(entry["shape"])
    return out


def jsonl_rows(path: Path) -> list:
    return [np.array(json.loads(line)["input_ids"], dtype=np.int32) for line in path.read_text().splitlines() if line.strip()]


def _vulkan_available() -> bool:
    try:
        lowrank.Engine("vulkan").close()
        return True
    except lowrank.DeviceError:
        return False


DEVICES = ["cpu", pytest.param("vulkan", marks=pytest.mark.skipif(not _vulkan_available(), reason="no Vulkan device here"))]


@pytest.fixture(params=DEVICES)
def device(request, monkeypatch):
    """Each device in turn; Vulkan with validation on (engines made without an explicit setting read it)."""
    monkeypatch.setenv("LOWRANK_VALIDATION", "1" if request.param == "vulkan" else "0")
    return request.param
