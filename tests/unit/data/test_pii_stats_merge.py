"""PiiStats.merge: counting in batches and merging in order equals counting once.

The parallel redaction pass (``--workers``) counts each batch in a worker and
merges the counts here; findings.json must not depend on where the batch
boundaries fall, including its first three distinct masked examples per type.
"""

from __future__ import annotations

import json
import random
from itertools import pairwise

from sealtune.data.findings import PiiStats
from sealtune.data.policy import default_policy
from sealtune.data.records import Message, Record
from sealtune.data.redact import DatasetKeys, Redactor


def _records(n: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    shapes = ["1380013{:04d}", "+86 138 0013 {:04d}", "138-0013-{:04d}", "u{}@example.com",
              "user.{}@mail.example.org"]
    out = []
    for i in range(n):
        k = rng.randrange(6)
        text = "nothing here" if k == 5 else f"call me at {shapes[k].format(rng.randrange(10**4))}"
        out.append(Record(id=f"r{i}", line=i + 1, messages=[Message("user", text),
                                                            Message("assistant", "ok")]))
    return out


def test_batches_merged_in_order_count_as_one() -> None:
    policy = default_policy()
    analyzer, redactor = policy.analyzer(), Redactor(policy, keys=DatasetKeys.generate())
    for seed in range(5):
        records = _records(300, seed)
        found = [[analyzer.analyze(m.content) for m in r.messages] for r in records]
        outcomes = [redactor.redact_record(r, f) for r, f in zip(records, found, strict=True)]
        once = PiiStats()
        for r, f, o in zip(records, found, outcomes, strict=True):
            once.count(r, f, {}, o)
        rng = random.Random(seed)
        cuts = sorted({0, len(records), *(rng.randrange(len(records)) for _ in range(12))})
        merged = PiiStats()
        for lo, hi in pairwise(cuts):
            part = PiiStats()
            for r, f, o in zip(records[lo:hi], found[lo:hi], outcomes[lo:hi], strict=True):
                part.count(r, f, {}, o)
            merged.merge(part)
        assert once.records_with_pii > 100 and len(once.examples["PHONE"]) == 3
        assert json.dumps(merged.to_json()) == json.dumps(once.to_json())
