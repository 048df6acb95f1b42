"""The witness: every answer of C2SP tlog-witness, its state, its files, its HTTP server."""

from __future__ import annotations

import http.client
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.core.cosignature import parse_signature_lines
from sealtune.core.note import NoteSigner, parse_checkpoint, parse_note
from sealtune.core.tlog_witness import AddCheckpoint, parse_size
from sealtune.errors import ConfigError, IntegrityError, SealtuneError, WorkspaceError
from sealtune.keys.keyfile import KdfParams
from sealtune.ledger import Ledger
from sealtune.ledger.witness import Witness, WitnessHome, lock_home, make_server

MakeLedger = Callable[..., Ledger]
Fill = Callable[[Ledger, int], None]
PASS = "witness-pass-1"


@pytest.fixture
def home(tmp_path: Path, signer: NoteSigner, origin: str) -> WitnessHome:
    home, _ = WitnessHome.init(tmp_path / "witness", name="witness.test/w1", passphrase=PASS,
                               kdf=KdfParams.unsafe_fast())
    home.add_log(origin, signer.verifier_key)
    return home


@pytest.fixture
def witness(home: WitnessHome) -> Witness:
    return Witness(signer=home.signer(PASS), logs=home.logs(), home=home, clock=lambda: 1e9)


def submit(witness: Witness, ledger: Ledger, old: int) -> tuple[int, bytes]:
    note = ledger.seal()
    size = parse_checkpoint(parse_note(note)[0]).size
    proof = ledger.anchors.global_consistency_proof(old, size)
    reply = witness.add_checkpoint(AddCheckpoint(old, tuple(proof), note).to_body())
    return reply.status, reply.body


def test_cosigns_a_growing_log(make_ledger: MakeLedger, fill: Fill, witness: Witness,
                               home: WitnessHome, origin: str) -> None:
    ledger = make_ledger()
    fill(ledger, 3)
    status, body = submit(witness, ledger, 0)
    assert status == 200
    (line,) = parse_signature_lines(body.decode())
    text = parse_note(ledger.seal())[0]
    cosig = home.signer(PASS).verifier().verify(text, line)
    assert cosig is not None and cosig.timestamp == 1_000_000_000
    fill(ledger, 4)
    assert submit(witness, ledger, 3)[0] == 200
    assert submit(witness, ledger, 7)[0] == 200  # the same checkpoint again: cosigned again
    assert home.load_state()[origin][0] == 7


def test_refusals(make_ledger: MakeLedger, fill: Fill, witness: Witness, home: WitnessHome,
                  origin: str, tmp_path: Path) -> None:
    ledger = make_ledger()
    fill(ledger, 5)
    assert submit(witness, ledger, 0)[0] == 200
    fill(ledger, 2)
    # a stale old size: 409 with the size held, whatever the direction
    for old in (0, 3, 6):
        status, body = submit(witness, ledger, old)
        assert (status, parse_size(body)) == (409, 5)
    # old size beyond the checkpoint: 400
    note = ledger.seal()
    assert witness.add_checkpoint(AddCheckpoint(9, (), note).to_body()).status == 400
    # signed by a key the witness does not trust for this origin: 403
    stranger = NoteSigner(Ed25519PrivateKey.generate(), "sealtune.test/ledger-key")
    forged = stranger.sign(parse_note(note)[0])
    assert witness.add_checkpoint(AddCheckpoint(5, (), forged).to_body()).status == 403
    # an edited checkpoint under the trusted key's signature: 403
    edited = note.replace("\n7\n", "\n8\n", 1)
    assert witness.add_checkpoint(AddCheckpoint(5, (), edited).to_body()).status == 403
    # another origin: 404
    with Ledger.open(tmp_path / "other.db", signer=stranger, origin="other.test/log") as other:
        assert submit(witness, other, 0)[0] == 404
    # a proof that does not lead from the held tree: 422
    bad = tuple(bytes(32) for _ in ledger.anchors.global_consistency_proof(5, 7))
    assert witness.add_checkpoint(AddCheckpoint(5, bad, note).to_body()).status == 422
    # malformed bodies: 400, and nothing changed
    for body in (b"", b"old 5\n", b"old 5\n\nnot a note\n", b"\xff"):
        assert witness.add_checkpoint(body).status == 400
    assert home.load_state()[origin][0] == 5


def test_a_fork_is_refused(make_ledger: MakeLedger, fill: Fill, witness: Witness, db: Path,
                           tmp_path: Path) -> None:
    ledger = make_ledger()
    fill(ledger, 4)
    ledger.close()
    shutil.copy(db, tmp_path / "fork.db")
    ledger = make_ledger()
    fill(ledger, 3)
    assert submit(witness, ledger, 0)[0] == 200  # the witness saw size 7
    fork = make_ledger(path=tmp_path / "fork.db")
    for i in range(3):
        fork.append(actor="mallory", action="key.use", resource=f"f{i}")
    status, body = submit(witness, fork, 7)  # same size, another root
    assert (status, parse_size(body)) == (409, 7)
    fork.append(actor="mallory", action="key.use", resource="more")
    assert submit(witness, fork, 7)[0] == 422  # no consistency proof from the tree it saw


