"""Engines: the device models run on."""
import ctypes
import os
import threading

from ._handle import NativeHandle
from ._native import check, encode, lib, read_string


class Engine(NativeHandle):
    """A device to run on: "auto" (the best GPU Vulkan sees, else the CPU backend), "cpu", "vulkan"
    or "vulkan:N". With validation=True the Khronos validation layer checks every Vulkan call, and
    a message from it fails the call that caused it; by default, validation follows the
    LOWRANK_VALIDATION environment variable, as the `lowrank` CLI does."""

    def __init__(self, device: str = "auto", validation: bool = None):
        """Opens the device; a device that is not there raises DeviceError listing those that are."""
        if validation is None:
            validation = os.environ.get("LOWRANK_VALIDATION", "") in ("1", "true")
        handle = ctypes.c_uint64(0)
        check(lib.lowrank_engine_open(encode(device, "device"), int(bool(validation)), ctypes.byref(handle)))
        super().__init__(handle.value)

    @property
    def device(self) -> str:
        """The device's identifier and name, such as "cpu (OpenBLAS ...)"."""
        return read_string(lib.lowrank_engine_device, self._handle)

    def _release(self):
        # Closing an engine closes every model on it.
        return lib.lowrank_engine_close(self._handle)

    def __repr__(self):
        return f"Engine({'closed' if self._closed else self.device})"


_default = None
_default_lock = threading.Lock()


def default_engine() -> Engine:
    """The engine models use when none is given: Engine("auto"), made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Engine()
        return _default
