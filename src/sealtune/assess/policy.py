"""The gate policy: which probes run, their thresholds, the licences a base model may carry.

A policy is a YAML file (``sealtune assess policy init FILE`` writes the
commented default, :func:`default_policy_text`)::

    version: 1
    licences: [Apache-2.0, MIT]
    probes:
      model_files:
        run: required          # required | when-available | off
        unsafe_allow_pickle: false
      canary_exposure:
        run: when-available
        alpha: 0.01
        ...

It is read with :mod:`sealtune.yaml_source` (positions kept; anchors,
aliases, tags and duplicate keys refused; bounded size) and checked
strictly: an unknown key, a missing section, a value of the wrong type or
out of range is a :class:`~sealtune.errors.ConfigError` naming
``FILE:LINE:COL`` and the key. Every registered probe must have a section
(a probe left out of the policy would silently not gate), and each
section's keys are the probe's :data:`SETTINGS` plus ``run``.

``run``: ``required`` (the probe must run; if what it needs is missing,
the gate fails), ``when-available`` (it runs when the model has what it
needs, e.g. canaries, and is reported as skipped otherwise), ``off`` (never
runs; the report lists it as off).

What this protects against: a misspelt threshold silently keeping its
default, a policy that forgets a probe, a YAML trick (an alias or a tag).
What it does not: choose good thresholds; the defaults are documented in
``docs/assess.md`` with what they are calibrated against.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sealtune.errors import ConfigError
from sealtune.yaml_source import YMap, YNode, YScalar, YSeq, parse_text, read_source

VERSION = 1
RUN = ("required", "when-available", "off")
Run = Literal["required", "when-available", "off"]
SPDX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]{0,63}$")
_EXAMPLE = "write the default with 'sealtune assess policy init FILE'"
_WHAT = "gate policy"
Value = int | float | bool | str


@dataclass(frozen=True)
class Setting:
    """One threshold or option of a probe.

    Attributes:
        default: the default (its type is the setting's type; a float accepts integers).
        help: one line for the commented default policy.
        low, high: bounds for numbers (inclusive).
        choices: the allowed strings.
    """

    default: Value
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()

    def check(self, node: YNode, path: str) -> Value:
        """The value of ``node``, or a :class:`ConfigError` at its position."""
        value = node.value if isinstance(node, YScalar) else None
        kind = type(self.default)
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str) and (not self.choices or value in self.choices)
        if not ok:
            want = " or ".join(self.choices) if self.choices else {
                bool: "true or false", int: "an integer", float: "a number"}.get(kind, "text")
            raise node.mark.error(path, f"must be {want}", hint=self.help)
        assert value is not None and not isinstance(value, YNode)
        if isinstance(value, int | float) and not isinstance(value, bool) and (
                (self.low is not None and value < self.low)
                or (self.high is not None and value > self.high)):
            raise node.mark.error(path, f"must be between {self.low} and {self.high}",
                                  hint=self.help)
        return float(value) if kind is float else value


@dataclass(frozen=True)
class ProbePolicy:
    """One probe's section: whether it runs, and its settings (defaults filled in)."""

    run: Run
    settings: Mapping[str, Value]

    @property
    def required(self) -> bool:
        return self.run == "required"


@dataclass(frozen=True)
class GatePolicy:
    """A checked gate policy.

    Attributes:
        probes: one section per registered probe.
        licences: SPDX ids a base model may carry (``sealtune models base add``).
        source: how errors and the report name the file.
        digest: ``sha256:`` of the file's bytes (the report records it).
    """

    probes: Mapping[str, ProbePolicy]
    licences: tuple[str, ...]
    source: str
    digest: str

    def allows_licence(self, spdx: str) -> bool:
        """Whether ``spdx`` is on the allow-list (exact, case-sensitive SPDX id)."""
        return spdx in self.licences


def _probe_settings() -> dict[str, tuple[Run, Mapping[str, Setting]]]:
    from sealtune.assess.probes import PROBES

    return {name: (probe.default_run, probe.settings) for name, probe in PROBES.items()}


def load_policy(path: Path) -> GatePolicy:
    """Read and check the gate policy at ``path`` (see the module docstring).

    Raises:
        ConfigError: missing, unreadable, not YAML, or invalid (with line and column).
    """
    top = read_source(path, what=_WHAT, example=_EXAMPLE)
    return _build(top, path.read_bytes(), str(path))


def parse_policy(text: str, *, source: str = "<policy>") -> GatePolicy:
    """Check a policy given as text (see :func:`load_policy`)."""
    return _build(parse_text(text, source=source, what=_WHAT, example=_EXAMPLE),
                  text.encode("utf-8"), source)


def _keys(section: YMap, path: str, allowed: tuple[str, ...], required: tuple[str, ...]
          ) -> None:
    for key in section.items:
        if key not in allowed:
            raise section.key_marks[key].error(
                f"{path}.{key}" if path else key, "unknown key",
                hint=f"the keys here are {', '.join(allowed)}")
    for key in required:
        if key not in section.items:
            raise section.mark.error(f"{path}.{key}" if path else key, "required",
                                     hint=f"add '{key}:' ({_EXAMPLE})")


def _build(top: YMap, raw: bytes, source: str) -> GatePolicy:
    _keys(top, "", ("version", "licences", "probes"), ("version", "licences", "probes"))
    version = top.items["version"]
    if not isinstance(version, YScalar) or version.value != VERSION:
        raise version.mark.error("version", f"must be {VERSION}",
                                 hint="this sealtune reads gate policy version 1")
    probes = top.items["probes"]
    if not isinstance(probes, YMap):
        raise probes.mark.error("probes", "must be a mapping of probe names to sections")
    known = _probe_settings()
    _keys(probes, "probes", tuple(known), tuple(known))
    parsed = {name: _section(probes.items[name], f"probes.{name}", settings)
              for name, (_run, settings) in known.items()}
    return GatePolicy(probes=parsed, licences=_licences(top.items["licences"]),
                      source=source, digest="sha256:" + hashlib.sha256(raw).hexdigest())


def _section(node: YNode, path: str, settings: Mapping[str, Setting]) -> ProbePolicy:
    if not isinstance(node, YMap):
        raise node.mark.error(path, "must be a mapping", hint="at least 'run:'")
    _keys(node, path, ("run", *settings), ("run",))
    run = node.items["run"]
    # An unquoted `off` is YAML's false: read it as the user wrote it. (`on`/`true`
    # say nothing about which of required / when-available is meant: refused.)
    value = "off" if isinstance(run, YScalar) and run.value is False else getattr(
        run, "value", None)
    if not isinstance(run, YScalar) or value not in RUN:
        raise run.mark.error(f"{path}.run", f"must be {', '.join(RUN)}",
                             hint="quote it if YAML reads it as something else")
    values = {name: s.default for name, s in settings.items()}
    for name, child in node.items.items():
        if name != "run":
            values[name] = settings[name].check(child, f"{path}.{name}")
    return ProbePolicy(run=value, settings=values)  # type: ignore[arg-type]


def _licences(node: YNode) -> tuple[str, ...]:
    if not isinstance(node, YSeq):
        raise node.mark.error("licences", "must be a list of SPDX licence ids",
                              hint="e.g. [Apache-2.0, MIT]")
    out = []
    for item in node.items:
        if not (isinstance(item, YScalar) and isinstance(item.value, str)
                and SPDX.match(item.value)):
            raise item.mark.error("licences", "each entry must be an SPDX id such as "
                                  "Apache-2.0")
        out.append(item.value)
    return tuple(out)


#: The licences the default policy allows for base models (open, permissive, weights-usable).
DEFAULT_LICENCES = ("Apache-2.0", "MIT", "BSD-3-Clause", "BSD-2-Clause")


def default_policy_text() -> str:
    """The commented default policy (every registered probe, every setting, its default)."""
    lines = [
        "# sealtune release gate policy (sealtune assess MODEL --policy THIS_FILE).",
        "# Every registered probe has a section; unknown keys are errors.",
        "# run: required (must run, fails the gate if it cannot) | when-available | off",
        "# docs/assess.md says what each probe shows, what it does not, and the defaults.",
        f"version: {VERSION}",
        "# SPDX ids a base model may carry ('sealtune models base add ... --licence ID').",
        "licences:",
        *(f"  - {spdx}" for spdx in DEFAULT_LICENCES),
        "probes:",
    ]
    for name, (run, settings) in _probe_settings().items():
        lines += [f"  {name}:", f"    run: {run}"]
        for key, setting in settings.items():
            lines.append(f"    # {setting.help}")
            lines.append(f"    {key}: {_yaml(setting.default)}")
    return "\n".join(lines) + "\n"


def _yaml(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def write_default_policy(path: Path) -> Path:
    """Write :func:`default_policy_text` to ``path`` (refusing to overwrite a file).

    Raises:
        ConfigError: ``path`` exists.
    """
    from sealtune.outputs import write_atomic

    if path.exists():
        raise ConfigError(f"{path} already exists", hint="choose another file name")
    write_atomic(path, default_policy_text().encode("utf-8"))
    return path
