"""The ``transformers`` engine: CPU (or single-GPU) generation with Hugging Face transformers.

The model is built **from bytes**: ``config.json``, the tokenizer files and
the safetensors weights are read through a :class:`~sealtune.serve.model.ModelFiles`
source (a plain directory, or a sealed one decrypted in memory) and handed to
``from_pretrained(None, config=..., state_dict=...)``, so sealed weights are
never written to disk in plaintext. Only safetensors are accepted. A LoRA
adapter (the training stage's default output) is served over its base
model: the adapter is applied with peft and merged into the base weights in
memory, and refused unless every LoRA tensor fits.

Generation runs on one dedicated worker thread: requests queue and run one
at a time, so concurrent requests never share generation state. Streams use
``TextIteratorStreamer``; a client that goes away cancels its generation
through a stopping criterion. A GPU engine (vLLM) belongs in a sibling module
with the same three methods (``generate``, ``stream``, ``count_tokens``)
and continuous batching instead of the single worker.

What this protects against: pickle weights (refused), concurrent requests
corrupting each other's state, and exceptions inside generation leaking text
(they surface as :class:`EngineFailed` with the class name only; nothing is
printed). What it does not: the process holds prompts, outputs and weights
in plaintext memory; one long request delays the others (no batching on CPU).
"""

from __future__ import annotations

import importlib
import json
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sealtune.errors import ConfigError
from sealtune.serve.engines.base import (
    Completion,
    Engine,
    EngineFailed,
    FinishReason,
    Message,
    RequestTooLarge,
    Sampling,
    TokenStream,
    register_engine,
)
from sealtune.serve.model import ADAPTER_CONFIG, ModelFiles

_INSTALL = "install the serving extras: pip install 'sealtune[serve,train]'"
_TOKENIZER_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "model_max_length",
                   "clean_up_tokenization_spaces")


def _mod(name: str) -> Any:
    """Import lazily and untyped: these libraries are optional and loosely typed."""
    return importlib.import_module(name)


def _json(files: ModelFiles, name: str) -> dict[str, Any]:
    try:
        value = json.loads(files.read(name))
    except (ValueError, UnicodeDecodeError):
        raise ConfigError(f"{files.label}: {name} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{files.label}: {name} must hold a JSON object")
    return value


def _special(value: Any) -> Any:
    """Tokenizer configs store special tokens as strings or AddedToken dicts."""
    return value.get("content") if isinstance(value, dict) else value


def _load_tokenizer(files: ModelFiles) -> Any:
    tokenizers, transformers = _mod("tokenizers"), _mod("transformers")
    names = files.names()
    if "tokenizer.json" not in names:
        raise ConfigError(f"{files.label} has no tokenizer.json",
                          hint="save the model with a fast tokenizer")
    config = _json(files, "tokenizer_config.json") if "tokenizer_config.json" in names else {}
    kwargs = {k: _special(config[k]) for k in _TOKENIZER_KEYS if config.get(k) is not None}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizers.Tokenizer.from_str(files.read("tokenizer.json").decode("utf-8")),
        **kwargs)
    template = config.get("chat_template")
    if "chat_template.jinja" in names:
        template = files.read("chat_template.jinja").decode("utf-8")
    if not isinstance(template, str) or not template:
        raise ConfigError(f"{files.label} has no chat template",
                          hint="add chat_template.jinja (or chat_template in "
                               "tokenizer_config.json)")
    tok.chat_template = template
    return tok


def _load_model(files: ModelFiles) -> Any:
    auto = _mod("transformers.models.auto.modeling_auto")
    config_dict = _json(files, "config.json")
    model_type = config_dict.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ConfigError(f"{files.label}: config.json has no model_type")
    config = _mod("transformers").AutoConfig.for_model(model_type, **config_dict)
    try:
        model_class = auto.MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise ConfigError(f"{files.label}: model type {model_type!r} is not a causal LM "
                          "that transformers knows") from None
    model = model_class.from_pretrained(None, config=config, state_dict=_weights(files))
    model.eval()
    return model


