"""The validation split: records held out of training, chosen by a seeded hash of each record.

Each record gets a rank, ``sha256(tag, seed, its messages)``; the ``k`` records
with the lowest ranks are held out (``k`` = ``val_size`` when it is a count,
``ceil(val_size * N)`` when it is a fraction) and the rest train, both in
their original order. The split is deterministic (same records and seed, same
split), disjoint, and a record's rank depends on that record alone — not on
its position or id — so adding or removing one record moves at most one
other record across the split (see docs/training.md on what that means for a
DP guarantee).

What this protects against: evaluation on records the model trained on; a
split that changes when a record is inserted elsewhere in the file. What it
does not: near-duplicates across the split (deduplicate in the data stage);
the ranks are not secret (anyone with the records and the seed can recompute
them), and they never leave the sandbox. Errors name counts, never text.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

from sealtune.data.records import Record
from sealtune.errors import UsageError
from sealtune.train.config import where

_TAG = b"sealtune.val-split/v1\x00"


def val_count(val_size: int | float, n_records: int) -> int:
    """How many of ``n_records`` the split holds out (0: no split).

    Raises:
        UsageError: the split would leave no record to train on.
    """
    if not val_size:
        return 0
    k = val_size if isinstance(val_size, int) else math.ceil(val_size * n_records)
    if k >= n_records:
        raise UsageError(f"{where('val_size')} holds out {k} of the dataset's {n_records} "
                         "records, leaving none to train on",
                         hint="hold out fewer records, or train on a larger dataset")
    return k


def _rank(record: Record, seed_bytes: bytes) -> bytes:
    body = json.dumps([[m.role, m.content] for m in record.messages], ensure_ascii=False,
                      separators=(",", ":")).encode()
    return hashlib.sha256(_TAG + seed_bytes + body).digest()


def split_records(records: Sequence[Record], *, val_size: int | float,
                  seed: int) -> tuple[list[Record], list[Record]]:
    """``(train, held_out)``: disjoint, each in the records' original order.

    Raises:
        UsageError: the split would leave no record to train on.
    """
    k = val_count(val_size, len(records))
    if not k:
        return list(records), []
    seed_bytes = seed.to_bytes(8, "big", signed=False)
    # Ties (identical conversations) fall back to position: such records are interchangeable.
    order = sorted(range(len(records)), key=lambda i: (_rank(records[i], seed_bytes), i))
    held = set(order[:k])
    return ([r for i, r in enumerate(records) if i not in held],
            [r for i, r in enumerate(records) if i in held])
