"""Connection limits: who counts as one client, the settings' bounds, the descriptor limit."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from sealtune.errors import ConfigError
from sealtune.serve.connections import client_key, uvicorn_options
from sealtune.serve.settings import ConnectionLimits


def test_client_keys_group_an_ipv6_64_and_unwrap_mapped_ipv4() -> None:
    assert client_key(("127.0.0.1", 5000)) == "127.0.0.1"
    assert client_key(("2001:db8:1:2:aaaa::1", 5000, 0, 0)) == \
        client_key(("2001:db8:1:2:ffff::9", 6000, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:3::1", 5000, 0, 0)) != client_key(("2001:db8:1:2::1", 1))
    assert client_key(("::ffff:10.0.0.7", 5000, 0, 0)) == "10.0.0.7"
    assert client_key("") == client_key(None) == "local"  # a Unix socket: one bucket


@pytest.mark.parametrize("bad", [
    {"header_timeout": 0}, {"header_timeout": -1.0}, {"body_timeout": 301.0},
    {"max_per_client": 0}, {"max_per_client": 10, "max_connections": 5},
])
def test_limits_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="serve:"):
        ConnectionLimits(**bad)  # type: ignore[arg-type]


def test_defaults_close_idle_connections_within_15_s_and_allow_the_load_bench() -> None:
    limits = ConnectionLimits()
    assert limits.header_timeout <= 15 and limits.body_timeout <= 15
    assert limits.max_per_client >= 50  # bench/serve.py runs 50 clients from loopback
    options = uvicorn_options(ConnectionLimits(header_timeout=2.0))
    assert options["timeout_keep_alive"] == 2.0 and options["ws"] == "none"
    assert options["http"].limits.header_timeout == 2.0
    # each server gets its own count
    assert uvicorn_options(limits)["http"].book is not uvicorn_options(limits)["http"].book


def test_max_connections_stays_below_the_descriptor_limit() -> None:
    """In a process whose hard limit is 256 descriptors, 4096 connections become 128."""
    code = ("import json, resource\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))\n"
            "from sealtune.serve.connections import within_fd_limit\n"
            "from sealtune.serve.settings import ConnectionLimits\n"
            "got = within_fd_limit(ConnectionLimits())\n"
            "print(json.dumps([got.max_connections, got.max_per_client,\n"
            "                  resource.getrlimit(resource.RLIMIT_NOFILE)[0]]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out) == [128, 128, 256]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard == resource.RLIM_INFINITY or hard >= 4096 + 128, "a test machine with room"
    code = code.replace("(256, 256)", f"(256, {hard})")  # a soft limit it may raise
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert json.loads(out) == [4096, 256, 4096 + 128]
