"""The import contracts in pyproject.toml hold, and break when the architecture is broken.

``lint-imports`` runs in ``scripts/check``; here it runs on copies of the
source tree, untouched and with deliberate violations planted, so a
contract that cannot fail (a typo in a module name, a layer that matches
nothing) fails this test instead.
"""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import sealtune

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(sealtune.__file__).resolve().parent
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]

# (file, line appended): one violation per contract, each in its own module.
PLANTED = {
    "core/strict_json.py": "from sealtune.keys.base import WrappedKey as _W  # noqa",
    "client/transport.py": "import sealtune.serve.app  # noqa",
    "data/records.py": "from sealtune.core.hazmat import kdf as _kdf  # noqa",
    "serve/filter.py": "from sealtune.core.envelope import MAGIC as _MAGIC  # noqa",
    "attest/base.py": "import sealtune.cli._tables  # noqa",
    "monitor/alerts.py": "import sealtune.serve.app  # noqa",
    "newpkg.py": '"""A module placed in no layer."""',
}


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _copy(tmp: Path) -> Path:
    shutil.copytree(SRC, tmp / "src" / "sealtune",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
    return tmp / "src" / "sealtune"


def _lint(tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp / "src")}
    return subprocess.run([*LINT, "--no-cache", str(tmp / "pyproject.toml")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


def test_the_contracts_hold_on_the_tree_as_it_is(tmp_path: Path) -> None:
    _copy(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in result.stdout


def test_each_contract_breaks_on_a_planted_violation(tmp_path: Path) -> None:
    package = _copy(tmp_path)
    for name, line in PLANTED.items():
        path = package / name
        path.write_text((path.read_text("utf-8") if path.exists() else "") + "\n" + line + "\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout
    for contract in _contracts().values():
        assert f"{contract['name']} BROKEN" in result.stdout, contract["id"]
    for violation in ("sealtune.core.strict_json -> sealtune.keys.base",
                      "sealtune.client.transport -> sealtune.serve.app",
                      "sealtune.data.records -> sealtune.core.hazmat.kdf",
                      "sealtune.serve.filter -> sealtune.core.envelope",
                      "sealtune.attest.base -> sealtune.cli._tables",
                      "sealtune.monitor.alerts -> sealtune.serve.app", "sealtune.newpkg"):
        assert violation in result.stdout, violation


def test_the_core_contract_names_every_other_top_level_module() -> None:
    forbidden = set(_contracts()["core-pure"]["forbidden_modules"])  # type: ignore[call-overload]
    siblings = {f"sealtune.{m.name}" for m in pkgutil.iter_modules(sealtune.__path__)}
    assert forbidden == siblings - {"sealtune.core", "sealtune.errors"}


@pytest.mark.parametrize("type_checking", [False, True])
def test_keys_imports_the_workspace_only_for_type_checking(type_checking: bool) -> None:
    # The layers contract ignores keys -> workspace because those imports are type-only;
    # at run time keys must not reach the workspace at all.
    import grimp

    graph = grimp.build_graph("sealtune", exclude_type_checking_imports=not type_checking)
    importers = {m for m in graph.find_modules_that_directly_import("sealtune.workspace")
                 if m.startswith("sealtune.keys.")}
    assert bool(importers) is type_checking, importers
