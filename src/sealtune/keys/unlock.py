"""``sealtune unlock`` / ``sealtune lock``: the keyring's derived key, cached in the kernel.

Opening the keyring derives its master key from the passphrase with
Argon2id (64 MiB): 0.5-3 s on every command. ``unlock`` derives it once,
from the passphrase, and keeps the 32-byte derived key (never the
passphrase) in the user's kernel keyring for a set time (at most 24 h);
:attr:`Workspace.keyfile` opens the keyring with it while it lives, and
``lock`` destroys it. Nothing is written to disk.

The entry's description names the workspace (its ``workspace_id``) and the
keyring file's KDF identity (:attr:`KeyFile.kdf_id`: salt and parameters),
so two workspaces never share an entry and a keyring re-sealed under a new
passphrase is never tried with the old key. A cached key that does not open
the file is ignored (the passphrase is asked, as without ``unlock``); an
unusable kernel keyring is ignored when opening and an error when unlocking.
``unlock`` and ``lock`` are audit events (durations and times only).

Protects against: typing the passphrase, and paying the KDF, on every command
within the window, without a secret at rest. Does not protect against: while
the entry lives, processes of the same user that may make keyring system
calls (the training sandbox may not), and root, can read the derived key,
which opens this keyring file (and any copy of it) like the passphrase
would (see docs/threat-model.md).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sealtune.errors import UsageError
from sealtune.keys import kernel_keyring
from sealtune.keys.kernel_keyring import KernelKeyringUnavailable

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

PREFIX = "sealtune:unlock:v1"
MAX_DURATION = timedelta(hours=24)


@dataclass(frozen=True)
class Unlocked:
    """A live cache entry.

    Attributes:
        serial: the entry's serial number (a keyring holding the key).
        description: the entry's description (no secret).
        expires: when the kernel destroys it.
    """

    serial: int
    description: str
    expires: datetime


def description(workspace_id: str, kdf_id: str) -> str:
    """The kernel key description for a workspace's keyring with this KDF identity."""
    return f"{PREFIX}:{workspace_id}:{kdf_id}"


def cached_key(workspace_id: str) -> Callable[[str], bytes | None]:
    """A ``key_for`` for :meth:`KeyFile.open_with_key`: the cached key, or None.

    None also when the kernel keyring is not usable here: opening falls back
    to the passphrase, never fails because of the cache.
    """

    def lookup(kdf_id: str) -> bytes | None:
        try:
            serial = kernel_keyring.search(description(workspace_id, kdf_id))
            return None if serial is None else kernel_keyring.read(serial)
        except (KernelKeyringUnavailable, OSError):
            return None

    return lookup


def entries(workspace_id: str) -> list[int]:
    """Serials of this workspace's entries in the user keyring (current or stale)."""
    prefix = f"{PREFIX}:{workspace_id}:"
    found = []
    for serial in kernel_keyring.members(kernel_keyring.KEY_SPEC_USER_KEYRING):
        try:
            described = kernel_keyring.describe(serial)
        except OSError:
            continue
        if described is not None and described[0] == "keyring" \
                and described[1].startswith(prefix):
            found.append(serial)
    return found


def unlock(ws: Workspace, *, duration: timedelta) -> Unlocked:
    """Derive the keyring key from the passphrase and cache it for ``duration``.

    Replaces an earlier entry of this workspace. Audited as ``workspace.unlock``.

    Raises:
        UsageError: ``duration`` is not between 1 s and 24 h.
        KernelKeyringUnavailable: the kernel keyring is not usable here.
        IntegrityError: wrong passphrase.
    """
    seconds = int(duration.total_seconds())
    if not 1 <= seconds <= MAX_DURATION.total_seconds():
        raise UsageError("--for must be between 1s and 24h", hint="e.g. --for 15m")
    kernel_keyring.probe()  # before the passphrase is asked for nothing
    keyfile = ws.unlock_with_passphrase()
    for serial in entries(ws.config.workspace_id):
        kernel_keyring.drop(serial)
    desc = description(ws.config.workspace_id, keyfile.kdf_id)
    try:
        serial = kernel_keyring.add(desc, keyfile.master_key(), timeout_s=seconds)
    except OSError as exc:
        quota = exc.errno == errno.EDQUOT
        raise KernelKeyringUnavailable(
            f"the kernel refused the key: {exc.strerror}",
            hint="the user's key quota is full (/proc/key-users)" if quota
            else "run without 'sealtune unlock' (the passphrase is asked each time)") from None
    expires = datetime.now(UTC) + timedelta(seconds=seconds)
    try:
        ws.audit("workspace.unlock", ws.root.name, details={
            "seconds": seconds, "expires": expires.isoformat(timespec="seconds"),
            "kernel_keyring": "user"})
    except BaseException:
        kernel_keyring.drop(serial)  # never a cached key the ledger does not know of
        raise
    return Unlocked(serial=serial, description=desc, expires=expires)


def lock(ws: Workspace) -> tuple[int, bool]:
    """Destroy this workspace's cached keys.

    The ``workspace.lock`` audit event is written when the cache still opens
    the keyring (nothing is asked); a stale entry is destroyed all the same.

    Returns:
        ``(entries destroyed, whether the lock was audited)``.

    Raises:
        KernelKeyringUnavailable: the kernel keyring is not usable here.
    """
    found = entries(ws.config.workspace_id)
    if not found:
        return 0, False
    audited = False
    try:
        if ws.keyfile_from_cache() is not None:
            ws.audit("workspace.lock", ws.root.name, details={"entries": len(found)})
            audited = True
    finally:
        for serial in found:
            kernel_keyring.drop(serial)
    return len(found), audited
