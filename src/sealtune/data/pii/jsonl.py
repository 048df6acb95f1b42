"""Detection over JSON lines, and an analyzer from a TOML policy file (``sealtune pii detect``).

:func:`detect_jsonl` reads one JSON object per line, runs the analyzer on
one string field and writes one line per input line: ``{"id": <the input's
"id" if present, else the 0-based line number>, "entities": [{"type",
"start", "end", "score"}]}``, offsets being Python string indices into that
field. :func:`load_analyzer` builds an :class:`~sealtune.data.pii.Analyzer`
from a policy file's ``[pii]`` table, failing closed.

What this protects against: record text in the output or in an error (the
output holds offsets and types only; errors name the file, the line and the
field, never content). What it does not: decide where the output goes or
whether a partial output survives a failure (the caller's writer does: see
:mod:`sealtune.outputs`), or detect more than the analyzer does.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import IO, Any

from sealtune.data.pii import Analyzer
from sealtune.errors import ConfigError, SealtuneError

__all__ = ["detect_jsonl", "load_analyzer"]


def load_analyzer(path: Path, *, ner: bool | None = None,
                  types: list[str] | None = None) -> Analyzer:
    """An analyzer from a policy file's ``[pii]`` table; ``types`` replaces its types if given.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or its table is invalid.
    """
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: policy file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy ({type(exc).__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if types is not None:
        section = dict(data.get("pii", {}))
        section["types"] = types
        data = {**data, "pii": section}
    return Analyzer.from_policy(data, source=str(path), ner=ner)


def _record(line: str, *, source: Path, number: int, field: str) -> tuple[Any, str]:
    where = f"{source}: line {number + 1}"
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SealtuneError(f"{where}: not valid JSON (column {exc.colno})",
                            hint="each line must be one JSON object") from None
    if not isinstance(record, dict):
        raise SealtuneError(f"{where}: not a JSON object", hint="each line must be one JSON object")
    if field not in record:
        raise SealtuneError(f"{where}: no field {field!r}", hint="choose it with --text-field")
    text = record[field]
    if not isinstance(text, str):
        raise SealtuneError(f"{where}: field {field!r} is {type(text).__name__}, not a string")
    return record.get("id", number), text


def detect_jsonl(lines: IO[str], out: IO[str], analyzer: Analyzer, *, source: Path,
                 field: str) -> tuple[int, int]:
    """Detect line by line, writing a line of findings per input line; returns (records, entities).

    Raises:
        SealtuneError: a line that is not a JSON object with a string ``field``,
            or input that is not UTF-8 (naming ``source`` and the line).
    """
    records = entities = 0
    try:
        for number, line in enumerate(lines):
            record_id, text = _record(line, source=source, number=number, field=field)
            found = analyzer.analyze(text)
            out.write(json.dumps({"id": record_id, "entities": [e.as_dict() for e in found]},
                                 ensure_ascii=False))
            out.write("\n")
            records += 1
            entities += len(found)
    except UnicodeDecodeError:
        raise SealtuneError(f"{source}: not UTF-8 text") from None
    return records, entities
