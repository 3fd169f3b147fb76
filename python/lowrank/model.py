"""Models with adapters: load, attach, train step by step, save in PEFT's format."""
import ctypes
import json
import os

import numpy as np

from ._errors import DTypeError, FileFormatError, InvalidArgumentError, ShapeError
from ._handle import NativeHandle
from ._native import AdapterOptions, GenerationOptions, TrainingOptions, check, encode, lib, read_ids, read_string
from .tokenizer import Tokenizer, encode_example
from .engine import Engine, default_engine

SCHEDULES = {"constant": 0, "linear": 1, "cosine": 2}
_int32_p = ctypes.POINTER(ctypes.c_int32)
_float_p = ctypes.POINTER(ctypes.c_float)


class Model(NativeHandle):
    """A Llama-family model (Llama, Mistral, Qwen2) on an engine, with at most one adapter.

    Build one with Model.from_pretrained(folder) or Model.default(); then add_adapter(...) (or
    load_adapter(folder)), configure_training(...), and loss = model.step(input_ids) per batch."""

    def __init__(self, handle: int, engine: Engine, tokenizer: Tokenizer = None):
        """Wraps a handle the C ABI returned; use from_pretrained() or default() instead."""
        super().__init__(handle)
        self._engine = engine  # kept alive as long as the model
        self._tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, path, quantize=None, engine: Engine = None) -> "Model":
        """A Hugging Face checkpoint folder (config.json and safetensors weights, f32/f16/bf16), or a
        GGUF file of the llama architecture (F32/F16/BF16; Q8_0 and Q4_0 matrices stay quantized).
        quantize: None, "nf4", "q8_0" or "q4_0" quantizes the frozen projections at load."""
        engine = engine or default_engine()
        handle = ctypes.c_uint64(0)
        check(lib.lowrank_model_load(engine.handle, encode(path, "path"),
                                     None if quantize is None else encode(quantize, "quantize"), ctypes.byref(handle)))
        model = cls(handle.value, engine)
        tokenizer = ctypes.c_uint64(0)
        check(lib.lowrank_model_tokenizer(model._handle, ctypes.byref(tokenizer)))
        model._tokenizer = Tokenizer(tokenizer.value) if tokenizer.value else None
        return model

    @classmethod
    def default(cls, engine: Engine = None) -> "Model":
        """The built-in model of `lowrank train`: byte-level (vocabulary 256), 2 blocks, d = 64,
        fixed random weights."""
        engine = engine or default_engine()
        handle = ctypes.c_uint64(0)
        check(lib.lowrank_model_create_default(engine.handle, ctypes.byref(handle)))
        return cls(handle.value, engine)

    @property
    def engine(self) -> Engine:
        """The engine the model runs on (kept open as long as the model)."""
        return self._engine

    @property
    def tokenizer(self):
        """The model's Tokenizer (a folder's tokenizer.json, or a GGUF file's tokenizer metadata, with
        special tokens and chat template), or None without one."""
        return self._tokenizer

    @property
    def config(self) -> dict:
        """The model's config, with Hugging Face's field names."""
        return json.loads(read_string(lib.lowrank_model_config, self._handle))

    # Generation

    def generate(self, prompt=None, messages=None, max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 top_k: int = 0, seed: int = 0, stop_token_ids=None, return_ids: bool = False):
        """Generates text with the model and its adapter (unmerged, no dropout) and a KV cache, as
        `lowrank generate`: greedy at temperature 0 (transformers' do_sample=False), else sampled
        after transformers' warpers (temperature, then top_k, then top_p) from seed.

        The prompt is one of: prompt, a string (with the tokenizer's chat template, one user turn
        rendered with the generation prompt; without one, encoded with BOS as the tokenizer adds
        it) or a list of token ids; or messages, a conversation [{"role", "content"}, ...] rendered
        with the generation prompt. Generation stops at stop_token_ids, by default the folder's
        (generation_config.json's eos_token_id, the tokenizer's EOS, the template's end-of-turn
        token), or after max_new_tokens. Returns the generated text (special tokens left out), or
        (text, ids) with return_ids=True; text is None without a tokenizer."""
        if (prompt is None) == (messages is None):
            raise TypeError("give prompt (text or token ids) or messages, not both")
        tokenizer = self._tokenizer
        if messages is not None or isinstance(prompt, str):
            if tokenizer is None:
                raise FileFormatError("the model folder has no tokenizer.json: give the prompt as token ids")
            if messages is None and tokenizer.has_chat_template:
                messages = [{"role": "user", "content": prompt}]
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True) if messages is not None \
                else tokenizer.encode(prompt)
        else:
            ids = [_integer(i, "prompt id") for i in prompt]
        options = GenerationOptions()
        check(lib.lowrank_generation_options_init(ctypes.byref(options)))
        options.max_new_tokens = _integer(max_new_tokens, "max_new_tokens", 1, 2**31 - 1)
        options.temperature, options.top_p = float(temperature), float(top_p)
        options.top_k, options.seed = _integer(top_k, "top_k", 0), _integer(seed, "seed", 0, UINT64_MAX)
        stops = None
        if stop_token_ids is not None:
            values = [_integer(i, "stop token id") for i in stop_token_ids]
            stops = (ctypes.c_int32 * max(len(values), 1))(*values)
        prompt_ids = (ctypes.c_int32 * len(ids))(*ids)
        out = (ctypes.c_int32 * options.max_new_tokens)()
        count = ctypes.c_int64(0)
        check(lib.lowrank_model_generate(self._handle, prompt_ids, len(ids), ctypes.byref(options), stops,
                                         0 if stop_token_ids is None else len(values), out, len(out), ctypes.byref(count)))
        generated = list(out[: count.value])
        text = tokenizer.decode(generated, skip_special_tokens=True) if tokenizer is not None else None
        return (text, generated) if return_ids else text

    @property
    def stop_token_ids(self) -> list:
        """The ids that end generate() by default (see generate)."""
        return read_ids(lib.lowrank_model_stop_tokens, self._handle)

    # Adapters

    def add_adapter(self, r: int = 8, alpha: float = 16, dropout: float = 0.0, dora: bool = False, rslora: bool = False,
                    targets=("q_proj", "v_proj"), seed: int = 0, init="kaiming", rank_pattern=None, alpha_pattern=None,
                    layers_to_transform=None, layers_pattern=None, exclude_modules=None, bias: str = "none",
                    trainable_token_indices=None, modules_to_save=None, ensure_weight_tying: bool = False,
                    loftq_iter: int = 1, eva_config=None, corda_config=None, init_ids=None, init_labels=None,
                    init_batch_size: int = 1) -> None:
        """Attaches a new LoRA adapter (DoRA with dora=True; rsLoRA scaling with rslora=True) on the
        modules `targets` names: a list of names, a comma-separated string, or "all-linear".
        Replaces any adapter. The other arguments are PEFT's LoraConfig fields of the same names:
        `init` its init_lora_weights ("kaiming" or True, PEFT's default, and "gaussian" start B at
        zero, so the model is unchanged until it trains; "pissa", "pissa_niter_N" and "olora" split
        each targeted weight, which keeps the residual, and the adapter is saved converted for the
        original model, rank 2r; "loftq", on a model loaded with quantize="nf4", fits A and B to what
        NF4 quantization leaves of each weight), `rank_pattern`/`alpha_pattern` dicts of regular expression to
        rank/alpha, `layers_to_transform` a layer index or list of them with `layers_pattern`,
        `exclude_modules` a list of names or a pattern, `bias` "none", "lora_only" or "all",
        `trainable_token_indices` a list of token ids (or {"embed_tokens": [...]}) whose embedding
        rows train with the adapter, `modules_to_save` a list of modules that train in full as copies
        ("embed_tokens", "lm_head", RMSNorms such as "norm" or "input_layernorm", projections such
        as "q_proj", which then get no LoRA adapter),
        `ensure_weight_tying` True makes a tied model's embedding and LM head one trained copy, and
        `loftq_iter` is LoftQConfig's loftq_iter with init="loftq" (more than 1 changes the NF4 base,
        which save_adapter writes beside the adapter and load_adapter reads back). `init="eva"`
        and `init="corda"` start from data: `init_ids`, a [rows, sequence] array of token ids (with
        `init_labels` as `step` takes them; EVA leaves -100 positions out). EVA reads them in batches
        of `init_batch_size` rows as PEFT's initialize_lora_eva_weights reads its dataloader, with
        `eva_config` a dict of PEFT's EvaConfig fields (rho, tau, ...); CorDA forwards each row as
        PEFT's preprocess_corda's run_model would, with `corda_config` ({"corda_method": "kpm"})."""
        options = AdapterOptions()
        check(lib.lowrank_adapter_options_init(ctypes.byref(options)))
        if not isinstance(targets, str):
            targets = ",".join(targets)
        options.r, options.alpha, options.dropout = _integer(r, "r"), float(alpha), float(dropout)
        options.dora, options.rslora = int(bool(dora)), int(bool(rslora))
        options.targets = encode(targets, "targets")
        options.seed = _integer(seed, "seed", 0, UINT64_MAX)
        fields = {"init_lora_weights": True if init in (True, "kaiming") else init, "rank_pattern": rank_pattern,
                  "alpha_pattern": alpha_pattern, "layers_to_transform": layers_to_transform,
                  "layers_pattern": layers_pattern, "exclude_modules": exclude_modules, "bias": bias,
                  "trainable_token_indices": trainable_token_indices, "modules_to_save": modules_to_save,
                  "ensure_weight_tying": bool(ensure_weight_tying),
                  "loftq_config": {"loftq_bits": 4, "loftq_iter": _integer(loftq_iter, "loftq_iter", 1)} if init == "loftq" else None,
                  "eva_config": eva_config, "corda_config": corda_config}
        options.peft_config = encode(json.dumps({k: v for k, v in fields.items() if v is not None}), "peft_config")
        if init not in ("eva", "corda"):
            if init_ids is not None or init_labels is not None:
                raise TypeError('init_ids and init_labels are the data of init="eva" and init="corda"')
            check(lib.lowrank_model_add_adapter(self._handle, ctypes.byref(options)))
            return
        if init_ids is None:
            raise TypeError(f'init="{init}" starts the adapter from data: give init_ids')
        ids = _token_array(init_ids, "init_ids")
        labels = None if init_labels is None else _token_array(init_labels, "init_labels")
        if labels is not None and labels.shape != ids.shape:
            raise ShapeError(f"init_labels have shape {labels.shape}, init_ids {ids.shape}: they must match")
        check(lib.lowrank_model_add_adapter_with_data(self._handle, ctypes.byref(options), ids.ctypes.data_as(_int32_p),
                                                      None if labels is None else labels.ctypes.data_as(_int32_p), ids.shape[0],
                                                      ids.shape[1], _integer(init_batch_size, "init_batch_size")))

    def load_adapter(self, path, force: bool = False) -> None:
        """Attaches the PEFT adapter saved in `path` (adapter_config.json, adapter_model.safetensors).
        An adapter whose base_model_name_or_path or recorded architecture names another model is
        refused unless force=True (as `lowrank train --force-adapter`); shapes are checked either way."""
        load = lib.lowrank_model_load_adapter_forced if force else lib.lowrank_model_load_adapter
        check(load(self._handle, encode(path, "path")))

    def save_adapter(self, path) -> None:
        """Writes the adapter in PEFT's format; PeftModel.from_pretrained loads it."""
        check(lib.lowrank_model_save_adapter(self._handle, encode(os.fspath(path), "path")))

    def adapter_tensor_names(self) -> list:
        """The adapter's tensors by PEFT's names (base_model.model.<module>.lora_A.weight, .lora_B.weight,
        .lora_magnitude_vector), in model order."""
        count = ctypes.c_int64(0)
        check(lib.lowrank_model_adapter_tensor_count(self._handle, ctypes.byref(count)))
        return [read_string(lib.lowrank_model_adapter_tensor_name, self._handle, i) for i in range(count.value)]

    def _shape(self, name: bytes) -> tuple:
        shape, rank = (ctypes.c_int64 * 4)(), ctypes.c_int32(0)
        check(lib.lowrank_model_adapter_tensor_shape(self._handle, name, shape, ctypes.byref(rank)))
        return tuple(shape[: rank.value])

    def get_adapter_tensor(self, name: str) -> np.ndarray:
        """A copy of one adapter tensor (PEFT's name) as float32."""
        key = encode(name, "name")
        out = np.empty(self._shape(key), dtype=np.float32)
        check(lib.lowrank_model_read_adapter_tensor(self._handle, key, out.ctypes.data_as(_float_p), out.size))
        return out

    def set_adapter_tensor(self, name: str, values) -> None:
        """Overwrites one adapter tensor; `values` must have its shape (any float dtype)."""
        key = encode(name, "name")
        array = np.asarray(values)
        if array.dtype.kind != "f":
            raise DTypeError(f"{name} takes floating-point values, not {array.dtype}")
        shape = self._shape(key)
        if array.shape != shape:
            raise ShapeError(f"{name} has shape {shape}, the values {array.shape}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        check(lib.lowrank_model_write_adapter_tensor(self._handle, key, array.ctypes.data_as(_float_p), array.size))

    def adapter_state_dict(self) -> dict:
        """Every adapter tensor by PEFT's name, as PeftModel's state dict names them."""
        return {name: self.get_adapter_tensor(name) for name in self.adapter_tensor_names()}

    # Training

    def configure_training(self, lr: float = 2e-4, schedule: str = "constant", warmup: int = 0, total_steps: int = None,
                           weight_decay: float = 0.01, clip: float = None, seed: int = 0,
                           gradient_checkpointing: bool = False, loraplus_lr_ratio: float = None, residual_dtype: str = None,
                           matmul_precision: str = None) -> None:
        """How step() trains: AdamW (PyTorch's betas and eps) with a constant, linear or cosine
        schedule after `warmup` steps (linear and cosine need total_steps), optional clipping of
        the global gradient norm, and dropout seeded from `seed` and the step; with
        `loraplus_lr_ratio`, LoRA+ (PEFT's create_loraplus_optimizer: B's learning rate is the
        ratio times lr). `residual_dtype` "f32", "bf16" or "f16" holds the hidden state between
        decoder blocks in that dtype (`lowrank train --residual-dtype`); None follows the frozen
        weights, as PyTorch holds a 16-bit model's hidden states: bf16 for a bf16 checkpoint (also
        quantized to NF4), f32 for f32 and GGUF-quantized ones; 16-bit halves what gradient
        checkpointing keeps. `matmul_precision` "highest" keeps every product
        with the frozen weights exact in f32; "medium" (the CPU's default) multiplies a bf16 weight by
        activations rounded to bf16, with f32 sums, as PyTorch computes a bf16 model (`lowrank train
        --precision`); it holds for every model on the backend, evaluation and generation included;
        None leaves it as it is. Starts a new optimizer; the adapter's tensors are kept."""
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
        options = TrainingOptions()
        check(lib.lowrank_training_options_init(ctypes.byref(options)))
        options.schedule = SCHEDULES[schedule]
        options.learning_rate, options.weight_decay = float(lr), float(weight_decay)
        options.warmup_steps = _integer(warmup, "warmup", 0, INT64_MAX)
        options.total_steps = 0 if total_steps is None else _integer(total_steps, "total_steps", 1, INT64_MAX)
        options.max_grad_norm = 0.0 if clip is None else float(clip)
        options.gradient_checkpointing = int(bool(gradient_checkpointing))
        options.seed = _integer(seed, "seed", 0, UINT64_MAX)
        options.loraplus_lr_ratio = 0.0 if loraplus_lr_ratio is None else float(loraplus_lr_ratio)
        options.residual_dtype = None if residual_dtype is None else encode(residual_dtype, "residual_dtype")
        options.matmul_precision = None if matmul_precision is None else encode(matmul_precision, "matmul_precision")
        check(lib.lowrank_model_set_training(self._handle, ctypes.byref(options)))

    def step(self, input_ids=None, labels=None, position_ids=None, *, examples=None, max_length: int = None,
             train_on_prompt: bool = False) -> float:
        """One training step on a [batch, sequence] array of token ids: forward with the mean
        next-token cross-entropy, backward, and an AdamW step. `labels`, as transformers takes
        them (unshifted, -100 where nothing is predicted, such as right padding), default to the
        ids. `position_ids` (the ids' shape) packs several sequences into a row, as transformers'
        DataCollatorWithFlattening does: each sequence's positions count up from 0, and at a 0
        attention and RoPE positions restart and the token before does not predict it, so the loss
        is that of the sequences unpacked. Or, instead of ids, `examples`: a list of dicts as
        `lowrank train --data` reads JSONL lines, batched by collate(examples, max_length,
        train_on_prompt). Returns the batch's loss."""
        return self._run(lib.lowrank_model_step, lib.lowrank_model_step_packed,
                         self._batch(input_ids, labels, position_ids, examples, max_length, train_on_prompt))

    def forward_backward(self, input_ids=None, labels=None, position_ids=None, *, examples=None, max_length: int = None,
                         train_on_prompt: bool = False) -> float:
        """Gradient accumulation: forward and backward on a micro-batch (arguments as step()), its
        gradients added to those since the last optimizer_step(), weighted by its predicted
        tokens, so micro-batches step as one batch of all their rows. Returns its loss."""
        return self._run(lib.lowrank_model_forward_backward, lib.lowrank_model_forward_backward_packed,
                         self._batch(input_ids, labels, position_ids, examples, max_length, train_on_prompt))

    def collate(self, examples, max_length: int = None, train_on_prompt: bool = False) -> tuple:
        """The batch `lowrank train` makes of these examples (dicts as its JSONL lines: {"text"},
        {"prompt", "completion"}, {"messages"} with the model's tokenizer and chat template, or
        {"input_ids"[, "labels"]}), each tokenized by Tokenizer.encode_example: (input_ids, labels),
        two int32 [batch, sequence] arrays, rows padded on the right to the longest with id 0 and
        label -100. max_length, as its --seq-len, cuts a longer example into consecutive windows
        of max_length tokens, each a row; as there, a row (or window) with nothing to predict (under
        2 tokens, or no trained label after its first) is left out."""
        if isinstance(examples, dict) or not hasattr(examples, "__iter__"):
            raise TypeError(f"examples must be a list of dicts, not {type(examples).__name__}")
        if max_length is not None and _integer(max_length, "max_length", 0, INT64_MAX) < 2:
            raise InvalidArgumentError(f"max_length must be at least 2 (a token and the next one it predicts), got {max_length}")
        handle = 0 if self._tokenizer is None else self._tokenizer.handle
        rows = []
        for example in examples:
            ids, labels = encode_example(handle, example, train_on_prompt)
            step = max_length or max(len(ids), 1)
            rows += [(ids[i:i + step], labels[i:i + step]) for i in range(0, len(ids), step)]
        rows = [(ids, labels) for ids, labels in rows if len(ids) >= 2 and any(label != -100 for label in labels[1:])]
        if not rows:
            raise InvalidArgumentError("the examples have no row of at least 2 tokens with a trained label after the first, so nothing to predict")
        length = max(len(ids) for ids, _ in rows)
        input_ids = np.zeros((len(rows), length), dtype=np.int32)
        label_array = np.full((len(rows), length), -100, dtype=np.int32)
        for r, (ids, labels) in enumerate(rows):
            input_ids[r, :len(ids)], label_array[r, :len(labels)] = ids, labels
        return input_ids, label_array

    def optimizer_step(self) -> float:
        """The AdamW step with the gradients accumulated by forward_backward(); returns the step's
        loss (the mean over every predicted token of its micro-batches)."""
        loss = ctypes.c_float(0)
        check(lib.lowrank_model_optimizer_step(self._handle, ctypes.byref(loss)))
        return loss.value

    def gradients(self) -> tuple:
        """The gradients accumulated by forward_backward() since the last optimizer_step(), for a
        script that all-reduces them itself (torch.distributed, mpi4py): (vector, tokens), the
        vector one float32 array of every adapter tensor's gradient flattened in
        adapter_state_dict() order, as sums weighted by each micro-batch's predicted tokens, and
        tokens the count they are weighted by. Summing both over processes and handing them to
        set_gradients() steps as one batch of all their rows. Zeros and 0 with nothing accumulated."""
        out = np.empty(self._gradient_count(), dtype=np.float32)
        tokens = ctypes.c_double(0)
        check(lib.lowrank_model_gradients(self._handle, out.ctypes.data_as(_float_p), out.size, ctypes.byref(tokens)))
        return out, int(tokens.value)

    def set_gradients(self, vector, tokens: int) -> None:
        """Replaces the accumulated gradients with `vector` (as gradients() gives it, typically
        summed over processes) weighted by `tokens` predicted tokens; optimizer_step() then takes
        the step with them. Its loss stays this process's own mean over its micro-batches."""
        array = np.asarray(vector)
        if array.dtype.kind != "f":
            raise DTypeError(f"gradients take floating-point values, not {array.dtype}")
        count = self._gradient_count()
        if array.shape != (count,):
            raise ShapeError(f"the gradient vector has shape ({count},), the values {array.shape}")
        array = np.ascontiguousarray(array, dtype=np.float32)
        check(lib.lowrank_model_set_gradients(self._handle, array.ctypes.data_as(_float_p), count,
                                              _integer(tokens, "tokens", 0, 2**53)))

    def _gradient_count(self) -> int:
        count = ctypes.c_int64(0)
        check(lib.lowrank_model_gradient_count(self._handle, ctypes.byref(count)))
        return count.value

    def loss(self, input_ids=None, labels=None, position_ids=None, *, examples=None, max_length: int = None,
             train_on_prompt: bool = False) -> float:
        """The loss of a batch without training (no dropout); arguments as step()."""
        return self._run(lib.lowrank_model_loss, lib.lowrank_model_loss_packed,
                         self._batch(input_ids, labels, position_ids, examples, max_length, train_on_prompt))

    @property
    def steps(self) -> int:
        """Steps taken since the training was configured."""
        count = ctypes.c_int64(0)
        check(lib.lowrank_model_step_count(self._handle, ctypes.byref(count)))
        return count.value

    def save_checkpoint(self, path) -> None:
        """Writes the adapter (PEFT's format), the optimizer's moments and the step and losses to
        `path`, whole or not at all, so a run that stops loses only the steps after it."""
        check(lib.lowrank_model_save_checkpoint(self._handle, encode(path, "path")))

    def load_checkpoint(self, path) -> None:
        """Continues from a checkpoint: its adapter, optimizer moments, step and losses. Call
        configure_training first with the settings of the run that wrote it; the steps that follow
        are then those of an unbroken run."""
        check(lib.lowrank_model_load_checkpoint(self._handle, encode(path, "path")))

    def _batch(self, input_ids, labels, position_ids, examples, max_length, train_on_prompt) -> tuple:
        """(input_ids, labels, position_ids): the caller's arrays, or the batch of the examples."""
        if examples is None:
            if input_ids is None:
                raise TypeError("give input_ids or examples")
            return input_ids, labels, position_ids
        if any(a is not None for a in (input_ids, labels, position_ids)):
            raise TypeError("examples replace input_ids, labels and position_ids: give one or the other")
        return (*self.collate(examples, max_length, train_on_prompt), None)

    def _run(self, function, packed_function, batch) -> float:
        input_ids, labels, position_ids = batch
        ids = _token_array(input_ids, "input_ids")

        def matching(values, name):
            if values is None:
                return None
            array = _token_array(values, name)
            if array.shape != ids.shape:
                raise ShapeError(f"{name} have shape {array.shape}, input_ids {ids.shape}: they must match")
            return array

        label_array, position_array = matching(labels, "labels"), matching(position_ids, "position_ids")
        pointers = [None if a is None else a.ctypes.data_as(_int32_p) for a in (ids, label_array, position_array)]
        if position_array is None:
            pointers.pop()
        else:
            function = packed_function
        loss = ctypes.c_float(0)
        check(function(self._handle, *pointers, ids.shape[0], ids.shape[1], ctypes.byref(loss)))
        return loss.value

    def _release(self):
        # A closed engine took its models along: nothing is left to free then.
        return None if self._engine.closed else lib.lowrank_model_close(self._handle)


def _integer(value, name: str, low: int = -(2**31), high: int = 2**31 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} = {value} is outside [{low}, {high}]")
    return int(value)


UINT64_MAX, INT64_MAX = 2**64 - 1, 2**63 - 1


def _token_array(values, name: str) -> np.ndarray:
    """A [batch, sequence] int32 C-ordered array: the caller's own when it already is one."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise DTypeError(f"{name} must hold integer token ids (int32 or int64), not {array.dtype}")
    if array.ndim != 2:
        raise ShapeError(f"{name} must be 2-D [batch, sequence], got shape {array.shape}")
    if array.dtype != np.int32 and array.size and (array.min() < -(2**31) or array.max() >= 2**31):
        raise ValueError(f"{name} holds {array.max() if array.max() >= 2**31 else array.min()}, which is no token id (outside int32)")
    return np.ascontiguousarray(array, dtype=np.int32)
