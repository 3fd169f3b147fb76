"""Training from Python through the C ABI gives what `lowrank train` gives: the same losses and
the same adapter bits for the same seed, data and settings."""
import ctypes
import json
import sys

import numpy as np
import pytest

import lowrank

from conftest import FIXTURES, REPOSITORY, cli_losses, jsonl_rows, read_safetensors, run_cli

sys.path.insert(0, str(REPOSITORY / "python" / "examples"))
import train_default  # noqa: E402


def test_devices_are_listed():
    listing = lowrank.devices()
    identifiers = [d["identifier"] for d in listing["devices"]]
    assert "cpu" in identifiers and listing["selected"] in identifiers
    with lowrank.Engine(listing["selected"]) as engine:
        assert engine.device.startswith(listing["selected"])


def test_example_matches_lowrank_train(device, tmp_path):
    """The example trains the built-in model on the built-in corpus; `lowrank train --no-shuffle`
    with the same seed takes the same five steps."""
    steps, seed = 5, 3
    python_out, cli_out = tmp_path / "python", tmp_path / "cli"
    losses = train_default.train(steps=steps, seed=seed, device=device, warmup=2, adapter_out=python_out, report=None)
    run_cli("train", "--steps", steps, "--warmup", 2, "--seed", seed, "--no-shuffle", "--device", device,
            "--adapter-out", cli_out)
    expected = cli_losses(cli_out, steps)
    assert np.array_equal(np.float32(losses), np.float32(expected)), f"python {losses}, lowrank train {expected}"
    assert losses[-1] < losses[0]
    assert (python_out / "adapter_config.json").read_text() == (cli_out / "adapter_config.json").read_text()
    python_tensors = read_safetensors(python_out / "adapter_model.safetensors")
    cli_tensors = read_safetensors(cli_out / "adapter_model.safetensors")
    assert python_tensors.keys() == cli_tensors.keys()
    for name in cli_tensors:
        assert np.array_equal(python_tensors[name], cli_tensors[name]), name


def test_dora_with_dropout_on_a_checkpoint_matches_lowrank_train(tmp_path):
    """A Hugging Face checkpoint, DoRA on every projection with dropout (its masks seeded by the
    step), clipping and a linear schedule: Python's batches in file order match the CLI's."""
    steps, seed, batch = 5, 11, 2
    cli_out = tmp_path / "cli"
    run_cli("train", "--model", FIXTURES / "tiny-llama", "--data", FIXTURES / "data.jsonl", "--steps", steps,
            "--batch-size", batch, "--no-shuffle", "--seed", seed, "--dora", "--dropout", 0.1, "--targets", "all-linear",
            "--r", 4, "--alpha", 8, "--lr", 1e-2, "--schedule", "linear", "--warmup", 1, "--clip", 1.0, "--device", "cpu",
            "--adapter-out", cli_out)
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
        model.add_adapter(r=4, alpha=8, dropout=0.1, dora=True, targets="all-linear", seed=seed)
        model.configure_training(lr=1e-2, schedule="linear", warmup=1, total_steps=steps, clip=1.0, seed=seed)
        rows = jsonl_rows(FIXTURES / "data.jsonl")
        batches = [train_default.pad(rows[i:i + batch]) for i in range(0, len(rows), batch)]
        losses = [model.step(*batches[s % len(batches)]) for s in range(steps)]
        assert model.steps == steps
        tensors = model.adapter_state_dict()
    assert np.array_equal(np.float32(losses), np.float32(cli_losses(cli_out, steps)))
    for name, values in read_safetensors(cli_out / "adapter_model.safetensors").items():
        assert np.array_equal(tensors[name], values), name


