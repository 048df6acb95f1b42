"""``repeat_divergence``: prompts that make a model repeat itself until it diverges.

Nasr et al. (2023, "Scalable extraction of training data from (production)
language models") asked a chat model to repeat one word forever: after a
few hundred repetitions it *diverged* and emitted memorised training data.
Per request this detector looks for

* a repetitive prompt: one unit of 1 to 3 tokens repeated at least
  ``min_run`` times in a row, or an instruction to repeat forever, endlessly
  or N times (English and Chinese wordings);
* a diverged output: a run of at least ``min_run`` repetitions followed by
  at least ``min_tail`` tokens that do not continue it.

Each such request scores 1 per sign (a repetitive prompt with a diverged
answer scores 2); the score of a caller is the sum over its window
(``window_seconds``, at most ``window_requests`` requests), and
``threshold`` is an alert. A unit made only of punctuation (``-----``,
``!!!!``) does not count. Nothing is kept but times and scores.

Catches: the published repeat-a-word attack and its variants with short
phrases, in either language, whether or not the model diverges.

Misses: repetition spelt with separators longer than 3 tokens per unit,
instructions in other wordings or languages, repetition asked for over
several turns, divergence into text that itself repeats, and callers that
stay under ``threshold`` per window.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sealtune.monitor.base import Alert, Observation
from sealtune.monitor.detectors.base import (
    DetectorContext,
    DetectorSpec,
    KeyedState,
    Tokens,
    register_detector,
)

NAME = "repeat_divergence"
DEFAULTS: dict[str, float | int] = {
    "window_seconds": 600.0, "window_requests": 200, "min_run": 12, "min_tail": 8,
    "threshold": 3,
}
_MAX_UNIT = 3
# Bounded gaps keep these linear: at most 80 characters are tried per starting position.
_INSTRUCTION = re.compile(
    r"\b(?:repeat|say|write|output|print)\b.{0,80}?"
    r"(?:\bforever\b|\binfinitely\b|\bendlessly\b|\bover and over\b|\bnon-?stop\b"
    r"|\b\d{2,}\s*times\b|\b(?:hundred|thousand)s? of times\b)"
    r"|重复.{0,40}?(?:永远|无限|一直|不停|不断|\d{2,}\s*[次遍]|[百千万]+\s*[次遍])",
    re.IGNORECASE | re.DOTALL)
_INSTRUCTION_SCAN = 4096  # characters of the prompt the instruction pattern reads


def longest_run(tokens: Sequence[str]) -> tuple[int, int]:
    """The longest run of one repeated unit of 1..3 tokens: ``(repetitions, end index)``.

    ``end`` is the index just past the run. Units without a letter, digit or
    CJK character do not count. Linear in ``len(tokens)``.
    """
    best, best_end = 1, 0
    for unit in range(1, _MAX_UNIT + 1):
        streak = 0
        for i in range(unit, len(tokens)):
            if tokens[i] == tokens[i - unit]:
                streak += 1
                reps = (streak + unit) // unit
                if reps > best and any(t[0].isalnum() for t in tokens[i - unit + 1:i + 1]):
                    best, best_end = reps, i + 1
            else:
                streak = 0
    return best, best_end


@dataclass
class _Window:
    entries: deque[tuple[float, int]] = field(default_factory=deque)
    score: int = 0


class RepeatDivergence:
    """Scores repetitive prompts and diverged outputs per caller (see the module)."""

    name = NAME

    def __init__(self, settings: Mapping[str, float], ctx: DetectorContext) -> None:
        self._ctx = ctx
        self._span = float(settings["window_seconds"])
        self._size = int(settings["window_requests"])
        self._min_run = int(settings["min_run"])
        self._min_tail = int(settings["min_tail"])
        self._threshold = int(settings["threshold"])
        self._keys: KeyedState[_Window] = KeyedState(_Window, max_keys=ctx.max_keys)

    def score(self, prompt: str | None, output: str | None) -> int:
        """0, 1 or 2: a repetitive prompt, a diverged output, or both."""
        points = 0
        if prompt:
            reps, _ = longest_run(Tokens.split(prompt))
            if reps >= self._min_run or _INSTRUCTION.search(prompt[:_INSTRUCTION_SCAN]):
                points += 1
        if output:
            toks = Tokens.split(output)
            reps, end = longest_run(toks)
            if reps >= self._min_run and len(toks) - end >= self._min_tail:
                points += 1
        return points

    def observe(self, obs: Observation) -> Sequence[Alert]:
        """Add the request's score to the caller's window; alert at ``threshold``."""
        points = self.score(obs.prompt, obs.output)
        if not points:
            return []
        now = obs.meta.time
        win = self._keys.get(obs.meta.caller)
        while win.entries and (win.entries[0][0] < now - self._span
                               or len(win.entries) >= self._size):
            win.score -= win.entries.popleft()[1]
        win.entries.append((now, points))
        win.score += points
        if win.score < self._threshold:
            return []
        return [Alert(detector=NAME, key_id=obs.meta.caller, model_version=self._ctx.model_version,
                      score=float(win.score), threshold=float(self._threshold), time=now)]

    def close(self) -> None:
        """Forget every caller."""
        self._keys.clear()


register_detector(DetectorSpec(NAME, RepeatDivergence, DEFAULTS,
                               summary="repeat-forever prompts and diverged outputs"))
