#!/usr/bin/env python3
"""Writes Tests/Fixtures/text_data/smollm2.json: JSONL training lines ({"text"}, {"prompt", "completion"},
{"messages"}) turned into token ids and labels as TRL's SFTTrainer does (trl/trainer/sft_trainer.py,
tokenize_fn and add_eos), on the committed SmolLM2 tokenizer, with and without SmolLM2's chat template.

    pip install transformers trl
    python3 tools/make_text_data_fixture.py

TRL's rules, reproduced with transformers' tokenizer and apply_chat_template and TRL's own
common_prefix_length:
- text: EOS appended unless the text ends with it; tokenized with special tokens; every token trained on.
- prompt/completion without a chat template: EOS appended to the completion unless it ends with it;
  the prompt and prompt+completion tokenized; the completion starts where they diverge.
- with a chat template (the engine renders prompt/completion as one user and one assistant turn): the
  prompt is the conversation up to its last user turn with the generation prompt, the whole
  conversation is rendered without it, both tokenized as apply_chat_template(tokenize=True) does (no
  added special tokens); the completion starts where they diverge.
Labels are the input ids, -100 on the prompt unless train_on_prompt.
"""
import json
import pathlib

import transformers
import trl
from transformers import PreTrainedTokenizerFast
from trl.data_utils import common_prefix_length

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/Fixtures/text_data/smollm2.json"

LINES = [
    {"text": "The quick brown fox jumps over the lazy dog."},
    {"text": "Already ends with the end token<|im_end|>"},
    {"text": "  Leading spaces, CJK 日本語, emoji 🦊 and\r\nCRLF."},
    {"prompt": "What is 2 + 2?", "completion": " 4"},
    {"prompt": "Translate to French: cat", "completion": "chat<|im_end|>"},
    {"messages": [{"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello, how can I help?"}]},
    {"messages": [{"role": "system", "content": "You answer in one word."},
                  {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"},
                  {"role": "user", "content": "And of Italy?"}, {"role": "assistant", "content": "Rome"}]},
]


def load_tokenizer(chat_template):
    folder = ROOT / "Tests/Fixtures/tokenizers/smollm2"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), bos_token=config["bos_token"],
                                        eos_token=config["eos_token"], pad_token=config["pad_token"], unk_token=config["unk_token"])
    tokenizer.chat_template = chat_template
    return tokenizer


def conversation(line):
    if "messages" in line:
        return line["messages"]
    return [{"role": "user", "content": line["prompt"]}, {"role": "assistant", "content": line["completion"]}]


def tokenized(line, tokenizer, templated):
    eos = tokenizer.eos_token
    if "text" in line:
        text = line["text"] if line["text"].endswith(eos) else line["text"] + eos
        ids = tokenizer(text)["input_ids"]
        return ids, 0
    if templated:
        messages = conversation(line)
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        prompt = tokenizer.apply_chat_template(messages[: last_user + 1], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
        ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    else:
        completion = line["completion"] if line["completion"].endswith(eos) else line["completion"] + eos
        prompt = tokenizer(line["prompt"])["input_ids"]
        ids = tokenizer(line["prompt"] + completion)["input_ids"]
    return ids, common_prefix_length(prompt, ids)


def main():
    fixtures = json.loads((ROOT / "Tests/Fixtures/chat_templates/chat_templates.json").read_text())
    template = next(t["template"] for t in fixtures["templates"] if t["name"] == "SmolLM2-135M-Instruct")
    cases = []
    for templated in (False, True):
        tokenizer = load_tokenizer(template if templated else None)
        for line in LINES:
            if "messages" in line and not templated:
                continue
            ids, prompt_length = tokenized(line, tokenizer, templated)
            for train_on_prompt in (False, True):
                labels = ids if train_on_prompt else [-100] * prompt_length + ids[prompt_length:]
                cases.append({"line": json.dumps(line, ensure_ascii=False), "chat_template": templated,
                              "train_on_prompt": train_on_prompt, "input_ids": ids, "labels": labels})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"generator": "tools/make_text_data_fixture.py", "transformers": transformers.__version__,
                               "trl": trl.__version__, "chat_template": template, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
