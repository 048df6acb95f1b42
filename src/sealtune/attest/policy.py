"""The verification policy: what an attestation report must satisfy, and its file form.

A policy file is JSON or YAML with the keys documented in
``docs/formats/attestation-v1.md`` ("Verification policy"). Loading is
strict and fails closed: a missing file, an unknown key or a wrong type is a
:class:`~sealtune.errors.ConfigError` naming the file and the key; nothing
falls back to a default. The defaults of :class:`VerificationPolicy` accept
only real TEEs (``sev-snp``, ``tdx``) and never ``dev-software``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sealtune.attest.snp import SnpPolicy
from sealtune.attest.tdx import TdxPolicy
from sealtune.errors import ConfigError

__all__ = ["SnpPolicy", "TdxPolicy", "VerificationPolicy", "load_policy"]


@dataclass(frozen=True)
class VerificationPolicy:
    """What a report must satisfy. The defaults accept only real TEEs, and no dev keys.

    Attributes:
        allowed_platforms: TEE platforms accepted (``sev-snp``, ``tdx``).
        allow_dev_attestation: also accept ``dev-software`` (NOT a TEE; development only).
        dev_attestation_keys: pinned dev-software key fingerprints; empty accepts any key.
        expected_measurements: any subset of ``code``, ``model``, ``config`` -> SHA-256 hex.
        max_age_seconds: reject reports issued longer ago; None disables (warns).
        require_nonce: fail when the caller gives no nonce.
        clock_skew_seconds: tolerance for an issue time in the future.
        snp: the SEV-SNP policy.
        tdx: the TDX policy.
    """

    allowed_platforms: frozenset[str] = frozenset({"sev-snp", "tdx"})
    allow_dev_attestation: bool = False
    dev_attestation_keys: frozenset[str] = frozenset()
    expected_measurements: Mapping[str, str] = field(default_factory=dict)
    max_age_seconds: int | None = 3600
    require_nonce: bool = False
    clock_skew_seconds: int = 60
    snp: SnpPolicy = field(default_factory=SnpPolicy)
    tdx: TdxPolicy = field(default_factory=TdxPolicy)

    def unsafe_allowing_dev_attestation(self) -> VerificationPolicy:
        """A copy that also accepts ``dev-software`` (development only)."""
        return replace(self, allow_dev_attestation=True)


# -- policy files ---------------------------------------------------------------------------

_TOP = {"allowed_platforms", "allow_dev_attestation", "dev_attestation_keys",
        "expected_measurements", "max_age_seconds", "require_nonce", "clock_skew_seconds",
        "snp", "tdx"}
_SNP = {"allow_debug", "min_tcb", "measurements", "cert_chain"}
_TDX = {"allow_debug", "mrtd", "rtmr", "min_tee_tcb_svn"}


class _Reader:
    """Strict typed access to one policy table; errors name the file and the key."""

    def __init__(self, source: str, table: Mapping[str, Any], allowed: set[str],
                 prefix: str = "") -> None:
        self.source, self.table, self.prefix = source, table, prefix
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.error(unknown[0], "unknown key (allowed: " + ", ".join(sorted(allowed))
                             + ")")

    def error(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.prefix}{key}: {what}",
                           hint="see docs/formats/attestation-v1.md, 'Verification policy'")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.table.get(key, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if value is not default and (not isinstance(value, kinds)
                                     or (isinstance(value, bool) and bool not in kinds)):
            raise self.error(key, f"wrong type {type(value).__name__}")
        return value

    def hexes(self, key: str, size: int) -> tuple[str, ...]:
        values = self.get(key, list, [])
        for v in values:
            if not isinstance(v, str) or len(v) != size or not _is_hex(v):
                raise self.error(key, f"each value must be {size} hex digits")
        return tuple(v.lower() for v in values)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _parse_policy(doc: Any, source: str, base: Path) -> VerificationPolicy:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the policy must be a mapping")
    top = _Reader(source, doc, _TOP)
    measurements = top.get("expected_measurements", dict, {})
    m = _Reader(source, measurements, {"code", "model", "config"}, "expected_measurements.")
    for name, value in measurements.items():
        if not isinstance(value, str) or len(value) != 64 or not _is_hex(value):
            raise m.error(name, "must be 64 hex digits (SHA-256)")
    platforms = top.get("allowed_platforms", list, ["sev-snp", "tdx"])
    if not set(platforms) <= {"sev-snp", "tdx"}:
        raise top.error("allowed_platforms", "only sev-snp and tdx (dev-software is allowed "
                        "by allow_dev_attestation)")
    return VerificationPolicy(
        allowed_platforms=frozenset(platforms),
        allow_dev_attestation=top.get("allow_dev_attestation", bool, False),
        dev_attestation_keys=frozenset(top.hexes("dev_attestation_keys", 64)),
        expected_measurements={k: v.lower() for k, v in measurements.items()},
        max_age_seconds=top.get("max_age_seconds", (int, type(None)), 3600),
        require_nonce=top.get("require_nonce", bool, False),
        clock_skew_seconds=top.get("clock_skew_seconds", int, 60),
        snp=_snp_policy(_Reader(source, top.get("snp", dict, {}), _SNP, "snp."), base),
        tdx=_tdx_policy(_Reader(source, top.get("tdx", dict, {}), _TDX, "tdx.")))


def _snp_policy(r: _Reader, base: Path) -> SnpPolicy:
    min_tcb = r.get("min_tcb", dict, {})
    for name, value in min_tcb.items():
        if name not in ("bootloader", "tee", "snp", "microcode", "fmc") or \
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 255:
            raise r.error("min_tcb", "keys bootloader, tee, snp, microcode, fmc; values 0..255")
    chain = r.get("cert_chain", str, None)
    pem = None
    if chain is not None:
        try:
            pem = (base / chain).read_bytes()
        except OSError:
            raise r.error("cert_chain", f"cannot read {base / chain}") from None
    return SnpPolicy(allow_debug=r.get("allow_debug", bool, False), min_tcb=dict(min_tcb),
                     measurements=r.hexes("measurements", 96), cert_chain_pem=pem)


def _tdx_policy(r: _Reader) -> TdxPolicy:
    rtmr: dict[int, tuple[str, ...]] = {}
    table = r.get("rtmr", dict, {})
    for key in table:
        if str(key) not in ("0", "1", "2", "3"):
            raise r.error("rtmr", "keys must be 0, 1, 2 or 3")
        rtmr[int(key)] = _Reader(r.source, {"v": table[key]}, {"v"}, f"tdx.rtmr.{key}.").hexes(
            "v", 96)
    svn = r.get("min_tee_tcb_svn", str, None)
    if svn is not None and (len(svn) != 32 or not _is_hex(svn)):
        raise r.error("min_tee_tcb_svn", "must be 32 hex digits")
    return TdxPolicy(allow_debug=r.get("allow_debug", bool, False), mrtd=r.hexes("mrtd", 96),
                     rtmr=rtmr, min_tee_tcb_svn=None if svn is None else svn.lower())


def load_policy(path: str | os.PathLike[str]) -> VerificationPolicy:
    """Load a verification policy from JSON (``.json``) or YAML (``.yaml``/``.yml``).

    ``path`` may be a ``str`` or any ``os.PathLike`` (``pathlib.Path``).

    Strict: unknown keys and wrong types are errors; nothing falls back to a default
    when the file is missing or invalid. ``snp.cert_chain`` is relative to the file.

    Raises:
        ConfigError: missing, unreadable, malformed or invalid (names file and key).
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: policy file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy ({type(exc).__name__})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: reading YAML needs PyYAML",
                              hint="pip install pyyaml, or write the policy as JSON") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"{path}: not valid YAML") from None
    else:
        try:
            doc = json.loads(text)
        except ValueError:
            raise ConfigError(f"{path}: not valid JSON") from None
    return _parse_policy(doc, str(path), path.parent)
