"""``sealtune proxy`` as a user runs it: real processes, the official openai package and curl.

``sealtune serve`` (echo engine, dev-software, encrypted-only) and ``sealtune
proxy`` run as subprocesses on loopback; unmodified clients talk plaintext to
the proxy. Afterwards no log the proxy or the server wrote contains the
planted prompts (the echo engine answers with the prompt, so they are the
responses too).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

SEALTUNE = [sys.executable, "-m", "sealtune"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not come up: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class Stack:
    env: dict[str, str]
    dir: Path
    server_url: str
    proxy_url: str
    key: str
    procs: list[subprocess.Popen[bytes]]

    def start(self, name: str, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.dir / f"{name}.stderr"
        with log.open("wb") as err:
            proc = subprocess.Popen([*SEALTUNE, *args], env=self.env, stdout=err, stderr=err)
        self.procs.append(proc)
        return proc, log


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("proxy")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEALTUNE_")}
    env.update({"SEALTUNE_HOME": str(root / "home"), "TMPDIR": str(root / "tmp"),
                "SEALTUNE_PASSPHRASE": "pp-" + secrets.token_hex(8),
                "SEALTUNE_UNSAFE_FAST_KDF": "1", "NO_PROXY": "127.0.0.1,localhost"})
    (root / "tmp").mkdir()
    subprocess.run([*SEALTUNE, "init"], env=env, check=True, capture_output=True, timeout=120)
    key = subprocess.run([*SEALTUNE, "auth", "create-key", "--role", "consumer"], env=env,
                         check=True, capture_output=True, text=True, timeout=120).stdout.strip()
    env["UPSTREAM_KEY"] = key
    sport, pport = _free_port(), _free_port()
    st = Stack(env, root, f"http://127.0.0.1:{sport}", f"http://127.0.0.1:{pport}", key, [])
    server, slog = st.start("server", "serve", "--engine", "echo", "--model", "echo",
                            "--encrypted-only", "--port", str(sport),
                            "--log-file", str(root / "serve.log"))
    _wait(f"{st.server_url}/healthz", server, slog)
    proxy, plog = st.start("proxy", "proxy", "--upstream", st.server_url, "--port", str(pport),
                           "--allow-dev-attestation", "--api-key-env", "UPSTREAM_KEY")
    _wait(f"{st.proxy_url}/healthz", proxy, plog)
    yield st
    for proc in st.procs:
        _stop(proc)


def test_openai_and_curl_through_the_proxy_leave_no_plaintext_in_logs(stack: Stack) -> None:
    planted = [f"planted-{i}-{secrets.token_hex(8)}" for i in range(4)]
    client = openai.OpenAI(base_url=f"{stack.proxy_url}/v1", api_key="sk-local-dummy",
                           max_retries=0)
    assert [m.id for m in client.models.list()] == ["echo"]
    done = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": f"hello {planted[0]}"}])
    assert done.choices[0].message.content == f"hello {planted[0]}"
    stream = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": f"one two {planted[1]} four"}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        f"one two {planted[1]} four"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    client.close()

    curl = shutil.which("curl")
    assert curl is not None, "needs curl (apt-get install curl)"
    for text, stream_flag in ((planted[2], "false"), (planted[3], "true")):
        body = json.dumps({"model": "echo", "stream": stream_flag == "true",
                           "messages": [{"role": "user", "content": f"say {text}"}]})
        out = subprocess.run([curl, "-sS", "-N", "--fail-with-body",
                              f"{stack.proxy_url}/v1/chat/completions",
                              "-H", "Content-Type: application/json", "-d", body],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        if stream_flag == "true":
            assert out.rstrip().endswith("data: [DONE]") and text in out
        else:
            assert f'"content":"say {text}"' in out.replace(": ", ":")

    # the upstream saw only ciphertext of the completions: it refuses plaintext itself
    plain = httpx.post(f"{stack.server_url}/v1/chat/completions",
                       headers={"Authorization": f"Bearer {stack.key}"},
                       json={"model": "echo", "messages": [{"role": "user", "content": "x"}]})
    assert plain.status_code == 403 and plain.json()["error"]["code"] == "plaintext_refused"

    proxy_log = (stack.dir / "proxy.stderr").read_text()
    assert "proxy: POST /v1/chat/completions 200" in proxy_log
    assert "NOT a TEE" in proxy_log
    written = [p for p in stack.dir.rglob("*") if p.is_file()]
    assert any(p.name == "serve.log" for p in written)
    for path in written:
        data = path.read_bytes()
        for secret in planted:
            assert secret.encode() not in data, path


def test_proxy_refuses_dev_attestation_without_the_flag(stack: Stack) -> None:
    res = subprocess.run([*SEALTUNE, "proxy", "--upstream", stack.server_url, "--port",
                          str(_free_port())], env=stack.env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 3, res.stderr
    assert res.stderr.startswith("attestation:") and "dev-software" in res.stderr


def test_proxy_forwards_the_callers_credential(stack: Stack) -> None:
    port = _free_port()
    proc, log = stack.start("proxy-forward", "proxy", "--upstream", stack.server_url,
                            "--port", str(port), "--allow-dev-attestation")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(f"{url}/healthz", proc, log)
        good = openai.OpenAI(base_url=f"{url}/v1", api_key=stack.key, max_retries=0)
        done = good.chat.completions.create(model="echo",
                                            messages=[{"role": "user", "content": "mine"}])
        assert done.choices[0].message.content == "mine"
        bad = openai.OpenAI(base_url=f"{url}/v1", api_key="sealtune_0000_wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}])
        good.close()
        bad.close()
    finally:
        _stop(proc)


def test_proxy_refuses_a_public_bind_without_the_unsafe_flag(stack: Stack) -> None:
    res = subprocess.run([*SEALTUNE, "proxy", "--upstream", stack.server_url, "--host",
                          "0.0.0.0", "--allow-dev-attestation"], env=stack.env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "--unsafe-bind-any" in res.stderr


def _listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"nothing listens on {port}: {log.read_text()[-2000:]}")


def test_proxy_started_before_the_server_attests_on_first_use(stack: Stack) -> None:
    """As under systemd or compose: the proxy comes up first; the first request waits
    (back-off) until the server is up and attested, then goes through sealed."""
    sport, pport = _free_port(), _free_port()
    proxy, plog = stack.start("proxy-early", "proxy", "--upstream", f"http://127.0.0.1:{sport}",
                              "--port", str(pport), "--allow-dev-attestation", "--api-key-env",
                              "UPSTREAM_KEY", "--attest-timeout", "90")
    try:
        _listening(pport, proxy, plog)
        # the socket listens before the first attestation attempt is over (and reported)
        deadline = time.monotonic() + 60
        while "not up yet" not in plog.read_text() and time.monotonic() < deadline:
            assert proxy.poll() is None, plog.read_text()[-2000:]
            time.sleep(0.1)
        assert "not up yet" in plog.read_text()
        answers: list[Any] = []

        def ask() -> None:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{pport}/v1", api_key="sk-x",
                                   max_retries=0, timeout=120)
            answers.append(client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "early bird"}]))
            client.close()

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(1.0)  # the request is waiting in the proxy's back-off now
        assert asker.is_alive() and not answers
        server, _ = stack.start("server-late", "serve", "--engine", "echo", "--model", "echo",
                                "--encrypted-only", "--port", str(sport))
        try:
            asker.join(timeout=120)
            assert answers and answers[0].choices[0].message.content == "early bird"
        finally:
            _stop(server)
        log = plog.read_text()
        assert "attestation verified: platform dev-software (NOT a TEE)" in log
        assert "proxy: POST /v1/chat/completions 200" in log
    finally:
        _stop(proxy)


def test_proxy_without_a_server_answers_503_and_stays_up(stack: Stack) -> None:
    dead, pport = _free_port(), _free_port()
    proxy, plog = stack.start("proxy-dead", "proxy", "--upstream", f"http://127.0.0.1:{dead}",
                              "--port", str(pport), "--allow-dev-attestation",
                              "--attest-timeout", "2")
    url = f"http://127.0.0.1:{pport}/v1/chat/completions"
    try:
        _listening(pport, proxy, plog)
        for _ in range(2):  # a later request tries again, and fails the same clean way
            began = time.monotonic()
            resp = httpx.post(url, json={"model": "echo", "messages": [
                {"role": "user", "content": "nobody home"}]}, timeout=60)
            assert 1.5 < time.monotonic() - began < 30
            assert resp.status_code == 503 and resp.headers["retry-after"]
            error = resp.json()["error"]
            assert error["code"] == "upstream_unavailable" and "nobody" not in resp.text
            assert proxy.poll() is None
        assert "internal error" not in plog.read_text()
    finally:
        _stop(proxy)
