#!/usr/bin/env python3
"""Writes Tests/Fixtures/target_patterns.json: for each one-string target_modules pattern, which
module paths Python's re.fullmatch (what PEFT applies) matches. TargetPattern must agree on every
pair. Patterns are ones PEFT users write (and Unsloth generates), plus syntax corners; none of them
backtracks badly in Python on these short paths, so Python can answer them all."""
import json
import re
from pathlib import Path

PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
PATHS = [f"model.layers.{layer}.{p}" for layer in (0, 1, 9, 10, 31) for p in PROJECTIONS] + [
    "lm_head", "model.embed_tokens", "model.norm", "model.layers.0.input_layernorm",
    "language_model.model.layers.3.self_attn.q_proj", "vision_tower.blocks.0.attn.qkv",
    "model.layers.1.self_attn.q_proj\n", "", "a", "q_proj", "aaaaaaaaaaaaaaaaaaab", "x-y]z",
]
UNSLOTH = (r"(?:.*?(?:language|text).*?(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense).*?"
           r"(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj).*?)|(?:\bmodel\.layers\.[\d]{1,}\."
           r"(?:self_attn|attention|attn|mlp|feed_forward|ffn|dense)\.(?:(?:q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)))")
PATTERNS = [
    r".*\.(q_proj|v_proj)",
    r".*(q_proj|k_proj|v_proj|o_proj)$",
    r"model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj",
    r"model\.layers\.(1|3[01])\.mlp\..*",
    r"model.layers.[0-9]{1,2}.mlp.(gate|up)_proj",
    r"^model\.layers\.1\d*\..*",
    r"^(?!.*mlp).*proj$",
    r"^(?!.*vision).*\.(q_proj|k_proj)",
    r".*(?<!down)_proj",
    r".*(?<=self_attn\.)[qk]_proj",
    r"(?:.*\.)?(?P<name>q_proj|lm_head)",
    r".*\b(up|down)_proj\b.*",
    r".*\Bproj",
    r"\Amodel\.layers\.0\..*\Z",
    r"[^.]+",
    r"[\w.]+",
    r"[^\W\d]+",
    r"[]a-z.0-9]+",
    r"[a\-z.]+",
    r"x-y\]z",
    r"\S+",
    r".*\n",
    r"model\.layers\.1\.self_attn\.q_proj$",
    r"a{0,}b?|a{18}a*b{1}",
    r"a{,5}",
    r"(a|aa)+b",
    r"a*?b|q_pr{1,3}oj",
    r"x{2}{",
    r"(?#a comment)q_proj",
    r"()*q_proj",
    r"(?=.*layers\.9)(?!.*mlp).*",
    r"",
    UNSLOTH,
]


def main():
    cases = [{"pattern": p, "matches": [path for path in PATHS if re.fullmatch(p, path)]} for p in PATTERNS]
    out = Path(__file__).resolve().parents[1] / "Tests" / "Fixtures" / "target_patterns.json"
    out.write_text(json.dumps({"paths": PATHS, "cases": cases}, indent=1) + "\n")
    print(f"wrote {out}: {len(cases)} patterns × {len(PATHS)} paths")


if __name__ == "__main__":
    main()
