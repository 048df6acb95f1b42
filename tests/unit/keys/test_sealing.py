"""The sealing API (sealtune.keys.sealing) with a real workspace.

Targets made once, carried into a "sandbox" (here: rebuilt from JSON plus a
key, or from one framed secret, with no keyring), sealed to and opened back;
wrong keys, flipped bytes and malformed frames are refused.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import pytest

from sealtune.errors import ConfigError, IntegrityError, UsageError
from sealtune.keys import (
    SealedSource,
    SealedWriter,
    SealingTarget,
    file_target,
    is_sealed,
    new_target,
    open_sealed,
    open_sealed_lines,
    seal_bytes,
    unseal_into,
)
from sealtune.keys.content import content_digest
from sealtune.keys.files import describe_file, open_file, seal_file
from sealtune.workspace import Workspace

PLANTED = b"PLANTED-SEALING-" + secrets.token_hex(8).encode()


def _seal(target: SealingTarget, path: Path, data: bytes) -> None:
    with path.open("wb") as fh:
        target.seal(io.BytesIO(data), fh)


def test_new_target_wraps_one_key_under_each_kek_and_commits_to_it(
        workspace: Workspace, tmp_path: Path) -> None:
    target = new_target(workspace.keys, ["k1", "k2"])
    assert [w.kek_uri for w in target.wrapped] == ["local:k1", "local:k2"]
    assert target.entries == ("local:k1@1", "local:k2@1")
    assert target.data_key is not None and len(target.data_key) == 32
    _seal(target, tmp_path / "f.sealed", PLANTED)
    # An ordinary sealed file: the workspace opens it, the header names both KEKs.
    assert [e.kek_uri for e in describe_file(tmp_path / "f.sealed").entries] == [
        "local:k1", "local:k2"]
    open_file(tmp_path / "f.sealed", tmp_path / "plain", keys=workspace.keys)
    assert (tmp_path / "plain").read_bytes() == PLANTED
    assert len(list(workspace.ledger.entries(action="key.wrap"))) >= 2  # audited wraps
    sm4 = new_target(workspace.keys, ["ksm4", "k1"])  # the first key picks the suite
    assert sm4.prefix.suite.algorithm == "sm4-gcm"


@pytest.mark.parametrize("names", [[], ["k1", "k1"]])
def test_new_target_refuses_no_key_or_a_duplicate(workspace: Workspace,
                                                  names: list[str]) -> None:
    with pytest.raises(UsageError, match="distinct keys"):
        new_target(workspace.keys, names)


def test_the_public_half_carries_no_key_and_needs_the_committed_one(
        workspace: Workspace, tmp_path: Path) -> None:
    target = new_target(workspace.keys, ["k1"])
    assert target.data_key is not None
    text = json.dumps(target.to_dict())
    assert target.data_key.hex() not in text and "data_key" not in text
    public = SealingTarget.from_dict(json.loads(text), "spec output")
    assert public == target and public.data_key is None
    with pytest.raises(UsageError, match="no data key"):
        _seal(public, tmp_path / "nokey.sealed", b"x")
    with pytest.raises(UsageError, match="commitment"):
        public.with_key(os.urandom(32))
    _seal(public.with_key(target.data_key), tmp_path / "f.sealed", PLANTED)
    open_file(tmp_path / "f.sealed", tmp_path / "plain", keys=workspace.keys)
    assert (tmp_path / "plain").read_bytes() == PLANTED
    for bad in ({}, {"prefix": "zz", "wrapped": []}, {"prefix": target.to_dict()["prefix"]},
                {**target.to_dict(), "wrapped": []}, None):
        with pytest.raises(ConfigError, match="spec output"):
            SealingTarget.from_dict(bad, "spec output")


def test_a_framed_target_rebuilds_without_a_keyring_and_seals_the_same_file(
        workspace: Workspace, tmp_path: Path) -> None:
    target = new_target(workspace.keys, ["k1", "k2"])
    frame = target.to_bytes()
    rebuilt = SealingTarget.from_bytes(bytes(frame))
    assert rebuilt == target and rebuilt.data_key == target.data_key
    _seal(rebuilt, tmp_path / "f.sealed", PLANTED)
    open_file(tmp_path / "f.sealed", tmp_path / "plain", keys=workspace.keys)
    assert (tmp_path / "plain").read_bytes() == PLANTED
    target.wipe()
    assert target.data_key == bytearray(32)  # zeroed in place
    with pytest.raises(UsageError):
        target.to_bytes()


def test_every_malformed_frame_is_refused_without_quoting_it(workspace: Workspace) -> None:
    frame = bytes(new_target(workspace.keys, ["k1"]).to_bytes())
    for cut in range(len(frame)):  # every truncation
        with pytest.raises(ConfigError) as info:
            SealingTarget.from_bytes(frame[:cut])
        assert frame[5:37].hex() not in info.value.message
    with pytest.raises(ConfigError):
        SealingTarget.from_bytes(frame + b"\x00")  # trailing bytes
    with pytest.raises(ConfigError):
        SealingTarget.from_bytes(b"XXXX" + frame[4:])  # magic
    flipped = bytearray(frame)
    flipped[10] ^= 1  # a key byte: the prefix no longer commits to it
    with pytest.raises(UsageError, match="commitment"):
        SealingTarget.from_bytes(flipped)
    huge = bytearray(frame)
    huge[5] = 0xFF  # a key length past the limit
    with pytest.raises(ConfigError, match="out of range"):
        SealingTarget.from_bytes(huge)


def test_file_target_recovers_the_key_and_current_entries(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.write_bytes(PLANTED)
    seal_file(src, tmp_path / "f.sealed", keys=workspace.keys, key_names=["k2"])
    target = file_target(tmp_path / "f.sealed", keys=workspace.keys)
    assert target.entries == ("local:k2@1",)
    assert b"".join(open_sealed(tmp_path / "f.sealed", data_key=target.data_key)) == PLANTED
    raw = bytearray((tmp_path / "f.sealed").read_bytes())
    raw[70] ^= 1  # inside slot A
    (tmp_path / "g.sealed").write_bytes(raw)
    with pytest.raises(IntegrityError, match=r"g\.sealed failed its integrity check"):
        file_target(tmp_path / "g.sealed", keys=workspace.keys)


def test_opening_with_keys_or_a_data_key_and_every_refusal(workspace: Workspace,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "lines.sealed"
    lines = [b'{"id": %d, "t": "%s"}' % (i, PLANTED) for i in range(3000)]
    seal_bytes(path, b"\n".join(lines) + b"\n", keys=workspace.keys, key_names=["k1"])
    assert is_sealed(path) and not is_sealed(tmp_path / "missing")
    key = file_target(path, keys=workspace.keys).data_key
    assert list(open_sealed_lines(path, keys=workspace.keys)) == lines
    assert list(open_sealed_lines(path, data_key=key)) == lines
    buf = io.BytesIO()
    assert unseal_into(path, buf, data_key=key) == len(buf.getvalue())
    assert buf.getvalue().splitlines() == lines
    source = SealedSource(path, data_key=key)
    for _ in range(2):
        with source.open() as fh:
            assert fh.read().splitlines() == lines
    with pytest.raises(IntegrityError, match=r"lines\.sealed failed"):
        list(open_sealed(path, data_key=os.urandom(32)))
    with pytest.raises(UsageError, match="either"):
        list(open_sealed(path, keys=workspace.keys, data_key=key))
    with pytest.raises(UsageError, match="either"):
        unseal_into(path, io.BytesIO())
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 1  # in the last payload segment
    path.write_bytes(raw)
    with pytest.raises(IntegrityError, match=r"lines\.sealed failed"):
        unseal_into(path, io.BytesIO(), data_key=key)
    with pytest.raises(IntegrityError, match=r"lines\.sealed failed"):
        list(open_sealed(path, keys=workspace.keys))


def test_a_writer_on_a_given_target_needs_no_keyring_and_audits_nothing(
        workspace: Workspace, tmp_path: Path) -> None:
    target = new_target(workspace.keys, ["k1"])
    seals_before = len(list(workspace.ledger.entries(action="file.seal")))
    writer = SealedWriter(tmp_path / "w.sealed", target=target, digest_plaintext=True)
    for i in range(10):
        writer.write_line(b"line %d %s\n" % (i, PLANTED))
    info = writer.close()
    assert info.lines == 10 and info.keys == target.entries and info.file_id == target.file_id
    assert info.content_sha256 == content_digest(tmp_path / "w.sealed")
    assert len(list(workspace.ledger.entries(action="file.seal"))) == seals_before
    assert target.data_key != bytearray(32)  # the caller's target: not wiped by the writer
    assert PLANTED not in (tmp_path / "w.sealed").read_bytes()
    plain = b"".join(open_sealed(tmp_path / "w.sealed", keys=workspace.keys))
    assert plain.count(PLANTED) == 10
    with pytest.raises(UsageError, match="not both"):
        SealedWriter(tmp_path / "x.sealed", keys=workspace.keys, key_names=["k1"],
                     target=target)
    with pytest.raises(UsageError, match="no data key"):
        SealedWriter(tmp_path / "y.sealed", target=SealingTarget.from_dict(
            target.to_dict(), "t"))
    assert not (tmp_path / "x.sealed").exists() and not (tmp_path / "y.sealed").exists()


def test_a_writer_that_cannot_create_its_file_leaves_it_alone(workspace: Workspace,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "taken.sealed"
    path.write_bytes(b"someone else's file")
    with pytest.raises(FileExistsError):
        SealedWriter(path, keys=workspace.keys, key_names=["k1"])
    assert path.read_bytes() == b"someone else's file"  # never overwritten
