"""Bad calls raise Python exceptions carrying the engine's message; none crashes the interpreter."""
import json
import threading

import numpy as np
import pytest

import lowrank

from conftest import FIXTURES


@pytest.fixture
def model():
    with lowrank.Engine("cpu") as engine:
        m = lowrank.Model.default(engine)
        m.add_adapter(r=4, alpha=8, seed=0)
        yield m


IDS = np.arange(32, dtype=np.int32).reshape(2, 16)


def test_wrong_dtype_and_shape_of_arrays(model):
    with pytest.raises(lowrank.DTypeError, match="integer token ids"):
        model.step(IDS.astype(np.float32))
    with pytest.raises(lowrank.ShapeError, match="2-D"):
        model.step(IDS.reshape(-1))
    with pytest.raises(lowrank.ShapeError, match="2-D"):
        model.step(IDS.reshape(2, 4, 4))
    with pytest.raises(lowrank.ShapeError, match="must match"):
        model.step(IDS, labels=IDS[:, :8])
    with pytest.raises(lowrank.ShapeError, match="at least 2 tokens"):
        model.step(IDS[:, :1])
    name = model.adapter_tensor_names()[0]
    with pytest.raises(lowrank.ShapeError, match="has shape"):
        model.set_adapter_tensor(name, np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(lowrank.DTypeError):
        model.set_adapter_tensor(name, np.zeros(model.get_adapter_tensor(name).shape, dtype=np.int32))
    assert model.steps == 0


def test_values_the_engine_rejects(model):
    with pytest.raises(lowrank.InvalidArgumentError, match="token id 300 at row 1, position 2 is outside the vocabulary of 256"):
        bad = IDS.copy()
        bad[1, 2] = 300
        model.step(bad)
    with pytest.raises(lowrank.InvalidArgumentError, match="label -5 at row 0, position 3"):
        labels = IDS.copy()
        labels[0, 3] = -5
        model.step(IDS, labels)
    with pytest.raises(lowrank.InvalidArgumentError, match="every label is ignored"):
        model.step(IDS, np.full_like(IDS, -100))
    with pytest.raises(lowrank.InvalidArgumentError, match="no tensor"):
        model.get_adapter_tensor("base_model.model.nothing.lora_A.weight")
    with pytest.raises(lowrank.InvalidArgumentError, match="cosine schedule needs its length"):
        model.configure_training(schedule="cosine")
    with pytest.raises(lowrank.InvalidArgumentError, match="total steps beyond"):
        model.configure_training(schedule="linear", warmup=10, total_steps=5)
    with pytest.raises(lowrank.InvalidArgumentError, match="r must be in 1...65536"):
        model.add_adapter(r=0)
    with pytest.raises(lowrank.InvalidArgumentError, match="match no linear layer"):
        model.add_adapter(targets="nonexistent_proj")
    with pytest.raises(lowrank.InvalidArgumentError, match="unknown device"):
        lowrank.Engine("tpu")
    assert model.steps == 0
    assert np.isfinite(model.step(IDS))


def test_closed_engine_and_model():
    engine = lowrank.Engine("cpu")
    model = lowrank.Model.default(engine)
    other = lowrank.Model.default(engine)
    other.close()
    with pytest.raises(lowrank.ClosedHandleError, match="was closed"):
        other.loss(IDS)
    engine.close()
    engine.close()  # closing twice is harmless, as for files
    with pytest.raises(lowrank.ClosedHandleError, match="was closed"):
        engine.device
    with pytest.raises(lowrank.ClosedHandleError, match="was closed"):
        model.add_adapter()
    with pytest.raises(lowrank.ClosedHandleError, match="was closed"):
        lowrank.Model.default(engine)
    model.close()  # its engine took it along; nothing left to free


def test_missing_and_bad_files(model, tmp_path):
    with pytest.raises(lowrank.FileAccessError, match="does-not-exist"):
        lowrank.Model.from_pretrained(tmp_path / "does-not-exist", engine=model.engine)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(lowrank.FileFormatError, match="config.json"):
        lowrank.Model.from_pretrained(tmp_path / "broken", engine=model.engine)
    with pytest.raises(lowrank.LowRankError, match="adapter_config.json"):
        model.load_adapter(tmp_path / "no-adapter-here")
    with pytest.raises(lowrank.ShapeError, match="another architecture"):
        model.load_adapter(FIXTURES / "qwen2-lora")
    with pytest.raises(lowrank.InvalidArgumentError, match="quantize takes"):
        lowrank.Model.from_pretrained(FIXTURES / "tiny-llama", quantize="int3", engine=model.engine)
    (tmp_path / "file").write_text("")
    with pytest.raises(lowrank.FileAccessError):
        model.save_adapter(tmp_path / "file" / "adapter")


def test_a_step_needs_an_adapter():
    with lowrank.Engine("cpu") as engine:
        model = lowrank.Model.default(engine)
        with pytest.raises(lowrank.StateError, match="no adapter"):
            model.step(IDS)
        assert np.isfinite(model.loss(IDS))  # the base model alone evaluates


def test_threads_share_a_model_safely(model):
    """ctypes releases the GIL: concurrent steps on one model are serialised by the engine."""
    losses, errors = [], []

    def work():
        try:
            for _ in range(3):
                losses.append(model.step(IDS))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(losses) == 9 and model.steps == 9


def test_strings_with_a_nul_are_refused(model, tmp_path):
    """A NUL would end the C string there (save_adapter('/x/a\\0b') wrote /x/a): refused before the call."""
    cut = tmp_path / "a"
    with pytest.raises(lowrank.InvalidArgumentError, match="NUL character at"):
        model.save_adapter(str(cut) + "\0b")
    assert not cut.exists()
    with pytest.raises(lowrank.InvalidArgumentError, match="NUL"):
        model.load_adapter(str(FIXTURES / "lora") + "\0x")
    with pytest.raises(lowrank.InvalidArgumentError, match="NUL"):
        model.add_adapter(r=2, targets="q_proj\0,v_proj")
    with pytest.raises(lowrank.InvalidArgumentError, match="NUL"):
        lowrank.Model.from_pretrained(str(FIXTURES / "tiny-llama") + "\0", engine=model.engine)
    with pytest.raises(lowrank.InvalidArgumentError, match="NUL"):
        lowrank.Engine("cpu\0vulkan")


def test_an_adapter_of_another_base_model_needs_force():
    """The Llama fixture adapter fits the Qwen2 fixture's shapes; PEFT recorded LlamaForCausalLM."""
    with lowrank.Engine("cpu") as engine:
        qwen = lowrank.Model.from_pretrained(FIXTURES / "tiny-qwen2-bf16", engine=engine)
        with pytest.raises(lowrank.InvalidArgumentError, match="LlamaForCausalLM.*force=True"):
            qwen.load_adapter(FIXTURES / "lora")
        qwen.load_adapter(FIXTURES / "lora", force=True)
        assert len(qwen.adapter_tensor_names()) == 2 * 2 * 2


def test_config_errors_do_not_crash_the_interpreter(tmp_path):
    """Sizes whose products overflowed trapped inside from_pretrained, killing the interpreter."""
    folder = tmp_path / "model"
    folder.mkdir()
    config = json.loads((FIXTURES / "tiny-llama" / "config.json").read_text())
    config.update(num_attention_heads=2**40, head_dim=2**40)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((FIXTURES / "tiny-llama" / "model.safetensors").read_bytes())
    with lowrank.Engine("cpu") as engine:
        with pytest.raises(lowrank.InvalidArgumentError, match="num_attention_heads 1099511627776 × head_dim"):
            lowrank.Model.from_pretrained(folder, engine=engine)