def test_a_bf16_residual_matches_lowrank_train(tmp_path):
    """configure_training(residual_dtype="bf16") with gradient checkpointing trains as `lowrank
    train --residual-dtype bf16 --grad-checkpointing`, bit for bit, and otherwise than an f32 residual."""
    steps, seed, batch = 3, 5, 2
    cli_out = tmp_path / "cli"
    run_cli("train", "--model", FIXTURES / "tiny-llama", "--data", FIXTURES / "data.jsonl", "--steps", steps,
            "--batch-size", batch, "--no-shuffle", "--seed", seed, "--targets", "all-linear", "--r", 4, "--alpha", 8,
            "--lr", 1e-2, "--residual-dtype", "bf16", "--grad-checkpointing", "--device", "cpu", "--adapter-out", cli_out)
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    batches = [train_default.pad(rows[i:i + batch]) for i in range(0, len(rows), batch)]
    with lowrank.Engine("cpu") as engine:
        runs = {}
        for residual in ["bf16", "f32"]:
            model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
            model.add_adapter(r=4, alpha=8, targets="all-linear", seed=seed)
            model.configure_training(lr=1e-2, seed=seed, gradient_checkpointing=True, residual_dtype=residual)
            runs[residual] = [model.step(*batches[s % len(batches)]) for s in range(steps)]
        with pytest.raises(lowrank.InvalidArgumentError, match="residual_dtype"):
            model.configure_training(residual_dtype="f8")
    assert np.array_equal(np.float32(runs["bf16"]), np.float32(cli_losses(cli_out, steps)))
    assert runs["bf16"] != runs["f32"]



def test_the_residual_follows_the_weights_by_default(tmp_path):
    """With no residual_dtype, a bf16 model trains with a bf16 residual, as `lowrank train` does by
    default: bit for bit against the CLI and against residual_dtype="bf16", and otherwise than "f32"."""
    steps, seed, batch = 3, 5, 2
    model_dir, cli_out = FIXTURES / "tiny-qwen2-bf16", tmp_path / "cli"
    run_cli("train", "--model", model_dir, "--data", FIXTURES / "data.jsonl", "--steps", steps, "--batch-size", batch,
            "--no-shuffle", "--seed", seed, "--targets", "all-linear", "--r", 4, "--alpha", 8, "--lr", 1e-2,
            "--grad-checkpointing", "--device", "cpu", "--adapter-out", cli_out)
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    batches = [train_default.pad(rows[i:i + batch]) for i in range(0, len(rows), batch)]
    with lowrank.Engine("cpu") as engine:
        runs = {}
        for residual in [None, "bf16", "f32"]:
            model = lowrank.Model.from_pretrained(model_dir, engine=engine)
            model.add_adapter(r=4, alpha=8, targets="all-linear", seed=seed)
            model.configure_training(lr=1e-2, seed=seed, gradient_checkpointing=True, residual_dtype=residual)
            runs[residual] = [model.step(*batches[s % len(batches)]) for s in range(steps)]
    assert np.array_equal(np.float32(runs[None]), np.float32(cli_losses(cli_out, steps)))
    assert runs[None] == runs["bf16"]
    assert runs[None] != runs["f32"]


def test_matmul_precision_matches_lowrank_train(tmp_path):
    """configure_training(matmul_precision=...) on the bf16 Qwen2 trains as `lowrank train
    --precision`, bit for bit: "highest" (exact f32 products) and the CPU's default "medium" (a bf16
    weight multiplies activations rounded to bf16), which differ where the CPU has AVX-512 BF16. The
    setting is the backend's, so the test leaves it at the default."""
    steps, seed, batch = 3, 5, 2
    model_dir = FIXTURES / "tiny-qwen2-bf16"
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    batches = [train_default.pad(rows[i:i + batch]) for i in range(0, len(rows), batch)]
    runs = {}
    with lowrank.Engine("cpu") as engine:
        restoring = lowrank.Model.from_pretrained(model_dir, engine=engine)
        try:
            for precision in ["highest", "medium"]:
                cli_out = tmp_path / precision
                run_cli("train", "--model", model_dir, "--data", FIXTURES / "data.jsonl", "--steps", steps, "--batch-size", batch,
                        "--no-shuffle", "--seed", seed, "--targets", "all-linear", "--r", 4, "--alpha", 8, "--lr", 1e-2,
                        "--device", "cpu", "--adapter-out", cli_out, *(["--precision", precision] if precision == "highest" else []))
                model = lowrank.Model.from_pretrained(model_dir, engine=engine)
                model.add_adapter(r=4, alpha=8, targets="all-linear", seed=seed)
                model.configure_training(lr=1e-2, seed=seed, matmul_precision=precision)
                runs[precision] = [model.step(*batches[s % len(batches)]) for s in range(steps)]
                assert np.array_equal(np.float32(runs[precision]), np.float32(cli_losses(cli_out, steps))), precision
            with pytest.raises(lowrank.InvalidArgumentError, match="matmul_precision"):
                model.configure_training(matmul_precision="low")
        finally:
            restoring.configure_training(matmul_precision="medium")
    if lowrank_has_bf16_products():
        assert runs["highest"] != runs["medium"]


