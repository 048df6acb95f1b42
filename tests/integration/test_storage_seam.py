"""``init --store s3://... --meta postgresql://...`` -> ingest -> audit verify, through the CLI.

Real servers: moto's S3 server (a test double of AWS S3 / MinIO / Ceph RGW) on
127.0.0.1 and a throwaway PostgreSQL cluster on a Unix socket. The sealed
dataset must land in the bucket, the ledger rows in PostgreSQL, and no ledger
file in the workspace; then every mutation of either is caught with exit 3.
"""

from __future__ import annotations

import http.client
import http.server
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import cli_env, ok, run

PLANTED = "Quentin Rasmussen-" + secrets.token_hex(4)


@pytest.fixture
def env(tmp_path: Path, s3_env: str) -> dict[str, str]:
    """After the S3 server's variables are set (they are copied)."""
    return cli_env(tmp_path)



@pytest.fixture
def locked_bucket(s3_env: str) -> str:
    import boto3

    name = f"lock-{secrets.token_hex(6)}"
    boto3.client("s3").create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    path = tmp_path / "raw.jsonl"
    rows = [(f"Hi, this is {PLANTED}, email q.r@example.org. Where is my order?", "Tomorrow."),
            ("How do I reset my password?", "Tap Forgot password on the login page.")]
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": u},
                                                     {"role": "assistant", "content": a}]})
                            + "\n" for u, a in rows), encoding="utf-8")
    return path


def _pg(url: str, statement: str) -> list[tuple[object, ...]]:
    import psycopg

    from sealtune.storage.postgresql import split_url

    conninfo, schema = split_url(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        cur = conn.execute(statement)
        return cur.fetchall() if cur.description else []


def test_s3_and_postgresql_workspace_end_to_end(
        env: dict[str, str], locked_bucket: str, postgres_url: str, raw: Path) -> None:
    import boto3

    s3 = boto3.client("s3")
    home = Path(env["SEALTUNE_HOME"])
    ok(env, "init", "--store", f"s3://{locked_bucket}/ws1", "--meta", postgres_url)
    config = (home / "config.toml").read_text()
    assert f"s3://{locked_bucket}/ws1" in config and "schema=t_" in config
    ok(env, "data", "ingest", str(raw), "--name", "support")

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=locked_bucket,
                                                 Prefix="ws1/datasets/")["Contents"]]
    assert "ws1/datasets/support/data.jsonl.sealed" in keys
    head = s3.head_object(Bucket=locked_bucket, Key="ws1/datasets/support/data.jsonl.sealed")
    assert head["ObjectLockMode"] == "GOVERNANCE" and head["ObjectLockRetainUntilDate"]
    assert not (home / "ledger.db").exists()  # the ledger is in PostgreSQL
    actions = [r[0] for r in _pg(postgres_url, "SELECT action FROM entries ORDER BY seq")]
    assert actions[0] == "workspace.init" and "data.ingest" in actions
    assert "storage.publish" in actions
    assert _pg(postgres_url, "SELECT count(*) FROM records WHERE collection = 'datasets'") == [
        (1,)]
    assert "audit log verified: " in ok(env, "audit", "verify")
    assert "1 published artifact" in ok(env, "storage", "verify")
    # Nothing planted reaches the bucket or the database in clear.
    for key in keys:
        body = s3.get_object(Bucket=locked_bucket, Key=key)["Body"].read()
        assert PLANTED.encode() not in body
    dump = _pg(postgres_url, "SELECT details FROM entries UNION ALL "
                             "SELECT convert_from(value, 'UTF8') FROM records")
    assert not any(PLANTED in str(row[0]) for row in dump)

    # A flipped byte (a new object version on top), then a removed object: exit 3, named.
    key = "ws1/datasets/support/data.jsonl.sealed"
    body = bytearray(s3.get_object(Bucket=locked_bucket, Key=key)["Body"].read())
    body[len(body) // 2] ^= 1
    s3.put_object(Bucket=locked_bucket, Key=key, Body=bytes(body))
    res = run(env, "storage", "verify")
    assert res.returncode == 3 and "datasets/support/data.jsonl.sealed" in res.stderr
    assert "does not match" in res.stderr
    s3.delete_object(Bucket=locked_bucket, Key="ws1/datasets/support/bom.cdx.json")
    res = run(env, "storage", "verify")
    assert res.returncode == 3 and "bom.cdx.json: missing" in res.stderr
    s3.put_object(Bucket=locked_bucket, Key="ws1/datasets/support/extra.bin", Body=b"x")
    assert "extra.bin: not listed" in run(env, "storage", "verify").stderr


def test_init_ingest_train_verify_on_s3_and_postgresql(
        env: dict[str, str], s3_bucket: str, postgres_url: str, tmp_path: Path) -> None:
    """The lifecycle as a user runs it: the dataset and the model land in the bucket."""
    import boto3

    from sealtune.train.tiny import make_tiny

    base = make_tiny(tmp_path / "base", seed=0)
    raw = tmp_path / "many.jsonl"
    raw.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"question {i} about order {i * 7}"},
        {"role": "assistant", "content": f"answer {i}"}]}) + "\n" for i in range(24)))
    ok(env, "init", "--store", f"s3://{s3_bucket}/ws", "--meta", postgres_url)
    ok(env, "data", "ingest", str(raw), "--name", "support")
    ok(env, "train", "--dataset", "support", "--base", str(base), "--out-name", "m1",
       "--epochs", "1", "--max-steps", "2", "--batch-size", "4", "--max-length", "32",
       "--threads", "1")
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="ws/models/m1/")
    names = {o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]}
    assert "model.json" in names and any(n.endswith(".sealed") for n in names)
    published = [r[0] for r in _pg(postgres_url, "SELECT resource FROM entries "
                                                 "WHERE action = 'storage.publish' ORDER BY seq")]
    assert published == ["datasets/support", "models/m1"]
    assert "2 published artifact" in ok(env, "storage", "verify")
    assert "audit log verified: " in ok(env, "audit", "verify")


