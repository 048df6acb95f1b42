"""The bundle layout: deterministic tars (read by GNU tar too), strict reading of dirs and tars."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from sealtune.errors import IntegrityError, UsageError
from sealtune.evidence import layout

FILES = {"manifest.json": b"{}", "statements/data.dsse.json": b"s" * 700,
         "ledger/proofs/12.json": b"p", "keys/ledger.vkey": b"k\n"}


def test_render_tar_is_deterministic_and_gnu_tar_reads_it(tmp_path: Path) -> None:
    data = layout.render_tar(FILES)
    assert data == layout.render_tar(dict(reversed(list(FILES.items()))))
    assert len(data) % 10240 == 0
    (tmp_path / "b.tar").write_bytes(data)
    listing = subprocess.run(["tar", "-tvf", "b.tar"], cwd=tmp_path, check=True,
                             capture_output=True, text=True).stdout
    assert all(" 0/0 " in line and "1970-01-01" in line for line in listing.splitlines())
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "b.tar"), "-C", str(out)], check=True)
    assert layout.read_dir(out) == FILES
    assert layout.read_tar(data, what="t") == FILES


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _info(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info


@pytest.mark.parametrize("members", [
    [(_info("keys/ledger.vkey", kind=tarfile.SYMTYPE), b"")],
    [(_info("../manifest.json", 2), b"{}")],
    [(_info("/manifest.json", 2), b"{}")],
    [(_info("manifest.json", 2), b"{}"), (_info("manifest.json", 2), b"{}")],
    [(_info("notes.txt", 1), b"x")],
    [(_info("statements", kind=tarfile.DIRTYPE), b"")],
])
def test_read_tar_refuses_links_traversal_duplicates_and_unknown_names(
        members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with pytest.raises(IntegrityError):
        layout.read_tar(_tar(members), what="t")


def test_read_tar_refuses_a_tar_that_is_not_byte_for_byte_canonical() -> None:
    info = _info("manifest.json", 2)
    info.mtime = 1_700_000_000
    with pytest.raises(IntegrityError, match="canonical"):
        layout.read_tar(_tar([(info, b"{}")]), what="t")
    data = bytearray(layout.render_tar(FILES))
    data[-1] = 1  # the record padding, which tar readers ignore
    with pytest.raises(IntegrityError, match="canonical"):
        layout.read_tar(bytes(data), what="t")
    with pytest.raises(IntegrityError):
        layout.read_tar(b"not a tar", what="t")


def test_read_dir_refuses_links_special_files_and_unknown_folders(tmp_path: Path) -> None:
    root = tmp_path / "b"
    (root / "keys").mkdir(parents=True)
    (root / "manifest.json").write_bytes(b"{}")
    assert layout.read_dir(root) == {"manifest.json": b"{}"}
    (root / "keys" / "evidence.pub").symlink_to(root / "manifest.json")
    with pytest.raises(IntegrityError, match="link"):
        layout.read_dir(root)
    (root / "keys" / "evidence.pub").unlink()
    os.mkfifo(root / "keys" / "ledger.vkey")
    with pytest.raises(IntegrityError, match="special"):
        layout.read_dir(root)
    (root / "keys" / "ledger.vkey").unlink()
    (root / "other").mkdir()
    with pytest.raises(IntegrityError, match="unexpected folder"):
        layout.read_dir(root)


def test_read_bundle_needs_something_there(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        layout.read_bundle(tmp_path / "missing")


def test_check_files_refuses_names_outside_the_layout() -> None:
    for name in ("statements/Data.dsse.json", "bom/x.json", "ledger/proofs/0.json",
                 "training/../x.json", "keys/evidence.pem"):
        with pytest.raises(UsageError):
            layout.check_files({name: b""})
