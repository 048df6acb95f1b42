"""The ``local`` keyring against a real keyring file (no mocks)."""

from __future__ import annotations

import contextlib
import secrets

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealtune.errors import IntegrityError, KeyDestroyedError, KeyNotFoundError, UsageError
from sealtune.keys.base import Keyring, WrappedKey, keyring_for
from sealtune.keys.keyfile import KeyFile, b64decode, b64encode
from sealtune.keys.local import LocalKeyring
from sealtune.workspace import Workspace

AAD = b"sealtune-file:0001"


@pytest.fixture
def ring(bare_workspace: Workspace) -> LocalKeyring:
    kr = keyring_for(bare_workspace, "local")
    assert isinstance(kr, LocalKeyring)
    return kr


def _second_view(ws: Workspace, passphrase: str) -> LocalKeyring:
    """The same keyring file opened independently, as another process would."""
    return LocalKeyring(KeyFile.open(ws.keyfile_path, passphrase))


def test_registered_and_satisfies_protocol(ring: LocalKeyring) -> None:
    assert isinstance(ring, Keyring)
    assert ring.backend == "local"


@pytest.mark.parametrize(
    ("algorithm", "kek_len", "dk_len"), [("aes-256-gcm", 32, 32), ("sm4-gcm", 16, 16)]
)
def test_round_trip_and_blob_layout(
    ring: LocalKeyring, bare_workspace: Workspace, algorithm: str, kek_len: int, dk_len: int
) -> None:
    info = ring.create("k", algorithm=algorithm)  # type: ignore[arg-type]
    assert (info.current, info.versions, info.state, info.algorithm) == (
        1,
        (1,),
        "active",
        algorithm,
    )
    dk = secrets.token_bytes(dk_len)
    w = ring.wrap("k", dk, aad=AAD)
    assert (w.kek_uri, w.version, w.backend, w.name) == ("local:k", 1, "local", "k")
    assert len(w.blob) == 12 + dk_len + 16
    assert dk not in w.blob
    assert ring.unwrap(w, aad=AAD) == dk
    rec = bare_workspace.keyfile.get("local", "k")
    assert rec is not None
    assert len(b64decode(rec["keys"]["1"])) == kek_len


def test_sm4_blob_is_standard_sm4_gcm(ring: LocalKeyring, bare_workspace: Workspace) -> None:
    """Known-answer style check: the blob opens with plain SM4-GCM under the stored KEK."""
    ring.create("s", algorithm="sm4-gcm")
    dk = secrets.token_bytes(16)
    blob = ring.wrap("s", dk, aad=AAD).blob
    rec = bare_workspace.keyfile.get("local", "s")
    assert rec is not None
    kek = b64decode(rec["keys"]["1"])
    nonce, ct, tag = blob[:12], blob[12:-16], blob[-16:]
    dec = Cipher(algorithms.SM4(kek), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(AAD)
    assert dec.update(ct) + dec.finalize() == dk


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dk=st.binary(min_size=1, max_size=64),
    aad=st.binary(max_size=256),
    other=st.binary(max_size=256),
)
def test_property_round_trip_and_aad_binding(
    ring: LocalKeyring, dk: bytes, aad: bytes, other: bytes
) -> None:
    for name, alg in (("pa", "aes-256-gcm"), ("ps", "sm4-gcm")):
        with contextlib.suppress(UsageError):  # created by an earlier example
            ring.create(name, algorithm=alg)  # type: ignore[arg-type]
        w = ring.wrap(name, dk, aad=aad)
        assert ring.unwrap(w, aad=aad) == dk
        if other != aad:
            with pytest.raises(IntegrityError):
                ring.unwrap(w, aad=other)


def test_nonces_are_fresh(ring: LocalKeyring) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    dk = secrets.token_bytes(32)
    blobs = {ring.wrap("k", dk, aad=AAD).blob[:12] for _ in range(50)}
    assert len(blobs) == 50


