"""Training on text, prompt/completion and messages examples: Tokenizer.encode_example gives the ids
and labels TRL's SFTTrainer gives (Tests/Fixtures/text_data, tools/make_text_data_fixture.py), and
Model.step(examples=...) trains as `lowrank train` does on the same lines as JSONL."""
import json
import shutil
import struct

import numpy as np
import pytest

import lowrank
from conftest import FIXTURES, REPOSITORY, cli_losses, read_safetensors, run_cli

SMOLLM2 = REPOSITORY / "Tests" / "Fixtures" / "tokenizers" / "smollm2"
TEXT_DATA = json.loads((REPOSITORY / "Tests" / "Fixtures" / "text_data" / "smollm2.json").read_text())


def tokenizer_folder(folder, templated: bool):
    """SmolLM2's tokenizer files in `folder`, with the fixture's chat template in tokenizer_config.json when templated."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(SMOLLM2 / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((SMOLLM2 / "tokenizer_config.json").read_text())
    if templated:
        config["chat_template"] = TEXT_DATA["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("templated", [False, True])
def test_encode_example_matches_trl(tmp_path, templated):
    with lowrank.Tokenizer.from_pretrained(tokenizer_folder(tmp_path, templated)) as tokenizer:
        checked = 0
        for case in TEXT_DATA["cases"]:
            if case["chat_template"] != templated:
                continue
            ids, labels = tokenizer.encode_example(json.loads(case["line"]), train_on_prompt=case["train_on_prompt"])
            assert (ids, labels) == (case["input_ids"], case["labels"]), case
            checked += 1
        assert checked == (14 if templated else 10)
        # Token examples keep their labels; without labels every token is trained on.
        assert tokenizer.encode_example({"input_ids": np.array([5, 6, 7]), "labels": [-100, 6, 7]}) == ([5, 6, 7], [-100, 6, 7])
        assert tokenizer.encode_example({"input_ids": [5, 6]}) == ([5, 6], [5, 6])


def test_bad_examples_name_their_field(tmp_path):
    with lowrank.Tokenizer.from_pretrained(tokenizer_folder(tmp_path, templated=False)) as tokenizer:
        for example, message in [({"prompt": "hi"}, 'a "prompt" needs a "completion"'), ({"text": 3}, '"text" must be a string'),
                                 ({"question": "?"}, "none of"), ({"messages": [{"role": "user", "content": "hi"}]}, "chat template"),
                                 ({"input_ids": [1, 2], "labels": [1]}, '"labels" holds 1 values and "input_ids" 2'),
                                 ({"input_ids": [1, 2.5]}, 'in "input_ids" is not a token id')]:
            with pytest.raises(lowrank.FileFormatError, match=message):
                tokenizer.encode_example(example)
        with pytest.raises(TypeError):
            tokenizer.encode_example('{"text": "a string, not a dict"}')
    model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=lowrank.Engine("cpu"))
    assert model.tokenizer is None
    with pytest.raises(lowrank.FileFormatError, match="text needs a tokenizer"):
        model.loss(examples=[{"text": "no tokenizer"}])
    with pytest.raises(lowrank.InvalidArgumentError, match="outside the vocabulary"):
        model.loss(examples=[{"input_ids": [1, 2, 64]}])
    with pytest.raises(lowrank.InvalidArgumentError, match="nothing to predict"):
        model.loss(examples=[{"input_ids": [1]}, {"input_ids": [1, 2], "labels": [1, -100]}])
    with pytest.raises(TypeError, match="one or the other"):
        model.loss(np.zeros((1, 4), dtype=np.int32), examples=[{"input_ids": [1, 2]}])


def test_collate_pads_and_windows_as_the_cli():
    """Rows padded on the right with id 0 and label -100; max_length cuts windows, and one with
    nothing to predict is left out."""
    model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=lowrank.Engine("cpu"))
    examples = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, -100, -100, 4, 5]}, {"input_ids": [7, 8, 9]}]
    ids, labels = model.collate(examples)
    assert ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 0, 0]]
    assert labels.tolist() == [[-100, -100, -100, 4, 5], [7, 8, 9, -100, -100]]
    ids, labels = model.collate(examples, max_length=2)  # [1, 2] predicts nothing, nor does [5] or [9]
    assert ids.tolist() == [[3, 4], [7, 8]] and labels.tolist() == [[-100, 4], [7, 8]]
    with pytest.raises(lowrank.InvalidArgumentError, match="at least 2"):
        model.collate(examples, max_length=1)


def write_model_with_tokenizer(folder):
    """The tiny Llama widened to SmolLM2's vocabulary (its embedding and LM head seeded random rows)
    beside SmolLM2's tokenizer and chat template: a model folder `lowrank train` reads text with."""
    tokenizer_folder(folder, templated=True)
    config = json.loads((FIXTURES / "tiny-llama" / "config.json").read_text())
    vocabulary = json.loads((SMOLLM2 / "tokenizer.json").read_text())
    config["vocab_size"] = len(vocabulary["model"]["vocab"])
    (folder / "config.json").write_text(json.dumps(config))
    tensors = read_safetensors(FIXTURES / "tiny-llama" / "model.safetensors")
    rng = np.random.default_rng(0)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        tensors[name] = (rng.standard_normal((config["vocab_size"], config["hidden_size"])) * 0.02).astype(np.float32)
    header, offset = {}, 0
    for name, values in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(values.shape), "data_offsets": [offset, offset + values.nbytes]}
        offset += values.nbytes
    encoded = json.dumps(header).encode()
    with open(folder / "model.safetensors", "wb") as out:
        out.write(struct.pack("<Q", len(encoded)) + encoded)
        for values in tensors.values():
            out.write(np.ascontiguousarray(values).tobytes())
    return config["vocab_size"]


