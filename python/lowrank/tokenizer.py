"""Hugging Face tokenizers and chat templates, run by the engine (no transformers needed)."""
import ctypes
import json

from ._handle import NativeHandle
from ._native import BUFFER_TOO_SMALL, check, encode, lib, read_ids, read_string


class Tokenizer(NativeHandle):
    """A Hugging Face tokenizer (tokenizer.json) with the model folder's special tokens and chat
    template, encoding and decoding exactly as the tokenizers library does and rendering the
    template as transformers' apply_chat_template does.

        tokenizer = lowrank.Tokenizer.from_pretrained("SmolLM2-135M-Instruct/")
        ids = tokenizer.encode("Hello")
        text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)"""

    @classmethod
    def from_pretrained(cls, path) -> "Tokenizer":
        """A model folder with tokenizer.json (and tokenizer_config.json, chat_template.jinja), or a
        tokenizer.json file."""
        handle = ctypes.c_uint64(0)
        check(lib.lowrank_tokenizer_load(encode(path, "path"), ctypes.byref(handle)))
        return cls(handle.value)

    def _release(self):
        return lib.lowrank_tokenizer_close(self._handle)

    def encode(self, text: str, add_special_tokens: bool = True) -> list:
        """The token ids of text; add_special_tokens adds the post-processor's BOS/EOS, as the
        tokenizers library's encode does by default."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        data = text.encode("utf-8")  # with its length: text may hold NUL characters
        return read_ids(lib.lowrank_tokenizer_encode, self._handle, data, len(data), int(bool(add_special_tokens)))

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of ids (ids that are not tokens are skipped, as the library does)."""
        values = [int(i) for i in ids]
        array = (ctypes.c_int32 * len(values))(*values)
        return read_string(lib.lowrank_tokenizer_decode, self._handle, array, len(values), int(bool(skip_special_tokens)))

    def apply_chat_template(self, messages, add_generation_prompt: bool = False, tokenize: bool = False):
        """The conversation messages ([{"role", "content"}, ...]) rendered by the chat template, as
        transformers' apply_chat_template: text, or with tokenize=True its ids (no special tokens
        added: the template writes them)."""
        text = read_string(lib.lowrank_tokenizer_apply_chat_template, self._handle,
                           encode(json.dumps(list(messages)), "messages"), int(bool(add_generation_prompt)))
        return self.encode(text, add_special_tokens=False) if tokenize else text

    def encode_example(self, example: dict, train_on_prompt: bool = False) -> tuple:
        """One training example as `lowrank train --data` reads a JSONL line, tokenized as TRL's
        SFTTrainer does: {"text"} (EOS appended, every token trained on), {"prompt", "completion"}
        or {"messages"} (the chat template's rendering; only the completion trained on unless
        train_on_prompt), or {"input_ids"[, "labels"]}. Returns (ids, labels), two lists of the same
        length, labels -100 where not trained on (unshifted, as transformers takes them). A bad
        example raises FileFormatError naming the field."""
        return encode_example(self._handle, example, train_on_prompt)

    @property
    def _info(self) -> dict:
        return json.loads(read_string(lib.lowrank_tokenizer_info, self._handle))

    @property
    def vocab_size(self) -> int:
        """Tokens in the vocabulary, added tokens included."""
        return self._info["vocab_size"]

    @property
    def bos_token_id(self):
        """The BOS token's id, or None."""
        return self._info["bos_token_id"]

    @property
    def eos_token_id(self):
        """The EOS token's id, or None."""
        return self._info["eos_token_id"]

    @property
    def has_chat_template(self) -> bool:
        """Whether the folder has a chat template (apply_chat_template needs one)."""
        return self._info["has_chat_template"]


def encode_example(handle: int, example: dict, train_on_prompt: bool) -> tuple:
    """Tokenizer.encode_example with a tokenizer's handle, or 0 for none ({"input_ids"} only)."""
    if not isinstance(example, dict):
        raise TypeError(f"an example must be a dict, not {type(example).__name__}")
    line = encode(json.dumps(example, default=_plain), "example")
    count, capacity = ctypes.c_int64(0), 256
    while True:
        ids, labels = (ctypes.c_int32 * capacity)(), (ctypes.c_int32 * capacity)()
        status = lib.lowrank_tokenizer_encode_example(handle, line, int(bool(train_on_prompt)), ids, labels, capacity, ctypes.byref(count))
        if status != BUFFER_TOO_SMALL or capacity >= count.value:
            break
        capacity = count.value
    check(status)
    return list(ids[: count.value]), list(labels[: count.value])


def _plain(value):
    """NumPy ids (arrays and integers) as JSON has them."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
