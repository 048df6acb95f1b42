"""Read fine-tuning files as canonical records: alpaca, ShareGPT, OpenAI chat, JSONL, CSV.

The public surface::

    from sealtune.data.formats import read_records, detect_format

    detect_format("train.jsonl")                  # 'openai'
    with read_records("train.jsonl", on_error="skip") as stream:
        for record in stream:                     # sealtune.data.records.Record
            ...
    stream.stats.read, stream.stats.skipped       # counts for the report

Files are streamed: JSON lines and CSV line by line, a top-level JSON array
element by element, so memory stays bounded by one record (at most
``MAX_LINE_BYTES``) whatever the file size. The format is detected from the
first records (:func:`detect_format`) unless named. Input must be UTF-8 (a
byte-order mark is tolerated); invalid UTF-8 is an error naming the line.

A malformed line is a :class:`DataFormatError` naming the file, the line and
the field, never the content; with ``on_error="skip"`` it is counted in
:class:`ReadStats` instead and reading goes on.

What this protects against: malformed or mistyped records silently becoming
empty or truncated training examples, record text leaking into error
messages and logs, and memory exhaustion on multi-GB inputs. What it does
not: it checks shape, not meaning (PII, poisoning and duplicates are later
steps), and a syntax error inside a JSON *array* cannot be skipped.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, get_args

from sealtune.data.formats import alpaca, csv, jsonl, openai, sharegpt
from sealtune.data.formats._source import (
    CHUNK_BYTES,
    MAX_LINE_BYTES,
    Item,
    iter_csv,
    iter_json_array,
    iter_json_lines,
)
from sealtune.data.formats.base import (
    FORMATS,
    DataFormatError,
    Format,
    ReadOptions,
    Where,
    register_format,
)
from sealtune.data.records import Record, Role
from sealtune.errors import UsageError

__all__ = [
    "CHUNK_BYTES", "FORMATS", "MAX_LINE_BYTES", "DataFormatError", "Format", "Opener",
    "ReadOptions", "ReadStats", "RecordStream", "detect_format", "read_records",
    "register_format",
]

_ = (alpaca, csv, jsonl, openai, sharegpt)  # imported to register the built-in formats
OnError = Literal["fail", "skip"]
#: Detection tries JSON formats in this order on a tie; plug-ins come after.
_PRIORITY = ("openai", "sharegpt", "alpaca", "jsonl")
#: Returns a new binary reader of an input's content, from its start.
Opener = Callable[[], BinaryIO]
SAMPLE_RECORDS = 16
_SAMPLE_BAD = 1000
#: CSV extensions and their fixed delimiter (None: sniffed from the header).
_CSV_SUFFIXES: dict[str, str | None] = {".csv": None, ".tsv": "\t"}
MAX_SKIPPED_LINES = 1000


@dataclass
class ReadStats:
    """Counts for one read, for the ingest report.

    Attributes:
        format: the format used (detected or named).
        read: records produced.
        skipped: malformed lines or rows skipped (``on_error="skip"``).
        blank: blank lines ignored.
        skipped_lines: the first :data:`MAX_SKIPPED_LINES` skipped line numbers.
        skip_reasons: skipped lines per reason (field and problem, numbers as ``N``; no content).
    """

    format: str = ""
    read: int = 0
    skipped: int = 0
    blank: int = 0
    skipped_lines: list[int] = field(default_factory=list)
    skip_reasons: Counter[str] = field(default_factory=Counter)


class RecordStream(Iterator[Record]):
    """An iterator of records that also carries :attr:`stats`; closes its file when done."""

    def __init__(self, path: str, fmt: Format, options: ReadOptions, on_error: OnError,
                 opener: Opener | None = None) -> None:
        self.path = path
        self.opener = opener
        self.format = fmt
        self.options = options
        self.on_error: OnError = on_error
        self.stats = ReadStats(format=fmt.name)
        self._records = self._generate()

    def __next__(self) -> Record:
        return next(self._records)

    def close(self) -> None:
        """Stop reading and close the file."""
        self._records.close()

    def __enter__(self) -> RecordStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _bad(self, error: DataFormatError) -> None:
        if self.on_error == "fail":
            raise error
        self.stats.skipped += 1
        if error.line is not None and len(self.stats.skipped_lines) < MAX_SKIPPED_LINES:
            self.stats.skipped_lines.append(error.line)
        reason = f"{error.field}: {error.problem}" if error.field else error.problem
        self.stats.skip_reasons[re.sub(r"\d+", "N", reason)] += 1

    def _blank(self) -> None:
        self.stats.blank += 1

    def _generate(self) -> Generator[Record, None, None]:
        with _open(self.path, self.opener) as fh:
            for line, index, obj in _items(fh, self.path, self.format, self._bad, self._blank,
                                           self.opener):
                try:
                    record = self.format.to_record(obj, where=Where(self.path, line, index),
                                                   options=self.options)
                except DataFormatError as exc:
                    self._bad(exc)
                    continue
                self.stats.read += 1
                yield record


def read_records(path: str | os.PathLike[str], *, format: str | None = None,
                 text_field: str | None = None, prompt_field: str | None = None,
                 response_field: str | None = None, fields: Mapping[str, Role] | None = None,
                 id_field: str = "id", on_error: OnError = "fail",
                 opener: Opener | None = None) -> RecordStream:
    """Stream the records of a fine-tuning file.

    Args:
        path: the input file (UTF-8).
        format: a name from :data:`FORMATS`; detected from the first records if omitted.
        text_field: plain JSONL / CSV: the field that is the single user turn.
        prompt_field: plain JSONL / CSV: the field that is the user turn.
        response_field: plain JSONL / CSV: the field that is the assistant turn.
        fields: plain JSONL / CSV: field name -> role, in conversation order.
        id_field: the field holding the record id (default ``id``).
        on_error: ``fail`` (default) raises on the first malformed line; ``skip`` counts it.
        opener: returns a new binary reader of the content from its start, each time
            it is called (e.g. :meth:`sealtune.keys.sealing.SealedSource.open`); ``path``
            then only names the input (messages, a ``.csv``/``.tsv`` suffix before
            ``.sealed``). Default: open ``path``.

    Returns:
        An iterator of records with ``.stats`` (a :class:`ReadStats`), usable as a
        context manager.

    Raises:
        UsageError: an unknown format or option combination.
        DataFormatError: the file cannot be read or detected; a malformed line (fail mode).
    """
    if on_error not in get_args(OnError):
        raise UsageError(f"on_error: {on_error!r} is not one of fail, skip")
    name = str(path)
    _first_byte(name, opener)  # fail early on a missing or unreadable file
    options = _options(text_field, prompt_field, response_field, fields, id_field)
    if format is None:
        format = "jsonl" if options.fields and _container(name) == "json" \
            else _detect(name, options, opener)
    fmt = FORMATS.get(format)
    if fmt is None:
        raise UsageError(f"unknown format {format!r}", hint=f"known formats: {', '.join(FORMATS)}")
    if options.fields and fmt.name not in ("jsonl", "csv"):
        raise UsageError(f"field options do not apply to the {fmt.name} format",
                         hint="--text-field, --prompt-field and --response-field are for "
                              "plain JSONL and CSV")
    return RecordStream(name, fmt, options, on_error, opener)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path``: ``csv`` by extension, else the JSON format most of
    the first :data:`SAMPLE_RECORDS` records fit (ties broken in the order
    openai, sharegpt, alpaca, jsonl).

    Raises:
        DataFormatError: the file is unreadable, empty, or fits no format.
    """
    return _detect(str(path), ReadOptions())


