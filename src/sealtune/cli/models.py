"""``sealtune models``: local base models: the tiny demo model, registered base models.

``sealtune models make-tiny DIR [--seed N]`` writes a tiny Llama-style causal
LM (config, a tokenizer trained locally on synthetic text, a chat template,
random safetensors weights) that loads with ``from_pretrained(DIR)``; models
cannot be downloaded here. It knows nothing: it is for demos and tests.

``sealtune models base add NAME DIR --licence SPDX --policy gate.yaml``
assesses and registers a base model (:func:`sealtune.assess.add_base`);
``sealtune models base list`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console, open_workspace

app = typer.Typer(help="Local base models for training.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def _group() -> None:
    """Local base models (a group, so that ``make-tiny`` stays a sub-command)."""


@app.command("make-tiny")
def make_tiny_command(
    directory: Annotated[Path, typer.Argument(help="New (or empty) directory to write.")],
    seed: Annotated[int, typer.Option(help="Seed of the weight initialisation.")] = 0,
) -> None:
    """Write a tiny causal LM (Llama-style, ~0.5 M parameters) for demos and tests."""
    from sealtune.train import make_tiny

    out = make_tiny(directory, seed=seed)
    console.print(f"tiny model written to {out} (seed {seed}); load it with "
                  "AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained")


base_app = typer.Typer(help="Registered base models: assessed once, pinned by a digest of "
                            "every file.", no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(base_app, name="base")
HomeOpt = Annotated[Path | None, typer.Option("--home", help="Workspace directory.")]


@base_app.command("add")
def base_add(
    name: Annotated[str, typer.Argument(help="The name training and assess will use.")],
    directory: Annotated[Path, typer.Argument(help="The base model directory.")],
    licence: Annotated[str, typer.Option("--licence", "--license",
                                         help="Its SPDX licence id (e.g. Apache-2.0).")],
    policy: Annotated[Path, typer.Option("--policy", help="The gate policy whose licence "
                                                          "allow-list applies.")],
    home: HomeOpt = None,
) -> None:
    """Assess and register a base model: licence allow-list, file scan, digest manifest."""
    from sealtune.assess import add_base, load_policy

    gate_policy = load_policy(policy)
    ws = open_workspace(home)
    try:
        base = add_base(ws, name=name, directory=directory, licence=licence,
                        policy=gate_policy)
    finally:
        ws.close()
    console.print(f"base model {base.name!r} registered ({base.licence}, {base.digest}); "
                  f"train with --base {base.name}")


@base_app.command("list")
def base_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    home: HomeOpt = None,
) -> None:
    """List the registered base models."""
    import json

    from sealtune.assess import list_bases
    from sealtune.cli._tables import Col, print_table

    ws = open_workspace(home)
    try:
        bases = list_bases(ws)
    finally:
        ws.close()
    if as_json:
        console.print_json(json.dumps(bases))
        return
    print_table(console, [Col("name", whole=True), Col("licence", whole=True),
                          Col("files", justify="right"), Col("digest", drop=1),
                          Col("path")],
                [(b["name"], b["licence"], str(b["files"]), b["digest"], b["path"])
                 for b in bases])
