"""The registry signing key on a PKCS#11 token (a real SoftHSM2 token), through the CLI.

init --pkcs11-module/--pkcs11-token -> train -> register: the model
signature and the registry snapshots are signed on the token (CKM_ECDSA),
the private key is sensitive and non-extractable there and absent from the
keyring file, and the stock ``model_signing verify key`` verifies an
exported version with the public key ``models signer`` writes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from sealtune.config import Pkcs11Config

from .conftest import WorkspaceFactory
from .test_registry import MODEL_SIGNING, Ctx, _env, _flip, _records


def _token(cfg: Pkcs11Config) -> Any:
    """The test's token (tokens made after the module was loaded need a re-initialise)."""
    import pkcs11
    from pkcs11.exceptions import NoSuchToken

    lib = pkcs11.lib(cfg.module)
    try:
        return lib.get_token(token_label=cfg.token_label)
    except NoSuchToken:
        lib.reinitialize()
        return lib.get_token(token_label=cfg.token_label)


def _private_key_attributes(cfg: Pkcs11Config, label: str) -> dict[str, bool]:
    from pkcs11 import Attribute, ObjectClass

    token = _token(cfg)
    with token.open(user_pin=os.environ[cfg.pin_env]) as s:
        [obj] = list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                    Attribute.LABEL: label}))
        return {a.name: bool(obj[a]) for a in (Attribute.SENSITIVE, Attribute.EXTRACTABLE,
                                               Attribute.SIGN, Attribute.DECRYPT)}


def test_a_version_signed_on_the_token_verifies_with_stock_model_signing(
        softhsm: Pkcs11Config, tmp_path: Path) -> None:
    env = {**_env(tmp_path, tmp_path / "home"), softhsm.pin_env: os.environ[softhsm.pin_env],
           "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"]}
    ctx = Ctx(env, tmp_path / "home", tmp_path)
    ctx.ok("init", "--pkcs11-module", softhsm.module, "--pkcs11-token", softhsm.token_label)
    ctx.ok("models", "make-tiny", str(tmp_path / "base"))
    ctx.ok("data", "ingest", str(_records(tmp_path / "support.jsonl")), "--name", "support",
           "--format", "alpaca")
    ctx.ok("train", "--dataset", "support", "--base", str(tmp_path / "base"), "--out-name",
           "bot", "--max-steps", "2", "--batch-size", "4", "--max-length", "48",
           "--threads", "1")
    job = json.loads(ctx.ok("jobs", "list", "--json"))[-1]["id"]
    assert ctx.ok("models", "register", "bot", "--from-job", job).strip() == "bot@v1"

    events = [json.loads(line) for line in ctx.ok("audit", "log", "--json").splitlines()]
    (created,) = [e for e in events if e["action"] == "registry.key_create"]
    assert created["details"]["backend"] == "pkcs11"
    label = created["details"]["label"]
    assert _private_key_attributes(softhsm, label) == {
        "SENSITIVE": True, "EXTRACTABLE": False, "SIGN": True, "DECRYPT": False}
    from sealtune.registry.signing import RECORD, SECTION
    from sealtune.workspace import Workspace

    ws = Workspace.open(ctx.home, passphrase=env["SEALTUNE_PASSPHRASE"])
    try:
        assert ws.keyfile.get(SECTION, RECORD) is None  # nothing in the keyring file
    finally:
        ws.close()

    out, pub = tmp_path / "export", tmp_path / "registry.pub"
    ctx.ok("models", "export", "bot@v1", str(out))
    ctx.ok("models", "signer", "--out", str(pub))
    import hashlib

    assert created["details"]["keyid"] == "sha256:" + hashlib.sha256(pub.read_bytes()).hexdigest()
    verify = [*MODEL_SIGNING, "verify", "key", str(out), "--signature", str(out / "model.sig"),
              "--public_key", str(pub)]
    res = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    _flip(out / "adapter_model.safetensors")
    res = subprocess.run(verify, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode != 0

    # the snapshots are signed on the token too: the state verifies, and without
    # the token's PIN the registry cannot be read (its key is on the token only)
    assert "verified" in ctx.ok("models", "verify", "bot@v1")
    ctx.ok("models", "promote", "bot@v1", "--stage", "dev", "--unsafe-skip-gate")
    res = ctx.run("models", "show", "bot@dev", env={softhsm.pin_env: ""})
    assert res.returncode != 0 and softhsm.pin_env in res.stderr, res.stderr


def test_the_token_key_signs_snapshots_and_refuses_other_algorithms(
        make_workspace: WorkspaceFactory, softhsm: Pkcs11Config) -> None:
    import pytest
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from sealtune.errors import IntegrityError, UsageError
    from sealtune.keys.pkcs11_ecdsa import Pkcs11EcdsaKey
    from sealtune.registry.signing import RECORD, SECTION, registry_key
    from sealtune.registry.snapshot import open_snapshot, sign_snapshot

    ws = make_workspace(pkcs11=softhsm, full=True)
    key = registry_key(ws)
    assert isinstance(key, Pkcs11EcdsaKey)
    assert not hasattr(key, "private_bytes")  # nothing to export
    assert registry_key(ws).public_key() == key.public_key()  # found again, not regenerated
    assert ws.keyfile.get(SECTION, RECORD) is None
    signed = sign_snapshot({"models": {}}, version=4, key=key)
    assert open_snapshot(signed, key.public_key(), what="s").version == 4
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(IntegrityError, match="does not verify"):
        open_snapshot(signed, other.public_key(), what="s")
    with pytest.raises(UsageError, match="SHA-256 only"):
        key.sign(b"x", ec.ECDSA(hashes.SHA384()))
    # another workspace on the same token has its own key (labels are scoped)
    assert registry_key(make_workspace(pkcs11=softhsm, full=True)).public_key() != (
        key.public_key())


def test_a_workspace_whose_key_is_in_the_keyring_file_keeps_it_when_a_token_appears(
        make_workspace: WorkspaceFactory, softhsm: Pkcs11Config) -> None:
    from dataclasses import replace

    from sealtune.registry.signing import registry_key

    ws = make_workspace(full=True)
    before = registry_key(ws).public_key()  # in the keyring file
    ws.config = replace(ws.config, pkcs11=softhsm)
    assert registry_key(ws).public_key() == before  # what it signed still verifies


def test_processes_racing_to_create_the_token_key_make_one(
        make_workspace: WorkspaceFactory, softhsm: Pkcs11Config, passphrase: str) -> None:
    import sys

    ws = make_workspace(pkcs11=softhsm, full=True)
    ws.close()
    script = ("import sys; from pathlib import Path; from sealtune.workspace import Workspace;"
              "from sealtune.registry.signing import registry_key, key_id;"
              "ws = Workspace.open(Path(sys.argv[1]), passphrase=sys.argv[2]);"
              "print(key_id(registry_key(ws).public_key()))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(ws.root), passphrase],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len({out.strip() for out, _err in results}) == 1, results
    from pkcs11 import Attribute, ObjectClass

    with _token(softhsm).open(user_pin=os.environ[softhsm.pin_env]) as s:
        assert len(list(s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))) == 1
