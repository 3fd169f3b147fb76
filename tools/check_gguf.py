#!/usr/bin/env python3
"""Checks the GGUF files `lowrank export-gguf` and `lowrank merge --out FILE.gguf` write, with the
`gguf` package reading them and PEFT, PyTorch and transformers as the references:

- export-gguf: for PEFT LoRA adapters on the tiny Llama fixture (q/v; every projection with a
  rank_pattern; f16 tensors) and the tiny Qwen2 one (llama.cpp's qwen2 architecture), the keys (general.type adapter, adapter.type lora, adapter.lora.alpha),
  tensor names, shapes and types, and the values: lora_a is PEFT's lora_A, lora_b its lora_B with the
  rows of q_proj and k_proj in llama.cpp's order for llama (its `LlamaModel.permute`). DoRA, rsLoRA and
  alpha_pattern adapters are refused with the advice to merge. With --llama-cpp DIR (a llama.cpp
  checkout), llama.cpp's own convert_lora_to_gguf.py converts the same adapters and every key and
  tensor must be equal.
- merge --out FILE.gguf: a small Llama with SmolLM2's tokenizer and a chat template, and a LoRA and
  a DoRA adapter (PEFT, random B), merged to f32, f16, bf16, q8_0 and q4_0: the llama.* keys, the
  tokenizer keys (as convert_hf_to_gguf.py writes them: tokens, types, merges, pre "smollm", special
  ids, chat template), tensor names, shapes and types, and every matrix against PEFT's
  merge_and_unload() permuted as llama.cpp permutes it, within its type's rounding (q8_0 and q4_0 as
  gguf.quants.quantize quantizes PEFT's merge, within one step where the two f32 merges round
  apart). transformers' GGUF loader loads the f32 and f16 files: logits equal the PEFT-merged
  model's (f32 within 1e-5; f16 against the merged model rounded to f16), and its tokenizer from the
  file gives the original tokenizer's ids. The same for a SentencePiece-style tokenizer ("llama").
  The tiny Llama fixture's Llama 3 RoPE scaling becomes llama.cpp's rope_freqs tensor.

    pip install torch transformers peft gguf safetensors numpy sentencepiece
    swift build
    python3 tools/check_gguf.py [--lowrank .build/debug/lowrank] [--llama-cpp DIR]

Exits non-zero at the first difference.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import gguf
import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
TINY = os.path.join(FIXTURES, "llama", "tiny-llama")
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
TEXTS = ["Hello world!", "  leading spaces and 12345 digits", "<|im_start|>user\nHi<|im_end|>", "émoji 🦙 and ünïcödé"]


def permute(w, heads):
    """llama.cpp's LlamaModel.permute: rows of q/k from rotate-half to interleaved pairs, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def check(condition, message):
    if not condition:
        sys.exit("FAIL: " + message)


def read(path):
    reader = gguf.GGUFReader(path)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return fields, {t.name: t for t in reader.tensors}


def values(tensor):
    """A tensor's values in numpy order ([rows, columns]), dequantized."""
    shape = tuple(int(d) for d in reversed(tensor.shape))
    return gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32).reshape(shape)


