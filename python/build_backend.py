"""The package's PEP 517 build backend, which needs nothing installed: the package is Python
files and the engine's C library, so its wheel is a zip of those and their metadata. `pip install
./python` therefore works offline, without setuptools or wheel.

The library is the one this checkout built (`swift build -c release --product LowRankC
-Xswiftc -static-stdlib`, as the README says), or the file LOWRANK_LIBRARY names; the wheel
carries it, so the installed bindings load the very library they were built with.
"""
import base64
import hashlib
import os
import re
import sysconfig
import zipfile
from pathlib import Path

NAME = "lowrank"
LIBRARY = "libLowRankC.so"
HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent


def _version() -> str:
    """The engine's version, from the one place it is written (Engine.version)."""
    source = (REPOSITORY / "Sources" / "LowRank" / "Engine.swift").read_text()
    return re.search(r'static let version = "([^"]+)"', source).group(1)


def _library() -> Path:
    named = os.environ.get("LOWRANK_LIBRARY")
    path = Path(named) if named else REPOSITORY / ".build" / "release" / LIBRARY
    if not path.is_file():
        raise RuntimeError(
            f"lowrank: {path} does not exist. Build the engine's C library first:\n"
            f"    swift build -c release --product LowRankC -Xswiftc -static-stdlib\n"
            f"in {REPOSITORY}, or set LOWRANK_LIBRARY to a built {LIBRARY}.")
    return path


def _tag() -> str:
    # Python code over ctypes: any Python 3, but this platform's native library.
    return "py3-none-" + re.sub(r"[-.]", "_", sysconfig.get_platform())


def _metadata(version: str) -> str:
    return (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {version}\n"
            "Summary: Python bindings of the LowRank engine: LoRA, rsLoRA and DoRA fine-tuning on Vulkan or the CPU\n"
            "Requires-Python: >=3.9\nRequires-Dist: numpy\n")


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version, tag = _version(), _tag()
    dist_info = f"{NAME}-{version}.dist-info"
    files = [(f"{NAME}/{p.name}", p.read_bytes(), 0o644) for p in sorted((HERE / NAME).glob("*.py"))]
    files.append((f"{NAME}/{LIBRARY}", _library().read_bytes(), 0o755))
    files.append((f"{dist_info}/METADATA", _metadata(version).encode(), 0o644))
    wheel = f"Wheel-Version: 1.0\nGenerator: lowrank build_backend\nRoot-Is-Purelib: false\nTag: {tag}\n"
    files.append((f"{dist_info}/WHEEL", wheel.encode(), 0o644))
    record = "\n".join([_record_line(path, data) for path, data, _ in files] + [f"{dist_info}/RECORD,,"]) + "\n"
    files.append((f"{dist_info}/RECORD", record.encode(), 0o644))
    name = f"{NAME}-{version}-{tag}.whl"
    with zipfile.ZipFile(Path(wheel_directory) / name, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data, mode in files:
            entry = zipfile.ZipInfo(path, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = (0o100000 | mode) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return name
