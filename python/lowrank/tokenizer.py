"""Hugging Face tokenizers and chat templates, run by the engine (no transformers needed)."""
import ctypes
import json

from ._handle import NativeHandle
from ._native import check, encode, lib, read_ids, read_string


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
