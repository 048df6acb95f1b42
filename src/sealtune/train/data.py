"""Training examples from chat records: chat template, assistant-only labels, batches.

One :class:`~sealtune.data.records.Record` (one conversation) becomes exactly
one training example: no packing of several records into a sequence and no
splitting of one record over several, so "one record" is the privacy unit of
DP training (example-level DP). The loss is on assistant tokens only: every
label outside an assistant turn is ``-100`` (ignored), so the model is not
trained to reproduce the system and user text.

Assistant tokens are found with the tokenizer's own chat template: where the
template marks assistant turns with ``{% generation %}`` blocks, with
transformers' ``return_assistant_tokens_mask``; otherwise by rendering the
conversation turn by turn and mapping each assistant turn's character span to
tokens through the fast tokenizer's offsets (this needs a template whose
rendering of a prefix of the conversation is a prefix of the whole rendering;
others are refused).

Nothing here logs, prints or raises with record text; errors name the record's
line number only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sealtune.data.records import Record
from sealtune.errors import ConfigError, UsageError

#: The error code of :meth:`EncodedData.with_loss_only`'s failure (see ``SealtuneError.code``).
CUT_EVERY_ANSWER = "max_length_cuts_every_answer"

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One tokenized conversation: ``labels[i]`` is ``input_ids[i]`` or ``-100``."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    @property
    def loss_tokens(self) -> int:
        """How many positions carry loss (assistant tokens)."""
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


@dataclass(frozen=True)
class EncodedData:
    """The tokenized dataset and aggregate facts about it (no text, no token ids)."""

    examples: tuple[Example, ...]
    truncated: int
    without_loss: int
    tokens: int
    loss_tokens: int
    dropped_no_assistant_tokens: int = 0

    def with_loss_only(self) -> EncodedData:
        """The examples that carry loss; the others are dropped and counted.

        An example whose assistant tokens ``max_length`` cut entirely would train on
        nothing (and a batch of only such examples reports loss 0). Whether one is
        dropped depends on that record alone, so example-level DP still holds for the
        records; the number kept sets the sample rate, as the number of records did.

        Raises:
            UsageError: no example keeps an assistant token.
        """
        kept = tuple(ex for ex in self.examples if ex.loss_tokens)
        if not kept:
            raise UsageError(f"all {len(self.examples)} examples lost every assistant token "
                             f"to truncation at max_length",
                             hint="raise --max-length (or shorten the system and user turns)",
                             code=CUT_EVERY_ANSWER)
        dropped = len(self.examples) - len(kept)
        return replace(self, examples=kept, without_loss=0,
                       dropped_no_assistant_tokens=self.dropped_no_assistant_tokens + dropped)

    def digest(self) -> str:
        """sha256 over the token ids and labels: identifies the data a checkpoint belongs to."""
        h = hashlib.sha256()
        for ex in self.examples:
            h.update(json.dumps([ex.input_ids, ex.labels], separators=(",", ":")).encode())
        return "sha256:" + h.hexdigest()

    def stats(self) -> dict[str, int]:
        """Aggregate counts for reports."""
        return {"examples": len(self.examples), "truncated": self.truncated,
                "examples_without_loss": self.without_loss, "tokens": self.tokens,
                "loss_tokens": self.loss_tokens,
                "dropped_no_assistant_tokens": self.dropped_no_assistant_tokens}


def records_from_jsonl(lines: Iterable[str | bytes]) -> list[Record]:
    """Parse a sealed dataset's plaintext (JSONL of ``Record.to_json()``).

    Raises:
        UsageError: a line is not a JSON record (named by line number only).
    """
    records: list[Record] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            records.append(Record.from_json(json.loads(raw), line=number))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"dataset line {number} is not a chat record",
                             hint="train from a dataset written by the data stage") from None
    return records


def _messages(record: Record) -> list[dict[str, str]]:
    if not any(m.role == "assistant" for m in record.messages):
        raise UsageError(f"dataset line {record.line} has no assistant turn to learn",
                         hint="drop records without an assistant reply in the data stage")
    return [{"role": m.role, "content": m.content} for m in record.messages]


def _render(tokenizer: Any, messages: list[dict[str, str]], *, prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=prompt)
    return str(text)


def _mask_by_offsets(tokenizer: Any, messages: list[dict[str, str]], line: int,
                     ) -> tuple[list[int], list[int]]:
    full = _render(tokenizer, messages)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], prompt=True)
        upto = _render(tokenizer, messages[: i + 1])
        if not (full.startswith(before) and full.startswith(upto)):
            raise ConfigError(
                f"the base model's chat template is not prefix-stable (record line {line})",
                hint="use a template with {% generation %} markers around assistant turns")
        spans.append((len(before), len(upto.rstrip())))  # not the separator after the turn
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [int(any(a <= s < b for a, b in spans)) for s, _ in enc["offset_mapping"]]
    return ids, mask


def _has_generation_markers(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "{% generation %}" in template.replace("{%-", "{%")


def encode_record(tokenizer: Any, record: Record) -> tuple[list[int], list[int]]:
    """Token ids and the assistant mask (1 = carries loss) of one record, untruncated."""
    messages = _messages(record)
    if _has_generation_markers(tokenizer):
        out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        return list(out["input_ids"]), list(out["assistant_masks"])
    return _mask_by_offsets(tokenizer, messages, record.line)


def encode_records(records: Sequence[Record], tokenizer: Any, *, max_length: int) -> EncodedData:
    """Apply the chat template and build assistant-only labels, one example per record.

    Sequences longer than ``max_length`` are cut at the end (counted in
    ``truncated``); an example whose assistant tokens were all cut stays in
    the dataset with no loss (counted in ``without_loss``); the trainer drops
    such examples with :meth:`EncodedData.with_loss_only` (counted).

    Raises:
        ConfigError: the tokenizer has no chat template, or an unusable one.
        UsageError: a record has no assistant turn.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the base model's tokenizer has no chat template",
                          hint="add a chat template (tokenizer_config.json or "
                               "chat_template.jinja) to the base model directory")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError("the base model needs a fast tokenizer (tokenizer.json)")
    examples: list[Example] = []
    truncated = without = tokens = loss_tokens = 0
    for record in records:
        ids, mask = encode_record(tokenizer, record)
        if len(ids) > max_length:
            truncated += 1
            ids, mask = ids[:max_length], mask[:max_length]
        labels = tuple(t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True))
        ex = Example(tuple(ids), labels)
        without += ex.loss_tokens == 0
        tokens += len(ids)
        loss_tokens += ex.loss_tokens
        examples.append(ex)
    if not examples:
        raise UsageError("the dataset has no records", hint="train on a non-empty dataset")
    return EncodedData(tuple(examples), truncated, without, tokens, loss_tokens)


class ExampleDataset:
    """A map-style dataset of ``(input_ids, labels)`` tensor pairs (what Opacus expects)."""

    def __init__(self, data: EncodedData) -> None:
        import torch

        self._items = [(torch.tensor(e.input_ids, dtype=torch.long),
                        torch.tensor(e.labels, dtype=torch.long)) for e in data.examples]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        return self._items[index]


class Collator:
    """Right-pads a list of ``(input_ids, labels)`` to ``(input_ids, attention_mask, labels)``."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: Sequence[tuple[Any, Any]]) -> tuple[Any, Any, Any]:
        import torch

        width = max((len(ids) for ids, _ in batch), default=0)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (x, y) in enumerate(batch):
            ids[row, : len(x)] = x
            labels[row, : len(y)] = y
            mask[row, : len(x)] = 1
        return ids, mask, labels
