"""The passphrase-sealed keyring file: fails closed, never loses writes, never leaks."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sealtune.errors import ConfigError, IntegrityError, SealtuneError, WorkspaceError
from sealtune.keys.keyfile import KdfParams, KeyFile, b64decode, b64encode

FAST = KdfParams.unsafe_fast()


@pytest.fixture
def kf_path(tmp_path: Path) -> Path:
    return tmp_path / "keyring.sealed"


@pytest.fixture
def keyfile(kf_path: Path, passphrase: str) -> KeyFile:
    kf = KeyFile.create(kf_path, passphrase, kdf=FAST)
    kf.put("local", "k", {"v": 1, "secret": b64encode(b"\x01" * 32)})
    return kf


def _edit(path: Path, change: Any) -> None:
    body = json.loads(path.read_text("utf-8"))
    change(body)
    path.write_text(json.dumps(body), "utf-8")


def _flip(text: str, index: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_round_trip(keyfile: KeyFile, kf_path: Path, passphrase: str) -> None:
    keyfile.put("catalogue", "k", {"backend": "local"})
    again = KeyFile.open(kf_path, passphrase)
    assert again.get("local", "k") == {"v": 1, "secret": b64encode(b"\x01" * 32)}
    assert again.items("catalogue") == {"k": {"backend": "local"}}
    assert again.get("local", "missing") is None
    again.delete("local", "k")
    assert KeyFile.open(kf_path, passphrase).get("local", "k") is None


def test_file_is_private(keyfile: KeyFile, kf_path: Path) -> None:
    assert stat.S_IMODE(kf_path.stat().st_mode) == 0o600


def test_wrong_passphrase_fails_closed(keyfile: KeyFile, kf_path: Path, passphrase: str) -> None:
    with pytest.raises(IntegrityError) as exc:
        KeyFile.open(kf_path, passphrase + "x")
    assert passphrase not in exc.value.diagnostics()
    with pytest.raises(IntegrityError):
        KeyFile.open(kf_path, "")


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_flipped_byte_fails_closed(
    keyfile: KeyFile, kf_path: Path, passphrase: str, field: str
) -> None:
    size = len(base64.b64decode(json.loads(kf_path.read_text())[field]))
    for index in (0, size // 2, size - 1):
        original = kf_path.read_text()
        _edit(kf_path, lambda b, i=index: b.__setitem__(field, _flip(b[field], i)))
        with pytest.raises(IntegrityError):
            KeyFile.open(kf_path, passphrase)
        kf_path.write_text(original)
    KeyFile.open(kf_path, passphrase)  # the restored file still opens


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h["kdf"].__setitem__("memory_kib", 16384),
        lambda h: h["kdf"].__setitem__("iterations", 2),
        lambda h: h["kdf"].__setitem__("lanes", 2),
        lambda h: h["kdf"].__setitem__("salt", _flip(h["kdf"]["salt"], 0)),
        lambda h: h.__setitem__("note", "added"),
    ],
    ids=["memory", "iterations", "lanes", "salt", "extra-field"],
)
def test_header_edit_fails_closed(
    keyfile: KeyFile, kf_path: Path, passphrase: str, change: Any
) -> None:
    _edit(kf_path, lambda b: change(b["header"]))
    with pytest.raises(IntegrityError):
        KeyFile.open(kf_path, passphrase)


def test_malformed_files_fail_closed(keyfile: KeyFile, kf_path: Path, passphrase: str) -> None:
    original = kf_path.read_text()
    for broken in ("", "{", "[]", '{"header": {}}', original[: len(original) // 2]):
        kf_path.write_text(broken)
        with pytest.raises(SealtuneError):
            KeyFile.open(kf_path, passphrase)
    kf_path.write_text(original)
    _edit(kf_path, lambda b: b["header"].__setitem__("format", "other/v9"))
    with pytest.raises(ConfigError):
        KeyFile.open(kf_path, passphrase)
    _edit(kf_path, lambda b: b.__setitem__("ciphertext", "not base64!"))
    with pytest.raises(SealtuneError):
        KeyFile.open(kf_path, passphrase)


def test_missing_file_and_refused_overwrite(kf_path: Path, passphrase: str) -> None:
    with pytest.raises(WorkspaceError):
        KeyFile.open(kf_path, passphrase)
    KeyFile.create(kf_path, passphrase, kdf=FAST)
    with pytest.raises(WorkspaceError):
        KeyFile.create(kf_path, passphrase, kdf=FAST)
    with pytest.raises(ConfigError):
        KeyFile.create(kf_path.with_name("other"), "", kdf=FAST)


def test_kdf_floor_is_enforced() -> None:
    with pytest.raises(ConfigError):
        KdfParams(memory_kib=1024, iterations=1, lanes=1).validate()
    with pytest.raises(ConfigError):
        KdfParams(memory_kib=8192, iterations=0, lanes=1).validate()
    KdfParams().validate()
    FAST.validate()


def test_a_keyring_swapped_under_an_open_one_is_refused(
    keyfile: KeyFile, kf_path: Path, passphrase: str, tmp_path: Path
) -> None:
    other = KeyFile.create(tmp_path / "other", passphrase, kdf=FAST)  # new salt, new header
    del other
    os.replace(tmp_path / "other", kf_path)
    with pytest.raises(IntegrityError):
        keyfile.put("local", "x", {})


def test_failed_transaction_writes_nothing(keyfile: KeyFile, kf_path: Path) -> None:
    before = kf_path.read_bytes()
    with pytest.raises(RuntimeError), keyfile.transaction() as doc:
        doc.setdefault("local", {})["y"] = {"v": 2}
        raise RuntimeError("abort")
    assert kf_path.read_bytes() == before
    assert keyfile.get("local", "y") is None


def test_b64_helpers() -> None:
    assert b64decode(b64encode(b"\x00\xff")) == b"\x00\xff"
    with pytest.raises(IntegrityError):
        b64decode("***")


_WRITER = """
import sys
from pathlib import Path
from sealtune.keys.keyfile import KeyFile
path, who, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
kf = KeyFile.open(path, sys.stdin.read())
for i in range(count):
    kf.put("race", f"{who}-{i}", {"i": i})