# -- internals ----------------------------------------------------------------------------


def _options(text_field: str | None, prompt_field: str | None, response_field: str | None,
             fields: Mapping[str, Role] | None, id_field: str) -> ReadOptions:
    named = [x for x in (text_field, prompt_field or response_field, fields) if x]
    if len(named) > 1:
        raise UsageError("give one of text_field, prompt_field/response_field or fields")
    layout: list[tuple[str, Role]] = []
    if text_field:
        layout = [(text_field, "user")]
    elif prompt_field or response_field:
        if prompt_field:
            layout.append((prompt_field, "user"))
        if response_field:
            layout.append((response_field, "assistant"))
    elif fields:
        for key, role in fields.items():
            if role not in get_args(Role):
                raise UsageError(f"fields: {key!r}: role {role!r} is not system, user or "
                                 "assistant")
            layout.append((key, role))
    return ReadOptions(fields=tuple(layout), id_field=id_field)


def _open(path: str, opener: Opener | None = None) -> BinaryIO:
    try:
        return opener() if opener is not None else open(path, "rb")
    except FileNotFoundError:
        raise DataFormatError(path, None, None, "file not found", hint="check the path") from None
    except OSError as exc:
        raise DataFormatError(path, None, None, f"cannot read the file ({type(exc).__name__})",
                              hint="check the path and its permissions") from None


