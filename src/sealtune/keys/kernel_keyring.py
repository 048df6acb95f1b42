"""The Linux kernel key retention service, through raw syscalls (``add_key``, ``keyctl``).

The store behind ``sealtune unlock``: a ``user`` key in the calling user's
keyring (``@u``), with a timeout after which the kernel destroys it, and
permissions for its *possessor* only (view, read, search): no user, group
or other bits. A process possesses the key when ``@u`` is reachable from its
own keyrings. Login sessions and the user-session keyring link ``@u``; this
module also links it into the calling process's own keyring, so it works
under a session keyring that does not. Any process of the same kernel uid
can do the same (it owns ``@u``): the permission bits keep the entry out of
sight of processes that do not try (``/proc/keys`` does not even show its
description to them), they do not stop one that does. The training sandbox
shares the uid and is kept out by a seccomp filter
(the sandbox's seccomp filter, :mod:`sealtune.sandbox.seccomp`).

The secret is never in the kernel without a timeout: each entry is a
keyring in ``@u`` that gets its timeout first, and the key is added into it
(then given the same timeout); were the process killed in between, the
expiring keyring would take the key with it. A failure on the way unlinks
the entry.

Protects against: the payload outliving its timeout or ``drop``; other
users. Does not protect against: processes of the same kernel uid that are
allowed keyring system calls, or root (see docs/threat-model.md).

Linux only (x86_64 and aarch64 syscall numbers); elsewhere, or where a
container's seccomp profile blocks ``keyctl``, every call raises
:class:`KernelKeyringUnavailable` naming the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct

from sealtune.errors import BackendUnavailableError

# (add_key, keyctl) per machine: asm/unistd_64.h and asm-generic/unistd.h
_SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}
KEY_SPEC_PROCESS_KEYRING = -2
KEY_SPEC_USER_KEYRING = -4
_KEYCTL_LINK = 8
_KEYCTL_SETPERM = 5
_KEYCTL_DESCRIBE = 6
_KEYCTL_UNLINK = 9
_KEYCTL_SEARCH = 10
_KEYCTL_READ = 11
_KEYCTL_SET_TIMEOUT = 15
_KEYCTL_INVALIDATE = 21
# possessor: view | read | search; nothing for user, group or other
POSSESSOR_READ = 0x01000000 | 0x02000000 | 0x08000000
_GONE = {errno.ENOKEY, errno.EKEYEXPIRED, errno.EKEYREVOKED, errno.EACCES}


class KernelKeyringUnavailable(BackendUnavailableError):
    """The kernel keyring cannot be used here (not Linux, or keyctl blocked)."""


_possessing: set[int] = set()  # the pids that linked @u into their process keyring


def _libc() -> tuple[ctypes.CDLL, int, int]:
    numbers = _SYSCALLS.get(os.uname().machine)
    if numbers is None:
        raise KernelKeyringUnavailable(
            f"the kernel keyring is not supported on {os.uname().machine}",
            hint="run without 'sealtune unlock' (the passphrase is asked each time)")
    libc = ctypes.CDLL(None, use_errno=True)
    if os.getpid() not in _possessing:
        # Possess @u whatever our session keyring is (one that does not link @u,
        # e.g. after 'keyctl new_session', would hide the possessor-only entries):
        # link it into this process's own keyring, which dies with the process.
        libc.syscall(numbers[1], _KEYCTL_LINK, KEY_SPEC_USER_KEYRING, KEY_SPEC_PROCESS_KEYRING)
        _possessing.add(os.getpid())
    return libc, numbers[0], numbers[1]


def _unavailable(code: int) -> KernelKeyringUnavailable:
    return KernelKeyringUnavailable(
        f"the kernel keyring is not usable here: keyctl failed with "
        f"{errno.errorcode.get(code, code)} ({os.strerror(code)})",
        hint="a container's seccomp profile may block keyctl; run without 'sealtune unlock'")


def _keyctl(op: int, *args: int | bytes | ctypes.Array[ctypes.c_char] | None) -> int:
    libc, _, keyctl = _libc()
    result: int = libc.syscall(keyctl, op, *args)
    if result < 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EPERM):
            raise _unavailable(code)
        raise OSError(code, os.strerror(code))
    return result


def probe() -> None:
    """Raise :class:`KernelKeyringUnavailable` unless keyctl works for the user keyring."""
    try:
        _keyctl(_KEYCTL_READ, KEY_SPEC_USER_KEYRING, None, 0)
    except OSError as exc:
        raise _unavailable(exc.errno or errno.EIO) from None


def _add_key(kind: bytes, description: str, payload: bytes | None, ring: int) -> int:
    libc, add_key, _ = _libc()
    serial: int = libc.syscall(add_key, kind, description.encode("ascii"), payload,
                               len(payload or b""), ring)
    if serial < 0:
        code = ctypes.get_errno()
        if code in (errno.ENOSYS, errno.EPERM):
            raise _unavailable(code)
        raise OSError(code, os.strerror(code))
    return serial


def add(description: str, payload: bytes, *, timeout_s: int) -> int:
    """Add an entry to ``@u``: a ``user`` key that the kernel destroys after ``timeout_s``.

    The entry is a keyring named ``description`` holding one ``user`` key of
    the same name, both possessor-only. An entry with the same description
    must have been dropped first (see :func:`drop`).

    Returns:
        The entry's serial number (the keyring's).

    Raises:
        KernelKeyringUnavailable: keyctl is not usable here.
        OSError: the kernel refused (e.g. EDQUOT: the user's key quota is full).
    """
    if not 0 < timeout_s < 2**32 or not 0 < len(payload) <= 32767:
        raise ValueError("timeout or payload size out of range")
    ring = _add_key(b"keyring", description, None, KEY_SPEC_USER_KEYRING)
    try:
        _keyctl(_KEYCTL_SET_TIMEOUT, ring, timeout_s)  # first: what it holds dies with it
        key = _add_key(b"user", description, payload, ring)
        _keyctl(_KEYCTL_SET_TIMEOUT, key, timeout_s)
        _keyctl(_KEYCTL_SETPERM, key, POSSESSOR_READ)
        _keyctl(_KEYCTL_SETPERM, ring, POSSESSOR_READ)
    except BaseException:
        drop(ring)
        raise
    return ring


def search(description: str) -> int | None:
    """The serial of the ``user`` key ``description`` under ``@u``, or None (absent or expired)."""
    try:
        return _keyctl(_KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, b"user",
                       description.encode("ascii"), 0)
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise


def read(serial: int) -> bytes | None:
    """A key's payload, or None if it is gone or this process may not read it."""
    buf = ctypes.create_string_buffer(4096)
    try:
        size = _keyctl(_KEYCTL_READ, serial, buf, len(buf))
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise
    return buf.raw[:size] if size <= len(buf) else None


def describe(serial: int) -> tuple[str, str] | None:
    """A key's type and description, or None if it is gone or not visible to this process."""
    buf = ctypes.create_string_buffer(512)
    try:
        size = _keyctl(_KEYCTL_DESCRIBE, serial, buf, len(buf))
    except OSError as exc:
        if exc.errno in _GONE:
            return None
        raise
    # "type;uid;gid;perm;description" with a trailing NUL
    text = buf.raw[:min(size, len(buf))].rstrip(b"\0").decode("ascii", "replace")
    fields = text.split(";", 4)
    return (fields[0], fields[-1]) if len(fields) == 5 else None


def members(ring: int) -> list[int]:
    """Serials linked from the keyring ``ring`` (``KEY_SPEC_USER_KEYRING`` for ``@u``)."""
    try:
        size = _keyctl(_KEYCTL_READ, ring, None, 0)
        buf = ctypes.create_string_buffer(max(size, 4))
        got = min(_keyctl(_KEYCTL_READ, ring, buf, len(buf)), len(buf))
    except OSError as exc:
        if exc.errno in _GONE:
            return []
        raise
    return list(struct.unpack(f"={got // 4}i", buf.raw[: got - got % 4]))


def drop(ring: int) -> None:
    """Destroy an entry now: invalidate its key and itself, or at least unlink it from ``@u``."""
    for serial in members(ring):
        with contextlib.suppress(OSError):
            _keyctl(_KEYCTL_INVALIDATE, serial)
    try:
        _keyctl(_KEYCTL_INVALIDATE, ring)
    except OSError:
        _unlink(ring)


def _unlink(serial: int) -> None:
    # Unlinking needs write permission on @u only, so it works even where this
    # process cannot possess the key; an unlinked key is garbage-collected.
    with contextlib.suppress(OSError):
        _keyctl(_KEYCTL_UNLINK, serial, KEY_SPEC_USER_KEYRING)
