"""Packages the engine's C library with the bindings.

The library is the one this checkout built (`swift build -c release --product LowRankC
--static-swift-stdlib`, as the README says), or the file `LOWRANK_LIBRARY` names. It is copied into
the package, so the installed bindings load the very library they were built with.
"""
import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

LIBRARY = "libLowRankC.so"
REPOSITORY = Path(__file__).resolve().parent.parent


def built_library() -> Path:
    named = os.environ.get("LOWRANK_LIBRARY")
    candidates = [Path(named)] if named else [REPOSITORY / ".build" / "release" / LIBRARY]
    for path in candidates:
        if path.is_file():
            return path
    raise SystemExit(
        f"lowrank: {candidates[0]} does not exist. Build the engine's C library first:\n"
        f"    swift build -c release --product LowRankC --static-swift-stdlib\n"
        f"in {REPOSITORY}, or set LOWRANK_LIBRARY to a built {LIBRARY}."
    )


class BuildWithLibrary(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "lowrank" / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built_library(), target)


class BinaryDistribution(Distribution):
    """The wheel holds a native library, so it is tagged for this platform, not 'any'."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
