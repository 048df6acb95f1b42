"""The model registry on s3:// + postgresql:// storage, through the CLI as a user runs it.

Real servers: moto's S3 server on 127.0.0.1 (a test double of S3) and a
throwaway PostgreSQL cluster on a Unix socket. init --store --meta -> train ->
register twice -> the registry's blobs are in the bucket and its catalogue in
PostgreSQL (nothing under <workspace>/registry/ but caches) -> promote,
rollback, revoke -> every mutation of the bucket or the database is caught
(a flipped byte, an edited record, a swapped alias, a replayed snapshot) ->
keys rotate --retire-old writes re-wrapped generations and every version
still verifies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import boto3

from .test_registry import Ctx, _env, _records


def _pg(url: str, statement: str, *args: object) -> list[tuple[object, ...]]:
    import psycopg

    from sealtune.storage.postgresql import split_url

    conninfo, schema = split_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cur = conn.execute(statement, args)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


KILLER = """
import os, signal, sys
from pathlib import Path
from sealtune.registry.versions import register_model
from sealtune.workspace import Workspace

ws = Workspace.open(Path(sys.argv[1]))
meta = ws.meta
real = meta.put

def put(collection, key, value, *, expect):
    if collection == "registry-snapshots":  # the version record is written, the head not
        os.kill(os.getpid(), signal.SIGKILL)
    return real(collection, key, value, expect=expect)

