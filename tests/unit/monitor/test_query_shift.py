"""``query_shift``: a key whose prompts differ from everyone else's is flagged by the MMD test;
keys sending the same kind of prompts are not. The embedding is a hashed bag of words (the
detector takes any embedding; MiniLM is its default and needs the model files)."""

from __future__ import annotations

import hashlib
import json
import random
from importlib import resources
from typing import Any

import numpy as np

from sealtune.monitor.base import Alert, Observation, RequestMeta
from sealtune.monitor.detectors.base import DETECTORS, DetectorContext
from sealtune.monitor.detectors.shift import QueryShift, mmd_test


def demo_questions() -> list[str]:
    text = resources.files("sealtune.demo_data").joinpath("conversations.jsonl").read_text()
    return [m["content"] for line in text.splitlines() if line
            for m in json.loads(line)["messages"] if m["role"] == "user"]


def _embed(texts: list[str]) -> Any:
    out = np.zeros((len(texts), 64))
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, hashlib.blake2b(word.encode(), digest_size=1).digest()[0] % 64] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_mmd_separates_different_samples_and_not_equal_ones() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 8)), rng.normal(size=(128, 8))
    _, p_same = mmd_test(x, y, permutations=200, rng=random.Random(0))
    _, p_diff = mmd_test(x + 1.5, y, permutations=200, rng=random.Random(0))
    assert p_same > 0.05 and p_diff < 0.01


def test_a_key_probing_with_other_prompts_is_flagged_and_normal_keys_are_not() -> None:
    alerts: list[Alert] = []
    spec = DETECTORS.get("query_shift")
    assert spec is not None
    # A hashed bag of words is cruder than MiniLM: a higher MMD floor keeps it specific.
    settings = {**{k: float(v) for k, v in spec.defaults.items()}, "min_mmd": 0.05}
    detector = QueryShift(settings, DetectorContext("m@x", alerts.append), embed=_embed)
    questions = demo_questions()
    random.Random(4).shuffle(questions)
    rng = random.Random(5)
    try:
        for i, q in enumerate(questions[:400]):
            meta = RequestMeta(time=float(i), route="/v1/chat/completions", method="POST",
                               status=200, caller=f"user-{i % 4}", model_version="m@x")
            detector.observe(Observation(meta, q))
        detector.flush()
        assert alerts == []
        for i in range(64):
            probe = " ".join(f"tok{rng.randrange(50)}" for _ in range(12))
            meta = RequestMeta(time=400.0 + i, route="/v1/chat/completions", method="POST",
                               status=200, caller="attacker", model_version="m@x")
            detector.observe(Observation(meta, probe))
        detector.flush()
    finally:
        detector.close()
    assert {a.key_id for a in alerts} == {"attacker"}
