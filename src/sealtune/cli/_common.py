"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import getpass
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from sealtune.errors import UsageError
from sealtune.workspace import Workspace, default_home

if TYPE_CHECKING:
    from sealtune.keys.keyfile import KdfParams

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def prompt_passphrase() -> str:
    """Ask for the keyring passphrase on the terminal (never echoed)."""
    if not sys.stdin.isatty():
        raise UsageError(
            "the keyring passphrase is needed and there is no terminal",
            hint="set SEALTUNE_PASSPHRASE",
        )
    return getpass.getpass("keyring passphrase: ")


def open_workspace(home: Path | None = None, *, check_ledger: bool = True) -> Workspace:
    """Open the workspace at ``home`` or ``$SEALTUNE_HOME`` / ``./.sealtune``.

    ``check_ledger=False`` only for the audit commands that inspect or repair a
    broken log (see :meth:`Workspace.open`).
    """
    return Workspace.open(home or default_home(), prompt=prompt_passphrase,
                          check_ledger=check_ledger)


def parse_duration(text: str, *, option: str) -> timedelta:
    """Parse ``30s``, ``15m``, ``12h``, ``180d``, ``2w``."""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(
            f"{option}: cannot read duration {text!r}",
            hint="use a number and a unit, e.g. 180d, 12h, 30m",
        )
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def parse_since(text: str | None) -> datetime | None:
    """A ``--since`` value: an ISO time (UTC unless a zone is given) or a duration back."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            return datetime.now(UTC) - parse_duration(text, option="--since")
        except UsageError:
            raise UsageError(
                f"--since {text!r}: not an ISO date/time or a duration",
                hint="e.g. --since 2026-01-31 or --since 7d",
            ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def unsafe_fast_kdf(consequence: str) -> KdfParams | None:
    """Test-only KDF parameters when ``SEALTUNE_UNSAFE_FAST_KDF=1``, with a warning; else None.

    Args:
        consequence: what the warning says it means for this command.
    """
    if os.environ.get("SEALTUNE_UNSAFE_FAST_KDF") != "1":
        return None
    from sealtune.keys.keyfile import KdfParams

    err_console.print(f"[yellow]warning:[/] SEALTUNE_UNSAFE_FAST_KDF=1: {consequence}")
    return KdfParams.unsafe_fast()
