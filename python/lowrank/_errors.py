"""The engine's status codes (lowrank.h's lowrank_status) as Python exceptions."""


class LowRankError(Exception):
    """A call into the engine failed; the message is the engine's own."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class InvalidArgumentError(LowRankError, ValueError):
    pass


class ClosedHandleError(LowRankError):
    """An engine or model used after close() (or a model of a closed engine)."""


class ShapeError(LowRankError, ValueError):
    pass


class DTypeError(LowRankError, TypeError):
    pass


class DeviceError(LowRankError):
    """No such device, or the device failed (Vulkan, shader compilation, validation)."""


class UnsupportedError(LowRankError):
    pass


class OutOfMemoryError(LowRankError, MemoryError):
    pass


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
