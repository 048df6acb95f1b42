"""The monitor policy: which detectors run, their thresholds, and what an alert sets off.

A policy is a TOML file (``sealtune serve --monitor-policy FILE``)::

    format = "sealtune-monitor-policy/v1"
    max_keys = 10000                  # callers each detector tracks

    [detectors.prefix_sweep]
    action = "revoke_key"             # alert | revoke_key | withdraw_model
    threshold = 8                     # any setting the detector declares
    cooldown_seconds = 600            # one alert per key and detector per this long

    [detectors.query_shift]
    enabled = true                    # off by default (needs the embedding model)

    [webhook]
    url = "https://alerts.example/sealtune"
    timeout_seconds = 2.0
    secret_env = "SEALTUNE_WEBHOOK_SECRET"   # signs each body (HMAC-SHA-256)

Without a file the defaults apply: every detector whose spec says so
(``prefix_sweep``, ``repeat_divergence``, ``error_rate``, ``latency``,
``volume``) with action ``alert``, no webhook. A detector left out of the
file keeps its defaults. Parsing is strict: an unknown key, detector, action
or setting, a setting of the wrong type, or a non-positive number is a
:class:`~sealtune.errors.ConfigError` naming the file and the field; a
policy is never partly applied and never replaced by the defaults when it
is broken (fail closed).

What this protects against: a typo silently turning a detector or a
response off. What it does not: judge whether the thresholds suit the
traffic (``docs/monitoring.md`` says what each one trades).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from sealtune.errors import ConfigError
from sealtune.monitor.base import Action
from sealtune.monitor.detectors import DETECTORS

__all__ = ["ACTIONS", "FORMAT", "DetectorPolicy", "MonitorPolicy", "WebhookPolicy",
           "default_policy", "load_policy"]

FORMAT = "sealtune-monitor-policy/v1"
ACTIONS: tuple[Action, ...] = ("alert", "revoke_key", "withdraw_model")
_COMMON = ("enabled", "action", "cooldown_seconds", "output")
OUTPUTS = ("pass", "redact", "block")


@dataclass(frozen=True)
class DetectorPolicy:
    """One detector as the policy configures it.

    Attributes:
        name: the registered detector.
        enabled: whether it runs.
        action: what its alerts set off besides the ledger event, the counter
            and the webhook: nothing more (``alert``), revoking the caller's
            API key (``revoke_key``; alerts about the model as a whole only
            alert), or taking the model out of service (``withdraw_model``).
        cooldown_seconds: after an alert, the same detector stays quiet about
            the same key for this long.
        settings: every setting of the detector (defaults filled in).
        output: for detectors that can check an answer before it is sent
            (``regurgitation``, ``canary``): ``pass`` it, ``redact`` the
            spans found, or ``block`` the answer (default ``redact``).
    """

    name: str
    enabled: bool
    action: Action
    cooldown_seconds: float
    settings: Mapping[str, float]
    output: str = "redact"
    configured: bool = False  # the file said enabled = true or false


@dataclass(frozen=True)
class WebhookPolicy:
    """Where alerts are POSTed (JSON, no text), and how.

    Attributes:
        url: an ``http`` or ``https`` URL.
        timeout_seconds: per delivery (connect and read).
        secret: the HMAC key that signs each body, or None (not shown in reprs).
    """

    url: str
    timeout_seconds: float = 2.0
    secret: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MonitorPolicy:
    """The detectors, their responses and the webhook.

    Attributes:
        detectors: one entry per registered detector, in name order.
        webhook: where alerts are POSTed, or None.
        max_keys: how many callers each detector keeps state for.
        source: the file it came from, or ``<defaults>``.
    """

    detectors: tuple[DetectorPolicy, ...]
    webhook: WebhookPolicy | None = None
    max_keys: int = 10_000
    source: str = "<defaults>"

    def enabled(self) -> tuple[DetectorPolicy, ...]:
        """The detectors that run."""
        return tuple(d for d in self.detectors if d.enabled)

    def with_resources(self, names: Iterable[str]) -> MonitorPolicy:
        """This policy with the detectors in ``names`` enabled, unless the file set ``enabled``.

        The server calls it with the detectors whose resource it opened (the
        model's training filter, the canaries): they watch by default when
        they can, and a policy that says ``enabled = false`` keeps them off.
        """
        wanted = set(names)
        return replace(self, detectors=tuple(
            replace(d, enabled=True) if d.name in wanted and not d.configured else d
            for d in self.detectors))

    def detector(self, name: str) -> DetectorPolicy:
        """The policy of detector ``name``.

        Raises:
            KeyError: no detector of that name.
        """
        for d in self.detectors:
            if d.name == name:
                return d
        raise KeyError(name)


def _number(value: Any, *, integer: bool, where: str) -> float:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if not integer:
        ok = ok or isinstance(value, float)
    if not ok:
        raise ConfigError(f"{where} must be {'an integer' if integer else 'a number'}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where} must be a positive number")
    return float(value)


def _detector(name: str, doc: Mapping[str, Any], where: str) -> DetectorPolicy:
    spec = DETECTORS.get(name)
    if spec is None:
        raise ConfigError(f"{where}: unknown detector {name!r}",
                          hint=f"known detectors: {', '.join(DETECTORS.names())}")
    unknown = sorted(set(doc) - set(spec.defaults) - set(_COMMON))
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}",
                          hint=f"{name} takes: {', '.join([*_COMMON, *spec.defaults])}")
    enabled = doc.get("enabled", spec.enabled)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled must be true or false")
    action = doc.get("action", "alert")
    if action not in ACTIONS:
        raise ConfigError(f"{where}.action must be one of: {', '.join(ACTIONS)}")
    settings = {k: _number(doc.get(k, v), integer=isinstance(v, int), where=f"{where}.{k}")
                for k, v in spec.defaults.items()}
    for k, top in spec.at_most.items():
        if settings[k] > top:
            raise ConfigError(f"{where}.{k} must be at most {top:g}")
    output = doc.get("output", "redact")
    if output not in OUTPUTS:
        raise ConfigError(f"{where}.output must be one of: {', '.join(OUTPUTS)}")
    cooldown = _number(doc.get("cooldown_seconds", settings.get("window_seconds", 600.0)),
                       integer=False, where=f"{where}.cooldown_seconds")
    return DetectorPolicy(name, enabled, cast(Action, action), cooldown, settings, str(output),
                          configured="enabled" in doc)


def _webhook(doc: Any, where: str) -> WebhookPolicy:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(doc) - {"url", "timeout_seconds", "secret_env"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}",
                          hint="webhook takes: url, timeout_seconds, secret_env")
    url = doc.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url must be an http:// or https:// URL")
    timeout = _number(doc.get("timeout_seconds", 2.0), integer=False,
                      where=f"{where}.timeout_seconds")
    if timeout > 30:
        raise ConfigError(f"{where}.timeout_seconds must be at most 30")
    secret = None
    if "secret_env" in doc:
        env = doc["secret_env"]
        value = os.environ.get(env) if isinstance(env, str) else None
        if not value:
            raise ConfigError(f"{where}.secret_env: the environment variable is not set",
                              hint="export it before starting the server")
        secret = value.encode("utf-8")
    return WebhookPolicy(str(url), timeout, secret)


def policy_from_mapping(doc: Mapping[str, Any], *, source: str) -> MonitorPolicy:
    """Build a policy from a parsed document (see the module for the format).

    Raises:
        ConfigError: naming ``source`` and the field at fault.
    """
    unknown = sorted(set(doc) - {"format", "max_keys", "detectors", "webhook"})
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}",
                          hint="a monitor policy has format, max_keys, [detectors.*], [webhook]")
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{source}: format must be {FORMAT!r}")
    given = doc.get("detectors", {})
    if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
        raise ConfigError(f"{source}: detectors must be tables, [detectors.<name>]")
    for name in given:
        if name not in DETECTORS:
            _detector(name, {}, f"{source}: detectors")  # raises, naming the known ones
    detectors = tuple(_detector(n, given.get(n, {}), f"{source}: detectors.{n}")
                      for n in DETECTORS.names())
    webhook = _webhook(doc["webhook"], f"{source}: webhook") if "webhook" in doc else None
    max_keys = int(_number(doc.get("max_keys", 10_000), integer=True, where=f"{source}: max_keys"))
    return MonitorPolicy(detectors, webhook, max_keys, source)


def default_policy() -> MonitorPolicy:
    """The policy without a file: the default detectors, action ``alert``, no webhook."""
    return policy_from_mapping({"format": FORMAT}, source="<defaults>")


def load_policy(path: Path) -> MonitorPolicy:
    """Read a monitor policy file.

    Raises:
        ConfigError: the file is missing, not TOML, or invalid (naming the field).
    """
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"monitor policy {path} does not exist",
                          hint="give an existing file, or leave --monitor-policy out for "
                               "the defaults") from None
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"monitor policy {path} cannot be read") from None
    except tomllib.TOMLDecodeError as exc:
        # the parser's message names a line and column, never a value
        raise ConfigError(f"monitor policy {path} is not valid TOML ({exc})") from None
    return policy_from_mapping(doc, source=str(path))