def test_racing_requests_never_roll_the_state_back(make_ledger: MakeLedger, fill: Fill,
                                                   witness: Witness, home: WitnessHome,
                                                   origin: str) -> None:
    ledger = make_ledger()
    fill(ledger, 2)
    assert submit(witness, ledger, 0)[0] == 200
    bodies = []
    for _ in range(6):
        fill(ledger, 1)
        note = ledger.seal()
        size = parse_checkpoint(parse_note(note)[0]).size
        bodies.append(AddCheckpoint(2, tuple(ledger.anchors.global_consistency_proof(2, size)),
                                    note).to_body())
    results: list[int] = []
    threads = [threading.Thread(target=lambda b=b: results.append(witness.add_checkpoint(b).status))
               for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(200) == 1 and results.count(409) == 5  # all were based on size 2
    assert home.load_state()[origin][0] > 2
    assert submit(witness, ledger, 2)[0] == 409


def test_no_cosignature_unless_the_state_is_on_disk(make_ledger: MakeLedger, fill: Fill,
                                                    witness: Witness, home: WitnessHome) -> None:
    ledger = make_ledger()
    fill(ledger, 2)
    body = AddCheckpoint(0, (), ledger.seal()).to_body()
    home.state_path.unlink()
    home.state_path.mkdir()  # the atomic write onto it fails: the disk write fails
    with pytest.raises((OSError, SealtuneError)):
        witness.add_checkpoint(body)  # no reply at all (the server answers 500)
    home.state_path.rmdir()
    home.save_state({})
    assert witness.add_checkpoint(body).status == 200  # its state in memory did not move either
    assert witness.add_checkpoint(body).status == 409  # now it holds size 2


def test_files_fail_closed(home: WitnessHome, origin: str, signer: NoteSigner) -> None:
    assert b"ed25519" not in home.keyring_path.read_bytes()  # the key is sealed
    assert all(PASS.encode() not in f.read_bytes() for f in home.root.iterdir() if f.is_file())
    with pytest.raises(IntegrityError):
        home.signer("wrong passphrase")
    home.add_log(origin, signer.verifier_key)  # idempotent
    assert len(home.logs()[origin].verifiers) == 1
    text = home.logs_path.read_text()
    home.logs_path.write_text(text.replace("keys", "kees"))
    with pytest.raises(ConfigError, match="log\\[0\\]"):
        home.logs()
    home.logs_path.write_text(text.replace(signer.verifier_key, signer.verifier_key[:-4] + "AAA="))
    with pytest.raises(ConfigError, match="keys\\[0\\]"):
        home.logs()
    home.logs_path.unlink()
    with pytest.raises(ConfigError, match="not found"):
        home.logs()
    home.state_path.write_text('{"format": 1, "logs": {"o": {"size": -1, "root": ""}}}')
    with pytest.raises(IntegrityError, match="malformed"):
        home.load_state()
    home.state_path.unlink()
    with pytest.raises(IntegrityError, match="missing"):
        Witness(signer=home.signer(PASS), logs={}, home=home)
    with pytest.raises(WorkspaceError, match="already holds"):
        WitnessHome.init(home.root, name="w", passphrase=PASS, kdf=KdfParams.unsafe_fast())


@pytest.fixture
def server(witness: Witness, home: WitnessHome) -> Iterator[str]:
    srv = make_server(witness, port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.url
    srv.shutdown()
    srv.server_close()


def _request(url: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_http_surface(server: str, make_ledger: MakeLedger, fill: Fill, home: WitnessHome) -> None:
    assert server.startswith("http://127.0.0.1:")  # loopback by default
    ledger = make_ledger()
    fill(ledger, 2)
    body = AddCheckpoint(0, (), ledger.seal()).to_body()
    assert _request(server, "POST", "/add-checkpoint", body)[0] == 200
    assert _request(server, "GET", "/add-checkpoint")[0] == 405
    assert _request(server, "POST", "/other", body)[0] == 404
    assert _request(server, "POST", "/add-checkpoint", b"x" * (65 * 1024))[0] == 413
    status, _ = _request(server, "POST", "/add-checkpoint", b"old 2\n\n",
                         {"Content-Length": "abc"})
    assert status == 400
    first = lock_home(home)
    try:
        with pytest.raises(WorkspaceError, match="another witness"):
            lock_home(home)
    finally:
        os.close(first)
