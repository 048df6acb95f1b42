"""``sealtune data review NAME``: quarantined and flagged records, masked, released or dropped.

Calls :func:`sealtune.data.review_items` and :func:`sealtune.data.apply_review`
and prints. Record text is shown only in the masked context those return
(words shared by several records; values starred), never raw. Forms:

* ``--list [--json]``: the pending records (the default without a terminal);
* ``--release ID ... --drop ID ...``: decide, publish the next revision;
* on a terminal with neither: one record at a time, ``release / drop / skip / quit``,
  then a confirmation before anything is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.prompt import Confirm, Prompt

from sealtune.cli._common import console, err_console, open_workspace

if TYPE_CHECKING:
    from sealtune.data import ReviewItem, ReviewResult

_CHOICES = {"r": "release", "d": "drop", "s": "skip", "q": "quit"}


def _panel(item: ReviewItem, index: int, total: int) -> Panel:
    lines = [f"[bold]{escape(item.record_id)}[/] ({item.status}) checks: "
             f"{escape(', '.join(item.checks))}"]
    lines += [f"  {escape(str(f['check']))} {escape(str(f['reason']))} score {f['score']}"
              + (f" related {escape(', '.join(map(str, f['related_ids'][:5])))}"
                 if f.get("related_ids") else "") for f in item.findings]
    lines += [f"[dim]{role}:[/] {escape(text)}" for role, text in item.messages]
    return Panel("\n".join(lines), title=f"{index}/{total}", title_align="left")


def _print_items(items: list[ReviewItem], *, as_json: bool, name: str, min_records: int) -> None:
    if as_json:
        print(json.dumps({"format": "sealtune.review/v1", "dataset": name,
                          "min_records": min_records, "items": [i.to_json() for i in items]},
                         ensure_ascii=False, indent=2))
        return
    for n, item in enumerate(items, start=1):
        console.print(_panel(item, n, len(items)))
    console.print(f"{len(items)} record(s) awaiting review; words held by fewer than "
                  f"{min_records} records are starred")


def _ask(items: list[ReviewItem]) -> tuple[list[str], list[str]]:
    release: list[str] = []
    drop: list[str] = []
    for n, item in enumerate(items, start=1):
        console.print(_panel(item, n, len(items)))
        choice = _CHOICES[Prompt.ask(r"\[r]elease, \[d]rop, \[s]kip, \[q]uit",
                                     choices=list(_CHOICES), default="s", console=console)]
        if choice == "quit":
            break
        if choice != "skip":
            (release if choice == "release" else drop).append(item.record_id)
    return release, drop


def _print_result(result: ReviewResult) -> None:
    console.print(f"dataset {result.name} revision {result.revision}: released "
                  f"{len(result.released)}, dropped {len(result.dropped)}; now "
                  f"{result.manifest['counts']['records_out']} record(s) in the data, "
                  f"{result.manifest['counts']['quarantined']} quarantined "
                  "(recorded in the audit log as data.review)")


def review_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    list_only: Annotated[bool, typer.Option(
        "--list", help="List the records awaiting review and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --list: JSON.")] = False,
    release: Annotated[list[str] | None, typer.Option(
        "--release", help="Release this record (quarantined: into the data); repeat.")] = None,
    drop: Annotated[list[str] | None, typer.Option(
        "--drop", help="Remove this record from the dataset; repeat.")] = None,
    min_records: Annotated[int, typer.Option(
        "--min-records", help="Show a word only if this many records hold it.")] = 3,
    home: Annotated[Path | None, typer.Option("--home", help="Workspace directory.")] = None,
) -> None:
    """Review quarantined and flagged records in masked form; release or drop them (audited)."""
    from sealtune.data import apply_review, review_items

    ws = open_workspace(home)
    try:
        if release or drop:
            _print_result(apply_review(ws, name, release=release or (), drop=drop or ()))
            return
        items = review_items(ws, name, min_records=min_records)
        if list_only or as_json or not (sys.stdin.isatty() and sys.stdout.isatty()):
            _print_items(items, as_json=as_json, name=name, min_records=min_records)
            return
        chosen = _ask(items)
        if not any(chosen):
            err_console.print("no decision: nothing changed")
            return
        if Confirm.ask(f"release {len(chosen[0])}, drop {len(chosen[1])}: publish?",
                       console=console):
            _print_result(apply_review(ws, name, release=chosen[0], drop=chosen[1]))
    finally:
        ws.close()