def test_tampering_fails_opaquely(ring: LocalKeyring) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    dk = secrets.token_bytes(32)
    w = ring.wrap("k", dk, aad=AAD)
    for i in range(len(w.blob)):
        bad = bytearray(w.blob)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError) as exc:
            ring.unwrap(WrappedKey(w.kek_uri, w.version, bytes(bad)), aad=AAD)
        assert "local:k" in str(exc.value)
        assert dk.hex() not in str(exc.value)
    for blob in (b"", w.blob[:27], w.blob[:-1], w.blob + b"\x00"):
        with pytest.raises(IntegrityError):
            ring.unwrap(WrappedKey(w.kek_uri, w.version, blob), aad=AAD)
    with pytest.raises(IntegrityError):
        ring.unwrap(w, aad=AAD + b"x")
    with pytest.raises(IntegrityError):
        ring.unwrap(w, aad=b"")


def test_wrapped_key_does_not_open_under_another_key(ring: LocalKeyring) -> None:
    ring.create("a", algorithm="aes-256-gcm")
    ring.create("b", algorithm="aes-256-gcm")
    w = ring.wrap("a", secrets.token_bytes(32), aad=AAD)
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey("local:b", w.version, w.blob), aad=AAD)


def test_rotation_keeps_old_versions_usable(ring: LocalKeyring) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    dk1, dk2 = secrets.token_bytes(32), secrets.token_bytes(32)
    w1 = ring.wrap("k", dk1, aad=AAD)
    info = ring.rotate("k")
    assert (info.current, info.versions) == (2, (1, 2))
    w2 = ring.wrap("k", dk2, aad=AAD)
    assert w2.version == 2
    assert ring.unwrap(w1, aad=AAD) == dk1
    assert ring.unwrap(w2, aad=AAD) == dk2
    # A v1 blob relabelled as v2 does not authenticate under the v2 key.
    with pytest.raises(IntegrityError):
        ring.unwrap(WrappedKey(w1.kek_uri, 2, w1.blob), aad=AAD)
    with pytest.raises(KeyNotFoundError):
        ring.unwrap(WrappedKey(w1.kek_uri, 3, w1.blob), aad=AAD)


def test_retire_really_deletes_old_versions(
    ring: LocalKeyring, bare_workspace: Workspace, passphrase: str
) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    w1 = ring.wrap("k", secrets.token_bytes(32), aad=AAD)
    ring.rotate("k")
    rec = bare_workspace.keyfile.get("local", "k")
    assert rec is not None
    v1_key = rec["keys"]["1"]
    info = ring.retire("k", below=2)
    assert (info.current, info.versions) == (2, (2,))
    with pytest.raises(KeyDestroyedError, match="retired"):
        ring.unwrap(w1, aad=AAD)
    # Gone from the file itself, as seen by a fresh unlock.
    fresh = KeyFile.open(bare_workspace.keyfile_path, passphrase)
    stored = fresh.get("local", "k")
    assert stored is not None
    assert set(stored["keys"]) == {"2"}
    assert v1_key not in repr(fresh.items("local"))
    # The current version cannot be retired; versions start at 1.
    with pytest.raises(UsageError):
        ring.retire("k", below=3)
    with pytest.raises(UsageError):
        ring.retire("k", below=0)
    assert ring.retire("k", below=1).versions == (2,)


def test_destroy_shreds_and_leaves_a_tombstone(
    ring: LocalKeyring, bare_workspace: Workspace, passphrase: str
) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    w = ring.wrap("k", secrets.token_bytes(32), aad=AAD)
    ring.rotate("k")
    ring.destroy("k")
    info = ring.describe("k")
    assert (info.state, info.current, info.versions) == ("destroyed", 0, ())
    with pytest.raises(KeyDestroyedError):
        ring.unwrap(w, aad=AAD)
    with pytest.raises(KeyDestroyedError):
        ring.wrap("k", secrets.token_bytes(32), aad=AAD)
    with pytest.raises(KeyDestroyedError):
        ring.rotate("k")
    with pytest.raises(KeyDestroyedError):
        ring.destroy("k")
    with pytest.raises(UsageError, match="already exists"):
        ring.create("k", algorithm="aes-256-gcm")
    stored = KeyFile.open(bare_workspace.keyfile_path, passphrase).get("local", "k")
    assert stored is not None
    assert stored["keys"] == {}
    assert stored["state"] == "destroyed"


