"""The content digest: SHA-256(prefix || payload), the same before and after any re-wrap.

Checked against coreutils (the command docs/formats/sealed-v1.md gives), and
against the digest SealedWriter computes while it writes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sealtune.errors import IntegrityError
from sealtune.keys.content import content_digest, labelled_digest
from sealtune.keys.files import rewrap_file, seal_file
from sealtune.keys.sealing import SealedWriter
from sealtune.workspace import Workspace


def coreutils_digest(path: Path) -> str:
    """The documented recipe, run by bash and coreutils (an independent oracle)."""
    slot = int.from_bytes(path.read_bytes()[16:20], "big")
    script = f'cat <(head -c 68 "$1") <(tail -c +$((68 + 2*{slot} + 1)) "$1") | sha256sum'
    out = subprocess.run(["bash", "-c", script, "digest", str(path)], capture_output=True,
                         text=True, check=True, timeout=30)
    return out.stdout.split()[0]


@pytest.mark.parametrize("size", [0, 1, 70_000, (1 << 20) + 5])
def test_matches_coreutils_and_survives_rewrap(workspace: Workspace, tmp_path: Path,
                                               size: int) -> None:
    src = tmp_path / "in"
    src.write_bytes(os.urandom(size))
    sealed = tmp_path / "s"
    seal_file(src, sealed, keys=workspace.keys, key_names=["k1"])
    before = content_digest(sealed)
    assert before == coreutils_digest(sealed)
    whole = sealed.read_bytes()
    workspace.keys.rotate("k1")
    rewrap_file(sealed, keys=workspace.keys, key_name="k1", add=["k2"])
    rewrap_file(sealed, keys=workspace.keys, key_name="k2", remove=["k1"])
    assert sealed.read_bytes() != whole  # the header slots did change
    assert content_digest(sealed) == before == coreutils_digest(sealed)
    assert labelled_digest(sealed) == f"content-sha256:{before}"


@pytest.mark.parametrize("offset", [20, 40, -1, -200])  # file id, commitment, payload end
def test_any_prefix_or_payload_byte_changes_it(workspace: Workspace, tmp_path: Path,
                                               offset: int) -> None:
    src = tmp_path / "in"
    src.write_bytes(os.urandom(5000))
    sealed = tmp_path / "s"
    seal_file(src, sealed, keys=workspace.keys, key_names=["k1"])
    before = content_digest(sealed)
    blob = bytearray(sealed.read_bytes())
    blob[offset] ^= 0x01
    sealed.write_bytes(bytes(blob))
    assert content_digest(sealed) != before


def test_a_file_that_is_not_sealed_is_an_integrity_error(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"not a sealed file at all, but long enough to hold a prefix" * 3)
    with pytest.raises(IntegrityError, match="not a well-formed"):
        content_digest(plain)


@pytest.mark.parametrize("chunks", [[b""], [b"x"], [b"a" * 300_000, b"b" * 7], [b"y" * 9] * 500])
def test_sealed_writer_hashes_the_content_digest_as_it_writes(
        workspace: Workspace, tmp_path: Path, chunks: list[bytes]) -> None:
    path = tmp_path / "w.sealed"
    writer = SealedWriter(path, keys=workspace.keys, key_names=["k1"])
    for chunk in chunks:
        writer.write(chunk)
    info = writer.close()
    assert info.content_sha256 == content_digest(path) == coreutils_digest(path)