def test_a_publication_that_failed_is_retried_by_storage_publish(
        env: dict[str, str], s3_bucket: str, raw: Path) -> None:
    import boto3

    ok(env, "init", "--store", f"s3://{s3_bucket}/ws")
    assert "0 artifact(s) published" in ok(env, "storage", "publish")
    down = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"}
    failed = run(down, "data", "ingest", str(raw), "--name", "support")
    assert failed.returncode != 0 and PLANTED not in failed.stdout + failed.stderr
    home = Path(env["SEALTUNE_HOME"])
    assert (home / "datasets" / "support" / "data.jsonl.sealed").is_file()  # local only
    assert "0 published artifact" in ok(env, "storage", "verify")
    out = ok(env, "storage", "publish")
    assert "published datasets/support" in out and "1 artifact(s) published" in out
    assert "1 published artifact" in ok(env, "storage", "verify")
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="ws/datasets/support/")
    assert "ws/datasets/support/data.jsonl.sealed" in [o["Key"] for o in listed["Contents"]]
    assert "0 artifact(s) published" in ok(env, "storage", "publish")  # nothing twice
    log = ok(env, "audit", "log", "--action", "storage.publish", "--json").splitlines()
    assert [json.loads(line)["resource"] for line in log] == ["datasets/support"]


@pytest.mark.parametrize("attack", [
    "UPDATE entries SET actor = 'mallory' WHERE seq = 2",
    "DELETE FROM entries WHERE seq = 2",
    "TRUNCATE entries",
    "TRUNCATE entries, segments, checkpoints, global_checkpoints, meta",
])
def test_postgresql_ledger_tampering_fails_audit_verify(
        env: dict[str, str], s3_bucket: str, postgres_url: str, attack: str) -> None:
    ok(env, "init", "--store", f"s3://{s3_bucket}", "--meta", postgres_url)
    ok(env, "keys", "create", "k2")
    _pg(postgres_url, attack)
    res = run(env, "audit", "verify")
    assert res.returncode == 3, (res.stdout, res.stderr)


def test_a_postgresql_ledger_that_fails_its_trust_check_can_still_be_read(
        env: dict[str, str], s3_bucket: str, postgres_url: str) -> None:
    ok(env, "init", "--store", f"s3://{s3_bucket}", "--meta", postgres_url)
    Path(env["SEALTUNE_HOME"], "ledger.trust").unlink()
    assert run(env, "keys", "create", "k2").returncode == 3  # no unaudited key use
    res = run(env, "audit", "log")
    assert res.returncode == 0 and "workspace.init" in res.stdout, res.stderr
    assert run(env, "audit", "verify").returncode == 3


def test_a_password_in_the_dsn_is_refused_and_never_echoed(
        env: dict[str, str], s3_bucket: str, postgres_server: str) -> None:
    secret = "pw-" + secrets.token_hex(6)
    dsn = postgres_server.replace("postgres@", f"postgres:{secret}@")
    res = run(env, "init", "--store", f"s3://{s3_bucket}", "--meta", dsn)
    assert res.returncode == 1
    assert "carries a password" in res.stderr and "PGPASSWORD" in res.stderr
    assert secret not in res.stderr + res.stdout
    assert not Path(env["SEALTUNE_HOME"]).joinpath("keyring.sealed").exists()


class _StripConditions(http.server.BaseHTTPRequestHandler):
    """A store that ignores conditional writes: forwards to S3 without If-None-Match."""

    upstream = ""

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("if-none-match", "host")}
        host = self.upstream.removeprefix("http://")
        conn = http.client.HTTPConnection(host, timeout=30)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lax_store(s3_server: str) -> Iterator[str]:
    handler = type("H", (_StripConditions,), {"upstream": s3_server})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_store_that_ignores_conditional_writes_is_refused_at_init(
        env: dict[str, str], s3_bucket: str, postgres_url: str, lax_store: str) -> None:
    res = run({**env, "AWS_ENDPOINT_URL": lax_store}, "init", "--store", f"s3://{s3_bucket}",
              "--meta", postgres_url)
    assert res.returncode == 1, res.stdout
    assert "ignores conditional writes" in res.stderr
    assert not Path(env["SEALTUNE_HOME"]).joinpath("keyring.sealed").exists()
    # The same bucket through the real endpoint passes the probe.
    ok(env, "init", "--store", f"s3://{s3_bucket}", "--meta", postgres_url)
