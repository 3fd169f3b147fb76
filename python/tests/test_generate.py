"""Tokenizer and Model.generate against the references the Swift tests use: the tokenizers
library's ids (Tests/Fixtures/tokenizers), transformers' chat template renderings
(Tests/Fixtures/chat_templates) and transformers + PEFT's greedy generations
(Tests/Fixtures/llama/generation.json)."""
import json
import os
import re
import shutil

import pytest

import lowrank
from conftest import FIXTURES, REPOSITORY

TOKENIZERS = REPOSITORY / "Tests" / "Fixtures" / "tokenizers"
TEMPLATES = json.loads((REPOSITORY / "Tests" / "Fixtures" / "chat_templates" / "chat_templates.json").read_text())
GENERATIONS = json.loads((FIXTURES / "generation.json").read_text())["cases"]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2's tokenizer with its chat template in tokenizer_config.json, as a model folder has them."""
    folder = tmp_path_factory.mktemp("smollm2")
    shutil.copy(TOKENIZERS / "smollm2" / "tokenizer.json", folder / "tokenizer.json")
    template = next(t for t in TEMPLATES["templates"] if t["name"] == "SmolLM2-135M-Instruct")
    config = json.loads((TOKENIZERS / "smollm2" / "tokenizer_config.json").read_text())
    config.update(chat_template=template["template"], bos_token=template["bos_token"], eos_token=template["eos_token"])
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with lowrank.Tokenizer.from_pretrained(folder) as tokenizer:
        yield tokenizer


def test_tokenizer_encodes_and_decodes_as_the_tokenizers_library(smollm2):
    cases = json.loads((TOKENIZERS / "smollm2.cases.json").read_text())
    for case in cases["cases"]:
        assert smollm2.encode(case["text"], add_special_tokens=False) == case["ids"], case["text"]
        assert smollm2.encode(case["text"]) == case["ids_special"], case["text"]
        assert smollm2.decode(case["ids"]) == case["decoded"]
        assert smollm2.decode(case["ids"], skip_special_tokens=True) == case["decoded_skip"]
    for case in cases["decode_cases"]:
        assert smollm2.decode(case["ids"]) == case["decoded"]
    assert smollm2.vocab_size == 49152 and smollm2.has_chat_template
    assert smollm2.decode(smollm2.encode("<|im_end|>", add_special_tokens=False)) == "<|im_end|>"


def test_apply_chat_template_renders_as_transformers(smollm2):
    conversations = {c["name"]: c for c in TEMPLATES["conversations"]}
    checked = 0
    for case in TEMPLATES["cases"]:
        conversation = conversations[case["conversation"]]
        if case["template"] != "SmolLM2-135M-Instruct" or "tools" in conversation:
            continue
        if "error" in case:  # the template's own failure, raised as transformers raises it
            with pytest.raises(lowrank.InvalidArgumentError, match=re.escape(case["error"]["message"])):
                smollm2.apply_chat_template(conversation["messages"], add_generation_prompt=case["add_generation_prompt"])
            continue
        text = smollm2.apply_chat_template(conversation["messages"], add_generation_prompt=case["add_generation_prompt"])
        assert text == case["text"], case["conversation"]
        assert smollm2.apply_chat_template(conversation["messages"], case["add_generation_prompt"], tokenize=True) \
            == smollm2.encode(text, add_special_tokens=False)
        checked += 1
    assert checked >= 5


def test_tokenizer_errors(smollm2, tmp_path):
    with pytest.raises(lowrank.FileAccessError):
        lowrank.Tokenizer.from_pretrained(tmp_path)
    plain = lowrank.Tokenizer.from_pretrained(TOKENIZERS / "llama3_style.json")
    assert not plain.has_chat_template
    with pytest.raises(lowrank.FileFormatError):
        plain.apply_chat_template([{"role": "user", "content": "hi"}])
    plain.close()
    with pytest.raises(lowrank.ClosedHandleError):
        plain.encode("x")
    with pytest.raises(lowrank.FileFormatError):
        smollm2.apply_chat_template([1, 2])


@pytest.mark.parametrize("adapter", [None, "lora", "dora"])
def test_greedy_generation_equals_transformers(device, adapter):
    with lowrank.Engine(device) as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
        if adapter:
            model.load_adapter(FIXTURES / adapter)
        assert model.tokenizer is None and model.stop_token_ids == [2]  # generation_config.json's eos_token_id
        for case in GENERATIONS:
            if case["model"] != "tiny-llama" or case["adapter"] != adapter:
                continue
            text, ids = model.generate(case["prompt"], max_new_tokens=12, stop_token_ids=case["eos"], return_ids=True)
            assert text is None and ids == case["generated"], case["prompt"]
        with pytest.raises(lowrank.FileFormatError):
            model.generate("text needs a tokenizer")
        with pytest.raises(lowrank.InvalidArgumentError):
            model.generate([1, 2], top_p=0.0)
        with pytest.raises(TypeError):
            model.generate()


def test_sampling_is_seeded():
    model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=lowrank.Engine("cpu"))
    draws = [model.generate([5, 6, 7], max_new_tokens=16, temperature=1.5, top_k=20, top_p=0.9, seed=s, stop_token_ids=[],
                            return_ids=True)[1] for s in (1, 1, 2)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    assert all(0 <= i < 64 for i in draws[2])


def test_a_gguf_model_has_its_files_tokenizer():
    """A GGUF file's tokenizer metadata is the model's tokenizer, as a folder's tokenizer.json is; a
    GGUF file of weights alone has none. SmolLM2's file when LOWRANK_SMOLLM2_GGUF names it."""
    with lowrank.Engine("cpu") as engine:
        weights_only = lowrank.Model.from_pretrained(FIXTURES.parent / "gguf" / "tiny-llama.q8_0.gguf", engine=engine)
        assert weights_only.tokenizer is None
        path = os.environ.get("LOWRANK_SMOLLM2_GGUF")
        if not path:
            pytest.skip("LOWRANK_SMOLLM2_GGUF is not set")
        model = lowrank.Model.from_pretrained(path, engine=engine)
        assert model.tokenizer.encode("The capital of France", add_special_tokens=False) == [504, 3575, 282, 4649]
        assert model.tokenizer.has_chat_template


def test_a_folder_model_has_its_tokenizer(tmp_path):
    """A model folder's tokenizer.json is read with its weights (one read, through the C ABI's
    lowrank_model_tokenizer); one that is there but unreadable fails the load with the file named."""
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "tiny-llama", folder)
    shutil.copy(REPOSITORY / "Tests" / "Fixtures" / "tokenizers" / "smollm2" / "tokenizer.json", folder)
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(folder, engine=engine)
        expected = lowrank.Tokenizer.from_pretrained(folder)
        assert model.tokenizer.encode("The capital of France") == expected.encode("The capital of France")
        (folder / "tokenizer.json").write_text("{not json")
        with pytest.raises(lowrank.LowRankError, match="tokenizer.json"):
            lowrank.Model.from_pretrained(folder, engine=engine)
