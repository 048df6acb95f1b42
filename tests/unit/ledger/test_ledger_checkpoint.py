"""Segment checkpoint format: extension lines, origins, strict parsing."""

from __future__ import annotations

import base64

import pytest

from sealtune.core.note import Checkpoint, NoteSigner, parse_checkpoint
from sealtune.errors import IntegrityError, UsageError
from sealtune.ledger.checkpoint import (
    SegmentCheckpoint,
    check_origin_prefix,
    note_hash,
    open_segment_checkpoint,
)

ROOT = bytes(range(32))
PREV = bytes(32 * [7])
PREV64 = base64.b64encode(PREV).decode()
ROOT64 = base64.b64encode(ROOT).decode()


def test_text_layout() -> None:
    first = SegmentCheckpoint("log.example/a", 1, 5, ROOT, 1, None)
    assert first.to_text() == f"log.example/a/segment/1\n5\n{ROOT64}\nsealtune-first-seq 1\n"
    later = SegmentCheckpoint("log.example/a", 3, 0, ROOT, 201, PREV)
    assert later.to_text() == (f"log.example/a/segment/3\n0\n{ROOT64}\n"
                               f"sealtune-prev {PREV64}\nsealtune-first-seq 201\n")
    for cp in (first, later):
        assert SegmentCheckpoint.from_checkpoint(parse_checkpoint(cp.to_text())) == cp
        assert SegmentCheckpoint.from_checkpoint(parse_checkpoint(cp.to_text()), "log.example/a")


@pytest.mark.parametrize(("origin", "ext"), [
    ("log.example/a/segment/1", ()),
    ("log.example/a/segment/1", ("sealtune-first-seq 2",)),
    ("log.example/a/segment/1", (f"sealtune-prev {PREV64}", "sealtune-first-seq 1")),
    ("log.example/a/segment/2", ("sealtune-first-seq 5",)),
    ("log.example/a/segment/2", ("sealtune-first-seq 5", f"sealtune-prev {PREV64}")),
    ("log.example/a/segment/2", (f"sealtune-prev {PREV64}", "sealtune-first-seq 05")),
    ("log.example/a/segment/2", (f"sealtune-prev {PREV64}", "sealtune-first-seq 0")),
    ("log.example/a/segment/2", (f"sealtune-prev {PREV64[:-2]}", "sealtune-first-seq 5")),
    ("log.example/a/segment/2", (f"sealtune-prev {PREV64}", "sealtune-first-seq 5", "x")),
    ("log.example/a/segment/02", (f"sealtune-prev {PREV64}", "sealtune-first-seq 5")),
    ("log.example/a/segment/0", ("sealtune-first-seq 1",)),
    ("log.example/a", ("sealtune-first-seq 1",)),
    ("/segment/1", ("sealtune-first-seq 1",)),
])
def test_strict_parsing(origin: str, ext: tuple[str, ...]) -> None:
    cp = Checkpoint(origin, 5, ROOT, ext)
    with pytest.raises(IntegrityError):
        SegmentCheckpoint.from_checkpoint(parse_checkpoint(cp.to_text()))


def test_prefix_must_match(signer: NoteSigner) -> None:
    note = signer.sign(SegmentCheckpoint("log.example/a", 1, 0, ROOT, 1, None).to_text())
    assert open_segment_checkpoint(note, signer.verifier(), "log.example/a").segment == 1
    with pytest.raises(IntegrityError):
        open_segment_checkpoint(note, signer.verifier(), "log.example/b")
    assert len(note_hash(note)) == 32


@pytest.mark.parametrize("origin", ["", "a b", "a+b", "é", "x" * 201, "tab\there"])
def test_origin_prefix_validation(origin: str) -> None:
    with pytest.raises(UsageError):
        check_origin_prefix(origin)
