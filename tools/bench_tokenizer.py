#!/usr/bin/env python3
"""Encoding speed of Hugging Face `tokenizers` on one thread, to compare with `lowrank tokenize --throughput`.

    /tmp/venv/bin/python tools/bench_tokenizer.py Tests/Fixtures/tokenizers/smollm2 /tmp/bench.txt
    .build/release/lowrank tokenize --tokenizer Tests/Fixtures/tokenizers/smollm2 --input /tmp/bench.txt --throughput

Writes the text file first if it is missing: the repository's Swift sources and Markdown (code and
English) with the tokenizer fixtures' strings (CJK, emoji, other scripts, whitespace runs), about 4 MB.
Each line is encoded separately, as a dataset is; best of five passes, as the Swift side measures.
"""
import glob
import json
import os
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def make_text(path):
    parts = []
    for name in sorted(glob.glob(os.path.join(ROOT, "Sources", "**", "*.swift"), recursive=True) + glob.glob(os.path.join(ROOT, "*.md"))):
        with open(name, encoding="utf-8") as f:
            parts.append(f.read())
    with open(os.path.join(ROOT, "Tests", "Fixtures", "tokenizers", "llama3_style.cases.json"), encoding="utf-8") as f:
        strings = [c["text"] for c in json.load(f)["cases"] if len(c["text"]) < 400]
    parts.append("\n".join(strings))
    text = "\n".join(parts)
    text = (text * (4_000_000 // len(text) + 1))[:4_000_000]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    tokenizer_path, text_path = sys.argv[1], sys.argv[2]
    if not os.path.exists(text_path):
        make_text(text_path)
    if os.path.isdir(tokenizer_path):
        tokenizer_path = os.path.join(tokenizer_path, "tokenizer.json")
    tok = Tokenizer.from_file(tokenizer_path)
    with open(text_path, encoding="utf-8", newline="") as f:
        data = f.read()
    lines = data.split("\n")
    size = len(data.encode("utf-8"))
    # encode() per line pays Python's call overhead; encode_batch() on one thread (TOKENIZERS_PARALLELISM=false) does not.
    for name, run in [("encode", lambda: sum(len(tok.encode(line, add_special_tokens=False).ids) for line in lines)),
                      ("encode_batch", lambda: sum(len(e.ids) for e in tok.encode_batch(lines, add_special_tokens=False)))]:
        best, tokens = float("inf"), 0
        for _ in range(5):
            start = time.perf_counter()
            tokens = run()
            best = min(best, time.perf_counter() - start)
        print(f"{name}: {tokens} tokens from {size} bytes in {best:.3f} s: {tokens / best:.0f} tokens/s, {size / best / 1e6:.2f} MB/s (one thread)")


if __name__ == "__main__":
    main()
