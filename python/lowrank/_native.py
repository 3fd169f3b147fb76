"""Finds, loads and declares the engine's C library (Sources/CLowRank/lowrank.h)."""
import ctypes
import os
from pathlib import Path

from ._errors import BY_STATUS, InvalidArgumentError, LowRankError

ABI_VERSION = 1
LIBRARY_NAME = "libLowRankC.so"
OK, BUFFER_TOO_SMALL = 0, 12


class LibraryNotFound(ImportError):
    """libLowRankC.so is neither in the package nor where LOWRANK_LIBRARY points, or it has
    another ABI version than this package."""


class AdapterOptions(ctypes.Structure):
    """lowrank_adapter_options (lowrank.h), filled by lowrank_adapter_options_init."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("r", ctypes.c_int32),
        ("alpha", ctypes.c_float),
        ("dropout", ctypes.c_float),
        ("rslora", ctypes.c_int32),
        ("dora", ctypes.c_int32),
        ("targets", ctypes.c_char_p),
        ("seed", ctypes.c_uint64),
        ("peft_config", ctypes.c_char_p),
    ]


class TrainingOptions(ctypes.Structure):
    """lowrank_training_options (lowrank.h), filled by lowrank_training_options_init."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("schedule", ctypes.c_int32),
        ("learning_rate", ctypes.c_double),
        ("warmup_steps", ctypes.c_int64),
        ("total_steps", ctypes.c_int64),
        ("weight_decay", ctypes.c_double),
        ("max_grad_norm", ctypes.c_float),
        ("gradient_checkpointing", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
        ("loraplus_lr_ratio", ctypes.c_double),
        ("residual_dtype", ctypes.c_char_p),
        ("matmul_precision", ctypes.c_char_p),
    ]


class GenerationOptions(ctypes.Structure):
    """lowrank_generation_options (lowrank.h), filled by lowrank_generation_options_init."""
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("max_new_tokens", ctypes.c_int64),
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("seed", ctypes.c_uint64),
    ]


def _library_path() -> Path:
    named = os.environ.get("LOWRANK_LIBRARY")
    if named:
        path = Path(named)
        if not path.is_file():
            raise LibraryNotFound(f"LOWRANK_LIBRARY names {path}, which does not exist")
        return path
    packaged = Path(__file__).resolve().parent / LIBRARY_NAME
    if packaged.is_file():
        return packaged
    raise LibraryNotFound(
        f"the engine's C library is not installed with this package ({packaged} is missing). Build it with "
        "`swift build -c release --product LowRankC --static-swift-stdlib` and reinstall (`pip install ./python`), "
        "or set LOWRANK_LIBRARY to a built libLowRankC.so"
    )


def _load() -> ctypes.CDLL:
    path = _library_path()
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as error:
        text = str(error)
        if "libswift" in text:
            hint = ("it needs the Swift runtime it was built with: build it with --static-swift-stdlib (as the README says), "
                    "or put the toolchain's usr/lib/swift/linux folder on LD_LIBRARY_PATH")
        elif "openblas" in text:
            hint = "it needs OpenBLAS (Debian: libopenblas0)"
        else:
            hint = "a library it depends on is missing or it was built for another system"
        raise LibraryNotFound(f"cannot load {path}: {text}; {hint}") from error
    lib.lowrank_abi_version.restype = ctypes.c_uint32
    lib.lowrank_abi_version.argtypes = []
    found = lib.lowrank_abi_version()
    if found != ABI_VERSION:
        raise LibraryNotFound(f"{path} has C ABI version {found}; these bindings need {ABI_VERSION} (rebuild and reinstall both)")
    _declare(lib)
    return lib


