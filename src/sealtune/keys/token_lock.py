"""One cross-process lock per workspace for creating key pairs on its PKCS#11 token.

Two processes making a workspace's first signature at once (two first
registrations, two bundles) must not both generate a pair under one label:
the token then holds two objects with that label, which every later lookup
refuses. SoftHSM2's file store also fails a session opened while another
process writes the token, so one lock covers every purpose (the registry
key, the evidence key), not one lock each.

:func:`token_lock` holds an ``flock`` on ``<workspace>/.pkcs11-token.lock``
while a key is looked up and, if missing, generated. What it protects
against: two processes on this host racing. What it does not: two hosts
sharing one token (``flock`` is per host; and not over NFS).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_FILE", "token_lock"]

LOCK_FILE = ".pkcs11-token.lock"


@contextlib.contextmanager
def token_lock(workspace_root: Path) -> Iterator[None]:
    """Hold the workspace's token-creation lock (exclusive, across processes)."""
    fd = os.open(workspace_root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
