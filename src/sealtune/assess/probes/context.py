"""What a probe's ``measure`` is given: files, models, records, canaries, the DP claim.

The gate fills in what it has; :meth:`ProbeContext.available` says which
needs (:data:`sealtune.assess.probes.base.NEEDS`) that covers, and a probe
whose needs are not all met is skipped with the missing ones named. Inside
the sandbox the worker fills in the models and the decrypted records; in
the gate's own process only the files are set.

What this protects against: nothing by itself; it is a container. The
records and canaries in it are plaintext and exist only inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sealtune.assess.canaries import Canary
    from sealtune.assess.files import ModelTree
    from sealtune.data.records import Record


@dataclass(frozen=True)
class DpClaim:
    """The privacy the model's training record claims: (ε, δ) per example."""

    epsilon: float
    delta: float


@dataclass
class ProbeContext:
    """Everything a probe may measure (``None``: not available here).

    Attributes:
        files: the model's files (the gate's process only).
        base_files: the base model's files, when one is named.
        model, tokenizer: the model under assessment (inside the sandbox).
        base_model, base_tokenizer: the base model, the reference for calibration.
        records: the training records (without canaries), for extraction and PII.
        heldout: records never trained on (the job's validation split).
        canaries: the planted canaries (secrets included: inside the sandbox only).
        dp: the DP claim of the training record.
        seed: seeds every random choice of the probes.
        max_length: the training's ``max_length`` (records are encoded as trained).
    """

    files: ModelTree | None = None
    base_files: ModelTree | None = None
    model: Any = None
    tokenizer: Any = None
    base_model: Any = None
    base_tokenizer: Any = None
    records: Sequence[Record] | None = None
    heldout: Sequence[Record] | None = None
    canaries: Sequence[Canary] | None = None
    dp: DpClaim | None = None
    seed: int = 0
    max_length: int = 512
    notes: list[str] = field(default_factory=list)

    def available(self) -> frozenset[str]:
        """The needs this context meets."""
        have = {"files": self.files is not None, "model": self.model is not None,
                "base": self.base_model is not None, "records": bool(self.records),
                "heldout": bool(self.heldout), "canaries": bool(self.canaries),
                "dp_claim": self.dp is not None, "findings": bool(self.records)}
        return frozenset(k for k, v in have.items() if v)
