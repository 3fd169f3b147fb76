"""The engine's status codes (lowrank.h's lowrank_status) as Python exceptions."""


class LowRankError(Exception):
    """A call into the engine failed; the message is the engine's own."""

    def __init__(self, message, status=None):
        """message: the engine's sentence (lowrank_last_error()); status: the lowrank_status code, or None."""
        super().__init__(message)
        self.status = status


class InvalidArgumentError(LowRankError, ValueError):
    """An argument out of its range or of the wrong kind (a rank of 0, an unknown schedule, a string
    holding a NUL character), or a config field the engine refuses."""


class ClosedHandleError(LowRankError):
    """An engine or model used after close() (or a model of a closed engine)."""


class ShapeError(LowRankError, ValueError):
    """Arrays or tensors whose shapes do not fit together (token ids and labels, an adapter tensor)."""


class DTypeError(LowRankError, TypeError):
    """A tensor or file of a dtype that does not convert to the one needed."""


class DeviceError(LowRankError):
    """No such device, or the device failed (Vulkan, shader compilation, validation)."""


class UnsupportedError(LowRankError):
    """Something the engine does not do (yet): an architecture, a quantization, a device feature."""


class OutOfMemoryError(LowRankError, MemoryError):
    """The host or the device could not allocate what the call needs."""


class FileFormatError(LowRankError, ValueError):
    """A file that is malformed, or disagrees with the model (names the file and tensor)."""


class FileAccessError(LowRankError, OSError):
    """A file or folder that cannot be read or written."""


class NumericalError(LowRankError, ArithmeticError):
    """The loss became NaN or infinite."""


class StateError(LowRankError):
    """A call out of order, such as a step before an adapter is attached."""


# lowrank_status values, in the header's order.
BY_STATUS = {
    1: InvalidArgumentError,
    2: ClosedHandleError,
    3: ShapeError,
    4: DTypeError,
    5: DeviceError,
    6: UnsupportedError,
    7: OutOfMemoryError,
    8: DeviceError,
    9: FileFormatError,
    10: FileAccessError,
    11: NumericalError,
    13: StateError,
}