def _weights(files: ModelFiles) -> dict[str, Any]:
    """Every ``*.safetensors`` file's tensors, loaded from bytes."""
    load_safetensors = _mod("safetensors.torch").load
    weights = [n for n in files.names() if n.endswith(".safetensors")]
    if not weights:
        raise ConfigError(f"{files.label} holds no .safetensors weights")
    state: dict[str, Any] = {}
    for name in weights:
        state.update(load_safetensors(files.read(name)))
    return state


def _merge_adapter(base: Any, files: ModelFiles) -> Any:
    """Apply the LoRA adapter in ``files`` to ``base`` and merge it into plain weights.

    Every LoRA tensor the adapter's configuration implies must be present,
    and nothing else (a truncated or foreign adapter is refused, not served
    half-applied).
    """
    peft = _mod("peft")
    config_dict = _json(files, ADAPTER_CONFIG)
    if config_dict.get("peft_type") != "LORA":
        raise ConfigError(f"{files.label}: {ADAPTER_CONFIG} is not a LoRA adapter",
                          hint="only LoRA adapters (sealtune train --method lora) are served")
    try:
        config = peft.PeftConfig.from_peft_type(**config_dict)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{files.label}: {ADAPTER_CONFIG} is not a valid LoRA "
                          f"configuration ({type(exc).__name__})") from None
    config.inference_mode = True
    # The path recorded at training (inside the sandbox) means nothing here; the
    # base was chosen and checked by the caller (serve.model.resolve_base).
    config.base_model_name_or_path = getattr(base, "name_or_path", None)
    state = _weights(files)
    with warnings.catch_warnings():  # peft asks a deprecated transformers property: noise
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing",
                                category=FutureWarning)
        model = peft.get_peft_model(base, config)
    loaded = peft.set_peft_model_state_dict(model, state)
    missing = [k for k in loaded.missing_keys if "lora_" in k]
    if missing or loaded.unexpected_keys:
        raise ConfigError(f"{files.label}: the adapter does not fit the base model "
                          f"({len(missing)} LoRA tensors missing, "
                          f"{len(loaded.unexpected_keys)} unexpected)",
                          hint="serve it with the base model it was trained on (--base)")
    return model.merge_and_unload()


def _make_streamer(tokenizer: Any) -> Any:
    """A TextIteratorStreamer that counts generated tokens and remembers the last one."""
    base: Any = _mod("transformers").TextIteratorStreamer

    class Counting(base):  # type: ignore[misc]
        count = 0
        last = -1

        def put(self, value: Any) -> None:
            if not (self.skip_prompt and self.next_tokens_are_prompt):
                flat = value.reshape(-1)
                self.count += int(flat.numel())
                if flat.numel():
                    self.last = int(flat[-1])
            super().put(value)

    return Counting(tokenizer, skip_prompt=True, skip_special_tokens=True)


