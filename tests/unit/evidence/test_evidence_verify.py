"""Writing and verifying a bundle: each check passes on a good bundle and fails on its attack.

The attacks that keep every signature valid are made with the workspace's own
evidence key (an insider who holds it): they show that the semantic checks
(chain, ledger leaves, BOM and ε) stand on their own, not only the digests.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealtune.errors import IntegrityError, UsageError
from sealtune.evidence import (
    Pins,
    _json,
    dsse,
    evidence_signer,
    layout,
    verify_bundle,
    verify_files,
)
from sealtune.evidence.bundle import MANIFEST_TYPE
from sealtune.keys.keyfile import KdfParams
from sealtune.workspace import Workspace

from .conftest import Run, sha


def _pins(ws: Workspace, *, ledger: bool = True) -> Pins:
    return Pins(evidence=[evidence_signer(ws).public_key],
                ledger=[ws.ledger_verifier()] if ledger else [])


def _failed(report: Any) -> set[str]:
    return {c.name for c in report.failed}


def _payload(envelope: bytes) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(envelope)["payload"]))


def _resign(ws: Workspace, files: dict[str, bytes], *,
            statement: Callable[[str, dict[str, Any]], None] | None = None,
            manifest: Callable[[dict[str, Any]], None] | None = None) -> dict[str, bytes]:
    """Rewrite statements and the manifest consistently and sign them with the real key."""
    signer = evidence_signer(ws)
    out = dict(files)
    for name in [n for n in out if layout.STATEMENT.fullmatch(n)]:
        doc = _payload(out[name])
        if statement is not None:
            statement(name, doc)
        out[name] = dsse.sign(_json.canonical(doc), signer=signer.sign,
                              signer_keyid=signer.keyid)
    doc = _payload(out[layout.MANIFEST])
    doc["files"] = {n: {"sha256": sha(d), "size": len(d)} for n, d in sorted(out.items())
                    if n != layout.MANIFEST}
    if manifest is not None:
        manifest(doc)
    out[layout.MANIFEST] = dsse.sign(_json.canonical(doc), payload_type=MANIFEST_TYPE,
                                     signer=signer.sign, signer_keyid=signer.keyid)
    return out


def test_a_recorded_run_verifies_as_a_directory_and_as_a_tar(
        make_run: Callable[..., Run], tmp_path: Path) -> None:
    run = make_run()
    written = run.recorder.write(tmp_path / "b")
    run.recorder.write(tmp_path / "b.tar", tar=True)
    for path in (tmp_path / "b", tmp_path / "b.tar"):
        report = verify_bundle(path, _pins(run.ws))
        assert report.ok, report.to_json()
        names = [c.name for c in report.checks]
        assert names == ["bundle.read", "keys.evidence", "manifest.signature",
                         "manifest.files", "statement.data", "statement.train",
                         "statements.chain", "ledger.key", "ledger.checkpoint", "ledger.proofs",
                         "ledger.witnesses", "bom.ds", "training.j1"]
    files = layout.read_dir(tmp_path / "b")
    assert sorted(n for n in files if n.startswith("ledger/proofs/")) == sorted(
        f"ledger/proofs/{s}.json" for s in run.seqs["data"] + run.seqs["train"])
    assert written.keyid == dsse.keyid(evidence_signer(run.ws).public_key)
    written_events = [e for e in run.ws.ledger.entries() if e.action == "evidence.bundle_written"]
    first = written_events[0]
    assert (first.details["kind"], first.details["manifest_sha256"]) == (
        "directory", hashlib.sha256(files["manifest.json"]).hexdigest())
    assert [e.details["kind"] for e in written_events] == ["directory", "tar"]


def test_the_ledger_key_is_vouched_for_by_the_manifest_unless_pinned(
        bundle_dir: tuple[Run, Path]) -> None:
    run, path = bundle_dir
    report = verify_bundle(path, _pins(run.ws, ledger=False))
    assert report.ok and "not pinned" in next(
        c.explanation for c in report.checks if c.name == "ledger.key")
    other = Workspace.init(path.parent / "ws2", passphrase="x" * 12,
                           kdf=KdfParams.unsafe_fast())
    try:
        pins = Pins(evidence=[evidence_signer(run.ws).public_key],
                    ledger=[other.ledger_verifier()])
        assert _failed(verify_bundle(path, pins)) == {"ledger.key"}
    finally:
        other.close()


def test_a_wrong_or_missing_evidence_key_trusts_nothing(bundle_dir: tuple[Run, Path]) -> None:
    run, path = bundle_dir
    wrong = Pins(evidence=[Ed25519PrivateKey.generate().public_key()])
    assert _failed(verify_bundle(path, wrong)) == {"manifest.signature"}
    by_id = Pins(evidence_ids=["sha256:" + "0" * 64])
    assert _failed(verify_bundle(path, by_id)) == {"keys.evidence", "manifest.signature"}
    right_id = Pins(evidence_ids=[evidence_signer(run.ws).keyid])
    assert verify_bundle(path, right_id).ok  # keys/evidence.pub, trusted through its pinned id


def test_a_bundle_signed_by_another_key_fails_even_with_its_own_keys_inside(
        bundle_dir: tuple[Run, Path], tmp_path: Path) -> None:
    run, path = bundle_dir
    files = layout.read_dir(path)
    attacker = Ed25519PrivateKey.generate()
    kid = dsse.keyid(attacker.public_key())
    from sealtune.evidence.pins import public_pem

    files[layout.EVIDENCE_KEY] = public_pem(attacker.public_key()).encode()
    doc = _payload(files[layout.MANIFEST])
    doc["files"][layout.EVIDENCE_KEY] = {"sha256": sha(files[layout.EVIDENCE_KEY]),
                                         "size": len(files[layout.EVIDENCE_KEY])}
    files[layout.MANIFEST] = dsse.sign(_json.canonical(doc), payload_type=MANIFEST_TYPE,
                                       signer=attacker.sign, signer_keyid=kid)
    assert "manifest.signature" in _failed(verify_files(files, _pins(run.ws)))


def test_insider_edits_that_keep_signatures_valid_are_caught_by_the_semantic_checks(
        bundle_dir: tuple[Run, Path]) -> None:
    run, path = bundle_dir
    files = layout.read_dir(path)
    pins = _pins(run.ws)
    assert verify_files(files, pins).ok

    def train_reads_other_data(name: str, doc: dict[str, Any]) -> None:
        if name.endswith("/train.dsse.json"):
            doc["predicate"]["buildDefinition"]["resolvedDependencies"][1]["digest"][
                "sha256"] = "9" * 64

    def other_epsilon(name: str, doc: dict[str, Any]) -> None:
        for b in doc["predicate"]["runDetails"]["byproducts"]:
            if b["name"].startswith("training/"):
                b["annotations"]["epsilon_spent"] = 0.5

    def other_leaf(name: str, doc: dict[str, Any]) -> None:
        doc["predicate"]["runDetails"]["byproducts"][0]["digest"]["sha256"] = "8" * 64

    def drop_bom(name: str, doc: dict[str, Any]) -> None:
        doc["predicate"]["runDetails"]["byproducts"] = [
            b for b in doc["predicate"]["runDetails"]["byproducts"]
            if not b["name"].startswith("bom/")]

    def other_run(name: str, doc: dict[str, Any]) -> None:
        if name.endswith("/data.dsse.json"):
            doc["predicate"]["runDetails"]["metadata"]["invocationId"] = "run-2"

    cases: list[tuple[Any, Any, set[str]]] = [
        (train_reads_other_data, None, {"statements.chain"}),
        (other_epsilon, None, {"training.j1"}),
        (other_leaf, None, {"ledger.proofs"}),
        (drop_bom, None, {"bom.ds"}),
        # An unreadable statement names nothing: its events and BOM are then unaccounted for.
        (other_run, None, {"statement.data", "statements.chain", "ledger.proofs", "bom.ds"}),
        (None, lambda m: m.update(inputs={}), {"statements.chain"}),
        (None, lambda m: m.update(steps=["train", "data"]), {"statements.chain"}),
        (None, lambda m: m["ledger"].update(origin="sealtune.local/other/ledger"),
         {"ledger.checkpoint", "ledger.proofs"}),
        (None, lambda m: m.update(workspace_id="other"),
         {"statement.data", "statement.train", "statements.chain", "ledger.proofs", "bom.ds",
          "training.j1"}),
    ]
    for statement, manifest, expected in cases:
        tampered = _resign(run.ws, files, statement=statement, manifest=manifest)
        assert _failed(verify_files(tampered, pins)) == expected, (statement, manifest)


def test_a_sandbox_measurement_must_fold_into_its_digest(bundle_dir: tuple[Run, Path]) -> None:
    run, path = bundle_dir
    files = layout.read_dir(path)
    pins = _pins(run.ws)

    def edit(change: Callable[[dict[str, Any]], None]) -> Callable[[str, dict[str, Any]], None]:
        def apply(name: str, doc: dict[str, Any]) -> None:
            if name.endswith("/train.dsse.json"):
                change(doc["predicate"]["buildDefinition"]["internalParameters"]["sandbox"])
        return apply

    for change, words in [
            (lambda m: m.update(code="sha256:" + "7" * 64), "not that of its parts"),
            (lambda m: m["inputs"].update(dataset="sha256:" + "6" * 64), "not that of its parts"),
            (lambda m: m.pop("config"), "lacks its parts")]:
        report = verify_files(_resign(run.ws, files, statement=edit(change)), pins)
        [check] = [c for c in report.failed if c.name == "statement.train"]
        assert words in check.explanation
    assert verify_files(files, pins).ok


def test_files_must_match_the_manifest_exactly(bundle_dir: tuple[Run, Path]) -> None:
    run, path = bundle_dir
    files, pins = layout.read_dir(path), _pins(run.ws)
    proof = next(n for n in files if n.startswith("ledger/proofs/"))
    extra = {**files, "ledger/proofs/999999.json": files[proof]}
    assert "manifest.files" in _failed(verify_files(extra, pins))
    missing = {n: d for n, d in files.items() if n != "bom/ds.cdx.json"}
    assert "manifest.files" in _failed(verify_files(missing, pins))
    no_statement = {n: d for n, d in files.items() if n != "statements/train.dsse.json"}
    assert {"manifest.files", "statement.train"} <= _failed(verify_files(no_statement, pins))


def test_the_recorder_refuses_what_would_not_verify(make_run: Callable[..., Run],
                                                    tmp_path: Path) -> None:
    run = make_run()
    rec = run.recorder
    with pytest.raises(UsageError, match="neither a run input"):
        rec.step("assess", "assess", inputs={"model": "7" * 64}, outputs={}, config={})
    with pytest.raises(UsageError, match="already recorded"):
        rec.step("data", "data", inputs={}, outputs={}, config={})
    with pytest.raises(UsageError, match="kind"):
        rec.step("x", "bake", inputs={}, outputs={}, config={})
    with pytest.raises(UsageError, match="secrets"):
        rec.step("x", "assess", inputs={}, outputs={}, config={"passphrase": "p"})
    with pytest.raises(UsageError, match="already attached"):
        rec.attach_bom("data", dataset="ds", bom=b"{}")
    with pytest.raises(UsageError, match="no step"):
        rec.attach_bom("nope", dataset="ds2", bom=b"{}")
    (tmp_path / "exists").mkdir()
    with pytest.raises(UsageError, match="exists"):
        rec.write(tmp_path / "exists")
    rec.step("assess", "assess", inputs={"model": sha(b"model")}, outputs={}, config={},
             ledger_seqs=run.seqs["data"][:1])
    with pytest.raises(UsageError, match="two steps"):
        rec.write(tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert not list(tmp_path.glob(".b.partial-*"))  # no partial directory left


def test_a_run_without_dp_records_and_verifies_no_epsilon(make_run: Callable[..., Run],
                                                          tmp_path: Path) -> None:
    run = make_run(epsilon=None)
    run.recorder.write(tmp_path / "b.tar", tar=True)
    report = verify_bundle(tmp_path / "b.tar", _pins(run.ws))
    assert report.ok
    assert "no differential privacy" in report.checks[-1].explanation


def test_raise_if_failed_names_the_failed_checks(bundle_dir: tuple[Run, Path]) -> None:
    _, path = bundle_dir
    report = verify_bundle(path, Pins(evidence=[Ed25519PrivateKey.generate().public_key()]))
    with pytest.raises(IntegrityError, match=r"manifest\.signature") as exc:
        report.raise_if_failed()
    assert exc.value.exit_code == 3


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                     | st.floats(allow_nan=False, allow_infinity=False),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=12)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["manifest", "statement", "byproduct", "file"]), junk=_JSON)
def test_verify_never_raises_on_signed_nonsense(bundle_dir: tuple[Run, Path], where: str,
                                                junk: Any) -> None:
    """Even content signed by the pinned key is parsed defensively: a failed check, no crash."""
    run, path = bundle_dir
    files = layout.read_dir(path)

    def statement(name: str, doc: dict[str, Any]) -> None:
        if where == "statement" and name.endswith("/train.dsse.json"):
            doc["predicate"]["buildDefinition"]["resolvedDependencies"] = [junk]
        if where == "byproduct":
            doc["predicate"]["runDetails"]["byproducts"].append(junk)

    def manifest(doc: dict[str, Any]) -> None:
        if where == "manifest":
            doc["files"] = junk
        if where == "file":
            doc["inputs"] = {"raw": junk}

    if where == "file":
        files["training/j1.json"] = _json.canonical(junk)
    report = verify_files(_resign(run.ws, files, statement=statement, manifest=manifest),
                          _pins(run.ws))
    assert not report.ok
    assert "bundle.content" not in _failed(report)  # refused by a named check, not the net
