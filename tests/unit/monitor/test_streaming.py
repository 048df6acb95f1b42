"""The stream guard: a streamed answer is checked before it leaves, a few tokens behind.

Against the whole-answer guard (:meth:`Monitor.guard`) on random answers cut into random
pieces: the same bytes go out (benign answers unchanged); the secret never appears in what
has been released at any point; ``block`` cuts the stream; a scanner that fails blocks it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import pytest

from sealtune.core.bloom import BloomFilter
from sealtune.monitor import build_monitor, default_policy
from sealtune.monitor.detectors.regurgitation import MARK, CanarySet
from sealtune.monitor.policy import FORMAT, policy_from_mapping
from sealtune.monitor.runtime import Monitor
from sealtune.monitor.streaming import StreamGuard

_WORDS = "alpha beta gamma delta eps zeta eta theta iota kappa lam mu nu xi , . ! 7 42 é 中 card"
WORDS = _WORDS.split()
SECRET = ("the vault code of the zurich branch is seven four one nine and the backup phrase "
          "is purple elephant marmalade tuesday harbour lantern so keep it safe always")


def _monitor(rng: random.Random, output: str = "redact") -> tuple[Monitor, list[str]]:
    train = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(30)]
    train.append(SECRET)
    policy = policy_from_mapping({"format": FORMAT, "detectors": {
        "regurgitation": {"output": output}, "canary": {"output": output}}}, source="test")
    mon = build_monitor(policy, model_version="m@0", audit=None, resources={
        "training_filter": BloomFilter.of_texts(train, n=8),
        "canaries": CanarySet(["3 9 1 4 7 2", "zeta 77 eta"])})
    return mon, train


def _answer(rng: random.Random, train: Sequence[str]) -> str:
    parts = []
    for _ in range(rng.randint(0, 4)):
        r = rng.random()
        if r < 0.4:
            words = rng.choice(train).split()
            a = rng.randrange(len(words))
            parts.append(" ".join(words[a:rng.randint(a, len(words))]))
        elif r < 0.5:
            parts.append(rng.choice(["3 9 1 4 7 2", "zeta 77 eta", "3 9 1 4 7 2x"]))
        else:
            parts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 30))))
    return rng.choice(["", " ", "\n", "**"]).join(parts) + rng.choice(["", " ", "!", "\n "])


def _stream(guard: StreamGuard, text: str, rng: random.Random) -> list[str]:
    out, i = [], 0
    while i < len(text):
        j = i + rng.randint(1, 9)
        out.append(guard.feed(text[i:j]))
        i = j
    return [*out, guard.flush()]


def _one_mark(text: str | None) -> str | None:
    """Spans of two detectors that touch are one mark in a stream, two in a whole answer."""
    return None if text is None else re.sub(rf"(?:{re.escape(MARK)}\s*)+{re.escape(MARK)}",
                                            MARK, text)


def test_a_stream_sends_what_the_whole_answer_guard_sends() -> None:
    rng = random.Random(7)
    mon, train = _monitor(rng)
    changed = 0
    for _ in range(1500):
        text = _answer(rng, train)
        whole, _ = mon.guard(text)
        guard = mon.stream_guard()
        assert guard is not None
        streamed = "".join(_stream(guard, text, rng))
        assert _one_mark(streamed) == _one_mark(whole)
        changed += whole != text
        if whole == text:
            assert streamed == text  # byte for byte
    assert 200 < changed < 1300  # both kinds were exercised
    mon.close()


def test_the_secret_never_leaves_however_the_stream_is_cut() -> None:
    rng = random.Random(8)
    mon, _ = _monitor(rng)
    for trial in range(200):
        text = f"Sure{rng.choice(['!', ',', ''])} {SECRET}{rng.choice(['.', ' ok', ''])}"
        guard = mon.stream_guard()
        assert guard is not None
        sent = ""
        for piece in _stream(guard, text, random.Random(trial)):
            sent += piece
            assert "marmalade" not in sent and "vault code of the zurich" not in sent
        assert sent.startswith("Sure") and MARK in sent and guard.hit == ["regurgitation"]
    mon.close()


def test_the_alert_after_a_stream_reports_what_a_whole_answer_would() -> None:
    from sealtune.monitor.base import Observation, RequestMeta

    scores = []
    for streamed in (True, False):
        mon, _ = _monitor(random.Random(11))
        text = f"Sure. {SECRET}. Bye"
        if streamed:
            guard = mon.stream_guard()
            assert guard is not None
            _stream(guard, text, random.Random(2))
        meta = RequestMeta(time=1.0, route="/v1/chat/completions", method="POST", status=200,
                           caller="k", model_version="m@0", stream=streamed)
        scores.append([(a.detector, a.score) for a in mon.observe(Observation(meta, "q", text))])
        mon.close()
    assert scores[0] == scores[1] == [("regurgitation", float(len(SECRET.split())))]


def test_a_benign_answer_is_held_back_by_n_minus_one_tokens_only() -> None:
    mon, _ = _monitor(random.Random(9))
    guard = mon.stream_guard()
    assert guard is not None
    released = [guard.feed(f"w{i} ") for i in range(20)]
    # A token is complete once the character after it arrives; it leaves when 7 more are.
    assert released[:7] == [""] * 7 and released[7] == "w0"
    assert "".join(released) + guard.flush() == "".join(f"w{i} " for i in range(20))
    mon.close()


def test_block_cuts_the_stream_where_the_span_starts() -> None:
    mon, _ = _monitor(random.Random(10), output="block")
    guard = mon.stream_guard()
    assert guard is not None
    sent = "".join(_stream(guard, "Hello there friend, " + SECRET + " and more text after",
                           random.Random(1)))
    assert guard.blocked and guard.hit == ["regurgitation"]
    assert "Hello there friend," in sent and "vault" not in sent and "after" not in sent
    assert guard.feed("more") == "" and guard.flush() == ""
    mon.close()


def test_pass_or_no_output_detector_means_no_guard() -> None:
    assert build_monitor(default_policy(), model_version="m@0", audit=None).stream_guard() is None
    policy = policy_from_mapping({"format": FORMAT, "detectors": {
        "regurgitation": {"output": "pass"}}}, source="test")
    mon = build_monitor(policy, model_version="m@0", audit=None, resources={
        "training_filter": BloomFilter.of_texts([SECRET], n=8)})
    assert mon.stream_guard() is None
    mon.close()


class _Broken:
    def push(self, token: str) -> None:
        raise RuntimeError(token)

    def finish(self, text: str) -> None:
        """Nothing."""

    def frontier(self) -> int:
        return 0

    def spans(self) -> Sequence[tuple[int, int]]:
        return []


@pytest.mark.parametrize("text", ["a b c d", "abc"])
def test_a_failing_scanner_blocks_the_stream(text: str) -> None:
    from collections import Counter

    failures: Counter[str] = Counter()
    guard = StreamGuard([("regurgitation", "redact", _Broken())], mark=MARK, failures=failures)
    assert guard.feed(text) + guard.flush() == ""
    assert guard.blocked and failures == Counter({"RuntimeError": 1})
