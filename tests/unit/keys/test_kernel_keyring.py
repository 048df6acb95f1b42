"""The kernel keyring wrapper against the real kernel (add_key/keyctl syscalls)."""

from __future__ import annotations

import secrets
from pathlib import Path

from sealtune.keys import kernel_keyring


def test_add_search_read_drop() -> None:
    desc = f"sealtune:test:{secrets.token_hex(8)}"
    payload = secrets.token_bytes(32)
    assert kernel_keyring.search(desc) is None
    entry = kernel_keyring.add(desc, payload, timeout_s=30)
    try:
        serial = kernel_keyring.search(desc)
        assert serial is not None and serial != entry
        assert kernel_keyring.read(serial) == payload
        assert kernel_keyring.describe(entry) == ("keyring", desc)
        assert kernel_keyring.describe(serial) == ("user", desc)
        assert entry in kernel_keyring.members(kernel_keyring.KEY_SPEC_USER_KEYRING)
        assert kernel_keyring.members(entry) == [serial]
    finally:
        kernel_keyring.drop(entry)
    assert kernel_keyring.search(desc) is None
    assert kernel_keyring.read(serial) is None
    for line in Path("/proc/keys").read_text().splitlines():  # gone, or flagged invalidated
        fields = line.split()
        if fields[0] in {f"{entry:08x}", f"{serial:08x}"}:
            assert "i" in fields[1], line


def test_an_entry_without_timeout_never_exists() -> None:
    desc = f"sealtune:test:{secrets.token_hex(8)}"
    entry = kernel_keyring.add(desc, b"x" * 32, timeout_s=20)
    try:
        for serial in (entry, *kernel_keyring.members(entry)):
            fields = next(line.split() for line in Path("/proc/keys").read_text().splitlines()
                          if line.split()[0] == f"{serial:08x}")
            assert fields[3] != "perm" and int(fields[3].rstrip("s")) <= 20
    finally:
        kernel_keyring.drop(entry)
