"""seal_file / open_file / rewrap_file / describe_file with a real workspace.

The ``workspace`` fixture (tests/conftest.py) gives local KEKs ``k1``, ``k2``
(AES-256-GCM) and ``ksm4`` (SM4-GCM) and a real audit ledger.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import time
from pathlib import Path

import pytest

from sealtune.core import envelope as env
from sealtune.errors import (
    IntegrityError,
    KeyDestroyedError,
    KeyNotFoundError,
    SealtuneError,
    UsageError,
)
from sealtune.keys.files import describe_file, open_file, rewrap_file, seal_file
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import Workspace

MIB = 1 << 20
PLANTED = b"PLANTED-CANARY-" + secrets.token_hex(8).encode()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def events(ws: Workspace, action: str) -> list:  # type: ignore[type-arg]
    return list(ws.ledger.entries(action=action))


def payload_digest(path: Path) -> str:
    info = describe_file(path)
    with path.open("rb") as f:
        f.seek(env.PREFIX_BYTES + 2 * info.slot_size)
        return hashlib.sha256(f.read()).hexdigest()


def leftovers(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.part"))


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "size"),
    [
        ("k1", 0),
        ("k1", 1),
        ("k1", MIB - 56),
        ("k1", MIB - 55),
        ("k1", 2 * MIB - 72 + 1),
        ("ksm4", 0),
        ("ksm4", MIB - 40),
        ("ksm4", MIB - 39),
    ],
)
def test_round_trip(workspace: Workspace, tmp_path: Path, key: str, size: int) -> None:
    data = os.urandom(size)
    src = write(tmp_path / "plain.bin", data)
    sealed = seal_file(src, tmp_path / "x.sealed", keys=workspace.keys, key_names=[key])
    assert sealed.suite == workspace.keys.info(key).algorithm
    assert sealed.plaintext_size == size
    assert sealed.sealed_size == (tmp_path / "x.sealed").stat().st_size
    opened = open_file(tmp_path / "x.sealed", tmp_path / "back.bin", keys=workspace.keys)
    assert (tmp_path / "back.bin").read_bytes() == data
    assert opened.file_id == sealed.file_id and opened.warning is None
    assert opened.unwrapped_by.kek_uri == f"local:{key}"


def test_the_suite_is_the_first_keys_algorithm(workspace: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "p", b"data")
    result = seal_file(src, tmp_path / "s", keys=workspace.keys, key_names=["ksm4", "k1"])
    info = describe_file(tmp_path / "s")
    assert result.suite == info.suite == "sm4-gcm"
    assert [e.kek_uri for e in info.entries] == ["local:ksm4", "local:k1"]
    assert info.plaintext_size == 4 and info.generation == 1
    assert info.file_id == result.file_id


def test_outputs_are_private_and_replace_atomically(workspace: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "p", b"new")
    dst = write(tmp_path / "s", b"old content")
    seal_file(src, dst, keys=workspace.keys, key_names=["k1"])
    open_file(dst, tmp_path / "out", keys=workspace.keys)
    assert (dst.stat().st_mode & 0o777) == 0o600
    assert ((tmp_path / "out").stat().st_mode & 0o777) == 0o600
    assert leftovers(tmp_path) == []


def test_usage_errors(workspace: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "p", b"x")
    keys = workspace.keys
    with pytest.raises(UsageError):
        seal_file(src, tmp_path / "s", keys=keys, key_names=[])
    with pytest.raises(UsageError):
        seal_file(src, tmp_path / "s", keys=keys, key_names=["k1", "k1"])
    with pytest.raises(UsageError):
        seal_file(src, src, keys=keys, key_names=["k1"])
    with pytest.raises(UsageError):
        seal_file(tmp_path / "missing", tmp_path / "s", keys=keys, key_names=["k1"])
    with pytest.raises(KeyNotFoundError):
        seal_file(src, tmp_path / "s", keys=keys, key_names=["nope"])
    assert not (tmp_path / "s").exists() and leftovers(tmp_path) == []


def test_too_many_keys_for_a_slot_names_the_count(workspace: Workspace, tmp_path: Path) -> None:
    names = [f"many{i:02d}" for i in range(30)]
    for name in names:
        workspace.keys.create(name)
    src = write(tmp_path / "p", b"x")
    with pytest.raises(UsageError, match="30 wrapped keys"):
        seal_file(src, tmp_path / "s", keys=workspace.keys, key_names=names)
    assert not (tmp_path / "s").exists() and leftovers(tmp_path) == []


# -- failures leave nothing behind -----------------------------------------------------


def test_a_failed_unseal_leaves_no_plaintext(workspace: Workspace, tmp_path: Path) -> None:
    data = PLANTED * (3 * MIB // len(PLANTED))
    src = write(tmp_path / "p", data)
    sealed = tmp_path / "s"
    seal_file(src, sealed, keys=workspace.keys, key_names=["k1"])
    buf = bytearray(sealed.read_bytes())
    buf[-100] ^= 1  # the last segment: earlier segments authenticate first
    sealed.write_bytes(buf)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match=str(sealed)) as err:
        open_file(sealed, out, keys=workspace.keys)
    assert PLANTED.decode() not in str(err.value)
    assert not out.exists() and leftovers(tmp_path) == []
    # An existing destination is left as it was.
    write(out, b"keep me")
    with pytest.raises(IntegrityError):
        open_file(sealed, out, keys=workspace.keys)
    assert out.read_bytes() == b"keep me" and leftovers(tmp_path) == []
    failures = [e for e in events(workspace, "file.unseal") if e.outcome == "failure"]
    assert len(failures) == 2


def test_wrong_key_of_the_same_name_is_an_integrity_failure(
    workspace: Workspace, tmp_path: Path
) -> None:
    other = Workspace.init(
        tmp_path / "other", passphrase="pp-other", kdf=KdfParams.unsafe_fast(), default_key="k1"
    )
    try:
        src = write(tmp_path / "p", b"secret")
        seal_file(src, tmp_path / "s", keys=workspace.keys, key_names=["k1"])
        with pytest.raises(IntegrityError):
            open_file(tmp_path / "s", tmp_path / "out", keys=other.keys)
        seal_file(src, tmp_path / "s2", keys=workspace.keys, key_names=["k2"])
        with pytest.raises(KeyNotFoundError, match="local:k2"):
            open_file(tmp_path / "s2", tmp_path / "out", keys=other.keys)
        assert not (tmp_path / "out").exists()
    finally:
        other.close()


def test_destroyed_keys(workspace: Workspace, tmp_path: Path) -> None:
    src = write(tmp_path / "p", b"secret")
    seal_file(src, tmp_path / "both", keys=workspace.keys, key_names=["k1", "k2"])
    seal_file(src, tmp_path / "only", keys=workspace.keys, key_names=["k1"])
    workspace.keys.destroy("k1")
    result = open_file(tmp_path / "both", tmp_path / "out", keys=workspace.keys)
    assert result.unwrapped_by.kek_uri == "local:k2"
    with pytest.raises(KeyDestroyedError):
        open_file(tmp_path / "only", tmp_path / "out2", keys=workspace.keys)
    assert not (tmp_path / "out2").exists()


# -- audit -----------------------------------------------------------------------------


def test_audit_events_carry_no_content_or_keys(
    workspace: Workspace, tmp_path: Path, passphrase: str
) -> None:
    src = write(tmp_path / "p", PLANTED * 100)
    sealed = seal_file(src, tmp_path / "s", keys=workspace.keys, key_names=["k1"])
    open_file(tmp_path / "s", tmp_path / "o", keys=workspace.keys)
    workspace.keys.rotate("k1")
    rewrap_file(tmp_path / "s", keys=workspace.keys, key_name="k1")
    (seal_event,) = events(workspace, "file.seal")
    assert seal_event.details["file_id"] == sealed.file_id
    assert seal_event.details["keys"] == ["local:k1@1"]
    (unseal_event,) = events(workspace, "file.unseal")
    assert unseal_event.outcome == "success" and unseal_event.details["key"] == "local:k1@1"
    (rewrap_event,) = events(workspace, "file.rewrap")
    assert rewrap_event.details["after"] == ["local:k1@2"]
    dump = io.StringIO()
    workspace.ledger.export("jsonl", dump)
    text = dump.getvalue()
    assert PLANTED.decode() not in text and passphrase not in text


# -- rewrap ----------------------------------------------------------------------------


def test_rewrap_after_rotation_uses_the_new_version(workspace: Workspace, tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 5)
    sealed = tmp_path / "s"
    seal_file(write(tmp_path / "p", data), sealed, keys=workspace.keys, key_names=["k1", "k2"])
    before = payload_digest(sealed)
    workspace.keys.rotate("k1")
    result = rewrap_file(sealed, keys=workspace.keys, key_name="k1")
    assert result.generation == 2 and not result.repaired
    assert [(e.kek_uri, e.version) for e in result.after] == [("local:k1", 2), ("local:k2", 1)]
    assert payload_digest(sealed) == before  # the payload is never rewritten
    raw = sealed.read_bytes()
    assert raw[68 : 68 + 2048] == bytes(2048)  # the old slot is cleared
    workspace.keys.retire("k1", below=2)
    workspace.keys.destroy("k2")
    open_file(sealed, tmp_path / "o", keys=workspace.keys)
    assert (tmp_path / "o").read_bytes() == data


def test_rewrap_can_add_and_remove_keks(workspace: Workspace, tmp_path: Path) -> None:
    sealed = tmp_path / "s"
    seal_file(write(tmp_path / "p", b"x"), sealed, keys=workspace.keys, key_names=["k1"])
    added = rewrap_file(sealed, keys=workspace.keys, key_name="k1", add=["k2"])
    assert [e.kek_uri for e in added.after] == ["local:k1", "local:k2"]
    removed = rewrap_file(sealed, keys=workspace.keys, key_name="k2", remove=["k1"])
    assert [e.kek_uri for e in removed.after] == ["local:k2"]
    assert removed.generation == 3
    assert [e.kek_uri for e in describe_file(sealed).entries] == ["local:k2"]
    with pytest.raises(UsageError):
        rewrap_file(sealed, keys=workspace.keys, key_name="k1")
    with pytest.raises(UsageError):
        rewrap_file(sealed, keys=workspace.keys, key_name="k2", add=["k2"])


def test_an_interrupted_rewrap_still_opens_and_is_repaired(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(1000)
    sealed = tmp_path / "s"
    seal_file(write(tmp_path / "p", data), sealed, keys=workspace.keys, key_names=["k1"])
    workspace.keys.rotate("k1")
    real_pwrite = os.pwrite

    def torn(fd: int, chunk: bytes, offset: int) -> int:
        real_pwrite(fd, chunk[: len(chunk) // 2], offset)  # half the new slot reaches disk
        raise OSError("power lost")

    monkeypatch.setattr(os, "pwrite", torn)
    with pytest.raises(SealtuneError, match=str(sealed)):
        rewrap_file(sealed, keys=workspace.keys, key_name="k1")
    monkeypatch.undo()
    result = open_file(sealed, tmp_path / "o", keys=workspace.keys)
    assert (tmp_path / "o").read_bytes() == data
    assert result.warning is not None
    repaired = rewrap_file(sealed, keys=workspace.keys, key_name="k1")
    assert repaired.repaired and repaired.generation == 2
    again = open_file(sealed, tmp_path / "o", keys=workspace.keys)
    assert again.warning is None and again.unwrapped_by.version == 2


def _rewrap_seconds(path: Path, ws: Workspace, runs: int = 5) -> float:
    """Best of ``runs``: the least noisy estimate of the intrinsic cost."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rewrap_file(path, keys=ws.keys, key_name="k1")
        times.append(time.perf_counter() - t0)
    return min(times)


