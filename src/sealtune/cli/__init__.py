"""The ``sealtune`` command line.

The CLI calls the same public API the library offers. Errors map to exit
statuses: 0 success, 1 other errors, 2 usage errors, 3 integrity or
attestation failures (message starting ``integrity:`` / ``attestation:``).
An unexpected exception is reported by its class name only: its message or
a traceback with locals could carry data, so neither is shown unless
``SEALTUNE_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback

import click
import typer

from sealtune.cli import audit, demo, files, keys, workspace
from sealtune.errors import SealtuneError

app = typer.Typer(
    name="sealtune",
    help="Secure LLM fine-tuning: sealed data, keys in your keyring, a tamper-evident audit log.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

workspace.register(app)
files.register(app)
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
demo.register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the exit status."""
    try:
        app(args=argv, standalone_mode=False)
        code = 0
    except SealtuneError as exc:
        print(exc.diagnostics(), file=sys.stderr)
        code = exc.exit_code
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        code = 1
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = 2 if isinstance(exc, click.UsageError) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # never echo a foreign exception's message: it may carry data
        print(f"internal error: {type(exc).__name__} (set SEALTUNE_DEBUG=1 for a traceback)",
              file=sys.stderr)
        if os.environ.get("SEALTUNE_DEBUG") == "1":
            traceback.print_exc()
        code = 1
    if argv is None:
        sys.exit(code)
    return code