def _first_byte(path: str, opener: Opener | None = None) -> bytes:
    """The first byte that is not a BOM or whitespace (b'' for an empty file)."""
    with _open(path, opener) as fh:
        chunk = fh.read(CHUNK_BYTES)
        if chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        while chunk:
            rest = chunk.lstrip(b" \t\r\n")
            if rest:
                return rest[:1]
            chunk = fh.read(CHUNK_BYTES)
    return b""


def _suffix(path: str) -> str:
    """The extension that names the content (``.csv`` for ``rows.csv.sealed``)."""
    name = Path(path)
    if name.suffix.lower() == ".sealed":
        name = name.with_suffix("")
    return name.suffix.lower()


def _container(path: str) -> Literal["json", "csv"]:
    return "csv" if _suffix(path) in _CSV_SUFFIXES else "json"


def _items(fh: BinaryIO, path: str, fmt: Format, on_bad: Callable[[DataFormatError], None],
           blank: Callable[[], None], opener: Opener | None) -> Iterator[Item]:
    if fmt.container == "csv":
        return iter_csv(fh, path, on_bad, blank, delimiter=_CSV_SUFFIXES.get(_suffix(path)))
    if _first_byte(path, opener) == b"[":
        return iter_json_array(fh, path, on_bad)
    return iter_json_lines(fh, path, on_bad, blank)


class _StopSampling(Exception):
    pass


def _detect(path: str, options: ReadOptions, opener: Opener | None = None) -> str:
    if _container(path) == "csv":
        return "csv"
    first = _first_byte(path, opener)
    hint = "name the format with --format (" + ", ".join(FORMATS) + ")"
    if first not in (b"{", b"["):
        problem = "empty file" if not first else "not JSON lines, a JSON array or a .csv file"
        raise DataFormatError(path, None, None, f"cannot detect the format: {problem}", hint=hint)
    sample = _sample(path, opener)
    candidates = [f for f in FORMATS.values() if f.container == "json"]
    order = {name: i for i, name in enumerate(_PRIORITY)}
    scores = {f.name: sum(1 for obj in sample if f.matches(obj, options)) for f in candidates}
    best = min(candidates, key=lambda f: (-scores[f.name], order.get(f.name, len(order))),
               default=None)
    if best is None or not sample or 2 * scores[best.name] <= len(sample):
        raise DataFormatError(path, None, None,
                              f"cannot detect the format from the first {len(sample)} records",
                              hint=hint)
    return best.name


def _sample(path: str, opener: Opener | None) -> list[dict[str, Any]]:
    bad = 0

    def ignore(error: DataFormatError) -> None:
        nonlocal bad
        bad += 1
        if bad >= _SAMPLE_BAD:
            raise _StopSampling

    sample: list[dict[str, Any]] = []
    with _open(path, opener) as fh:
        source = iter_json_array(fh, path, ignore) if _first_byte(path, opener) == b"[" \
            else iter_json_lines(fh, path, ignore, lambda: None)
        try:
            for _line, _index, obj in source:
                sample.append(obj)
                if len(sample) >= SAMPLE_RECORDS:
                    break
        except (_StopSampling, DataFormatError):
            pass
    return sample
