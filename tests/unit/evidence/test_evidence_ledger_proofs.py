"""The ledger part of a bundle, against a real workspace ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.core.note import NoteSigner, NoteVerifier
from sealtune.errors import UsageError
from sealtune.evidence import ledger_proofs, run_events
from sealtune.ledger import LedgerError
from sealtune.workspace import Workspace


def _events(ws: Workspace) -> list[int]:
    since = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(5):
        ws.audit("data.quarantine", f"dataset/ds/r{n}")
    ws.audit("key.use", "local:k1")  # another resource: not the step's
    return run_events(ws.ledger, since=since, resources=["dataset/ds"])


def _ok(checks: list[ledger_proofs.Check]) -> dict[str, bool]:
    return {c.name: c.ok for c in checks}


def test_collect_proves_each_event_and_check_verifies_them(workspace: Workspace) -> None:
    seqs = _events(workspace)
    assert len(seqs) == 5
    ev = ledger_proofs.collect(workspace.ledger, seqs)
    assert set(ev.events) == set(seqs)
    assert sorted(ev.files) == sorted([ledger_proofs.CHECKPOINT] + [
        f"ledger/proofs/{s}.json" for s in seqs])
    checks = ledger_proofs.check(ev.files, events=ev.events,
                                 verifiers=[workspace.ledger_verifier()],
                                 origin=workspace.origin)
    assert _ok(checks) == {"ledger.checkpoint": True, "ledger.proofs": True}


def test_proofs_fail_for_another_key_origin_leaf_or_set_of_events(workspace: Workspace) -> None:
    seqs = _events(workspace)
    ev = ledger_proofs.collect(workspace.ledger, seqs)
    good = dict(verifiers=[workspace.ledger_verifier()], origin=workspace.origin)
    other = NoteVerifier.from_key_string(
        NoteSigner(Ed25519PrivateKey.generate(), "x").verifier_key)
    assert _ok(ledger_proofs.check(ev.files, events=ev.events, verifiers=[other],
                                   origin=workspace.origin)) == {
        "ledger.checkpoint": False, "ledger.proofs": False}
    assert not any(_ok(ledger_proofs.check(ev.files, events=ev.events, verifiers=good[
        "verifiers"], origin="sealtune.local/other/ledger")).values())
    wrong_leaf = {**ev.events, seqs[0]: "0" * 64}
    assert _ok(ledger_proofs.check(ev.files, events=wrong_leaf, **good))["ledger.proofs"] is False
    fewer = {s: d for s, d in ev.events.items() if s != seqs[0]}
    assert _ok(ledger_proofs.check(ev.files, events=fewer, **good))["ledger.proofs"] is False
    missing = {n: d for n, d in ev.files.items() if n != f"ledger/proofs/{seqs[0]}.json"}
    assert _ok(ledger_proofs.check(missing, events=ev.events, **good))["ledger.proofs"] is False
    no_cp = {n: d for n, d in ev.files.items() if n != ledger_proofs.CHECKPOINT}
    assert _ok(ledger_proofs.check(no_cp, events=ev.events, **good))["ledger.checkpoint"] is False


def test_a_proof_against_an_older_checkpoint_is_refused(workspace: Workspace) -> None:
    seqs = _events(workspace)
    old = ledger_proofs.collect(workspace.ledger, seqs)
    workspace.audit("data.read", "dataset/ds")
    new = ledger_proofs.collect(workspace.ledger, seqs)
    assert old.files[ledger_proofs.CHECKPOINT] != new.files[ledger_proofs.CHECKPOINT]
    mixed = {**new.files, f"ledger/proofs/{seqs[0]}.json": old.files[
        f"ledger/proofs/{seqs[0]}.json"]}
    checks = ledger_proofs.check(mixed, events=new.events, verifiers=[
        workspace.ledger_verifier()], origin=workspace.origin)
    assert "another checkpoint" in checks[1].explanation and not checks[1].ok
    doc = json.loads(old.files[f"ledger/proofs/{seqs[0]}.json"])
    assert doc["format"] == "sealtune-inclusion-v1"


def test_events_must_exist_and_a_step_must_name_its_resources(workspace: Workspace) -> None:
    with pytest.raises(LedgerError):
        ledger_proofs.collect(workspace.ledger, [10_000])
    with pytest.raises(UsageError):
        run_events(workspace.ledger, since=datetime.now(UTC), resources=[])
