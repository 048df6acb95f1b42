"""``sealtune monitor``: the deployed model's alerts (``monitor.alert`` ledger events).

``monitor alerts [--since 7d|ISO] [--json]`` lists what the detectors raised
(detector, key id, model version, score, threshold, the policy's action);
``monitor detectors`` lists the detectors by name with their defaults. The
events carry no text, so neither does this output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, open_workspace, parse_since
from sealtune.cli._tables import Col, print_table

app = typer.Typer(help="Monitoring of the deployed model: alerts, detectors.",
                  no_args_is_help=True)
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


@app.command("alerts")
def alerts(
    since: Annotated[str | None, typer.Option(help="ISO time or duration (7d, 12h).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    home: HomeOpt = None,
) -> None:
    """Show the alerts the server's detectors raised, oldest first."""
    from sealtune.monitor.alerts import read_alerts

    ws = open_workspace(home)
    try:
        records = read_alerts(ws, since=parse_since(since))
    finally:
        ws.close()
    if as_json:
        for r in records:
            print(json.dumps(r.to_json(), sort_keys=True))
        return
    columns = [Col("seq", whole=True, justify="right"), Col("time (UTC)"),
               Col("detector", whole=True), Col("key id", whole=True), Col("model version"),
               Col("score", justify="right"), Col("threshold", justify="right"),
               Col("action", whole=True)]
    rows = [(str(r.seq), r.time, r.detector, r.key_id, r.model_version, f"{r.score:g}",
             f"{r.threshold:g}", r.action) for r in records]
    print_table(console, columns, rows, boxed=False)


@app.command("detectors")
def detectors() -> None:
    """List the registered detectors, whether they run by default, and their settings."""
    from sealtune.monitor.detectors import DETECTORS

    rows = []
    for name in DETECTORS.names():
        spec = DETECTORS.get(name)
        assert spec is not None
        settings = ", ".join(f"{k}={v:g}" for k, v in spec.defaults.items())
        rows.append((name, "yes" if spec.enabled else "no", spec.summary, settings))
    print_table(console, [Col("detector", whole=True), Col("default", whole=True),
                          Col("what it watches"), Col("settings", drop=1)], rows, boxed=False)
