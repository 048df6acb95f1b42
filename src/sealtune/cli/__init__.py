"""The ``sealtune`` command line.

The CLI calls the same public API the library offers. Errors map to exit
statuses: 0 success, 1 other errors, 2 usage errors, 3 integrity or
attestation failures (message starting ``integrity:`` / ``attestation:``), 4 a
model that did not pass the release gate (``sealtune assess``, message
starting ``gate:``).
An unexpected exception is reported by its class name only: its message or
a traceback with locals could carry data, so neither is shown unless
``SEALTUNE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Annotated

import typer

import sealtune
from sealtune.cli import (
    assess,
    attest,
    audit,
    bundle,
    console,
    data,
    demo,
    files,
    keys,
    models,
    monitor,
    pii,
    pipeline,
    proxy,
    serve,
    storage,
    train,
    witness,
    workspace,
)
from sealtune.errors import SealtuneError

app = typer.Typer(
    name="sealtune",
    help="Secure LLM fine-tuning: sealed data, keys in your keyring, a tamper-evident audit log.",
    epilog="Exit status: 0 success, 1 other errors, 2 usage error, 3 integrity or attestation "
           "failure (integrity: / attestation:), 4 the model did not pass the release gate "
           "(gate:; sealtune assess, or a pipeline's assess step).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version() -> str:
    try:
        return dist_version("sealtune")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return sealtune.__version__


def _print_version(value: bool) -> None:
    if value:
        print(f"sealtune {_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False,
) -> None:
    """Secure LLM fine-tuning: sealed data, keys in your keyring, a tamper-evident audit log."""

workspace.register(app)
files.register(app)
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(witness.app, name="witness")
app.add_typer(bundle.app, name="bundle")
app.add_typer(attest.app, name="attest")
app.add_typer(pii.app, name="pii")
app.add_typer(models.app, name="models")
app.add_typer(monitor.app, name="monitor")
app.command("serve")(serve.serve)
app.command("proxy")(proxy.proxy)
app.command("console")(console.console)
app.add_typer(serve.auth_app, name="auth")
app.add_typer(data.app, name="data")
app.command("train")(train.train)
app.add_typer(train.jobs_app, name="jobs")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(assess.app, name="assess")
app.add_typer(storage.app, name="storage")
app.command("run")(pipeline.run)
demo.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and, without ``argv``, exits with) the exit status.

    Typer/click handle usage errors themselves (exit 2); sealtune errors map to
    their class's exit status; anything else is shown by class name only.
    """
    try:
        app(args=argv, prog_name="sealtune")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except SealtuneError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # never echo a foreign exception's message: it may carry data
        print(
            f"internal error: {type(exc).__name__} (set SEALTUNE_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        if os.environ.get("SEALTUNE_DEBUG") == "1":
            traceback.print_exc()
        code = 1
    if argv is None:
        _flush_stdout()
        sys.exit(code)
    return code


def _flush_stdout() -> None:
    """Flush stdout before exit; if its reader went away (``| head``), drop what is left.

    Without this, Python reports the failed flush at exit with a traceback.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
