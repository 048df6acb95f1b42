"""The stage facades: each names its public API in ``__all__``, loads it lazily, and stays light.

``import sealtune.<stage>`` must not load torch, transformers, a web server
or numpy: the command line's start-up time and the light client depend on
it. Each check runs in a fresh interpreter, since this test process has
loaded everything already.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from sealtune._lazy import attach

FACADES = ["sealtune.keys", "sealtune.data", "sealtune.train", "sealtune.serve",
           "sealtune.ledger", "sealtune.attest", "sealtune.client", "sealtune.sandbox",
           "sealtune.train.jobs", "sealtune.assess"]
LAZY = [f for f in FACADES if f != "sealtune.ledger"]  # the ledger is light: imported eagerly
HEAVY = ["torch", "transformers", "peft", "opacus", "numpy", "fastapi", "starlette", "uvicorn",
         "datasketch", "cyclonedx", "spacy", "openai", "safetensors", "tokenizers"]


def _loaded_after_import(module: str) -> list[str]:
    code = (f"import json, sys; import {module}; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("module", [*FACADES, "sealtune.cli"])
def test_importing_a_facade_or_the_cli_loads_nothing_heavy(module: str) -> None:
    assert _loaded_after_import(module) == []


def test_the_check_sees_a_heavy_import() -> None:
    # the same probe on a module that does load one: the check above can fail
    assert "fastapi" in _loaded_after_import("sealtune.serve.app")


@pytest.mark.parametrize("module", FACADES)
def test_every_public_name_resolves_and_none_shadows_a_submodule(module: str) -> None:
    facade = importlib.import_module(module)
    names = facade.__all__
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(facade, name) is not None, name
        assert name in dir(facade)
    # a package attribute cannot be both a public name and a submodule: importing the
    # submodule would rebind it (that is why the ingest verb is ``ingest_dataset``)
    submodules = {m.name for m in pkgutil.iter_modules(facade.__path__)}
    assert not submodules & set(names)


def _type_checking_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                names |= {alias.asname or alias.name for alias in imp.names}
    return names


@pytest.mark.parametrize("module", [m for m in LAZY if m != "sealtune.client"])
def test_type_checkers_see_every_lazy_name(module: str) -> None:
    facade = importlib.import_module(module)
    assert _type_checking_names(Path(facade.__file__ or "")) == set(facade.__all__)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    getattr_, dir_ = attach("sealtune.keys", {"seal_file": "sealtune.keys.files"})
    with pytest.raises(AttributeError, match=r"'sealtune\.keys' has no attribute 'nope'"):
        getattr_("nope")
    assert "seal_file" in dir_()
    with pytest.raises(ImportError):
        from sealtune.data import no_such_name  # type: ignore[attr-defined]  # noqa: F401
