"""Prometheus metrics (one process and several), loopback-only listener, traces without content,
and a strict policy parser."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sealtune.errors import ConfigError, UsageError
from sealtune.monitor.base import AuthDenied, RequestDone, RequestMeta, safe_label
from sealtune.monitor.policy import FORMAT, load_policy, policy_from_mapping
from sealtune.monitor.prometheus import PrometheusSink, check_bind, serve_metrics
from sealtune.monitor.tracing import CAPTURE_ENV, configure_tracing

_WORKER = """
import sys
from sealtune.monitor.prometheus import open_sink
from sealtune.monitor.base import RequestDone, RequestMeta, AuthDenied
from pathlib import Path
sink = open_sink(directory=Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    sink.record(RequestDone(RequestMeta(time=0, route="/v1/models", method="GET", status=200,
                                        caller="k", model_version="m@x")))
sink.record(AuthDenied("bad_secret"))
if sys.argv[3] == "read":
    print(sink.exposition().decode())
sink.close()
"""


def _meta(route: str = "/v1/models") -> RequestMeta:
    return RequestMeta(time=0, route=route, method="GET", status=200, caller="key-1",
                       model_version="m@x", latency=0.02)


def test_several_processes_add_up_in_multiprocess_mode(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", _WORKER, str(directory), str(n), "write"],
                       check=True, env=env, timeout=120)
    out = subprocess.run([sys.executable, "-c", _WORKER, str(directory), "5", "read"],
                         check=True, env=env, capture_output=True, text=True, timeout=120).stdout
    assert 'sealtune_requests_total{error="none",method="GET",route="/v1/models",status="200"}' \
           ' 12.0' in out
    assert 'sealtune_auth_denials_total{reason="bad_secret"} 3.0' in out


def test_a_writable_by_others_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir(mode=0o777)
    directory.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run([sys.executable, "-c", _WORKER, str(directory), "1", "write"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "group- or world-writable" in done.stderr


def test_labels_hold_no_text_and_the_listener_is_loopback_only() -> None:
    sink = PrometheusSink()
    sink.record(RequestDone(_meta("my secret prompt text")))
    sink.record(AuthDenied("the password is hunter2"))
    text = sink.exposition().decode()
    assert "secret" not in text and "hunter2" not in text and "key-1" not in text
    assert safe_label("POST /x y") == "other" and safe_label("/v1/models") == "/v1/models"
    with pytest.raises(UsageError):
        check_bind("0.0.0.0")
    listener = serve_metrics(sink, port=0)
    try:
        assert listener.host == "127.0.0.1"
        body = urllib.request.urlopen(f"http://127.0.0.1:{listener.port}/metrics",
                                      timeout=10).read().decode()
        assert 'route="other"' in body
    finally:
        listener.stop()


def test_content_capture_cannot_be_turned_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    monkeypatch.setenv(CAPTURE_ENV, "true")
    with pytest.raises(ConfigError, match="message content"):
        configure_tracing(exporter=InMemorySpanExporter())
    monkeypatch.delenv(CAPTURE_ENV)
    exporter = InMemorySpanExporter()
    tracer = configure_tracing(exporter=exporter)
    assert os.environ[CAPTURE_ENV] == "false"
    tracer.record_span(_meta("/v1/chat/completions"))
    tracer.shutdown()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None and span.attributes["http.route"] == \
        "/v1/chat/completions" and "key-1" not in str(dict(span.attributes))


@pytest.mark.parametrize(("doc", "field"), [
    ({"detectors": {"prefix_sweep": {"threshhold": 3}}}, "threshhold"),
    ({"detectors": {"nope": {}}}, "nope"),
    ({"detectors": {"prefix_sweep": {"action": "ban"}}}, "action"),
    ({"detectors": {"regurgitation": {"output": "hide"}}}, "output"),
    ({"detectors": {"prefix_sweep": {"threshold": -1}}}, "threshold"),
    ({"detectors": {"prefix_sweep": {"threshold": 2.5}}}, "threshold"),
    ({"webhook": {"url": "file:///etc/passwd"}}, "url"),
    ({"extra": 1}, "extra"),
])
def test_policy_errors_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        policy_from_mapping({"format": FORMAT, **doc}, source="p.toml")


def test_policy_file_missing_or_wrong_format_fails_closed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_policy(tmp_path / "absent.toml")
    bad = tmp_path / "p.toml"
    bad.write_text('format = "v0"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="format"):
        load_policy(bad)