@pytest.mark.parametrize("train_on_prompt", [False, True])
def test_training_on_examples_matches_lowrank_train(device, tmp_path, train_on_prompt):
    """Text, prompt/completion and messages lines as JSONL for `lowrank train --no-shuffle`, and as
    dicts for Model.step(examples=...) two at a time: the same losses and adapter, bit for bit."""
    model_folder = tmp_path / "model"
    vocabulary = write_model_with_tokenizer(model_folder)
    lines = [json.loads(case["line"]) for case in TEXT_DATA["cases"] if case["chat_template"] and not case["train_on_prompt"]]
    assert {next(iter(line)) for line in lines} == {"text", "prompt", "messages"}
    lines = lines[:6]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    steps, seed, batch = 4, 5, 2
    cli_out = tmp_path / "cli"
    run_cli("train", "--model", model_folder, "--data", data, "--steps", steps, "--batch-size", batch, "--no-shuffle", "--seed", seed,
            "--r", 4, "--alpha", 8, "--lr", 1e-2, "--targets", "all-linear", "--device", device, "--adapter-out", cli_out,
            *(["--train-on-prompt"] if train_on_prompt else []))
    with lowrank.Engine(device) as engine:
        model = lowrank.Model.from_pretrained(model_folder, engine=engine)
        assert model.config["vocab_size"] == vocabulary and model.tokenizer.has_chat_template
        model.add_adapter(r=4, alpha=8, targets="all-linear", seed=seed)
        model.configure_training(lr=1e-2, total_steps=steps, seed=seed)
        batches = [lines[i:i + batch] for i in range(0, len(lines), batch)]
        losses = [model.step(examples=batches[s % len(batches)], train_on_prompt=train_on_prompt) for s in range(steps)]
        tensors = model.adapter_state_dict()
    assert np.array_equal(np.float32(losses), np.float32(cli_losses(cli_out, steps))), losses
    for name, values in read_safetensors(cli_out / "adapter_model.safetensors").items():
        assert np.array_equal(tensors[name], values), name
