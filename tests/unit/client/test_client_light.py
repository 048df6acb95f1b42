"""The client stays light: importing it loads no torch, no web server, no server code."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "fastapi", "starlette", "uvicorn", "sealtune.serve")


def _modules_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    modules: list[str] = json.loads(out)
    return modules


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_importing_the_client_loads_nothing_heavy() -> None:
    modules = _modules_after("import sealtune.client")
    assert _heavy(modules) == []
    assert "openai" not in modules  # only SealtuneClient needs it, imported on demand


def test_the_sdk_and_the_proxy_load_nothing_heavy() -> None:
    modules = _modules_after("from sealtune.client import SealtuneClient\n"
                             "import sealtune.client.proxy, sealtune.cli.proxy")
    assert _heavy(modules) == []
    assert "openai" in modules
