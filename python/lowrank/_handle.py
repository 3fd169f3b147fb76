"""What engines and models share: a handle released exactly once, by close(), a with block, or
garbage collection."""
from ._native import check


class NativeHandle:
    """An object of the engine's C ABI behind a handle, closed by close(), a with block, or garbage
    collection."""

    def __init__(self, handle: int):
        """handle: the C ABI's handle (lowrank_engine or lowrank_model), which this object now owns."""
        self._handle = handle
        self._closed = False

    @property
    def handle(self) -> int:
        """The C ABI's handle (a 64-bit number, never reused)."""
        return self._handle

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    def _release(self):
        """Frees the native object; returns the call's status, or None when nothing was left to free."""
        raise NotImplementedError

    def close(self) -> None:
        """Frees the native object; using it afterwards raises ClosedHandleError. Closing twice is harmless."""
        if not self._closed:
            self._closed = True
            status = self._release()
            if status is not None:
                check(status)

    def __enter__(self):
        """Returns the object; leaving the with block closes it."""
        return self

    def __exit__(self, *_):
        self.close()

    def __del__(self):
        # No exception may leave __del__, so the status is not checked here.
        if not getattr(self, "_closed", True):
            self._closed = True
            self._release()
