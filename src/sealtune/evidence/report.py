"""The result of verifying a bundle: named checks, each passed or failed, with a reason.

Pure data. What this protects against: a verdict that hides which check
failed (every check is listed with a one-line explanation naming the file or
field, never payload text). What it does not: decide anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealtune.errors import IntegrityError


@dataclass(frozen=True)
class Check:
    """One named check.

    Attributes:
        name: dotted, stable (e.g. ``manifest.signature``, ``statement.train``).
        ok: whether it passed.
        explanation: one line: what was checked and what was found.
    """

    name: str
    ok: bool
    explanation: str

    def to_json(self) -> dict[str, Any]:
        """The check as a JSON object."""
        return {"name": self.name, "ok": self.ok, "explanation": self.explanation}


@dataclass
class BundleReport:
    """Every check run on a bundle, in order.

    Attributes:
        bundle: the path verified.
        checks: the checks, in the order they ran.
    """

    bundle: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there was at least one check and all passed."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.ok]

    def add(self, name: str, ok: bool, explanation: str) -> bool:
        """Record a check; returns ``ok``."""
        self.checks.append(Check(name, ok, explanation))
        return ok

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object."""
        return {"bundle": self.bundle, "ok": self.ok,
                "checks": [c.to_json() for c in self.checks]}

    def raise_if_failed(self) -> None:
        """Raise :class:`IntegrityError` (exit 3) naming the failed checks, if any."""
        if not self.ok:
            names = ", ".join(c.name for c in self.failed) or "no checks ran"
            raise IntegrityError(f"bundle {self.bundle} failed verification: {names}",
                                 hint="do not rely on this bundle; each failed check above "
                                      "says what it found")
