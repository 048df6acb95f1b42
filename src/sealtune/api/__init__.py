"""The control plane: an HTTP API (``/api/v1``) and a web console over the workspace.

A FastAPI app separate from the inference server (a different trust
boundary: it reads the workspace, the inference server only serves a model),
started with ``sealtune console``. It calls the same stage APIs as the CLI
and shows only names, ids, counts, types, digests and numbers
(:mod:`sealtune.api.views`); who may call what is in
:mod:`sealtune.api.session`; the app and its headers in :mod:`sealtune.api.app`.

What this protects against and what it does not: see the modules named above
and ``docs/console.md``.
"""

from __future__ import annotations

from sealtune.api.app import CSP, Console, create_app
from sealtune.api.launch import ConsoleOptions, build_console

__all__ = ["CSP", "Console", "ConsoleOptions", "build_console", "create_app"]