"""


def test_concurrent_puts_from_two_processes_lose_nothing(
    keyfile: KeyFile, kf_path: Path, passphrase: str
) -> None:
    count = 100
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(kf_path), who, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for who in ("a", "b")
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(passphrase.encode())
        proc.stdin.close()
    # Meanwhile this process writes too.
    for i in range(count):
        keyfile.put("race", f"c-{i}", {"i": i})
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()
    race = KeyFile.open(kf_path, passphrase).items("race")
    assert set(race) == {f"{w}-{i}" for w in "abc" for i in range(count)}
    assert KeyFile.open(kf_path, passphrase).get("local", "k") is not None


def test_passphrase_and_secrets_never_reach_disk(
    keyfile: KeyFile, kf_path: Path, passphrase: str
) -> None:
    secret = b"\x5a" * 32
    keyfile.put("local", "s", {"key": b64encode(secret)})
    keyfile.reload()
    needles = [
        passphrase.encode(),
        passphrase.encode("utf-16-le"),
        base64.b64encode(passphrase.encode()),
        secret,
        b64encode(secret).encode(),
    ]
    files = [p for p in kf_path.parent.iterdir() if p.is_file()]
    assert kf_path in files
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{path.name} leaks a secret"


# -- edited headers: integrity errors, refused before the KDF runs ----------------------------

_BAD_VALUES: list[Any] = [None, True, "3", 1e9, 3.0, -1, 0, 10**9, 2**64, [], {}, [3]]


def _header_mutations() -> list[tuple[str, Any]]:
    """Every kdf field set to every bad value, fields removed, and wrong shapes."""
    out: list[tuple[str, Any]] = []
    for field in ("memory_kib", "iterations", "lanes"):
        for value in _BAD_VALUES:
            out.append((f"kdf.{field}={value!r}",
                        lambda b, f=field, v=value: b["header"]["kdf"].__setitem__(f, v)))
        out.append((f"no kdf.{field}", lambda b, f=field: b["header"]["kdf"].pop(f)))
    for value in (None, 7, "", "not base64!", "QUJD", "A" * 200, ["x"]):
        out.append((f"kdf.salt={value!r}",
                    lambda b, v=value: b["header"]["kdf"].__setitem__("salt", v)))
    out += [
        ("no kdf.salt", lambda b: b["header"]["kdf"].pop("salt")),
        ("kdf.name=None", lambda b: b["header"]["kdf"].__setitem__("name", None)),
        ("no kdf.name", lambda b: b["header"]["kdf"].pop("name")),
        ("kdf=list", lambda b: b["header"].__setitem__("kdf", [1, 2])),
        ("kdf=None", lambda b: b["header"].__setitem__("kdf", None)),
        ("no kdf", lambda b: b["header"].pop("kdf")),
        ("format=7", lambda b: b["header"].__setitem__("format", 7)),
        ("no format", lambda b: b["header"].pop("format")),
        ("header=list", lambda b: b.__setitem__("header", [])),
        ("header=str", lambda b: b.__setitem__("header", "x")),
        ("no header", lambda b: b.pop("header")),
        ("nonce short", lambda b: b.__setitem__("nonce", b64encode(b"\0" * 8))),
        ("nonce long", lambda b: b.__setitem__("nonce", b64encode(b"\0" * 64))),
        ("nonce=int", lambda b: b.__setitem__("nonce", 12)),
        ("no nonce", lambda b: b.pop("nonce")),
        ("ciphertext short", lambda b: b.__setitem__("ciphertext", b64encode(b"\0" * 4))),
        ("ciphertext=None", lambda b: b.__setitem__("ciphertext", None)),
        ("body=list", lambda b: b.clear()),
    ]
    return out


def test_every_header_mutation_is_an_integrity_error_and_fast(
    keyfile: KeyFile, kf_path: Path, passphrase: str
) -> None:
    """Each field of the clear header, set to wrong types, huge and absurd values, or
    removed: an IntegrityError naming the file, raised before any costly KDF run."""
    import time

    original = kf_path.read_text()
    for label, change in _header_mutations():
        kf_path.write_text(original)
        _edit(kf_path, change)
        began = time.monotonic()
        with pytest.raises(IntegrityError) as exc:
            KeyFile.open(kf_path, passphrase)
        assert time.monotonic() - began < 2.0, label
        assert str(kf_path) in exc.value.message, label
    kf_path.write_text(original)
    assert KeyFile.open(kf_path, passphrase).get("local", "k") is not None


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"header": ' * 50_000, '{"header": "\\ud800"}', "\ufeff{}", "NaN"],
    ids=["deep-list", "deep-object", "lone-surrogate", "bom", "nan"],
)
def test_unparseable_keyring_json_is_an_integrity_error(
    kf_path: Path, passphrase: str, text: str
) -> None:
    kf_path.write_text(text, "utf-8")
    with pytest.raises(IntegrityError, match="malformed"):
        KeyFile.open(kf_path, passphrase)
    kf_path.write_bytes(b'{"header": "\xff"}')
    with pytest.raises(IntegrityError, match="malformed"):
        KeyFile.open(kf_path, passphrase)


def test_kdf_bounds_cover_what_init_writes_and_refuse_absurd_costs() -> None:
    KdfParams().validate()
    KdfParams.unsafe_fast().validate()
    KdfParams(memory_kib=2 * 1024 * 1024, iterations=16, lanes=16).validate()
    for bad in (KdfParams(iterations=17), KdfParams(iterations=10**9),
                KdfParams(memory_kib=2 * 1024 * 1024 + 1), KdfParams(lanes=17),
                KdfParams(iterations=True)):
        with pytest.raises(ConfigError, match="out of bounds"):
            bad.validate()