def test_unknown_keys_and_bad_input(ring: LocalKeyring) -> None:
    with pytest.raises(KeyNotFoundError):
        ring.describe("nope")
    with pytest.raises(KeyNotFoundError):
        ring.wrap("nope", b"k" * 32, aad=AAD)
    with pytest.raises(KeyNotFoundError):
        ring.unwrap(WrappedKey("local:nope", 1, b"\x00" * 60), aad=AAD)
    with pytest.raises(KeyNotFoundError):
        ring.rotate("nope")
    with pytest.raises(UsageError):
        ring.unwrap(WrappedKey("pkcs11:nope", 1, b"\x00" * 60), aad=AAD)
    with pytest.raises(UsageError):
        ring.create("bad/name", algorithm="aes-256-gcm")
    with pytest.raises(UsageError):
        ring.create("k", algorithm="aes-128-cbc")  # type: ignore[arg-type]
    ring.create("k", algorithm="aes-256-gcm")
    with pytest.raises(UsageError):
        ring.create("k", algorithm="aes-256-gcm")
    for dk in (b"", b"x" * 65):
        with pytest.raises(UsageError):
            ring.wrap("k", dk, aad=AAD)


def test_list_and_describe_never_show_key_material(
    ring: LocalKeyring, bare_workspace: Workspace
) -> None:
    ring.create("b", algorithm="sm4-gcm")
    ring.create("a", algorithm="aes-256-gcm")
    ring.create("c", algorithm="aes-256-gcm")
    ring.destroy("c")
    infos = ring.list()
    assert [(i.name, i.algorithm, i.state) for i in infos] == [
        ("a", "aes-256-gcm", "active"),
        ("b", "sm4-gcm", "active"),
        ("c", "aes-256-gcm", "destroyed"),
    ]
    assert all(i.uri == f"local:{i.name}" for i in infos)
    text = repr(infos)
    for rec in bare_workspace.keyfile.items("local").values():
        for key in rec["keys"].values():
            assert key not in text


def test_changes_by_another_process_are_seen(
    ring: LocalKeyring, bare_workspace: Workspace, passphrase: str
) -> None:
    ring.create("k", algorithm="aes-256-gcm")
    w1 = ring.wrap("k", b"1" * 32, aad=AAD)
    other = _second_view(bare_workspace, passphrase)
    other.rotate("k")
    w2 = ring.wrap("k", b"2" * 32, aad=AAD)
    assert w2.version == 2
    assert other.unwrap(w2, aad=AAD) == b"2" * 32
    other.retire("k", below=2)
    with pytest.raises(KeyDestroyedError):
        ring.unwrap(w1, aad=AAD)
    other.destroy("k")
    with pytest.raises(KeyDestroyedError):
        ring.unwrap(w2, aad=AAD)


def test_keys_survive_reopening(bare_workspace: Workspace, passphrase: str) -> None:
    ring = LocalKeyring(bare_workspace.keyfile)
    ring.create("k", algorithm="sm4-gcm")
    dk = secrets.token_bytes(16)
    w = ring.wrap("k", dk, aad=AAD)
    assert _second_view(bare_workspace, passphrase).unwrap(w, aad=AAD) == dk


def test_a_stored_kek_edit_is_caught(ring: LocalKeyring, bare_workspace: Workspace) -> None:
    """A KEK replaced inside the (unlocked) file makes old wraps fail closed."""
    ring.create("k", algorithm="aes-256-gcm")
    w = ring.wrap("k", b"d" * 32, aad=AAD)
    with bare_workspace.keyfile.transaction() as doc:
        doc["local"]["k"]["keys"]["1"] = b64encode(secrets.token_bytes(32))
    with pytest.raises(IntegrityError):
        ring.unwrap(w, aad=AAD)
