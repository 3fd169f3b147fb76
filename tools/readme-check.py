#!/usr/bin/env python3
"""Runs the README's shell examples as a person following it top to bottom would: every ```sh
block, in order, in the checkout, each with `bash -e -o pipefail`, with the folder the README's
install step builds into (.build/release) first on the PATH. A block is left out only where an
HTML comment on the line before it says why:

    <!-- not run: needs four GPUs and a Llama-3-8B checkpoint -->

Those are listed with their reasons, so what CI does not run is visible. Whatever the blocks
create in the checkout (adapters, downloads, merged models) is removed afterwards, unless --keep.

    tools/readme-check.py [--list] [--keep] [--timeout SECONDS] [README.md]

Exit status 1 when a block fails (its output is printed), 2 on a README that cannot be read.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def blocks(text):
    """(line, language, reason not run or None, code) for each fenced block, in order."""
    lines = text.split("\n")
    found, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, language, start = opening.group(1), opening.group(2), i
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = NOT_RUN.search(previous)
        i += 1
        code = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            code.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i == len(lines):
            raise SystemExit(f"readme-check: the block opened at line {start + 1} is never closed")
        found.append((start + 1, language, skip.group(1) if skip else None, "\n".join(code)))
        i += 1
    return found


def entries():
    """The checkout's top-level entries git does not track (ignored ones included)."""
    listed = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=normal"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    return {line[3:].rstrip("/").split("/")[0] for line in listed.splitlines() if line[:2] in ("??", "!!")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("readme", nargs="?", default=str(ROOT / "README.md"))
    parser.add_argument("--list", action="store_true", help="list the blocks and what would run, run nothing")
    parser.add_argument("--keep", action="store_true", help="keep what the blocks create in the checkout")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one block may take (default 1800)")
    options = parser.parse_args()
    try:
        text = Path(options.readme).read_text()
    except OSError as error:
        print(f"readme-check: {error}", file=sys.stderr)
        return 2
    shell = [b for b in blocks(text) if b[1] in ("sh", "bash", "shell")]
    for line, _, reason, code in shell:
        first = next((c for c in code.split("\n") if c.strip() and not c.lstrip().startswith("#")), "")
        print(f"README.md:{line}: {'not run: ' + reason if reason else 'runs'}: {first[:100]}")
    if options.list:
        return 0

    environment = dict(os.environ, PATH=f"{ROOT / '.build' / 'release'}{os.pathsep}{os.environ.get('PATH', '')}")
    before = entries()
    status = 0
    try:
        for line, _, reason, code in shell:
            if reason:
                continue
            started = time.monotonic()
            try:
                result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=ROOT, env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=options.timeout)
                failed, output = result.returncode != 0, result.stdout
            except subprocess.TimeoutExpired as timeout:
                failed, output = True, (timeout.stdout or b"").decode(errors="replace") + f"\n(timed out after {options.timeout:.0f} s)"
            seconds = time.monotonic() - started
            print(f"README.md:{line}: {'FAILED' if failed else 'ok'} in {seconds:.1f} s")
            if failed:
                print("\n".join(output.splitlines()[-60:]))
                status = 1
                break
    finally:
        if not options.keep:
            for name in sorted(entries() - before):
                path = ROOT / name
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return status


if __name__ == "__main__":
    sys.exit(main())