def lowrank_has_bf16_products() -> bool:
    """Whether this CPU has AVX-512 BF16, where `medium` rounds (else it computes as `highest`)."""
    flags = open("/proc/cpuinfo").read() if sys.platform.startswith("linux") else ""
    return "avx512_bf16" in flags


def test_loss_of_a_peft_adapter_matches_transformers():
    """load_adapter reads PEFT's files; loss() over the fixture data, token-weighted, is the loss
    transformers + PEFT computed (tools/make_llama_fixtures.py)."""
    expected = json.loads((FIXTURES / "expected.json").read_text())["loss"]
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
        for adapter in ["lora", "rslora", "dora"]:
            model.load_adapter(FIXTURES / adapter)
            assert abs(mean_loss(model, rows) - expected[adapter]) <= 1e-4 * expected[adapter], adapter


def mean_loss(model, rows) -> float:
    """The loss over every predicted token of `rows`, in batches of 4, as transformers computes it over them all."""
    total = tokens = 0
    for i in range(0, len(rows), 4):
        ids, labels = train_default.pad(rows[i:i + 4])
        predicted = int((labels[:, 1:] != -100).sum())
        total += model.loss(ids, labels) * predicted
        tokens += predicted
    return total / tokens


def test_adapter_tensors_round_trip(tmp_path):
    """Tensors written through the ABI are read back, saved in PEFT's format, and loaded again."""
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.default(engine)
        model.add_adapter(r=4, alpha=8, dora=True, targets=["q_proj", "v_proj"], seed=1)
        names = model.adapter_tensor_names()
        assert len(names) == 2 * 2 * 3 and names[0].endswith("q_proj.lora_A.weight")
        b = names[1]
        values = np.random.default_rng(0).standard_normal(model.get_adapter_tensor(b).shape)
        model.set_adapter_tensor(b, values)
        assert np.array_equal(model.get_adapter_tensor(b), values.astype(np.float32))
        ids = np.arange(2 * 16, dtype=np.int64).reshape(2, 16)
        loss = model.loss(ids)
        model.save_adapter(tmp_path / "adapter")
        model.add_adapter(r=4, alpha=8, dora=True, targets=["q_proj", "v_proj"], seed=2)
        assert model.loss(ids) != loss
        model.load_adapter(tmp_path / "adapter")
        assert model.loss(ids) == loss
        assert np.array_equal(read_safetensors(tmp_path / "adapter" / "adapter_model.safetensors")[b], values.astype(np.float32))


def test_checkpoint_resumes_bit_for_bit(tmp_path):
    """Three steps, a checkpoint, a new model that loads it, two more steps: the same losses and
    adapter as five steps in one go (DoRA with dropout, so the resumed step count seeds the masks)."""
    rows = train_default.corpus_rows()
    batches = [train_default.pad(rows[i:i + 4]) for i in range(0, 20, 4)]
    settings = dict(lr=1e-2, schedule="cosine", warmup=1, total_steps=5, clip=1.0, seed=7)

    def fresh(engine):
        model = lowrank.Model.default(engine)
        model.configure_training(**settings)
        return model

    with lowrank.Engine("cpu") as engine:
        unbroken = fresh(engine)
        unbroken.add_adapter(r=4, alpha=8, dropout=0.1, dora=True, targets="all-linear", seed=7)
        expected = [unbroken.step(*b) for b in batches]

        first = fresh(engine)
        first.add_adapter(r=4, alpha=8, dropout=0.1, dora=True, targets="all-linear", seed=7)
        losses = [first.step(*b) for b in batches[:3]]
        first.save_checkpoint(tmp_path / "checkpoint")
        first.close()
        resumed = fresh(engine)
        resumed.load_checkpoint(tmp_path / "checkpoint")
        assert resumed.steps == 3
        losses += [resumed.step(*b) for b in batches[3:]]
        assert losses == expected
        for name, values in unbroken.adapter_state_dict().items():
            assert np.array_equal(resumed.get_adapter_tensor(name), values), name