def run(lowrank, *args, fail=False):
    result = subprocess.run([lowrank, *map(str, args)], capture_output=True, text=True)
    if fail:
        check(result.returncode != 0, f"lowrank {' '.join(map(str, args))} should have failed")
    else:
        check(result.returncode == 0, f"lowrank {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def peft_adapter(model_dir, out, seed, **config):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **config))
    peft_model.save_pretrained(out)
    return peft_model


def check_export(lowrank, tmp, llama_cpp):
    qwen2 = os.path.join(FIXTURES, "llama", "tiny-qwen2-bf16")
    cases = [("lora-qv", os.path.join(FIXTURES, "llama", "lora"), TINY, "f32")]
    patterned = os.path.join(tmp, "lora-all")
    peft_adapter(TINY, patterned, 1, r=4, lora_alpha=8, target_modules=PROJECTIONS, rank_pattern={"k_proj": 2, "down_proj": 6})
    qwen2_adapter = os.path.join(tmp, "qwen2-lora")
    peft_adapter(qwen2, qwen2_adapter, 7, r=4, lora_alpha=8, target_modules=PROJECTIONS)
    cases += [("lora-all-rank-pattern", patterned, TINY, "f32"), ("lora-all-f16", patterned, TINY, "f16"), ("qwen2", qwen2_adapter, qwen2, "f32")]
    for name, adapter, base_model, outtype in cases:
        config = json.load(open(os.path.join(base_model, "config.json")))
        # llama.cpp's qwen2 architecture keeps Hugging Face's row order; llama permutes q and k.
        architecture = "qwen2" if config["model_type"] == "qwen2" else "llama"
        heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]} if architecture == "llama" else {}
        out = os.path.join(tmp, name + ".gguf")
        run(lowrank, "export-gguf", "--adapter", adapter, "--model", base_model, "--out", out, "--outtype", outtype)
        fields, tensors = read(out)
        settings = json.load(open(os.path.join(adapter, "adapter_config.json")))
        check(fields["general.architecture"] == architecture and fields["general.type"] == "adapter" and fields["adapter.type"] == "lora",
              f"{name}: keys {fields}")
        check(fields["adapter.lora.alpha"] == settings["lora_alpha"], f"{name}: alpha {fields['adapter.lora.alpha']}")
        peft = load_file(os.path.join(adapter, "adapter_model.safetensors"))
        expected = set()
        for key, a in peft.items():
            if not key.endswith("lora_A.weight"):
                continue
            path = key[len("base_model.model."):-len(".lora_A.weight")]
            layer, projection = int(path.split(".")[2]), path.split(".")[-1]
            b = peft[key.replace("lora_A", "lora_B")].float().numpy()
            if projection in heads:
                b = permute(b, heads[projection])
            base = f"blk.{layer}.{GGUF_NAMES[projection]}.weight"
            expected |= {base + ".lora_a", base + ".lora_b"}
            for suffix, want in [(".lora_a", a.float().numpy()), (".lora_b", b)]:
                t = tensors[base + suffix]
                check(t.tensor_type.name == outtype.upper(), f"{name}: {base + suffix} is {t.tensor_type.name}")
                got = values(t)
                check(got.shape == want.shape, f"{name}: {base + suffix} shape {got.shape} != {want.shape}")
                tolerance = 0 if outtype == "f32" else 2 ** -11 * np.abs(want).max()
                check(np.abs(got - want).max() <= tolerance, f"{name}: {base + suffix} differs by {np.abs(got - want).max()}")
        check(set(tensors) == expected, f"{name}: tensors {sorted(set(tensors) ^ expected)}")
        order = "q/k lora_b permuted" if heads else "rows in PEFT's order"
        print(f"export-gguf {name}: {len(tensors)} tensors ({outtype}, {architecture}) equal PEFT's factors ({order}), alpha {fields['adapter.lora.alpha']}")
        if llama_cpp and outtype == "f32":
            theirs = os.path.join(tmp, name + "-llama-cpp.gguf")
            subprocess.run([sys.executable, os.path.join(llama_cpp, "convert_lora_to_gguf.py"), "--base", base_model, "--outfile", theirs, adapter],
                           check=True, capture_output=True)
            their_fields, their_tensors = read(theirs)
            check(set(their_tensors) == set(tensors), f"{name}: llama.cpp's tensors {sorted(set(their_tensors) ^ set(tensors))}")
            for t in tensors:
                check(np.array_equal(values(tensors[t]), values(their_tensors[t])), f"{name}: {t} differs from llama.cpp's converter")
            for key in ["general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"]:
                check(fields[key] == their_fields[key], f"{name}: {key} {fields[key]} != llama.cpp's {their_fields[key]}")
            print(f"export-gguf {name}: every tensor equals llama.cpp's convert_lora_to_gguf.py output")
    for name, extra in [("dora", {"use_dora": True}), ("rslora", {"use_rslora": True}), ("alpha-pattern", {"alpha_pattern": {"v_proj": 16}})]:
        adapter = os.path.join(tmp, name)
        peft_adapter(TINY, adapter, 2, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **extra)
        result = run(lowrank, "export-gguf", "--adapter", adapter, "--model", TINY, "--out", os.path.join(tmp, name + ".gguf"), fail=True)
        check("lowrank merge" in result.stderr and not os.path.exists(os.path.join(tmp, name + ".gguf")), f"{name}: {result.stderr}")
        print(f"export-gguf {name}: refused ({result.stderr.strip()[:90]}…)")


def make_model(folder, tokenizer_files, vocab_size, seed, chat_template=None):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # norms away from 1, so that a wrong norm tensor shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(folder)
    for source, target in tokenizer_files:
        shutil.copy(source, os.path.join(folder, target))
    if chat_template:
        path = os.path.join(folder, "tokenizer_config.json")
        settings = json.load(open(path)) if os.path.exists(path) else {}
        settings["chat_template"] = chat_template
        json.dump(settings, open(path, "w"))