def _declare(lib):
    c_int32_p, c_int64_p = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int64)
    u64, u64_p = ctypes.c_uint64, ctypes.POINTER(ctypes.c_uint64)
    string_out = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
    batch = [u64, c_int32_p, c_int32_p, ctypes.c_int64, ctypes.c_int64, ctypes.POINTER(ctypes.c_float)]
    packed_batch = batch[:3] + [c_int32_p] + batch[3:]
    signatures = {
        "lowrank_version": (ctypes.c_char_p, []),
        "lowrank_last_error": (ctypes.c_char_p, []),
        "lowrank_devices": (ctypes.c_int32, [ctypes.c_int32] + string_out),
        "lowrank_engine_open": (ctypes.c_int32, [ctypes.c_char_p, ctypes.c_int32, u64_p]),
        "lowrank_engine_device": (ctypes.c_int32, [u64] + string_out),
        "lowrank_engine_close": (ctypes.c_int32, [u64]),
        "lowrank_model_load": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.c_char_p, u64_p]),
        "lowrank_model_create_default": (ctypes.c_int32, [u64, u64_p]),
        "lowrank_model_config": (ctypes.c_int32, [u64] + string_out),
        "lowrank_model_close": (ctypes.c_int32, [u64]),
        "lowrank_default_corpus": (ctypes.c_int32, string_out),
        "lowrank_adapter_options_init": (ctypes.c_int32, [ctypes.POINTER(AdapterOptions)]),
        "lowrank_model_add_adapter": (ctypes.c_int32, [u64, ctypes.POINTER(AdapterOptions)]),
        "lowrank_model_add_adapter_with_data": (ctypes.c_int32, [u64, ctypes.POINTER(AdapterOptions), c_int32_p, c_int32_p, ctypes.c_int64,
                                                                 ctypes.c_int64, ctypes.c_int64]),
        "lowrank_model_load_adapter": (ctypes.c_int32, [u64, ctypes.c_char_p]),
        "lowrank_model_load_adapter_forced": (ctypes.c_int32, [u64, ctypes.c_char_p]),
        "lowrank_model_save_adapter": (ctypes.c_int32, [u64, ctypes.c_char_p]),
        "lowrank_model_adapter_tensor_count": (ctypes.c_int32, [u64, ctypes.POINTER(ctypes.c_int64)]),
        "lowrank_model_adapter_tensor_name": (ctypes.c_int32, [u64, ctypes.c_int64] + string_out),
        "lowrank_model_adapter_tensor_shape": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int64), c_int32_p]),
        "lowrank_model_read_adapter_tensor": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64]),
        "lowrank_model_write_adapter_tensor": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64]),
        "lowrank_training_options_init": (ctypes.c_int32, [ctypes.POINTER(TrainingOptions)]),
        "lowrank_model_set_training": (ctypes.c_int32, [u64, ctypes.POINTER(TrainingOptions)]),
        "lowrank_model_step": (ctypes.c_int32, batch),
        "lowrank_model_forward_backward": (ctypes.c_int32, batch),
        "lowrank_model_step_packed": (ctypes.c_int32, packed_batch),
        "lowrank_model_forward_backward_packed": (ctypes.c_int32, packed_batch),
        "lowrank_model_optimizer_step": (ctypes.c_int32, [u64, ctypes.POINTER(ctypes.c_float)]),
        "lowrank_model_step_count": (ctypes.c_int32, [u64, ctypes.POINTER(ctypes.c_int64)]),
        "lowrank_model_gradient_count": (ctypes.c_int32, [u64, ctypes.POINTER(ctypes.c_int64)]),
        "lowrank_model_gradients": (ctypes.c_int32, [u64, ctypes.POINTER(ctypes.c_float), ctypes.c_int64, ctypes.POINTER(ctypes.c_double)]),
        "lowrank_model_set_gradients": (ctypes.c_int32, [u64, ctypes.POINTER(ctypes.c_float), ctypes.c_int64, ctypes.c_double]),
        "lowrank_model_save_checkpoint": (ctypes.c_int32, [u64, ctypes.c_char_p]),
        "lowrank_model_load_checkpoint": (ctypes.c_int32, [u64, ctypes.c_char_p]),
        "lowrank_model_loss": (ctypes.c_int32, batch),
        "lowrank_model_loss_packed": (ctypes.c_int32, packed_batch),
        "lowrank_tokenizer_load": (ctypes.c_int32, [ctypes.c_char_p, u64_p]),
        "lowrank_model_tokenizer": (ctypes.c_int32, [u64, u64_p]),
        "lowrank_tokenizer_encode": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int32, c_int32_p, ctypes.c_int64, c_int64_p]),
        "lowrank_tokenizer_decode": (ctypes.c_int32, [u64, c_int32_p, ctypes.c_int64, ctypes.c_int32] + string_out),
        "lowrank_tokenizer_apply_chat_template": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.c_int32] + string_out),
        "lowrank_tokenizer_encode_example": (ctypes.c_int32, [u64, ctypes.c_char_p, ctypes.c_int32, c_int32_p, c_int32_p, ctypes.c_int64,
                                                              c_int64_p]),
        "lowrank_tokenizer_info": (ctypes.c_int32, [u64] + string_out),
        "lowrank_tokenizer_close": (ctypes.c_int32, [u64]),
        "lowrank_generation_options_init": (ctypes.c_int32, [ctypes.POINTER(GenerationOptions)]),
        "lowrank_model_stop_tokens": (ctypes.c_int32, [u64, c_int32_p, ctypes.c_int64, c_int64_p]),
        "lowrank_model_generate": (ctypes.c_int32, [u64, c_int32_p, ctypes.c_int64, ctypes.POINTER(GenerationOptions), c_int32_p,
                                                    ctypes.c_int64, c_int32_p, ctypes.c_int64, c_int64_p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes


lib = _load()


def check(status: int) -> None:
    """Raises the exception for a failed call, with the engine's message."""
    if status != OK:
        message = lib.lowrank_last_error().decode("utf-8", "replace")
        raise BY_STATUS.get(status, LowRankError)(message, status)


def read_string(function, *arguments) -> str:
    """Calls a function that copies a string out, growing the buffer once if it must."""
    length = ctypes.c_size_t(0)
    buffer = ctypes.create_string_buffer(256)
    status = function(*arguments, buffer, len(buffer), ctypes.byref(length))
    if status == BUFFER_TOO_SMALL:
        buffer = ctypes.create_string_buffer(length.value + 1)
        status = function(*arguments, buffer, len(buffer), ctypes.byref(length))
    check(status)
    return buffer.raw[: length.value].decode("utf-8")


def read_ids(function, *arguments) -> list:
    """Calls a function that copies ids out (ids, capacity, *count), growing the buffer once if it must."""
    count = ctypes.c_int64(0)
    buffer = (ctypes.c_int32 * 256)()
    status = function(*arguments, buffer, len(buffer), ctypes.byref(count))
    if status == BUFFER_TOO_SMALL:
        buffer = (ctypes.c_int32 * count.value)()
        status = function(*arguments, buffer, len(buffer), ctypes.byref(count))
    check(status)
    return list(buffer[: count.value])


def encode(text, what: str) -> bytes:
    """A string argument as the C ABI takes it: UTF-8 up to its NUL. A NUL inside would end it there
    (save_adapter("/x/a\\0b") would write /x/a), so it is refused before the call."""
    if isinstance(text, os.PathLike):
        text = os.fspath(text)
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string or a path, not {type(text).__name__}")
    if "\0" in text:
        raise InvalidArgumentError(f"{what} {text!r} contains a NUL character at {text.index(chr(0))}, which C strings cannot hold")
    return text.encode("utf-8")
