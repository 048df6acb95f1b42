"""The labelled poisoned-corpus generator, shared with the unit tests.

The generator lives in ``tests/unit/data/screen/conftest.py`` (the tests may
import nothing from ``bench/``); this module loads that file by path so the
benchmark measures exactly the corpus the tests assert on.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PATH = Path(__file__).resolve().parents[1] / "tests/unit/data/screen/conftest.py"


def load() -> ModuleType:
    """The conftest module (``make_corpus``, ``Corpus``, the template tables)."""
    name = "_sealtune_screen_corpus"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _PATH)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the corpus generator from {_PATH}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module
