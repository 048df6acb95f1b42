"""Unsealing to a stream (FIFO): what a reader can receive when the sealed file is attacked.

``open_file`` to a non-regular output authenticates the whole file first and
writes nothing, then decrypts it a second time to the output. A damaged file
therefore releases nothing (tests/integration/test_outputs_cli.py). The
remaining window is an attacker who can write the sealed file between the
two passes: here the file is truncated while the second pass is blocked on
the reader. The reader must then hold only a prefix of the true plaintext, in
whole authenticated segments, and the call must fail as an integrity error
(and be audited as a failure).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sealtune.core.envelope import read_header
from sealtune.errors import IntegrityError
from sealtune.keys.files import open_file, seal_file
from sealtune.workspace import Workspace


def test_truncation_between_the_passes_releases_only_authentic_segments(
        workspace: Workspace, tmp_path: Path) -> None:
    plain = tmp_path / "plain.bin"
    plaintext = os.urandom((7 << 20) // 2)  # four 1 MiB segments
    plain.write_bytes(plaintext)
    sealed = tmp_path / "s.sealed"
    seal_file(plain, sealed, keys=workspace.keys, key_names=["k1"])
    with sealed.open("rb") as fh:
        prefix = read_header(fh).prefix
    stream = prefix.suite.stream(prefix.segment_size)
    cut = prefix.payload_offset + 2 * prefix.segment_size + 100  # into the third segment

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def reader() -> None:
        fd = os.open(fifo, os.O_RDONLY)
        try:
            chunks = [os.read(fd, 1)]  # the second pass has begun and is blocked on us
            os.truncate(sealed, cut)  # the attacker strikes now
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(fd)
        received.append(b"".join(chunks))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    with pytest.raises(IntegrityError, match="failed its integrity check"):
        open_file(sealed, fifo, keys=workspace.keys)
    thread.join(60)
    assert not thread.is_alive()
    fifo.unlink()  # no FIFO left for a later scan of the temp dir
    got = received[0]
    assert len(got) == stream.first_plaintext_size + stream.plaintext_segment_size
    assert got == plaintext[: len(got)]  # a true prefix: nothing forged, nothing from segment 3
    events = [e for e in workspace.ledger.entries() if e.action == "file.unseal"]
    assert (events[-1].resource, events[-1].outcome) == (str(sealed), "failure")