class TransformersEngine:
    """Generation with a transformers causal LM on one worker thread.

    Args:
        files: the model's files (plain or sealed directory): a whole model,
            or a LoRA adapter (``adapter_config.json``) when ``base`` is given.
        model_id: the name served in ``GET /v1/models``.
        device: ``cpu`` (default) or e.g. ``cuda``.
        base: the base model under a LoRA adapter; the adapter is merged
            into it in memory (the tokenizer comes from the adapter's files
            when they hold one, else from the base).
    """

    blocking = True

    def __init__(self, *, files: ModelFiles, model_id: str, device: str = "cpu",
                 base: ModelFiles | None = None) -> None:
        try:
            _mod("torch")
            hf_logging = _mod("transformers.utils.logging")
        except ImportError as exc:
            raise ConfigError("the transformers engine needs torch and transformers",
                              hint=_INSTALL) from exc
        hf_logging.disable_progress_bar()
        self.model_id = model_id
        if base is None:
            self._tokenizer, model = _load_tokenizer(files), _load_model(files)
        else:
            with_tokenizer = files if "tokenizer.json" in files.names() else base
            self._tokenizer = _load_tokenizer(with_tokenizer)
            model = _merge_adapter(_load_model(base), files)
            model.eval()
        self._model = model.to(device)
        self._device = device
        self._eos = self._model.generation_config.eos_token_id
        self._context = int(getattr(self._model.config, "max_position_embeddings", 0) or 0)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sealtune-generate")

    # -- helpers -----------------------------------------------------------------

    def _encode(self, messages: Sequence[Message], sampling: Sampling) -> Any:
        rendered = [{"role": "system" if m.role == "developer" else m.role,
                     "content": m.content} for m in messages]
        inputs = self._tokenizer.apply_chat_template(
            rendered, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        size = int(inputs["input_ids"].shape[1])
        if self._context and size + sampling.max_tokens > self._context:
            raise RequestTooLarge(f"the prompt ({size} tokens) plus max_tokens "
                                  f"({sampling.max_tokens}) exceeds the model's context of "
                                  f"{self._context} tokens")
        return inputs.to(self._device)

    def _kwargs(self, sampling: Sampling) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens,
                                  "pad_token_id": self._tokenizer.pad_token_id
                                  if self._tokenizer.pad_token_id is not None else self._eos}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _run(self, inputs: Any, sampling: Sampling, **extra: Any) -> Any:
        """On the worker thread: generate; any exception becomes EngineFailed (class name)."""
        torch = _mod("torch")
        try:
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                return self._model.generate(**inputs, **self._kwargs(sampling), **extra)
        except Exception as exc:  # the message could quote data: keep the class name only
            raise EngineFailed(type(exc).__name__) from None

    def _finish(self, count: int, last: int, sampling: Sampling) -> FinishReason:
        eos = self._eos if isinstance(self._eos, list) else [self._eos]
        return "length" if count >= sampling.max_tokens and last not in eos else "stop"

    # -- Engine ------------------------------------------------------------------

    def generate(self, messages: Sequence[Message], *, sampling: Sampling) -> Completion:
        """Generate a whole completion (waits for the worker thread)."""
        inputs = self._encode(messages, sampling)
        prompt = int(inputs["input_ids"].shape[1])
        out = self._worker.submit(self._run, inputs, sampling).result()
        new = out[0][prompt:]
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        last = int(new[-1]) if len(new) else -1
        return Completion(text, prompt, len(new), self._finish(len(new), last, sampling))

    def stream(self, messages: Sequence[Message], *, sampling: Sampling) -> TokenStream:
        """Queue a generation and return its text pieces as the streamer produces them."""
        transformers = _mod("transformers")
        inputs = self._encode(messages, sampling)
        streamer = _make_streamer(self._tokenizer)
        cancel = threading.Event()

        torch = _mod("torch")
        criteria: Any = transformers.StoppingCriteria

        class Cancelled(criteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        def work() -> None:
            try:
                if not cancel.is_set():
                    self._run(inputs, sampling, streamer=streamer,
                              stopping_criteria=transformers.StoppingCriteriaList([Cancelled()]))
            finally:
                streamer.end()

        future = self._worker.submit(work)
        return _TransformersStream(self, streamer, future, cancel, sampling,
                                   int(inputs["input_ids"].shape[1]))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` (no special tokens added)."""
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def close(self) -> None:
        """Stop the worker thread after the queued generations."""
        self._worker.shutdown(wait=False, cancel_futures=True)


class _TransformersStream(TokenStream):
    def __init__(self, engine: TransformersEngine, streamer: Any, future: Future[None],
                 cancel: threading.Event, sampling: Sampling, prompt: int) -> None:
        super().__init__(self._run(), prompt_tokens=prompt, on_close=cancel.set)
        self._engine, self._streamer, self._future = engine, streamer, future
        self._sampling = sampling

    def _run(self) -> Iterator[str]:
        for piece in self._streamer:
            self.completion_tokens = self._streamer.count
            if piece:
                yield piece
        self._future.result()  # re-raises EngineFailed from the worker
        self.completion_tokens = self._streamer.count
        self.finish_reason = self._engine._finish(self._streamer.count, self._streamer.last,
                                                  self._sampling)


def _factory(**options: Any) -> Engine:
    return TransformersEngine(**options)


register_engine("transformers", _factory)
