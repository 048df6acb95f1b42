"""A static scan of pickle opcodes, for the rare base model shipped only as pickle.

Loading a pickle runs code: ``GLOBAL``/``STACK_GLOBAL``/``INST`` import any
callable by name and ``REDUCE``/``OBJ``/``NEWOBJ``/``BUILD`` call it, so a
``pytorch_model.bin`` can run ``os.system`` the moment it is loaded. sealtune
refuses pickle weights unless the user passes ``unsafe_allow_pickle`` (and the job
records that); even then this scanner reads every opcode *without executing
anything* (``pickletools.genops``) and rejects the file if any import names
something outside a small allow-list (the handful of callables a plain
``torch.save(state_dict)`` uses to rebuild tensors), if an import's name
cannot be resolved statically, or if it uses the copyreg extension registry
(``EXT1/2/4``). Loading then still goes through ``torch.load(weights_only=True)``
(transformers does this), a second, independent restriction.

What this does not protect against: bugs in torch's own rebuild functions
that are on the allow-list, memory exhaustion by a huge crafted file, or
legacy (non-zip) torch files, which are refused rather than scanned.
Convert such models to safetensors once, in a throwaway environment.
"""

from __future__ import annotations

import pickletools
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sealtune.errors import PolicyViolation

#: ``(module, name)`` pairs a plain ``torch.save(model.state_dict())`` imports.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {("collections", "OrderedDict"),
     ("torch._utils", "_rebuild_tensor_v2"),
     ("torch._utils", "_rebuild_tensor"),
     ("torch._utils", "_rebuild_parameter")}
    | {("torch", f"{kind}Storage") for kind in (
        "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")}
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_IMPORTS = frozenset({"GLOBAL", "STACK_GLOBAL", "INST"})
_FORBIDDEN = frozenset({"EXT1", "EXT2", "EXT4"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                      "SHORT_BINSTRING", "BINSTRING", "STRING"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class UnsafePickleError(PolicyViolation):
    """A pickle file imports something outside the allow-list, or cannot be scanned."""


@dataclass
class ScanReport:
    """What a scan found: every import, and those that are not allowed."""

    imports: set[tuple[str, str]] = field(default_factory=set)
    rejected: list[str] = field(default_factory=list)
    pickles: int = 0

    @property
    def safe(self) -> bool:
        return not self.rejected


def _scan_stream(data: bytes, allow: frozenset[tuple[str, str]], report: ScanReport,
                 where: str) -> None:
    """Walk one pickle's opcodes, tracking string constants through the memo."""
    recent: list[object] = []  # the last two values pushed, when they are strings
    memo: dict[int, object] = {}
    try:
        for op, arg, _pos in pickletools.genops(data):
            name = op.name
            if name in _FORBIDDEN:
                report.rejected.append(f"{where}: {name} (copyreg extension)")
            elif name in _IMPORTS:
                if name == "STACK_GLOBAL":
                    if len(recent) < 2 or not all(isinstance(x, str) for x in recent[-2:]):
                        report.rejected.append(f"{where}: STACK_GLOBAL with unresolved names")
                        recent = []
                        continue
                    module, attr = str(recent[-2]), str(recent[-1])
                else:
                    module, _, attr = str(arg).partition(" ")
                report.imports.add((module, attr))
                if (module, attr) not in allow:
                    report.rejected.append(f"{where}: {name} {module}.{attr}")
                recent = []
            elif name in _STRINGS:
                recent = [*recent[-1:], arg]
            elif name == "MEMOIZE":  # memo indices must match the real memo's
                memo[len(memo)] = recent[-1] if recent else None
            elif name in _PUTS:
                if isinstance(arg, int):
                    memo[arg] = recent[-1] if recent else None
            elif name == "FRAME":  # framing only; the stack is unchanged
                continue
            elif name in _GETS:
                recent = [*recent[-1:], memo.get(arg) if isinstance(arg, int) else None]
            else:
                recent = []
    except (ValueError, EOFError, KeyError, IndexError):
        report.rejected.append(f"{where}: not a well-formed pickle")
    report.pickles += 1


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    if not zipfile.is_zipfile(path):
        raise UnsafePickleError(
            f"{path.name}: not a zip-format torch file (legacy or raw pickle); refused unscanned",
            hint="convert the model to safetensors in a throwaway environment")
    with zipfile.ZipFile(path) as archive:
        found = False
        for info in archive.infolist():
            if info.filename.endswith(".pkl"):
                found = True
                yield f"{path.name}:{info.filename}", archive.read(info)
        if not found:
            raise UnsafePickleError(f"{path.name}: a zip without a pickle; not a torch file")


def scan_bytes(data: bytes, *, allow: frozenset[tuple[str, str]] = SAFE_GLOBALS,
               where: str = "pickle") -> ScanReport:
    """Scan one raw pickle (no zip container)."""
    report = ScanReport()
    _scan_stream(data, allow, report, where)
    return report


def scan_file(path: Path, *, allow: frozenset[tuple[str, str]] = SAFE_GLOBALS) -> ScanReport:
    """Scan every pickle inside a zip-format torch file (``torch.save``'s default)."""
    report = ScanReport()
    for where, data in _members(path):
        _scan_stream(data, allow, report, where)
    return report


def require_safe(path: Path, *, allow: frozenset[tuple[str, str]] = SAFE_GLOBALS) -> ScanReport:
    """Scan ``path``; raise :class:`UnsafePickleError` unless every import is allowed."""
    report = scan_file(path, allow=allow)
    if not report.safe:
        shown = "; ".join(report.rejected[:5])
        raise UnsafePickleError(
            f"{path.name} would run code when loaded: {shown}",
            hint="do not load this file; obtain the model as safetensors from a trusted source")
    return report
