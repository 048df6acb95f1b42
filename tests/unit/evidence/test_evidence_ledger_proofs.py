"""The ledger part of a bundle, against a real workspace ledger: global proofs, cosignatures."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.config import LedgerConfig, WitnessPolicyConfig, load_config
from sealtune.core.cosignature import (
    CosignatureSigner,
    CosignatureVerifier,
    check_cosignatures,
    parse_signature_lines,
)
from sealtune.core.note import NoteSigner, NoteVerifier, parse_note
from sealtune.errors import IntegrityError, PolicyViolation, UsageError
from sealtune.evidence import ledger_proofs, run_events
from sealtune.keys.keyfile import KdfParams
from sealtune.ledger import LedgerError
from sealtune.outputs import write_atomic
from sealtune.workspace import Workspace


def _events(ws: Workspace) -> list[int]:
    since = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(5):
        ws.audit("data.quarantine", f"dataset/ds/r{n}")
    ws.audit("key.use", "local:k1")  # another resource: not the step's
    return run_events(ws.ledger, since=since, resources=["dataset/ds"])


def _ok(checks: list[ledger_proofs.Check]) -> dict[str, bool]:
    return {c.name: c.ok for c in checks}


def _check(ws: Workspace, ev: ledger_proofs.LedgerEvidence, **kwargs: object) -> dict[str, bool]:
    options: dict[str, object] = {"events": ev.events, "verifiers": [ws.ledger_verifier()],
                                  "origin": ws.origin, **kwargs}
    return _ok(ledger_proofs.check(ev.files, **options))  # type: ignore[arg-type]


def test_collect_proves_each_event_against_the_global_checkpoint(workspace: Workspace) -> None:
    seqs = _events(workspace)
    assert len(seqs) == 5
    ev = ledger_proofs.collect(workspace, seqs, run_id="run-1")
    assert set(ev.events) == set(seqs) and ev.cosigned == ev.required == 0
    assert all(d.startswith("sha256:") for d in ev.events.values())
    assert sorted(ev.files) == sorted([ledger_proofs.CHECKPOINT] + [
        f"ledger/proofs/{s}.json" for s in seqs])  # no witness policy: no cosignatures file
    note = ev.files[ledger_proofs.CHECKPOINT].decode()
    assert note.startswith(workspace.origin + "\n")  # the global origin, not a segment's
    assert workspace.trust.read() == note  # sealing moved the trust state to it
    assert ev.size == int(note.split("\n")[1])
    for s in seqs:
        doc = json.loads(ev.files[f"ledger/proofs/{s}.json"])
        assert doc["format"] == "sealtune-global-inclusion-v1" and doc["checkpoint"] == note
    checks = ledger_proofs.check(ev.files, events=ev.events,
                                 verifiers=[workspace.ledger_verifier()], origin=workspace.origin)
    assert _ok(checks) == {"ledger.checkpoint": True, "ledger.proofs": True,
                           "ledger.witnesses": True}
    assert "no witnesses pinned" in checks[2].explanation


def test_proofs_fail_for_another_key_origin_leaf_or_set_of_events(workspace: Workspace) -> None:
    seqs = _events(workspace)
    ev = ledger_proofs.collect(workspace, seqs, run_id="run-1")
    other = NoteVerifier.from_key_string(
        NoteSigner(Ed25519PrivateKey.generate(), "x").verifier_key)
    assert _check(workspace, ev, verifiers=[other]) == {
        "ledger.checkpoint": False, "ledger.proofs": False, "ledger.witnesses": True}
    assert not any(list(_check(workspace, ev, origin="sealtune.local/other/ledger").values())[:2])
    wrong_leaf = {**ev.events, seqs[0]: "sha256:" + "0" * 64}
    assert _check(workspace, ev, events=wrong_leaf)["ledger.proofs"] is False
    as_pruned = {**ev.events, seqs[0]: "rfc6962-leaf:" + "0" * 64}
    assert _check(workspace, ev, events=as_pruned)["ledger.proofs"] is False
    fewer = {s: d for s, d in ev.events.items() if s != seqs[0]}
    assert _check(workspace, ev, events=fewer)["ledger.proofs"] is False
    missing = {n: d for n, d in ev.files.items() if n != f"ledger/proofs/{seqs[0]}.json"}
    assert _check(workspace, replace(ev, files=missing))["ledger.proofs"] is False
    no_cp = {n: d for n, d in ev.files.items() if n != ledger_proofs.CHECKPOINT}
    assert _check(workspace, replace(ev, files=no_cp))["ledger.checkpoint"] is False


def test_a_proof_against_an_older_checkpoint_or_a_segment_checkpoint_is_refused(
        workspace: Workspace) -> None:
    seqs = _events(workspace)
    old = ledger_proofs.collect(workspace, seqs, run_id="run-1")
    workspace.audit("data.read", "dataset/ds")
    new = ledger_proofs.collect(workspace, seqs, run_id="run-1")
    assert old.files[ledger_proofs.CHECKPOINT] != new.files[ledger_proofs.CHECKPOINT]
    mixed = {**new.files, f"ledger/proofs/{seqs[0]}.json": old.files[
        f"ledger/proofs/{seqs[0]}.json"]}
    checks = ledger_proofs.check(mixed, events=new.events, verifiers=[
        workspace.ledger_verifier()], origin=workspace.origin)
    assert "another checkpoint" in checks[1].explanation and not checks[1].ok
    segment = workspace.ledger.latest_checkpoint()
    assert segment is not None
    swapped = {**new.files, ledger_proofs.CHECKPOINT: segment.encode()}
    checks = ledger_proofs.check(swapped, events=new.events, verifiers=[
        workspace.ledger_verifier()], origin=workspace.origin)
    assert not checks[0].ok and "global checkpoint" in checks[0].explanation


def test_events_must_exist_and_a_step_must_name_its_resources(workspace: Workspace) -> None:
    with pytest.raises(LedgerError):
        ledger_proofs.collect(workspace, [10_000], run_id="run-1")
    with pytest.raises(UsageError):
        run_events(workspace.ledger, since=datetime.now(UTC), resources=[])


def test_pruned_events_are_named_by_their_leaf_hash_and_still_verify(
        tmp_path: Path, passphrase: str) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast(),
                        ledger=LedgerConfig(segment_max_entries=4))
    try:
        seqs = _events(ws)
        for n in range(8):  # fill and close later segments
            ws.audit("key.use", f"local:k{n}")
        hashes = {s: ws.ledger.entry(s).leaf_hash for s in seqs}
        future = datetime.now(UTC) + timedelta(days=400)
        assert ws.ledger.prune(timedelta(days=180), now=future).entries_deleted >= 4
        ws.audit("data.read", "dataset/ds")  # kept: a run citing old and new events
        seqs.append(max(e.seq for e in ws.ledger.entries()))
        kept = {e.seq for e in ws.ledger.entries()}
        gone = [s for s in seqs if s not in kept]
        assert gone and len(gone) < len(seqs)
        ev = ledger_proofs.collect(ws, seqs, run_id="run-1")
        for s in seqs:
            alg = "rfc6962-leaf" if s in gone else "sha256"
            assert ev.events[s].split(":")[0] == alg
            doc = json.loads(ev.files[f"ledger/proofs/{s}.json"])
            assert (doc["leaf"] is None) == (s in gone)
        assert ev.events[gone[0]] == "rfc6962-leaf:" + hashes[gone[0]].hex()
        checks = ledger_proofs.check(ev.files, events=ev.events, verifiers=[ws.ledger_verifier()],
                                     origin=ws.origin)
        assert all(c.ok for c in checks), checks
        assert f"{len(gone)} of them pruned by retention" in checks[1].explanation
        named_by_bytes = {**ev.events, gone[0]: "sha256:" + "1" * 64}
        problems = ledger_proofs.check(ev.files, events=named_by_bytes,
                                       verifiers=[ws.ledger_verifier()], origin=ws.origin)
        assert "was pruned" in problems[1].explanation and not problems[1].ok
    finally:
        ws.close()


def _witness(name: str) -> CosignatureSigner:
    return CosignatureSigner(Ed25519PrivateKey.generate(), name)


def _set_policy(ws: Workspace, k: int, keys: list[str]) -> None:
    cfg = load_config(ws.root / "config.toml")
    policy = WitnessPolicyConfig(k=k, keys=tuple(keys), urls=())
    write_atomic(ws.root / "config.toml",
                 replace(cfg, ledger=replace(cfg.ledger, witnesses=policy)).to_toml().encode())


def test_cosignatures_are_checked_against_the_pinned_witnesses(workspace: Workspace) -> None:
    seqs = _events(workspace)
    ev = ledger_proofs.collect(workspace, seqs, run_id="run-1")
    text = parse_note(ev.files[ledger_proofs.CHECKPOINT].decode())[0]
    w1, w2, w3 = _witness("w.test/1"), _witness("w.test/2"), _witness("w.test/3")
    keys = [w.verifier() for w in (w1, w2, w3)]
    lines = w1.cosign(text, 1_800_000_000) + w2.cosign(text, 1_800_000_001)
    files = {**ev.files, ledger_proofs.COSIGNATURES: lines.encode()}
    signed = replace(ev, files=files)
    checks = ledger_proofs.check(signed.files, events=ev.events,
                                 verifiers=[workspace.ledger_verifier()], origin=workspace.origin,
                                 witnesses=(keys, 2))
    assert checks[2].ok and "2 pinned witnesses cosigned" in checks[2].explanation
    assert "w.test/1 at 2027-01-15T08:00:00Z" in checks[2].explanation
    assert _check(workspace, signed, witnesses=(keys, 3))["ledger.witnesses"] is False
    assert _check(workspace, ev, witnesses=(keys, 1))["ledger.witnesses"] is False  # none
    # An impostor using a pinned witness's name has another key id: ignored, not counted.
    impostor = CosignatureSigner(Ed25519PrivateKey.generate(), "w.test/2")
    forged = w1.cosign(text, 1_800_000_000) + impostor.cosign(text, 1)
    assert _check(workspace, replace(ev, files={**ev.files, ledger_proofs.COSIGNATURES:
                                                forged.encode()}),
                  witnesses=(keys, 2))["ledger.witnesses"] is False
    size = text.split("\n")[1]
    other = text.replace(f"\n{size}\n", f"\n{int(size) + 1}\n", 1)  # another checkpoint
    moved = lines.split("\n")[0] + "\n" + w2.cosign(other, 1_800_000_000)
    check = ledger_proofs.check({**ev.files, ledger_proofs.COSIGNATURES: moved.encode()},
                                events=ev.events, verifiers=[workspace.ledger_verifier()],
                                origin=workspace.origin, witnesses=(keys, 2))[2]
    assert not check.ok and "does not verify for this checkpoint" in check.explanation
    garbled = {**ev.files, ledger_proofs.COSIGNATURES: b"not a line\n"}
    assert _check(workspace, replace(ev, files=garbled),
                  witnesses=(keys, 1))["ledger.witnesses"] is False


def test_collect_with_a_policy_needs_k_valid_cosignatures(tmp_path: Path,
                                                          passphrase: str) -> None:
    ws = Workspace.init(tmp_path / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast())
    w1, w2 = _witness("w.test/1"), _witness("w.test/2")
    ws.close()
    _set_policy(ws, 2, [w1.verifier_key, w2.verifier_key])
    ws = Workspace.open(ws.root, passphrase=passphrase)
    try:
        with pytest.raises(PolicyViolation, match="0 of the 2 required witnesses") as info:
            ledger_proofs.collect(ws, [1], run_id="run-1")
        assert "no witness URLs are configured" in info.value.message
        short = [e for e in ws.ledger.entries() if e.action == "evidence.witnesses_short"]
        assert short and short[-1].outcome == "failure"
        assert short[-1].details["required"] == 2
    finally:
        ws.close()
    # What an operator's 'audit checkpoint --witness' stored for the checkpoint counts.
    ws = Workspace.open(ws.root, passphrase=passphrase)
    try:
        note = ws.seal_ledger()
        text = parse_note(note)[0]
        size = int(text.split("\n")[1])
        lines = parse_signature_lines(w1.cosign(text, 5) + w2.cosign(text, 6))
        good = check_cosignatures(text, lines, [CosignatureVerifier.from_key_string(k)
                                                for k in (w1.verifier_key, w2.verifier_key)])
        ws.ledger.anchors.add_cosignatures(size, good.valid)
        ev = ledger_proofs.collect(ws, [1], run_id="run-2")
        assert (ev.cosigned, ev.required) == (2, 2)
        assert ev.files[ledger_proofs.COSIGNATURES].decode().count("\n") == 2
    finally:
        ws.close()


def test_a_witness_that_saw_more_stops_the_bundle_of_a_rolled_back_ledger(
        tmp_path: Path, passphrase: str) -> None:
    from sealtune.ledger.witness import Witness, WitnessHome, make_server

    ws = Workspace.init(tmp_path / "ws", passphrase=passphrase, kdf=KdfParams.unsafe_fast())
    home, vkey = WitnessHome.init(tmp_path / "w1", name="w.test/1", passphrase=passphrase,
                                  kdf=KdfParams.unsafe_fast())
    home.add_log(ws.origin, ws.ledger_signer().verifier_key)
    ws.close()
    server = make_server(Witness(signer=home.signer(passphrase), logs=home.logs(), home=home),
                         port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = load_config(ws.root / "config.toml")
        policy = WitnessPolicyConfig(k=1, keys=(vkey,), urls=(server.url,))
        write_atomic(ws.root / "config.toml", replace(
            cfg, ledger=replace(cfg.ledger, witnesses=policy)).to_toml().encode())
        for n in range(2):
            if n == 1:  # what a backup holds: the ledger as the witness first saw it
                for name in ("ledger.db", "ledger.trust"):
                    shutil.copy2(ws.root / name, tmp_path / name)
            ws = Workspace.open(ws.root, passphrase=passphrase)
            try:
                ws.audit("data.read", "dataset/ds")
                ev = ledger_proofs.collect(ws, [1], run_id=f"run-{n}")
                assert (ev.cosigned, ev.required) == (1, 1)
            finally:
                ws.close()
        for name in ("ledger.db", "ledger.trust"):  # both rolled back together
            for suffix in ("-wal", "-shm"):
                (ws.root / (name + suffix)).unlink(missing_ok=True)
            shutil.copy2(tmp_path / name, ws.root / name)
        ws = Workspace.open(ws.root, passphrase=passphrase)
        try:
            with pytest.raises(IntegrityError, match="rolled back or forked"):
                ledger_proofs.collect(ws, [1], run_id="run-2")
            short = [e for e in ws.ledger.entries() if e.action == "evidence.witnesses_short"]
            assert short[-1].details["evidence"] is True
        finally:
            ws.close()
    finally:
        server.shutdown()
        server.server_close()
