"""``sealtune assess``: the release gate, and ``sealtune assess policy init``.

``sealtune assess MODEL --policy gate.yaml --out DIR [--base NAME|DIR]``
runs :func:`sealtune.assess.run_gate`, signing the report with the
workspace's evidence key (:func:`sealtune.evidence.gate_report_signer`),
prints one line per probe, and exits 0 when the gate passes, 4 with a
message starting ``gate:`` when it fails. ``MODEL`` that happens to be
``policy`` is written ``./policy``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from sealtune.cli._common import console, err_console, open_workspace


class _DefaultRun(TyperGroup):
    """A group whose first argument, when it is not a sub-command, is ``run``'s MODEL."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_DefaultRun, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="The release gate: leakage, safety and model-file probes under a "
                       "policy (sealtune assess MODEL --policy FILE --out DIR).")
policy_app = typer.Typer(help="The gate policy.", no_args_is_help=True,
                         pretty_exceptions_enable=False)
app.add_typer(policy_app, name="policy")
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


@app.command("run")
def run(
    model: Annotated[str, typer.Argument(help="A workspace model name or a model directory.")],
    policy: Annotated[Path, typer.Option("--policy", help="The gate policy (YAML); write "
                                                          "one with 'assess policy init'.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for report.json, "
                                                    "report.html, report.dsse.json.")],
    base: Annotated[str | None, typer.Option(
        "--base", help="Base model: a registered name or a directory (default: the one "
                       "the model was trained on).")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Torch threads.")] = None,
    home: HomeOpt = None,
) -> None:
    """Assess MODEL against the policy; exit 0 if it passes, 4 (gate:) if it fails."""
    from sealtune.assess import load_policy, run_gate
    from sealtune.evidence import gate_report_signer

    gate_policy = load_policy(policy)
    ws = open_workspace(home)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            outcome = run_gate(ws, model=model, base=base, policy=gate_policy, out=out,
                               sign=gate_report_signer(ws), threads=threads)
        for warning in caught:
            err_console.print(f"[yellow]warning:[/] {warning.message}")
    finally:
        ws.close()
    _print(outcome)
    outcome.raise_if_failed()


def _print(outcome: Any) -> None:
    colour = {"pass": "green", "fail": "red"}
    for result in outcome.results:
        mark = colour.get(result.verdict)
        verdict = f"[{mark}]{result.verdict}[/]" if mark else result.verdict
        console.print(f"  {result.name:<20} {verdict:<8} {result.reason}")
    console.print(f"gate {outcome.verdict} for model {outcome.model_digest}: "
                  f"{outcome.report} (report sha256 {outcome.report_sha256[7:23]}..., "
                  f"signed by {outcome.keyid[7:23]}...)")


@policy_app.command("init")
def policy_init(
    path: Annotated[Path, typer.Argument(help="The policy file to write (must not exist).")],
) -> None:
    """Write the commented default gate policy."""
    from sealtune.assess import write_default_policy

    console.print(f"gate policy written to {write_default_policy(path)}")
