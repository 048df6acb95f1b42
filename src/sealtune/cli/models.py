"""``sealtune models``: local base models, and the model registry (:mod:`sealtune.cli.registry`).

``sealtune models make-tiny DIR [--seed N]`` writes a tiny Llama-style causal
LM (config, a tokenizer trained locally on synthetic text, a chat template,
random safetensors weights) that loads with ``from_pretrained(DIR)``; models
cannot be downloaded here. It knows nothing: it is for demos and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sealtune.cli._common import console

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


def _registry_commands() -> None:
    """The model registry's commands (``register``, ``promote``, ...), in their own module."""
    from sealtune.cli.registry import add_commands

    add_commands(app)


_registry_commands()
