"""``sealtune pii``: detect PII and secrets in JSONL records.

``sealtune pii detect IN.jsonl --text-field text --out OUT.jsonl`` writes one
line per input line: ``{"id": <the input's "id" if present, else the 0-based
line number>, "entities": [{"type", "start", "end", "score"}]}``, offsets
being Python string indices into that field. The output holds offsets and
types only, never the text; errors name the file, line and field, never the
content. Input is streamed line by line (``-``: the standard input). A
regular ``--out`` file is written to a temporary file beside it and renamed
into place only when every line was read, so a failed run leaves no partial
result; ``--out -`` (the standard output), a FIFO or a device is written
through as lines are read (see :mod:`sealtune.outputs`), so a failed run may
have written the lines before the failure.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from sealtune.data.pii import ENTITY_TYPES, Analyzer
from sealtune.errors import ConfigError, SealtuneError, UsageError
from sealtune.outputs import is_stdio, open_text_input, open_text_output

app = typer.Typer(help="Detect PII and secrets (types: " + ", ".join(ENTITY_TYPES) + ").",
                  no_args_is_help=True,
                  # a rich traceback would print local variables, i.e. record text
                  pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Detect PII and secrets in JSON lines (a group, so that ``detect`` stays a sub-command)."""


def load_policy(path: Path, *, ner: bool | None, types: list[str] | None) -> Analyzer:
    """An analyzer from a policy file's ``[pii]`` table (fails closed)."""
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


def _parse_types(value: str | None) -> list[str] | None:
    if value is None:
        return None
    types = [t.strip() for t in value.split(",") if t.strip()]
    if not types:
        raise UsageError("--types: give at least one entity type", hint=", ".join(ENTITY_TYPES))
    return types


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


def detect_stream(lines: IO[str], out: IO[str], analyzer: Analyzer, *, source: Path,
                  field: str) -> tuple[int, int]:
    """Detect line by line; returns (records, entities)."""
    records = entities = 0
    for number, line in enumerate(lines):
        record_id, text = _record(line, source=source, number=number, field=field)
        found = analyzer.analyze(text)
        out.write(json.dumps({"id": record_id, "entities": [e.as_dict() for e in found]},
                             ensure_ascii=False))
        out.write("\n")
        records += 1
        entities += len(found)
    return records, entities


_HELP_FIELD = "The field of each JSON object that holds the text."
# Help texts are rich markup: "[pii]" unescaped vanished from --help; "\\[" prints "[".
_HELP_POLICY = "TOML policy with a \\[pii] table (types, recognizers, ner, min_score)."
_HELP_TYPES = "Comma-separated entity types to report (default: all)."
_HELP_NER = "Add the model-based name tier (needs spaCy and jieba installed)."


@app.command("detect")
def detect(
    input_path: Annotated[Path, typer.Argument(
        metavar="IN.jsonl", help="JSON lines to scan ('-': standard input).")],
    out: Annotated[Path, typer.Option(
        "--out", help="Where to write the findings (JSON lines; '-': standard output).")],
    text_field: Annotated[str, typer.Option("--text-field", help=_HELP_FIELD)] = "text",
    policy: Annotated[Path | None, typer.Option("--policy", help=_HELP_POLICY)] = None,
    types: Annotated[str | None, typer.Option("--types", help=_HELP_TYPES)] = None,
    ner: Annotated[bool | None, typer.Option("--ner/--no-ner", help=_HELP_NER)] = None,
) -> None:
    """Write one line of findings per input line: id, entities (type, start, end, score)."""
    wanted = _parse_types(types)
    if policy is not None:
        analyzer = load_policy(policy, ner=ner, types=wanted)
    else:
        analyzer = Analyzer(types=wanted, ner=bool(ner))
    if not is_stdio(out) and not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    # offsets and types only, never the text: not plaintext, fine on a terminal
    with open_text_input(input_path) as lines, open_text_output(out, newline="\n") as sink:
        try:
            records, entities = detect_stream(lines, sink, analyzer, source=input_path,
                                              field=text_field)
        except UnicodeDecodeError:
            raise SealtuneError(f"{input_path}: not UTF-8 text") from None
    typer.echo(f"{records} record(s), {entities} entit(y/ies) -> {out}", err=True)
