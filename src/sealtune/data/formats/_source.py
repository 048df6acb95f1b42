"""Streaming readers: JSON lines, a top-level JSON array, CSV rows.

Each reader yields ``(line, index, object)`` one at a time from a binary
file handle, so memory is bounded by one line (JSON lines, CSV) or one
array element plus one read chunk (JSON array), whatever the file size.
Lines are decoded one by one as strict UTF-8 (a byte-order mark on the first
line is dropped), so invalid UTF-8 is reported with its line number, and a
skipped line does not poison the rest of the file.

Problems go to an ``on_bad`` callback that either raises (fail mode) or
counts and returns (skip mode). A syntax error inside a JSON array cannot be
skipped (there is no line boundary to resume from), so it always raises.

Two kinds of JSON that the ``json`` module parses but the rest of the stage
cannot use are problems of their line (or array element), so skip mode skips
them instead of aborting the run: an integer longer than Python's
int-conversion limit (4300 digits by default; ``json`` would raise a bare
``ValueError``) and a lone UTF-16 surrogate escape (``"\\ud800"``: ``json``
returns a string that cannot be encoded as UTF-8, so sealing it would fail
much later).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from sealtune.data.formats.base import DataFormatError

#: Read size for JSON arrays, and the unit by which an incomplete element is extended.
CHUNK_BYTES = 1 << 20
#: A longer line (or JSON array element) is an error: memory stays bounded.
MAX_LINE_BYTES = 64 << 20

Item = tuple[int, int, dict[str, Any]]
OnBad = Callable[[DataFormatError], None]

_BOM = codecs.BOM_UTF8
_WS = re.compile(r"[ \t\r\n]*")
_DELIMITERS = ",\t;|"
# A surrogate code point can only come from a \\uD800-\\uDFFF escape: look for
# one in the raw text before walking the parsed object (the walk is rare).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _IntGuard:
    """``parse_int`` hook: an integer over the conversion limit becomes 0 and is noted.

    ``json`` would raise a bare ``ValueError`` from inside the scanner, which
    loses the position (fatal in a JSON array); noting it lets the reader
    skip just that line or element.
    """

    def __init__(self) -> None:
        self.too_long = False

    def __call__(self, digits: str) -> int:
        try:
            return int(digits)
        except ValueError:
            self.too_long = True
            return 0


def _decoder() -> tuple[json.JSONDecoder, _IntGuard]:
    guard = _IntGuard()
    return json.JSONDecoder(parse_int=guard), guard


def _surrogate_field(obj: Any) -> str | None:
    """The path of the first string (key or value) holding a lone surrogate, or None."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path or "(value)"
        elif isinstance(item, dict):
            for key, value in item.items():
                name = f"{path}.{key}" if path else str(key)
                if _SURROGATE.search(key):
                    return f"{path} (a field name)" if path else "(a field name)"
                stack.append((name, value))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
    return None


def check_parsed(obj: Any, raw: str, guard: _IntGuard, path: str, line: int,
                 where: str | None = None) -> DataFormatError | None:
    """The problem with a parsed object that ``json`` accepted but the stage cannot use."""
    if guard.too_long:
        guard.too_long = False
        return DataFormatError(path, line, where, "an integer longer than "
                               f"{sys.get_int_max_str_digits()} digits")
    if _SURROGATE_ESCAPE.search(raw):
        field = _surrogate_field(obj)
        if field is not None:
            return DataFormatError(path, line, field if where is None else f"{where}.{field}",
                                   "a lone surrogate escape (not valid Unicode text)")
    return None


def iter_lines(fh: BinaryIO, path: str, on_bad: OnBad) -> Iterator[tuple[int, str]]:
    """Decoded lines with their 1-based numbers (line endings kept)."""
    number = 0
    while True:
        raw = fh.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            while raw and not raw.endswith(b"\n"):
                raw = fh.readline(CHUNK_BYTES)
            on_bad(DataFormatError(path, number, None, f"line longer than {MAX_LINE_BYTES} bytes"))
            continue
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            on_bad(DataFormatError(path, number, None, f"invalid UTF-8 at byte {exc.start + 1}"))
            continue
        yield number, text


def iter_json_lines(fh: BinaryIO, path: str, on_bad: OnBad,
                    blank: Callable[[], None]) -> Iterator[Item]:
    """One JSON object per non-blank line; the index is the 0-based line number."""
    decoder, guard = _decoder()
    for number, text in iter_lines(fh, path, on_bad):
        if not text.strip():
            blank()
            continue
        try:
            obj = decoder.decode(text)
        except json.JSONDecodeError as exc:
            # exc.msg is a fixed phrase from the json module; exc.doc (the line) is not used.
            on_bad(DataFormatError(path, number, None,
                                   f"invalid JSON at column {exc.colno} ({exc.msg})"))
            continue
        except RecursionError:
            on_bad(DataFormatError(path, number, None, "JSON nested too deeply"))
            continue
        problem = check_parsed(obj, text, guard, path, number)
        if problem is not None:
            on_bad(problem)
            continue
        if not isinstance(obj, dict):
            on_bad(DataFormatError(path, number, None, "expected a JSON object"))
            continue
        yield number, number - 1, obj


