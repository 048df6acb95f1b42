"""Checkpoint serialization (safetensors, no pickle) and the sealed, keep-the-newest sink."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import pytest
import torch

from sealtune.core.envelope import AES_256_GCM, make_prefix, new_data_key
from sealtune.errors import IntegrityError
from sealtune.keys.base import WrappedKey
from sealtune.keys.sealing import SealingTarget
from sealtune.train.checkpoints import (
    CheckpointSink,
    MemorySink,
    SealedDirSink,
    pack_state,
    unpack_state,
)

WRAPPED = (WrappedKey("local:test", 1, b"\x01" * 40),)  # opaque to the sink


def _sink(directory: Path, key: bytes, **kw: object) -> SealedDirSink:
    target = SealingTarget(make_prefix(key, suite=AES_256_GCM), WRAPPED, bytearray(key))
    return SealedDirSink(directory, target, **kw)  # type: ignore[arg-type]


def test_pack_round_trip_and_garbage_refused() -> None:
    tensors = {"param/a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "optim/0/step": torch.tensor(3.0), "rng/torch": torch.get_rng_state()}
    blob = pack_state(tensors, {"step": 7, "losses": [1.5, None]})
    back, meta = unpack_state(blob)
    assert meta["step"] == 7 and meta["losses"] == [1.5, None]
    assert all(torch.equal(back[k], v) for k, v in tensors.items())
    assert b"\x80\x04" not in blob[:16]  # not a pickle
    with pytest.raises(IntegrityError):
        unpack_state(b"not a checkpoint at all")


def test_memory_sink() -> None:
    sink = MemorySink()
    assert isinstance(sink, CheckpointSink) and sink.latest() is None
    for step in (1, 2, 3):
        sink.save(step, io.BytesIO(bytes([step]) * 4))
    found = sink.latest()
    assert found is not None and found[0] == 3 and found[1].read() == b"\x03" * 4
    sink.truncate(1)
    found = sink.latest()
    assert found is not None and found[0] == 1


def test_sealed_sink_keeps_only_the_newest_and_round_trips(tmp_path: Path) -> None:
    key, planted = new_data_key(AES_256_GCM), secrets.token_hex(16).encode()
    sink = _sink(tmp_path / "ckpt", key)
    assert isinstance(sink, CheckpointSink) and sink.latest() is None
    for step in (2, 4, 6):
        sink.save(step, io.BytesIO(planted + bytes([step])))
        assert [p.name for p in sink.files()] == [f"ckpt-{step:010d}.sealed"]
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["ckpt-0000000006.sealed"]  # no temp left
    blob = (tmp_path / "ckpt" / "ckpt-0000000006.sealed").read_bytes()
    assert blob.startswith(b"SEALTUNE") and planted not in blob
    found = sink.latest()
    assert found is not None and found[0] == 6 and found[1].read() == planted + b"\x06"
    with pytest.raises(IntegrityError):
        _sink(tmp_path / "ckpt", new_data_key(AES_256_GCM)).latest()  # another key


def test_sealed_sink_resumes_from_a_read_only_earlier_run(tmp_path: Path) -> None:
    key = new_data_key(AES_256_GCM)
    _sink(tmp_path / "run1", key).save(5, io.BytesIO(b"state-5"))
    sink = _sink(tmp_path / "run2", key, resume_from=tmp_path / "run1")
    found = sink.latest()
    assert found is not None and found[0] == 5 and found[1].read() == b"state-5"
    sink.save(6, io.BytesIO(b"state-6"))
    found = sink.latest()
    assert found is not None and found[0] == 6
    assert (tmp_path / "run1" / "ckpt-0000000005.sealed").exists()  # never deletes inputs


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    key = new_data_key(AES_256_GCM)
    sink = _sink(tmp_path / "c", key)
    sink.save(1, io.BytesIO(b"one"))

    class Exploding(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: object) -> int:
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="fire"):
        sink.save(2, io.BufferedReader(Exploding()))
    assert os.listdir(tmp_path / "c") == ["ckpt-0000000001.sealed"]
    found = sink.latest()
    assert found is not None and found[1].read() == b"one"
    (tmp_path / "c" / ".ckpt-stale.part").write_bytes(b"x")  # left by a kill mid-write
    _sink(tmp_path / "c", key)
    assert os.listdir(tmp_path / "c") == ["ckpt-0000000001.sealed"]
