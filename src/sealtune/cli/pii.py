"""``sealtune pii detect``: detect PII and secrets in JSONL records.

``sealtune pii detect IN.jsonl --text-field text --out OUT.jsonl`` writes one
line per input line (the format and what it protects are in
:mod:`sealtune.data.pii.jsonl`, which does the work). Input is streamed line
by line (``-``: the standard input). A regular ``--out`` file is written to a
temporary file beside it and renamed into place only when every line was
read, so a failed run leaves no partial result; ``--out -`` (the standard
output), a FIFO or a device is written through as lines are read (see
:mod:`sealtune.outputs`), so a failed run may have written the lines before
the failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealtune.data.pii import ENTITY_TYPES, Analyzer
from sealtune.data.pii.jsonl import detect_jsonl, load_analyzer
from sealtune.errors import UsageError
from sealtune.outputs import is_stdio, open_text_input, open_text_output

app = typer.Typer(help="Detect PII and secrets (types: " + ", ".join(ENTITY_TYPES) + ").",
                  no_args_is_help=True,
                  # a rich traceback would print local variables, i.e. record text
                  pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Detect PII and secrets in JSON lines (a group, so that ``detect`` stays a sub-command)."""


def _parse_types(value: str | None) -> list[str] | None:
    if value is None:
        return None
    types = [t.strip() for t in value.split(",") if t.strip()]
    if not types:
        raise UsageError("--types: give at least one entity type", hint=", ".join(ENTITY_TYPES))
    return types


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
        analyzer = load_analyzer(policy, ner=ner, types=wanted)
    else:
        analyzer = Analyzer(types=wanted, ner=bool(ner))
    if not is_stdio(out) and not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    # offsets and types only, never the text: not plaintext, fine on a terminal
    with open_text_input(input_path) as lines, open_text_output(out, newline="\n") as sink:
        records, entities = detect_jsonl(lines, sink, analyzer, source=input_path,
                                         field=text_field)
    typer.echo(f"{records} record(s), {entities} entit(y/ies) -> {out}", err=True)
