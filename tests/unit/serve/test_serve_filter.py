"""The output filter and the OpenAI request parser of the server."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from sealtune.errors import ConfigError
from sealtune.serve.filter import FilterPolicy, OutputFilter
from sealtune.serve.openai_api import BadRequest, StopCutter, parse_chat_request

TEXT = ("Sure. Call 13800138000 or mail bob@example.com; ID 11010519491231002X, card "
        "4111 1111 1111 1111, token ghp_" + "a" * 36 + ". Project Nightingale is on. "
        + "filler words " * 8 + "and 13900139000")


def test_whole_text_is_redacted_by_type() -> None:
    flt = OutputFilter(FilterPolicy(blocked_terms=("project nightingale",)))
    counts: Counter[str] = Counter()
    out = flt.apply(TEXT, counts)
    for value in ("13800138000", "bob@example.com", "11010519491231002X", "4111 1111",
                  "ghp_", "Nightingale", "13900139000"):
        assert value not in out
    assert counts == {"PHONE": 2, "EMAIL": 1, "CN_ID": 1, "BANK_CARD": 1, "SECRET": 1,
                      "BLOCKED": 1}
    assert "[PHONE]" in out and "[BLOCKED] is on" in out


@pytest.mark.parametrize("seed", range(40))
def test_stream_filter_equals_whole_filter_for_any_split(seed: int) -> None:
    flt = OutputFilter(FilterPolicy(blocked_terms=("project nightingale",)))
    rnd, stream, out, i = random.Random(seed), flt.stream(), [], 0
    while i < len(TEXT):
        n = rnd.randint(1, 6)
        out.append(stream.feed(TEXT[i:i + n]))
        i += n
    out.append(stream.flush())
    assert "".join(out) == flt.apply(TEXT)


def test_stream_holds_back_only_the_window() -> None:
    flt = OutputFilter(FilterPolicy(pii_types=(), blocked_terms=("secret plan",)))
    stream = flt.stream()
    released = stream.feed("x" * 100)
    assert released == "x" * (100 - flt.holdback)
    assert stream.feed(" the secret") + stream.feed(" plan is") + stream.flush() \
        == "x" * flt.holdback + " the [BLOCKED] is"


def test_filter_policy_fails_closed() -> None:
    with pytest.raises(ConfigError):
        OutputFilter(FilterPolicy(pii_types=("NO_SUCH_TYPE",)))
    with pytest.raises(ConfigError):
        FilterPolicy(holdback_chars=4)
    assert not OutputFilter(FilterPolicy(pii_types=())).active


def test_stop_sequences_across_pieces() -> None:
    cut = StopCutter(["END"])
    out = "".join(cut.feed(p) for p in ["hello E", "N", "D more"])
    assert (out, cut.hit) == ("hello ", True)
    cut = StopCutter(["END"])
    assert "".join([cut.feed("no stop E"), cut.flush()]) == "no stop E" and not cut.hit


def _parse(body: object) -> object:
    return parse_chat_request(json.dumps(body).encode(), default_max_tokens=16,
                              max_tokens_limit=64)


def test_parser_rejects_without_echoing_values() -> None:
    secret = "PLANTED-parser"
    ok = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text",
                                                                   "text": "a"}]}]}
    req = _parse(ok)
    assert req.sampling.max_tokens == 16  # type: ignore[attr-defined]
    bad = [({**ok, "temperature": secret}, "temperature"), ({**ok, secret: 1}, secret),
           ({**ok, "max_tokens": 65}, "max_tokens"), ({**ok, "n": 2}, "n"),
           ({**ok, "messages": [{"role": secret, "content": "x"}]}, "messages[0].role"),
           ({**ok, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]"), ({**ok, "stop": [secret] * 5}, "stop"),
           ({"messages": ok["messages"]}, "model")]
    for body, param in bad:
        with pytest.raises(BadRequest) as caught:
            _parse(body)
        assert caught.value.param == param
        assert secret not in caught.value.message
    with pytest.raises(BadRequest):
        parse_chat_request(b"{not json " + secret.encode(), default_max_tokens=1,
                           max_tokens_limit=1)