def test_accumulated_micro_batches_step_as_one_batch():
    """Two micro-batches of unequal lengths accumulate to the step of one padded batch of all their
    rows: the same loss and adapter, up to float rounding (the sums run in another order)."""
    rows = train_default.corpus_rows()
    small = [rows[0][:40], rows[1][:25], rows[2], rows[3][:9]]
    with lowrank.Engine("cpu") as engine:
        models = []
        for _ in range(2):
            model = lowrank.Model.default(engine)
            model.add_adapter(r=4, alpha=8, dora=True, targets="all-linear", seed=5)
            model.configure_training(lr=1e-2, clip=0.5, seed=5)
            models.append(model)
        whole, parts = models
        for step in range(2):
            expected = whole.step(*train_default.pad(small))
            first = parts.forward_backward(*train_default.pad(small[:2]))
            second = parts.forward_backward(*train_default.pad(small[2:]))
            got = parts.optimizer_step()
            assert abs(got - expected) <= 1e-5 * expected and first != second
        assert parts.steps == whole.steps == 2
        for name, values in whole.adapter_state_dict().items():
            np.testing.assert_allclose(parts.get_adapter_tensor(name), values, rtol=1e-4, atol=1e-6, err_msg=name)
        with pytest.raises(lowrank.StateError, match="no gradients to apply"):
            parts.optimizer_step()
        parts.forward_backward(*train_default.pad(small[:2]))
        with pytest.raises(lowrank.InvalidArgumentError, match="await their optimizer step"):
            parts.save_checkpoint("/tmp/never-written")


def test_packed_rows_step_as_the_sequences_unpacked():
    """Sequences packed into rows with position_ids restarting at each (transformers'
    DataCollatorWithFlattening) train as the same sequences padded one to a row: the same losses and
    adapter, up to float rounding; position ids that neither restart nor count up are refused."""
    rows = train_default.corpus_rows()
    sequences = [rows[0][:40], rows[1][:25], rows[2][:30], rows[3][:9]]
    packed = [np.concatenate(sequences[:2]), np.concatenate(sequences[2:])]
    positions = [np.concatenate([np.arange(len(s)) for s in sequences[:2]]), np.concatenate([np.arange(len(s)) for s in sequences[2:]])]
    with lowrank.Engine("cpu") as engine:
        models = []
        for _ in range(2):
            model = lowrank.Model.default(engine)
            model.add_adapter(r=4, alpha=8, targets="all-linear", seed=5)
            model.configure_training(lr=1e-2, seed=5)
            models.append(model)
        unpacked, packing = models
        ids, labels = train_default.pad(packed)
        position_ids = np.zeros_like(ids)
        for i, p in enumerate(positions):
            position_ids[i, :len(p)] = p
            position_ids[i, len(p):] = np.arange(p[-1] + 1, p[-1] + 1 + ids.shape[1] - len(p))  # padding continues the last sequence
        for _ in range(2):
            expected = unpacked.step(*train_default.pad(sequences))
            got = packing.step(ids, labels, position_ids=position_ids)
            assert abs(got - expected) <= 1e-5 * expected
        for name, values in unpacked.adapter_state_dict().items():
            np.testing.assert_allclose(packing.get_adapter_tensor(name), values, rtol=1e-4, atol=1e-6, err_msg=name)
        assert abs(packing.loss(ids, labels, position_ids) - unpacked.loss(*train_default.pad(sequences))) <= 1e-5
        broken = position_ids.copy()
        broken[0, 5] = 7
        with pytest.raises(lowrank.InvalidArgumentError, match="position id 7 at row 0, position 5"):
            packing.forward_backward(ids, labels, position_ids=broken)
        with pytest.raises(lowrank.ShapeError, match="must match"):
            packing.step(ids, labels, position_ids=position_ids[:, :8])