meta.put = put
register_model(ws, "bot", job=sys.argv[2])
"""


def _content_keys(bucket: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix="ws/registry/content-")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _trained(tmp_path: Path, bucket: str, postgres_url: str) -> Ctx:
    ctx = Ctx(_env(tmp_path, tmp_path / "home"), tmp_path / "home", tmp_path)
    ctx.ok("init", "--store", f"s3://{bucket}/ws", "--meta", postgres_url)
    ctx.ok("models", "make-tiny", str(tmp_path / "base"))
    ctx.ok("data", "ingest", str(_records(tmp_path / "support.jsonl")), "--name", "support",
           "--format", "alpaca")
    ctx.ok("train", "--dataset", "support", "--base", str(tmp_path / "base"), "--out-name",
           "bot", "--max-steps", "2", "--batch-size", "4", "--max-length", "48",
           "--threads", "1")
    job = json.loads(ctx.ok("jobs", "list", "--json"))[-1]["id"]
    assert ctx.ok("models", "register", "bot", "--from-job", job).strip() == "bot@v1"
    assert ctx.ok("models", "register", "bot", "--from-job", job).strip() == "bot@v2"
    ctx.env["JOB"] = job
    return ctx


def test_registry_on_s3_and_postgresql(tmp_path: Path, s3_bucket: str,
                                       postgres_url: str) -> None:
    ctx = _trained(tmp_path, s3_bucket, postgres_url)
    s3 = boto3.client("s3")
    # Where it lives: the bucket and the database, not the workspace.
    sealed = _content_keys(s3_bucket)
    assert sealed and all(k.endswith("/g1") for k in sealed)
    assert not (ctx.home / "registry" / "catalogue.db").exists()
    assert [r[0] for r in _pg(postgres_url, "SELECT key FROM records WHERE collection = "
                                            "'registry-versions' ORDER BY key")] == [
        "bot@v1", "bot@v2"]
    assert "verified" in ctx.ok("models", "verify", "bot@v1")
    # kill -9 during a register, after its version record and before the head moved.
    killed = subprocess.run([sys.executable, "-c", KILLER, str(ctx.home), ctx.env["JOB"]],
                            env=ctx.env, capture_output=True, text=True, timeout=300,
                            check=False)
    assert killed.returncode == -9, killed.stderr
    assert ("bot@v3",) in _pg(postgres_url, "SELECT key FROM records WHERE collection = "
                                            "'registry-versions'")  # the orphan record
    listed = json.loads(ctx.ok("models", "list", "--json"))
    assert [r["ref"] for r in listed] == ["bot@v1", "bot@v2"]  # consistent: the old head
    assert ctx.ok("models", "register", "bot", "--from-job", ctx.env["JOB"]).strip() == (
        "bot@v4")  # the orphan's number is never reused
    assert "verified" in ctx.ok("models", "verify", "bot@v4")
    skip = "--unsafe-skip-gate"
    ctx.ok("models", "promote", "bot@v1", "--stage", "prod", skip)
    ctx.ok("models", "promote", "bot@v2", "--stage", "prod", skip)
    assert "bot@v1" in ctx.ok("models", "rollback", "bot", "--stage", "prod")
    ctx.ok("models", "revoke", "bot@v2", "--reason", "canary leaked")
    assert ctx.run("models", "promote", "bot@v2", "--stage", "prod", skip).returncode == 2

    # A flipped byte in a sealed blob in the bucket: caught, naming the file.
    shown = json.loads(ctx.ok("models", "show", "bot@v1", "--json"))
    blob = shown["record"]["files"]["adapter_model.safetensors"]["blob"].split(":")[1]
    key = f"ws/registry/content-sha256/{blob}/g1"
    original = s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    flipped = bytearray(original)
    flipped[-40] ^= 1
    s3.put_object(Bucket=s3_bucket, Key=key, Body=bytes(flipped))
    res = ctx.run("models", "verify", "bot@v1")
    assert res.returncode == 3 and "adapter_model.safetensors" in res.stderr, res.stderr
    s3.put_object(Bucket=s3_bucket, Key=key, Body=original)
    ctx.ok("models", "verify", "bot@v1")

    # Edited metadata in PostgreSQL: caught.
    [(value,)] = _pg(postgres_url, "SELECT value FROM records WHERE collection = "
                                   "'registry-versions' AND key = 'bot@v1'")
    record = json.loads(bytes(value))  # type: ignore[arg-type]
    record["adapter"] = not record["adapter"]
    _pg(postgres_url, "UPDATE records SET value = %s WHERE collection = 'registry-versions' "
                      "AND key = 'bot@v1'", json.dumps(record).encode())
    res = ctx.run("models", "verify", "bot@v1")
    assert res.returncode == 3 and "edited" in res.stderr, res.stderr
    _pg(postgres_url, "UPDATE records SET value = %s WHERE collection = 'registry-versions' "
                      "AND key = 'bot@v1'", bytes(value))  # type: ignore[arg-type]

    # A swapped alias (a forged snapshot blob made head): the signature fails.
    [(head,)] = _pg(postgres_url, "SELECT value FROM records WHERE collection = 'registry' "
                                  "AND key = 'head'")
    doc = json.loads(bytes(head))  # type: ignore[arg-type]
    snap_key = f"ws/registry/sha256/{doc['blob'][7:]}"
    outer = json.loads(s3.get_object(Bucket=s3_bucket, Key=snap_key)["Body"].read())
    body = json.loads(base64.b64decode(outer["snapshot"]))
    body["state"]["models"]["bot"]["stages"]["prod"] = 2
    outer["snapshot"] = base64.b64encode(json.dumps(body).encode()).decode()
    forged = json.dumps(outer).encode()
    name = hashlib.sha256(forged).hexdigest()
    s3.put_object(Bucket=s3_bucket, Key=f"ws/registry/sha256/{name}", Body=forged)
    _pg(postgres_url, "UPDATE records SET value = %s WHERE collection = 'registry' AND "
                      "key = 'head'", json.dumps({**doc, "blob": f"sha256:{name}"}).encode())
    res = ctx.run("models", "show", "bot@prod")
    assert res.returncode == 3 and "signature does not verify" in res.stderr, res.stderr
    # A replayed older snapshot as head (the rollback attack): refused.
    [(older,)] = _pg(postgres_url, "SELECT value FROM records WHERE collection = "
                                   "'registry-snapshots' ORDER BY key DESC LIMIT 1 OFFSET 1")
    _pg(postgres_url, "UPDATE records SET value = %s WHERE collection = 'registry' AND "
                      "key = 'head'", bytes(older))  # type: ignore[arg-type]
    res = ctx.run("models", "show", "bot")
    assert res.returncode == 3 and "rollback" in res.stderr, res.stderr
    _pg(postgres_url, "UPDATE records SET value = %s WHERE collection = 'registry' AND "
                      "key = 'head'", bytes(head))  # type: ignore[arg-type]
    ctx.ok("models", "show", "bot@prod")

    # A rotation writes re-wrapped generations; after retiring v1 every version verifies.
    ctx.ok("keys", "rotate", "platform", "--retire-old")
    rotated = _content_keys(s3_bucket)
    assert rotated and all(k.endswith("/g2") for k in rotated), rotated
    assert "verified" in ctx.ok("models", "verify", "bot@v1")
    assert "verified" in ctx.ok("models", "verify", "bot@v2")