def converter_vocab(folder, vocab_size):
    """tokenizer.ggml.tokens and token_type as convert_hf_to_gguf.py's get_vocab_base writes them."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    reverse = {i: t for t, i in tokenizer.vocab.items()}
    added, decoder = tokenizer.get_added_vocab(), tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(5)
        elif reverse[i] in added:
            looks = reverse[i].startswith("<|") and reverse[i].endswith("|>")
            tokens.append(reverse[i])
            types.append(3 if decoder[i].special or looks else 4)
        else:
            tokens.append(reverse[i])
            types.append(1)
    return tokens, types


def check_merge(lowrank, tmp):
    smollm = os.path.join(FIXTURES, "tokenizers", "smollm2")
    template = json.load(open(os.path.join(FIXTURES, "chat_templates", "chat_templates.json")))
    template = next(iter(template.values())) if isinstance(template, dict) else template[0]
    template = template.get("template", template) if isinstance(template, dict) else template
    vocab_size = len(AutoTokenizer.from_pretrained(smollm))
    model_dir = os.path.join(tmp, "model")
    make_model(model_dir, [(os.path.join(smollm, f), f) for f in ("tokenizer.json", "tokenizer_config.json")], vocab_size, 3,
               chat_template=template if isinstance(template, str) else None)
    config = json.load(open(os.path.join(model_dir, "config.json")))
    heads = {"q_proj": config["num_attention_heads"], "k_proj": config["num_key_value_heads"]}
    ids = torch.tensor([[1, 50, 300, 7000, 12, 9, 40000, 2]])
    for kind, extra in [("lora", {}), ("dora", {"use_dora": True})]:
        adapter = os.path.join(tmp, "merge-" + kind)
        peft_adapter(model_dir, adapter, 4, r=4, lora_alpha=16, target_modules=PROJECTIONS, **extra)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, adapter).merge_and_unload().eval()
        reference = merged.state_dict()
        with torch.no_grad():
            reference_logits = merged(ids).logits
        for gguf_type in ["f32", "f16", "bf16", "q8_0", "q4_0"]:
            out = os.path.join(tmp, f"{kind}-{gguf_type}.gguf")
            run(lowrank, "merge", "--model", model_dir, "--adapter", adapter, "--out", out, "--gguf-type", gguf_type, "--device", "cpu")
            fields, tensors = read(out)
            for key, want in [("general.architecture", "llama"), ("llama.block_count", 2), ("llama.context_length", 128),
                              ("llama.embedding_length", 64), ("llama.feed_forward_length", 128), ("llama.attention.head_count", 4),
                              ("llama.attention.head_count_kv", 2), ("llama.rope.freq_base", 10000.0), ("llama.vocab_size", vocab_size),
                              ("llama.rope.dimension_count", 16), ("tokenizer.ggml.model", "gpt2"), ("tokenizer.ggml.pre", "smollm"),
                              ("general.file_type", {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, "q4_0": 2}[gguf_type])]:
                check(fields.get(key) == want, f"{kind} {gguf_type}: {key} = {fields.get(key)}, expected {want}")
            check(abs(fields["llama.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-12, "rms epsilon")
            if gguf_type == "f32":
                tokens, types = converter_vocab(model_dir, vocab_size)
                check(fields["tokenizer.ggml.tokens"] == tokens, "tokens differ from the converter's")
                check(list(fields["tokenizer.ggml.token_type"]) == types, "token types differ from the converter's")
                document = json.load(open(os.path.join(model_dir, "tokenizer.json")))
                merges = [" ".join("".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair) if isinstance(pair, list) else pair
                          for pair in document["model"]["merges"]]
                check(fields["tokenizer.ggml.merges"] == merges, "merges differ from tokenizer.json's")
                vocab = gguf.SpecialVocab(model_dir, load_merges=False)
                for kind_, token_id in vocab.special_token_ids.items():
                    check(fields.get(f"tokenizer.ggml.{kind_}_token_id") == token_id, f"{kind_}_token_id {fields.get(f'tokenizer.ggml.{kind_}_token_id')} != {token_id}")
                for kind_, flag in vocab.add_special_token.items():
                    check(fields.get(f"tokenizer.ggml.add_{kind_}_token") == flag, f"add_{kind_}_token")
                check(fields.get("tokenizer.chat_template") == vocab.chat_template, "chat template")
            names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
            for hf, want in reference.items():
                if hf.startswith("model.layers."):
                    parts = hf.split(".")
                    layer, module = parts[2], parts[-2]
                    suffix = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}.get(module, GGUF_NAMES.get(module))
                    name = f"blk.{layer}.{suffix}.weight"
                else:
                    name = names[hf]
                want = want.float().numpy()
                if hf.split(".")[-2] in heads:
                    want = permute(want, heads[hf.split(".")[-2]])
                t = tensors.pop(name)
                got = values(t)
                if want.ndim == 1:
                    check(t.tensor_type.name == "F32" and np.array_equal(got, want), f"{name}: {t.tensor_type.name}")
                    continue
                check(t.tensor_type.name == gguf_type.upper(), f"{name} is {t.tensor_type.name}")
                if gguf_type in ("q8_0", "q4_0"):
                    qtype = gguf.GGMLQuantizationType[gguf_type.upper()]
                    theirs = gguf.quants.dequantize(gguf.quants.quantize(want, qtype), qtype).reshape(want.shape)
                    step = np.abs(want.reshape(-1, 32)).max(axis=1) / (127 if gguf_type == "q8_0" else 8)
                    worst = (np.abs(got - theirs).reshape(-1, 32).max(axis=1) / np.maximum(step, 1e-30)).max()
                    check(worst <= 1.01, f"{name}: {worst:.2f} quantization steps from gguf.quants")
                else:
                    rounded = torch.from_numpy(want).to({"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[gguf_type]).float().numpy()
                    # One unit in the last place of the type; f32 allows four, where the two merges' f32 arithmetic differs (DoRA's norms).
                    ulp = {"f32": 2 ** -21, "f16": 2 ** -10, "bf16": 2 ** -7}[gguf_type]
                    check(np.all(np.abs(got - rounded) <= ulp * np.abs(want) + 1e-7), f"{name}: {np.abs(got - rounded).max()} from PEFT's merge in {gguf_type}")
            check(not tensors, f"unexpected tensors {sorted(tensors)}")
            message = f"merge {kind} --gguf-type {gguf_type}: keys and every tensor as PEFT's merge_and_unload(), permuted"
            if gguf_type in ("f32", "f16"):
                loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=os.path.basename(out), dtype=torch.float32).eval()
                expected = reference_logits
                if gguf_type == "f16":
                    rounded = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
                    rounded.load_state_dict({k: v.half().float() if v.ndim == 2 else v for k, v in reference.items()})
                    with torch.no_grad():
                        expected = rounded.eval()(ids).logits
                with torch.no_grad():
                    logits = loaded(ids).logits
                difference = (logits - expected).abs().max().item()
                # f16: the two f32 merges can round a few weights to neighbouring f16 values, so the bound is f16's
                # own effect on the logits (PEFT's merge in f32 against it rounded to f16).
                bound = 1e-5 if gguf_type == "f32" else (reference_logits - expected).abs().max().item()
                check(difference <= bound, f"{kind} {gguf_type}: transformers' GGUF loader's logits differ by {difference} (bound {bound})")
                message += f"; transformers' GGUF loader: logits within {difference:.1e} (bound {bound:.1e})"
                if gguf_type == "f32" and kind == "lora":
                    original = AutoTokenizer.from_pretrained(model_dir)
                    from_gguf = AutoTokenizer.from_pretrained(tmp, gguf_file=os.path.basename(out))
                    for text in TEXTS:
                        check(from_gguf.encode(text) == original.encode(text), f"tokenizer from the GGUF file encodes {text!r} as {from_gguf.encode(text)}")
                    message += f"; its tokenizer encodes {len(TEXTS)} texts as tokenizer.json does"
            print(message)


def check_sentencepiece(lowrank, tmp):
    # Metaspace (prepend "first"), the form transformers rebuilds from a GGUF file's "llama" vocabulary (its loader cannot
    # tell the legacy normalizer's leading spaces from it; llama.cpp's add_space_prefix prepends as the legacy one does).
    source = os.path.join(FIXTURES, "tokenizers", "sp_metaspace_first.json")
    document = json.load(open(source))
    vocab_size = max([*document["model"]["vocab"].values(), *(t["id"] for t in document["added_tokens"])]) + 1
    model_dir = os.path.join(tmp, "sp-model")
    make_model(model_dir, [(source, "tokenizer.json")], vocab_size, 5)
    adapter = os.path.join(tmp, "sp-adapter")
    peft_adapter(model_dir, adapter, 6, r=2, lora_alpha=4, target_modules=["q_proj"])
    out = os.path.join(tmp, "sp.gguf")
    run(lowrank, "merge", "--model", model_dir, "--adapter", adapter, "--out", out, "--gguf-type", "f32", "--device", "cpu")
    fields, _ = read(out)
    check(fields["tokenizer.ggml.model"] == "llama" and fields["tokenizer.ggml.pre"] == "default", "sentencepiece model keys")
    types = list(fields["tokenizer.ggml.token_type"])
    check(types.count(6) == 256, f"{types.count(6)} byte tokens")
    original = AutoTokenizer.from_pretrained(model_dir)
    from_gguf = AutoTokenizer.from_pretrained(tmp, gguf_file="sp.gguf")
    texts = TEXTS + ["The quick brown fox jumps over the lazy dog.", "tokenization of merged pieces"]
    for text in texts:
        check(from_gguf.encode(text, add_special_tokens=False) == original.encode(text, add_special_tokens=False),
              f"sentencepiece: {text!r}: {from_gguf.encode(text, add_special_tokens=False)} != {original.encode(text, add_special_tokens=False)}")
    print(f"merge with a SentencePiece-style tokenizer: tokenizer.ggml.model llama, scores from the merge order; transformers' tokenizer from the file "
          f"encodes {len(texts)} texts as tokenizer.json does")


def check_rope_freqs(lowrank, tmp):
    out = os.path.join(tmp, "tiny.gguf")
    run(lowrank, "merge", "--model", TINY, "--adapter", os.path.join(FIXTURES, "llama", "lora"), "--out", out, "--gguf-type", "f32", "--device", "cpu")
    _, tensors = read(out)
    config = json.load(open(os.path.join(TINY, "config.json")))
    rope = config["rope_parameters"]
    dim = config["head_dim"]
    freqs = 1.0 / (rope["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    low, high, old = rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    factors = []
    for freq in freqs:  # as convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            factors.append(1)
        elif wavelen > old / low:
            factors.append(rope["factor"])
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / rope["factor"] + smooth))
    want = torch.tensor(factors, dtype=torch.float32).numpy()
    got = values(tensors["rope_freqs.weight"])
    check(np.allclose(got, want, rtol=1e-6, atol=0), f"rope_freqs {got} != {want}")
    print(f"merge of the Llama 3-scaled fixture: rope_freqs {got.tolist()} as the converter computes it")


def check_qwen2_merge(lowrank, tmp):
    """Qwen2 (biases on q, k, v) as llama.cpp's qwen2 architecture: no permutation, transformers' logits."""
    model_dir = os.path.join(FIXTURES, "llama", "tiny-qwen2-bf16")
    adapter = os.path.join(tmp, "qwen2-merge")
    peft_adapter(model_dir, adapter, 8, r=4, lora_alpha=8, target_modules=PROJECTIONS)
    out = os.path.join(tmp, "qwen2.gguf")
    run(lowrank, "merge", "--model", model_dir, "--adapter", adapter, "--out", out, "--gguf-type", "f32", "--device", "cpu")
    fields, tensors = read(out)
    check(fields["general.architecture"] == "qwen2" and "qwen2.block_count" in fields and "llama.vocab_size" not in fields, f"qwen2 keys {sorted(fields)}")
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), adapter).merge_and_unload().eval()
    reference = merged.state_dict()
    for hf, name in [("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"), ("model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias")]:
        difference = np.abs(values(tensors[name]) - reference[hf].numpy()).max()
        check(difference <= 1e-6, f"qwen2 {name} differs from PEFT's merge by {difference} (rows in Hugging Face's order)")
    ids = torch.tensor([[1, 5, 9, 30, 2, 17]])
    # The fixture has no tokenizer, whose token count is where transformers reads a qwen2 file's vocabulary size.
    loaded = AutoModelForCausalLM.from_pretrained(tmp, gguf_file="qwen2.gguf", dtype=torch.float32, vocab_size=merged.config.vocab_size).eval()
    with torch.no_grad():
        difference = (loaded(ids).logits - merged(ids).logits).abs().max().item()
    check(difference <= 1e-5, f"qwen2: transformers' GGUF loader's logits differ by {difference}")
    print(f"merge of the Qwen2 fixture: architecture qwen2, q/k rows and biases unpermuted; transformers' GGUF loader: logits within {difference:.1e}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lowrank", default=os.path.join(ROOT, ".build", "debug", "lowrank"))
    parser.add_argument("--llama-cpp", help="a llama.cpp checkout: compare export-gguf with its convert_lora_to_gguf.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        check_export(args.lowrank, tmp, args.llama_cpp)
        check_rope_freqs(args.lowrank, tmp)
        check_qwen2_merge(args.lowrank, tmp)
        check_merge(args.lowrank, tmp)
        check_sentencepiece(args.lowrank, tmp)
    print("all GGUF checks passed")


if __name__ == "__main__":
    main()