def test_peft_options_match_lowrank_train(tmp_path):
    """PEFT's LoraConfig fields through add_adapter (OLoRA, rank and alpha patterns, layers,
    excluded modules) and LoRA+ through configure_training train as `lowrank train` with the same
    options: the same losses and adapter bits, saved converted for the original model (rank 2r)."""
    steps, seed, batch = 3, 7, 2
    cli_out, python_out = tmp_path / "cli", tmp_path / "python"
    run_cli("train", "--model", FIXTURES / "tiny-llama", "--data", FIXTURES / "data.jsonl", "--steps", steps,
            "--batch-size", batch, "--no-shuffle", "--seed", seed, "--targets", "q_proj,v_proj,down_proj", "--r", 4, "--alpha", 8,
            "--lr", 1e-2, "--init", "olora", "--rank-pattern", "v_proj=2", "--alpha-pattern", "v_proj=4", "--layers", "1",
            "--layers-pattern", "layers", "--exclude-modules", "down_proj", "--loraplus-lr-ratio", 4, "--device", "cpu",
            "--adapter-out", cli_out)
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
        model.add_adapter(r=4, alpha=8, targets=["q_proj", "v_proj", "down_proj"], seed=seed, init="olora",
                          rank_pattern={"v_proj": 2}, alpha_pattern={"v_proj": 4}, layers_to_transform=[1],
                          layers_pattern="layers", exclude_modules=["down_proj"])
        model.configure_training(lr=1e-2, seed=seed, loraplus_lr_ratio=4)
        rows = jsonl_rows(FIXTURES / "data.jsonl")
        batches = [train_default.pad(rows[i:i + batch]) for i in range(0, len(rows), batch)]
        losses = [model.step(*batches[s % len(batches)]) for s in range(steps)]
        model.save_adapter(python_out)
        with pytest.raises(lowrank.LowRankError, match="sets r, which options.r sets"):
            _add_adapter_with_config(model, '{"r": 2}')
        with pytest.raises(lowrank.LowRankError, match="init_lora_weights"):
            model.add_adapter(init="loftq_iter_2")
        with pytest.raises(lowrank.LowRankError, match="--quantize nf4"):
            model.add_adapter(init="loftq")
    assert np.array_equal(np.float32(losses), np.float32(cli_losses(cli_out, steps)))
    configs = [json.loads((out / "adapter_config.json").read_text()) for out in (python_out, cli_out)]
    for config in configs:  # a set to PEFT (LoraConfig turns the list into one), so in no particular order
        config["target_modules"] = sorted(config["target_modules"])
    assert configs[0] == configs[1]
    python_tensors = read_safetensors(python_out / "adapter_model.safetensors")
    for name, values in read_safetensors(cli_out / "adapter_model.safetensors").items():
        assert np.array_equal(python_tensors[name], values), name
    assert python_tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"].shape[0] == 8


def _add_adapter_with_config(model, text):
    """lowrank_model_add_adapter with peft_config `text`, as a C caller passes it."""
    from lowrank._native import AdapterOptions, check, lib
    options = AdapterOptions()
    check(lib.lowrank_adapter_options_init(ctypes.byref(options)))
    options.peft_config = text.encode()
    check(lib.lowrank_model_add_adapter(model._handle, ctypes.byref(options)))


def test_a_gguf_model_loads_quantized_and_matches_transformers():
    """from_pretrained takes a .gguf: the Q8_0 fixture's loss, with PEFT's LoRA adapter of the Hugging
    Face model (forced: it names that model), is what PEFT computes on transformers' GGUF loader's
    model (tools/make_gguf_fixtures.py)."""
    gguf = FIXTURES.parent / "gguf"
    expected = json.loads((gguf / "expected.json").read_text())["lora_loss"]["tiny-llama.q8_0.gguf"]
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(gguf / "tiny-llama.q8_0.gguf", engine=engine)
        model.load_adapter(FIXTURES / "lora", force=True)
        assert abs(mean_loss(model, rows) - expected) <= 1e-5 * expected


