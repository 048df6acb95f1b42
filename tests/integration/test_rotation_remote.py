"""Key rotation for copies published to S3: new generations, a checked retire, kill -9 midway.

Real servers: moto's S3 server on 127.0.0.1 (a test double of S3) and, for the
PostgreSQL variant, a throwaway cluster on a Unix socket; the catalogue is
SQLite in the other. Through the CLI as a user runs it: init --store s3://
-> ingest -> train -> rotate -> retire the old version -> the bucket's copies
still fetch, verify and open under the new version, and training from a
fetched copy works. A rotation SIGKILLed between two blob writes leaves every
record naming a complete generation that still opens; the next rotate
completes it and the retirement prunes the orphaned blobs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..conftest import cli_env, ok, run

TRAIN = ["--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--max-length", "32",
         "--threads", "1"]


@pytest.fixture
def env(tmp_path: Path, s3_env: str) -> dict[str, str]:
    """After the S3 server's variables are set (they are copied)."""
    return cli_env(tmp_path, COLUMNS="400")



def _raw(path: Path) -> Path:
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"question {i} about order {i * 7}"},
        {"role": "assistant", "content": f"answer {i}"}]}) + "\n" for i in range(24)))
    return path


def _keys(bucket: str, prefix: str) -> list[str]:
    import boto3

    listed = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _wrapped(bucket: str, key: str) -> list[str]:
    import boto3

    from sealtune.keys.remote import wraps_of

    return wraps_of(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _meta_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "postgresql":
        return ["--meta", request.getfixturevalue("postgres_url")]
    return []


# The PostgreSQL catalogue runs the same MetaStore conformance suite as SQLite in CI
# (tests/unit/storage); its end-to-end variant here is kept out of CI for time.
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def meta(request: pytest.FixtureRequest) -> list[str]:
    return _meta_args(request)


def test_rotate_republishes_and_retire_keeps_remote_copies_open(
        env: dict[str, str], s3_bucket: str, meta: list[str], tmp_path: Path) -> None:
    from sealtune.train.tiny import make_tiny

    home = Path(env["SEALTUNE_HOME"])
    base = make_tiny(tmp_path / "base", seed=0)
    ok(env, "init", "--store", f"s3://{s3_bucket}/ws", *meta)
    ok(env, "keys", "create", "customer")
    ok(env, "data", "ingest", str(_raw(tmp_path / "raw.jsonl")), "--name", "support",
       "--key", "customer")
    ok(env, "train", "--dataset", "support", "--base", str(base), "--out-name", "m1", *TRAIN)
    sealed = "ws/datasets/support/data.jsonl.sealed"
    assert _wrapped(s3_bucket, sealed) == ["local:customer@1"]

    # Without a rotation, retiring v1 would strand the bucket's copies: refused, listed.
    res = run(env, "keys", "retire", "customer", "--below", "2")
    assert res.returncode != 0 and "datasets/support (generation 1" in res.stderr
    assert "models/m1 (generation 1" in res.stderr

    out = ok(env, "keys", "rotate", "customer")
    assert "re-published datasets/support@g2" in out and "re-published models/m1@g2" in out
    assert _wrapped(s3_bucket, "ws/datasets/support@g2/data.jsonl.sealed") == [
        "local:customer@2"]
    assert _wrapped(s3_bucket, sealed) == ["local:customer@1"]  # write-once: untouched
    assert "2 published artifact" in ok(env, "storage", "verify")

    ok(env, "keys", "retire", "customer", "--below", "2")
    # The superseded generation is gone (no Object Lock here); the current one stays.
    assert _keys(s3_bucket, "ws/datasets/support/") == []
    assert "ws/datasets/support@g2/data.jsonl.sealed" in _keys(s3_bucket, "ws/datasets/")
    assert "2 published artifact" in ok(env, "storage", "verify")

    # A fresh copy from the bucket opens under v2 and trains.
    shutil.rmtree(home / "datasets" / "support")
    _fetch(env, "datasets", "support")
    ok(env, "data", "show", "support")
    ok(env, "train", "--dataset", "support", "--base", str(base), "--out-name", "m2", *TRAIN)
    shutil.rmtree(home / "models" / "m1")
    _fetch(env, "models", "m1")
    weights = next((home / "models" / "m1").glob("*.sealed"))
    ok(env, "unseal", str(weights), str(tmp_path / "weights.out"))
    assert (tmp_path / "weights.out").stat().st_size > 0
    # Rotating again moves every record on, with nothing stale left to refuse.
    ok(env, "keys", "rotate", "customer", "--retire-old")
    assert "3 published artifact" in ok(env, "storage", "verify")

    # Destroying the key says which published copies it shreds; they no longer open.
    out = ok(env, "keys", "destroy", "customer", "--yes")
    assert "published copy now unrecoverable: datasets/support" in out
    assert "published copy now unrecoverable: models/m2" in out
    shutil.rmtree(home / "models" / "m1")
    _fetch(env, "models", "m1")
    weights = next((home / "models" / "m1").glob("*.sealed"))
    res = run(env, "unseal", str(weights), str(tmp_path / "gone.out"))
    assert res.returncode != 0 and not (tmp_path / "gone.out").exists()


def _fetch(env: dict[str, str], collection: str, name: str) -> None:
    script = textwrap.dedent(f"""
        from sealtune.storage.artifacts import fetch_dir
        from sealtune.workspace import Workspace
        from pathlib import Path
        ws = Workspace.open(Path({env["SEALTUNE_HOME"]!r}))
        try:
            fetch_dir(ws.blobs, ws.meta, collection={collection!r}, name={name!r},
                      directory=ws.area({collection!r}) / {name!r})
        finally:
            ws.close()
    """)
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr


KILLER = """
import os, signal, sys
from pathlib import Path
from sealtune.keys.rotation import rotate_workspace
from sealtune.workspace import Workspace

ws = Workspace.open(Path(sys.argv[1]))
store = ws.blobs
real = store.put_if_absent
count = 0

def put(key, data):
    global count
    real(key, data)
    if "@g" in key:
        count += 1
        if count == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

store.put_if_absent = put
rotate_workspace(ws, "customer")
"""


@pytest.mark.parametrize("kill_after", [1, pytest.param(4, marks=pytest.mark.slow)])
def test_kill_during_remote_rewrap_then_rotate_completes(
        env: dict[str, str], s3_bucket: str, tmp_path: Path, kill_after: int) -> None:
    from sealtune.train.tiny import make_tiny

    base = make_tiny(tmp_path / "base", seed=0)
    ok(env, "init", "--store", f"s3://{s3_bucket}/ws")
    ok(env, "keys", "create", "customer")
    ok(env, "data", "ingest", str(_raw(tmp_path / "raw.jsonl")), "--name", "support",
       "--key", "customer")
    ok(env, "train", "--dataset", "support", "--base", str(base), "--out-name", "m1", *TRAIN)
    killed = subprocess.run([sys.executable, "-c", KILLER, env["SEALTUNE_HOME"],
                             str(kill_after)], env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert killed.returncode == -9, killed.stderr
    orphans = [k for k in _keys(s3_bucket, "ws/") if "@g2/" in k]
    assert orphans  # blobs of a generation no record names yet

    # Consistent: every record names a complete generation that verifies and opens.
    assert "2 published artifact" in ok(env, "storage", "verify")
    res = run(env, "keys", "retire", "customer", "--below", "2")
    assert res.returncode != 0 and "(generation 1" in res.stderr

    out = ok(env, "keys", "rotate", "customer", "--retire-old")
    assert "resumed the interrupted rotation" in out
    assert "2 published artifact" in ok(env, "storage", "verify")
    # The retirement pruned every generation no record names, the orphans included.
    left = _keys(s3_bucket, "ws/")
    for collection, name in (("datasets", "support"), ("models", "m1")):
        held = {k.split("/")[2] for k in left
                if k.startswith((f"ws/{collection}/{name}/", f"ws/{collection}/{name}@g"))}
        assert len(held) == 1 and held != {name}, (collection, left)
    home = Path(env["SEALTUNE_HOME"])
    shutil.rmtree(home / "datasets" / "support")
    _fetch(env, "datasets", "support")
    ok(env, "data", "show", "support")