class _ArrayReader:
    """Incremental reader of ``[ {...}, {...} ]`` that keeps one element in memory."""

    def __init__(self, fh: BinaryIO, path: str) -> None:
        self.fh, self.path = fh, path
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number at self.buf[self.pos]
        self.eof = False
        self.first = True

    def fail(self, problem: str, line: int | None = None) -> DataFormatError:
        return DataFormatError(self.path, line or self.line, None, problem,
                               hint="a JSON array must be valid as a whole; fix the file, or "
                                    "convert it to JSON lines to skip bad records")

    def fill(self) -> bool:
        """Append one chunk; False at end of file."""
        if self.eof:
            return False
        raw = self.fh.read(CHUNK_BYTES)
        if self.first and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        self.first = False
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise self.fail("invalid UTF-8 in this part of the file") from None
        if self.pos > len(self.buf) // 2:
            self.buf, self.pos = self.buf[self.pos:], 0
        self.buf += text
        self.eof = not raw
        return bool(raw) or bool(text)

    def advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end

    def next_char(self) -> str:
        """The next non-blank character (not consumed), or '' at end of file."""
        while True:
            blank = _WS.match(self.buf, self.pos)
            self.advance(blank.end() if blank else self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def element(self, index: int) -> tuple[Any, DataFormatError | None]:
        """The next element, and the problem with it that skip mode may skip."""
        decoder, guard = _decoder()
        while True:
            guard.too_long = False
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.pos <= MAX_LINE_BYTES and self.fill():
                    continue
                line = self.line + self.buf.count("\n", self.pos, exc.pos)
                raise self.fail(f"invalid JSON ({exc.msg})", line) from None
            except RecursionError:
                raise self.fail("JSON nested too deeply") from None
            if end == len(self.buf) and self.fill():
                continue  # a number or literal may continue in the next chunk
            problem = check_parsed(obj, self.buf[self.pos:end], guard, self.path, self.line,
                                   f"[{index}]")
            self.advance(end)
            return obj, problem

    def __iter__(self) -> Iterator[tuple[int, int, Any, DataFormatError | None]]:
        if self.next_char() != "[":
            raise self.fail("expected a JSON array")
        self.advance(self.pos + 1)
        if self.next_char() == "]":
            return
        index = 0
        while True:
            if self.next_char() == "":
                raise self.fail("unexpected end of file inside the JSON array")
            line = self.line
            yield line, index, *self.element(index)
            index += 1
            sep = self.next_char()
            self.advance(self.pos + 1)
            if sep == "]":
                break
            if sep != ",":
                raise self.fail("expected ',' or ']' between array elements")
        if self.next_char() != "":
            raise self.fail("unexpected data after the JSON array")


def iter_json_array(fh: BinaryIO, path: str, on_bad: OnBad) -> Iterator[Item]:
    """Elements of a top-level JSON array; the index is the element's position."""
    for line, index, obj, problem in _ArrayReader(fh, path):
        if problem is not None:
            on_bad(problem)
            continue
        if not isinstance(obj, dict):
            on_bad(DataFormatError(path, line, f"[{index}]", "expected a JSON object"))
            continue
        yield line, index, obj


class _LineCounter:
    """Feeds decoded lines to ``csv.reader`` and remembers the last line number."""

    def __init__(self, lines: Iterator[tuple[int, str]]) -> None:
        self.lines = lines
        self.last = 0

    def __iter__(self) -> Iterator[str]:
        for number, text in self.lines:
            self.last = number
            yield text


def sniff_delimiter(header: str) -> str:
    """The most frequent of ``, \\t ; |`` in the header line (comma on a tie)."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def iter_csv(fh: BinaryIO, path: str, on_bad: OnBad, blank: Callable[[], None], *,
             delimiter: str | None = None) -> Iterator[Item]:
    """Rows as ``{column: cell}``; the index is the 0-based data row number."""
    if csv.field_size_limit() < MAX_LINE_BYTES:
        # The default (128 KiB) is too small for long conversations in one cell.
        csv.field_size_limit(MAX_LINE_BYTES)
    lines = iter_lines(fh, path, on_bad)
    found = next(((n, t) for n, t in lines if t.strip()), None)
    if found is None:
        return
    header_line, first = found
    sep = delimiter or sniff_delimiter(first)
    header = next(csv.reader([first], delimiter=sep), [])
    _check_header(header, path, header_line)
    counter = _LineCounter(lines)
    counter.last = header_line
    reader = csv.reader(counter, delimiter=sep)
    index = 0
    while True:
        start = counter.last + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # csv's messages are fixed phrases (no cell text).
            on_bad(DataFormatError(path, start, None, f"malformed CSV row ({exc})"))
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            blank()
            continue
        if len(row) != len(header):
            on_bad(DataFormatError(path, start, None,
                                   f"row has {len(row)} cells, the header has {len(header)}"))
            index += 1
            continue
        yield start, index, dict(zip(header, row, strict=True))
        index += 1


def _check_header(header: list[str], path: str, line: int) -> None:
    hint = "the first non-empty line must be a header of unique, non-empty column names"
    if not header or any(not h.strip() for h in header):
        raise DataFormatError(path, line, None, "empty column name in the CSV header", hint=hint)
    if len(set(header)) != len(header):
        raise DataFormatError(path, line, None, "duplicate column names in the CSV header",
                              hint=hint)