def check_field_trains_as_the_cli(tmp_path, cli_flags, fixture, refused, **fields):
    """A PEFT field through add_adapter (`fields`) trains as `lowrank train` with `cli_flags`: the
    same losses and adapter bits; `refused` (add_adapter arguments, error pattern) is refused; and
    PEFT's own adapter `fixture` (tools/make_peft_config_fixtures.py) evaluates to PEFT's loss.
    Returns the adapter Python saved, by tensor name, and its config."""
    steps, seed, batch = 3, 5, 2
    cli_out, python_out = tmp_path / "cli", tmp_path / "python"
    run_cli("train", "--model", FIXTURES / "tiny-llama", "--data", FIXTURES / "data.jsonl", "--steps", steps,
            "--batch-size", batch, "--no-shuffle", "--seed", seed, "--targets", "q_proj,v_proj", "--r", 4, "--alpha", 8,
            "--lr", 1e-2, *cli_flags, "--device", "cpu", "--adapter-out", cli_out)
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    peft_fixtures = FIXTURES.parent / "peft"
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
        model.add_adapter(r=4, alpha=8, targets=["q_proj", "v_proj"], seed=seed, **fields)
        model.configure_training(lr=1e-2, seed=seed)
        batches = [train_default.pad(rows[i:i + batch]) for i in range(0, len(rows), batch)]
        losses = [model.step(*batches[s % len(batches)]) for s in range(steps)]
        model.save_adapter(python_out)
        with pytest.raises(lowrank.LowRankError, match=refused[1]):
            model.add_adapter(**refused[0])
        model.load_adapter(peft_fixtures / fixture)
        expected = json.loads((peft_fixtures / "expected.json").read_text())["loss"][fixture]
        assert abs(mean_loss(model, rows) - expected) <= 1e-5 * expected
    assert np.array_equal(np.float32(losses), np.float32(cli_losses(cli_out, steps)))
    python_tensors = read_safetensors(python_out / "adapter_model.safetensors")
    for name, values in read_safetensors(cli_out / "adapter_model.safetensors").items():
        assert np.array_equal(python_tensors[name], values), name
    return python_tensors, json.loads((python_out / "adapter_config.json").read_text())


def test_trainable_token_rows_match_lowrank_train_and_peft(tmp_path):
    """trainable_token_indices through add_adapter (PEFT's dict form) trains as `lowrank train
    --trainable-token-indices`, the rows saved under PEFT's name; PEFT's adapter with token rows
    evaluates to PEFT's loss."""
    tokens = [27, 2, 11, 63]
    tensors, config = check_field_trains_as_the_cli(
        tmp_path, ["--trainable-token-indices", ",".join(map(str, tokens))], "tokens",
        ({"trainable_token_indices": [64]}, "outside the model's vocabulary"), trainable_token_indices={"embed_tokens": tokens})
    assert config["trainable_token_indices"] == tokens
    assert tensors["base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"].shape == (4, 32)


def test_modules_to_save_match_lowrank_train_and_peft(tmp_path):
    """modules_to_save through add_adapter trains as `lowrank train --modules-to-save`, the copies
    saved under PEFT's names; PEFT's adapter with modules_to_save evaluates to PEFT's loss."""
    modules = ["embed_tokens", "lm_head"]
    tensors, config = check_field_trains_as_the_cli(
        tmp_path, ["--modules-to-save", ",".join(modules)], "modules",
        ({"modules_to_save": ["self_attn"]}, "only the token embedding"), modules_to_save=modules)
    assert config["modules_to_save"] == modules
    assert tensors["base_model.model.lm_head.weight"].shape == (64, 32)


def test_modules_to_save_projections_match_lowrank_train_and_peft(tmp_path):
    """Projections in modules_to_save through add_adapter train as `lowrank train --modules-to-save`,
    q_proj (also a target) as a copy without its adapter, as PEFT's wrapper takes it; PEFT's
    adapter with projection copies evaluates to PEFT's loss."""
    modules = ["q_proj", "down_proj"]
    tensors, config = check_field_trains_as_the_cli(
        tmp_path, ["--modules-to-save", ",".join(modules)], "modules-proj",
        ({"modules_to_save": ["mlp"]}, "only the token embedding"), modules_to_save=modules)
    assert config["modules_to_save"] == sorted(modules)
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" not in tensors
    assert {"base_model.model.model.layers.0.self_attn.q_proj.weight", "base_model.model.model.layers.0.mlp.down_proj.weight"} <= set(tensors)


