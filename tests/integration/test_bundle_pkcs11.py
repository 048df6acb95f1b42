"""The evidence key on a PKCS#11 token (SoftHSM2): generated there, never extractable.

A real SoftHSM2 token; signing runs on it with CKM_EDDSA. The bundle it
signs verifies with the pinned public key, and in-toto verifies its
statement envelopes as well.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from in_toto.models.metadata import Metadata
from securesystemslib.signer import SSlibKey

from sealtune.cli import main as cli_main
from sealtune.config import Pkcs11Config
from sealtune.evidence import (
    EvidenceRecorder,
    evidence_signer,
    load_pins,
    run_events,
    verify_bundle,
)
from sealtune.evidence.signer import RECORD, SECTION
from sealtune.keys.pkcs11_ed25519 import Pkcs11Ed25519Key

from .conftest import WorkspaceFactory

D = "ab" * 32


def _token_objects(cfg: Pkcs11Config, label: str) -> dict[str, dict[str, bool]]:
    import os

    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token = pkcs11.lib(cfg.module).get_token(token_label=cfg.token_label)
    with token.open(user_pin=os.environ[cfg.pin_env]) as s:
        out = {}
        for cls, attrs in ((ObjectClass.PRIVATE_KEY, (Attribute.SENSITIVE,
                                                      Attribute.EXTRACTABLE, Attribute.SIGN,
                                                      Attribute.DECRYPT)),
                           (ObjectClass.PUBLIC_KEY, (Attribute.VERIFY,))):
            [obj] = list(s.get_objects({Attribute.CLASS: cls, Attribute.LABEL: label}))
            out[cls.name] = {a.name: bool(obj[a]) for a in attrs}
        return out


def test_the_evidence_key_lives_on_the_token_and_signs_a_bundle_that_verifies(
        make_workspace: WorkspaceFactory, softhsm: Pkcs11Config, tmp_path: Path,
        passphrase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(pkcs11=softhsm, full=True)
    signer = evidence_signer(ws)
    assert signer.backend == "pkcs11"
    assert evidence_signer(ws).keyid == signer.keyid  # found again, not regenerated
    assert ws.keyfile.get(SECTION, RECORD) is None  # nothing in the keyring file
    label = f"sealtune/{ws.config.workspace_id}/evidence/ed25519"
    assert Pkcs11Ed25519Key(softhsm, workspace_id=ws.config.workspace_id,
                            purpose="evidence").supported()
    objects = _token_objects(softhsm, label)
    assert objects["PRIVATE_KEY"] == {"SENSITIVE": True, "EXTRACTABLE": False, "SIGN": True,
                                      "DECRYPT": False}
    created = [e for e in ws.ledger.entries() if e.action == "evidence.key_create"]
    assert [e.details["backend"] for e in created] == ["pkcs11"]

    since = datetime.now(UTC) - timedelta(seconds=1)
    ws.audit("data.ingest", "dataset/hsm")
    rec = EvidenceRecorder(ws, "run-hsm", inputs={"raw": D})
    rec.step("data", "data", inputs={"raw": D}, outputs={"hsm/data": "cd" * 32},
             config={"dataset": "hsm"},
             ledger_seqs=run_events(ws.ledger, since=since, resources=["dataset/hsm"]))
    rec.write(tmp_path / "b")
    monkeypatch.setenv("SEALTUNE_PASSPHRASE", passphrase)
    assert cli_main(["bundle", "keys", "--out", str(tmp_path / "pins.json"),
                     "--home", str(ws.root)]) == 0
    assert verify_bundle(tmp_path / "b", load_pins([str(tmp_path / "pins.json")])).ok
    assert cli_main(["bundle", "verify", str(tmp_path / "b"), "--key",
                     str(tmp_path / "pins.json")]) == 0

    key = SSlibKey.from_crypto(signer.public_key, keyid=signer.keyid)
    env = Metadata.from_dict(json.loads((tmp_path / "b/statements/data.dsse.json").read_text()))
    env.verify_signature({"keyid": key.keyid, **key.to_dict()})


def test_processes_racing_to_create_the_evidence_key_make_one(
        make_workspace: WorkspaceFactory, softhsm: Pkcs11Config, passphrase: str) -> None:
    """Six first uses at once: one key pair on the token, the same key id for all."""
    import os
    import subprocess
    import sys

    import pkcs11
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import NoSuchToken

    ws = make_workspace(pkcs11=softhsm, full=True)
    ws.close()
    script = ("import sys; from pathlib import Path; from sealtune.workspace import Workspace;"
              "from sealtune.evidence.signer import evidence_signer;"
              "ws = Workspace.open(Path(sys.argv[1]), passphrase=sys.argv[2]);"
              "print(evidence_signer(ws).keyid)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(ws.root), passphrase],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len({out.strip() for out, _err in results}) == 1, results
    lib = pkcs11.lib(softhsm.module)
    try:
        token = lib.get_token(token_label=softhsm.token_label)
    except NoSuchToken:
        lib.reinitialize()
        token = lib.get_token(token_label=softhsm.token_label)
    with token.open(user_pin=os.environ[softhsm.pin_env]) as s:
        assert len(list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))) == 1