def test_rewrap_never_reads_the_payload(workspace: Workspace, tmp_path: Path) -> None:
    """A 16 GiB sparse payload of zeros (not even valid ciphertext) rewraps at once."""
    sealed = tmp_path / "s"
    seal_file(write(tmp_path / "p", b"x"), sealed, keys=workspace.keys, key_names=["k1"])
    with sealed.open("r+b") as f:
        f.truncate(16 << 30)
    # Merely reading 16 GiB would take seconds.
    assert _rewrap_seconds(sealed, workspace, runs=3) < 0.25
    assert describe_file(sealed).generation == 4
    with pytest.raises(IntegrityError):
        open_file(sealed, tmp_path / "o", keys=workspace.keys)


def test_rewrap_time_does_not_grow_with_size(workspace: Workspace, tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    seal_file(write(tmp_path / "ps", b"x" * 1000), small, keys=workspace.keys, key_names=["k1"])
    with (tmp_path / "pb").open("wb") as f:
        block = os.urandom(MIB)
        for _ in range(256):
            f.write(block)
    seal_file(tmp_path / "pb", big, keys=workspace.keys, key_names=["k1"])
    (tmp_path / "pb").unlink()
    before = payload_digest(big)
    t_small, t_big = _rewrap_seconds(small, workspace), _rewrap_seconds(big, workspace)
    assert t_big < 3 * t_small + 0.03, (t_small, t_big)
    assert payload_digest(big) == before


# -- describe --------------------------------------------------------------------------


def test_describe_needs_no_keys_and_rejects_other_files(tmp_path: Path) -> None:
    not_sealed = write(tmp_path / "n", b"hello world" * 1000)
    with pytest.raises(IntegrityError, match=str(not_sealed)):
        describe_file(not_sealed)
    with pytest.raises(SealtuneError, match="missing"):
        describe_file(tmp_path / "missing")
