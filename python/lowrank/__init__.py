"""LowRank: LoRA, rsLoRA and DoRA fine-tuning of Llama-family models on Vulkan or the CPU,
driven from Python through the engine's C ABI.

    import lowrank
    model = lowrank.Model.from_pretrained("path/to/checkpoint", quantize="nf4")
    model.add_adapter(r=16, alpha=32, targets="all-linear")
    model.configure_training(lr=2e-4)
    for batch in batches:                 # numpy [batch, sequence] token ids
        loss = model.step(batch)
    model.save_adapter("adapter")         # PEFT's format
    print(model.generate("What is LoRA?"))  # with the folder's tokenizer and chat template
"""
import json

from ._errors import (ClosedHandleError, DeviceError, DTypeError, FileAccessError, FileFormatError,
                      InvalidArgumentError, LowRankError, NumericalError, OutOfMemoryError, ShapeError,
                      StateError, UnsupportedError)
from ._native import LibraryNotFound, lib, read_string
from .engine import Engine, default_engine
from .model import Model
from .tokenizer import Tokenizer

__version__ = lib.lowrank_version().decode()


def devices(validation: bool = False) -> dict:
    """Every device the engine sees: {"devices": [{"identifier", "name", "kind"}, ...], "selected":
    the one Engine("auto") picks, "vulkan_problem": why Vulkan is unusable, or None}."""
    return json.loads(read_string(lib.lowrank_devices, int(bool(validation))))


def default_corpus() -> str:
    """The byte-level text `lowrank train` trains the default model on (one token per byte)."""
    return read_string(lib.lowrank_default_corpus)


__all__ = ["Engine", "Model", "Tokenizer", "default_engine", "default_corpus", "devices", "LowRankError", "ClosedHandleError", "DeviceError",
           "DTypeError", "FileAccessError", "FileFormatError", "InvalidArgumentError", "LibraryNotFound",
           "NumericalError", "OutOfMemoryError", "ShapeError", "StateError", "UnsupportedError"]