def test_ensure_weight_tying_and_loftq_iter_reach_the_adapter(tmp_path):
    """ensure_weight_tying on the tied Qwen2 saves one copy under both of PEFT's names; loftq_iter 2
    on the NF4 Llama saves its NF4 base beside the adapter, which load_adapter reads back (the same loss)."""
    rows = jsonl_rows(FIXTURES / "data.jsonl")
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-qwen2-bf16", engine=engine)
        model.add_adapter(r=4, alpha=8, modules_to_save=["lm_head"], ensure_weight_tying=True)
        model.save_adapter(tmp_path / "tied")
        tensors = read_safetensors(tmp_path / "tied" / "adapter_model.safetensors")
        assert np.array_equal(tensors["base_model.model.lm_head.weight"], tensors["base_model.model.model.embed_tokens.weight"])
        assert json.loads((tmp_path / "tied" / "adapter_config.json").read_text())["ensure_weight_tying"] is True

        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", quantize="nf4", engine=engine)
        model.add_adapter(r=4, alpha=8, targets=["down_proj"], init="loftq", loftq_iter=2)
        loss = mean_loss(model, rows)
        model.save_adapter(tmp_path / "loftq")
        assert (tmp_path / "loftq" / "loftq_base.safetensors").is_file()
        assert json.loads((tmp_path / "loftq" / "adapter_config.json").read_text())["loftq_config"]["loftq_iter"] == 2
        fresh = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", quantize="nf4", engine=engine)
        fresh.load_adapter(tmp_path / "loftq")
        assert mean_loss(fresh, rows) == loss


def test_eva_and_corda_start_as_peft(tmp_path):
    """add_adapter(init="eva") on the fixture rows in batches of 2 (through
    lowrank_model_add_adapter_with_data) gives PEFT's initialize_lora_eva_weights' adapter
    (tools/make_eva_fixture.py): its redistributed ranks and alphas, and A within 1e-4; with the
    label mask and eva_config as there for `eva-masked`; eva_config without init="eva" is refused.
    init="corda" (ipm, and kpm by corda_config) gives each module's s·B·A of PEFT's
    preprocess_corda (tools/make_corda_fixture.py) within 1e-4."""
    fixtures = FIXTURES.parent / "peft-eva"
    ids = np.load(FIXTURES / "data.npy")
    masked = json.loads((fixtures / "expected.json").read_text())["masked_positions"]
    labels = ids.copy()
    labels[:, :masked] = -100
    cases = {"eva": dict(), "eva-masked": dict(init_labels=labels, eva_config={"whiten": True, "adjust_scaling_factors": False})}
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"]
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)
        for name, fields in cases.items():
            model.add_adapter(r=8, alpha=16, targets=targets, init="eva", init_ids=ids, init_batch_size=2, **fields)
            model.save_adapter(tmp_path / name)
            ours = json.loads((tmp_path / name / "adapter_config.json").read_text())
            peft = json.loads((fixtures / name / "adapter_config.json").read_text())
            assert ours["rank_pattern"] == peft["rank_pattern"] and ours["alpha_pattern"] == peft["alpha_pattern"], name
            for key, values in read_safetensors(fixtures / name / "adapter_model.safetensors").items():
                got = model.get_adapter_tensor(key)
                assert np.max(np.abs(got - values)) <= 1e-4 * np.max(np.abs(values)), key
        with pytest.raises(lowrank.LowRankError, match="eva_config"):
            model.add_adapter(targets=targets, eva_config={"rho": 1})
        with pytest.raises(lowrank.LowRankError, match="rho"):
            model.add_adapter(targets=targets, init="eva", init_ids=ids, eva_config={"rho": 0.5})
        corda = FIXTURES.parent / "peft-corda"
        for name, config in {"corda": None, "corda-kpm": {"corda_method": "kpm"}}.items():
            model = lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", engine=engine)  # CorDA leaves the residual in the weights
            model.add_adapter(r=4, alpha=8, targets=["q_proj", "v_proj", "down_proj"], init="corda", init_ids=ids, corda_config=config)
            peft = read_safetensors(corda / name / "adapter_model.safetensors")
            for key in (k for k in peft if k.endswith("lora_A.weight")):
                key_b = key.replace("lora_A", "lora_B")
                want = peft[key_b] @ peft[key]
                r = peft[key].shape[0]  # the tensors here are as saved, converted: A' = [A; A0], B' = [B, -B0]
                got = model.get_adapter_tensor(key_b)[:, :r] @ model.get_adapter_tensor(key)[:r]
                assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want)), key
        with pytest.raises(lowrank.LowRankError, match="corda_method"):
            model.add_adapter(targets=targets, init="corda", init_ids=ids, corda_config={"corda_method": "xpm"})
