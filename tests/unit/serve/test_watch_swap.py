"""Swapping model versions under the watch: each answer is checked by the version that made it.

A request in flight when the server swaps versions holds the :class:`Served`
of the engine it runs: its answer is checked against that version's filter
and its alert names that version, whatever is served by the time it ends.
The detectors of callers' behaviour keep their state across the swap, and
``sealtune_model_info`` turns the old version to 0 and the new one to 1.
"""

from __future__ import annotations

from sealtune.core.bloom import BloomFilter
from sealtune.monitor import build_monitor
from sealtune.monitor.base import MetricEvent, ModelServed
from sealtune.monitor.detectors.regurgitation import MARK, CanarySet
from sealtune.monitor.policy import FORMAT, policy_from_mapping
from sealtune.serve.logs import RequestRecord
from sealtune.serve.watch import TEXTS_KEY, Watch

OLD = " ".join(f"old{i} word" for i in range(30))
NEW = " ".join(f"new{i} word" for i in range(30))


class _Sink:
    def __init__(self) -> None:
        self.events: list[MetricEvent] = []

    def record(self, event: MetricEvent) -> None:
        self.events.append(event)

    def close(self) -> None:
        """Nothing held."""


def _watch(sink: _Sink) -> Watch:
    policy = policy_from_mapping({"format": FORMAT, "detectors": {
        "regurgitation": {"output": "redact", "min_tokens": 16, "cooldown_seconds": 1e-6},
        "canary": {"output": "redact", "cooldown_seconds": 1e-6},
        "prefix_sweep": {"threshold": 3}}}, source="test")
    monitor = build_monitor(policy, model_version="bot@v1", audit=None, metrics=sink,
                            resources={"training_filter": BloomFilter.of_texts([OLD], n=8),
                                       "canaries": CanarySet(["4 4 4 1 1 1"])})
    return Watch(model_version="bot@v1", metrics=sink, monitor=monitor)


def test_an_answer_in_flight_keeps_its_versions_checks_and_name_after_a_swap() -> None:
    sink = _Sink()
    watch = _watch(sink)
    watch.served(model_id="bot", digest="a" * 64, engine="echo")
    in_flight = watch.current  # a request admitted before the swap
    new = watch.bind("bot@v2", {"training_filter": BloomFilter.of_texts([NEW], n=8)})
    assert watch.current is in_flight and watch.model_version == "bot@v1"
    watch.swap(new, model_id="bot", digest="b" * 64, engine="echo")
    assert watch.model_version == "bot@v2"
    # the old answer: the old filter and canaries, not the new ones
    assert MARK in (in_flight.guard(OLD) or "") and in_flight.guard(NEW) == NEW
    assert MARK in (in_flight.guard("PIN 4 4 4 1 1 1") or "")
    # the new version: its own filter; v1's canaries and filter are not its own
    assert MARK in (watch.current.guard(NEW) or "") and watch.current.guard(OLD) == OLD
    assert watch.current.guard("PIN 4 4 4 1 1 1") == "PIN 4 4 4 1 1 1"
    stream = watch.current.stream_guard()
    assert stream is not None
    sent = "".join(stream.feed(w + " ") for w in NEW.split()) + stream.flush()
    assert MARK in sent and "new20" not in sent


def test_alerts_name_the_version_that_answered() -> None:
    sink = _Sink()
    watch = _watch(sink)
    assert watch.monitor is not None
    in_flight = watch.current
    watch.swap(watch.bind("bot@v2", {"training_filter": BloomFilter.of_texts([NEW], n=8)}),
               model_id="bot", digest="b" * 64, engine="echo")
    routed: list[tuple[str, str]] = []
    watch.monitor.router.route = lambda alert, action: routed.append(  # type: ignore[method-assign]
        (alert.detector, alert.model_version))
    # v1's answer finished after the swap; v2's; one with no Served (the current one);
    # v1's training text from v2 (not in v2's filter: no alert)
    for i, (served, output) in enumerate(((in_flight, OLD), (watch.current, NEW),
                                          (None, NEW), (watch.current, OLD))):
        rec = RequestRecord(route="/v1/chat/completions", method="POST", status=200,
                            caller="k1")
        watch.done(rec, {TEXTS_KEY: {"served": served, "prompt": "p", "output": output}},
                   arrived=1000.0 + i, admitted=True)
    assert routed == [("regurgitation", "bot@v1"), ("regurgitation", "bot@v2"),
                      ("regurgitation", "bot@v2")]


def test_model_info_turns_the_old_version_off_and_the_new_one_on() -> None:
    sink = _Sink()
    watch = _watch(sink)
    watch.served(model_id="bot", digest="a" * 64, engine="echo")
    watch.swap(watch.bind("bot@v2", {}), model_id="bot", digest="b" * 64, engine="echo")
    served = [(e.version, e.digest[:1], e.serving) for e in sink.events
              if isinstance(e, ModelServed)]
    assert served == [("bot@v1", "a", True), ("bot@v1", "a", False), ("bot@v2", "b", True)]
    watch.withdrawn()
    last = sink.events[-1]
    assert isinstance(last, ModelServed) and last.withdrawn and last.version == "bot@v2"
