"""Lazy stage facades (PEP 562): a package's public names, each loaded on first use.

A stage's ``__init__`` lists its public verbs and types in a static
``__all__`` and imports them under ``TYPE_CHECKING`` (so mypy and editors
see them), and hands the run-time lookup to :func:`attach`::

    __getattr__, __dir__ = attach(__name__, {"ingest": "sealtune.data.ingest", ...})

``import sealtune.data`` then loads nothing heavy: ``sealtune.data.ingest``
(and numpy, datasketch, cyclonedx with it) is imported only when
``sealtune.data.ingest`` or ``from sealtune.data import ingest`` is used. A
name maps to the module that defines it, or to ``"module:attribute"`` when
the public name differs from the attribute's.

What this protects against: the command line and the light client paying
for torch, transformers or a web server they do not use, and a facade that
drifts from its modules (``tests/unit/test_facades.py`` resolves every name
of every ``__all__``). What it does not: make the optional dependencies
optional by itself; a module that imports them at its top still needs them
once it is loaded.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["attach"]


def attach(package: str, names: Mapping[str, str]
           ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a lazy facade.

    Args:
        package: the facade's ``__name__``.
        names: public name -> defining module, or ``"module:attribute"``.

    Returns:
        ``(__getattr__, __dir__)`` for the facade module's globals. A loaded
        name is cached in the module, so ``__getattr__`` runs once per name.
    """

    def __getattr__(name: str) -> Any:
        try:
            source = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module_name, _, attribute = source.partition(":")
        value = getattr(importlib.import_module(module_name), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
