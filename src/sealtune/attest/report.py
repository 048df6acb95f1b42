"""The versioned attestation report (format attestation-v1) and measurements.

The server publishes one JSON report per key configuration (and per client
nonce when one is asked for). Its evidence binds 64 bytes of *report data*,
``report_data(key_configs, nonce, claims=canonical claims)``, so that every
claim the client relies on is covered by the platform's signature: the HPKE
key configurations, the code/model/config measurement, the issue time, the
platform name and the format version. The byte-exact rules are in
``docs/formats/attestation-v1.md``.

What this protects against: a replayed report (nonce), a substituted server
key or measurement (report data no longer matches), a report relabelled as
another platform. What it does not: the measurement is computed by the
server's own code, so it is worth exactly as much as the evidence that this
code is what runs (nothing more than key possession for ``dev-software``;
the launch measurement for a TEE); the issue time is the server's clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sealtune.attest.base import AttestationProvider, report_data
from sealtune.attest.software import WARNING as DEV_WARNING
from sealtune.core import strict_json
from sealtune.core.protocol import decode_key_configs
from sealtune.errors import AttestationError, MalformedJSON, UsageError

REPORT_VERSION = 1
#: Platform name -> whether it is a TEE. The verifier trusts this table, not the report.
PLATFORMS: dict[str, bool] = {"dev-software": False, "sev-snp": True, "tdx": True}
#: What every report and verification result says about each platform.
WARNINGS: dict[str, str] = {
    "dev-software": DEV_WARNING,
    "sev-snp": "sev-snp: sealtune's SEV-SNP support is untested on hardware",
    "tdx": "tdx: sealtune's TDX support is untested on hardware",
}
NONCE_MIN, NONCE_MAX = 8, 64
MAX_REPORT_BYTES = 1 << 20
_FIELDS = frozenset({"version", "platform", "is_tee", "warning", "evidence", "key_configs",
                     "measurement", "issued_at", "nonce", "report_data"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_TREE_LABEL = b"sealtune/measure-tree v1"


def _malformed(what: str) -> AttestationError:
    return AttestationError(f"malformed attestation report: {what}",
                            hint="fetch the report again from GET /v1/attestation")


@dataclass(frozen=True)
class Measurement:
    """SHA-256 digests (lowercase hex) of the installed code, the model and the config."""

    code: str
    model: str
    config: str

    def __post_init__(self) -> None:
        for name in ("code", "model", "config"):
            if not _HEX64.match(getattr(self, name)):
                raise _malformed(f"measurement.{name} must be 64 lowercase hex digits")

    def to_dict(self) -> dict[str, str]:
        """The JSON form, ``{"code", "model", "config"}``."""
        return {"code": self.code, "model": self.model, "config": self.config}


def measure_bytes(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex (e.g. the serving config as loaded)."""
    return hashlib.sha256(data).hexdigest()


def measure_tree(path: Path, *, exclude: frozenset[str] = frozenset({"__pycache__"})) -> str:
    """Digest of a file or directory tree, independent of file order and timestamps.

    A file: SHA-256 of its bytes. A directory: SHA-256 over the label and, for
    each regular file in sorted relative POSIX path order, ``u32 len || path ||
    SHA-256(content)``. Directories named in ``exclude`` are skipped; symbolic
    links to files are measured by content, symbolic links to directories are
    not followed.

    Raises:
        AttestationError: the path does not exist.
    """
    if path.is_file():
        return _file_digest(path).hex()
    if not path.is_dir():
        raise AttestationError(f"{path}: cannot measure: not a file or directory")
    entries: list[tuple[bytes, Path]] = []
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in exclude]
        for name in files:
            full = Path(root, name)
            if full.is_file():
                entries.append((full.relative_to(path).as_posix().encode("utf-8"), full))
    h = hashlib.sha256(_TREE_LABEL)
    for rel, full in sorted(entries):
        h.update(len(rel).to_bytes(4, "big") + rel + _file_digest(full))
    return h.hexdigest()


def _file_digest(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()


def measure_code() -> str:
    """Digest of the installed ``sealtune`` package tree (``__pycache__`` excluded)."""
    return measure_tree(Path(__file__).resolve().parent.parent)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, ASCII only; floats are refused (no canonical form)."""
    def check(v: Any) -> None:
        if isinstance(v, float):
            raise _malformed("floating-point numbers are not allowed")
        if isinstance(v, dict):
            for item in v.values():
                check(item)
        elif isinstance(v, list):
            for item in v:
                check(item)

    check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def format_time(now: datetime) -> str:
    """RFC 3339 UTC with whole seconds, e.g. ``2025-01-31T12:00:00Z``."""
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware (e.g. datetime.now(UTC))")
    return now.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def claims_bytes(*, platform: str, measurement: Measurement, issued_at: str) -> bytes:
    """The canonical claims bound into report data besides key configs and nonce."""
    return canonical_json({"version": REPORT_VERSION, "platform": platform,
                           "is_tee": PLATFORMS[platform], "measurement": measurement.to_dict(),
                           "issued_at": issued_at})


def binding(*, platform: str, key_configs: bytes, measurement: Measurement, issued_at: str,
            nonce: bytes | None) -> bytes:
    """The 64-byte report data for these claims (see :func:`sealtune.attest.base.report_data`)."""
    claims = claims_bytes(platform=platform, measurement=measurement, issued_at=issued_at)
    return report_data(key_configs, nonce or b"", claims=claims)


def check_nonce(nonce: bytes) -> bytes:
    """Return ``nonce`` if its length is within 8..64 bytes.

    Raises:
        AttestationError: too short or too long.
    """
    if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise AttestationError(f"the nonce must be {NONCE_MIN}..{NONCE_MAX} bytes, "
                               f"not {len(nonce)}", hint="use 32 random bytes, base64-encoded")
    return nonce


def decode_nonce(text: str) -> bytes:
    """Decode a base64 (standard or URL-safe, padding optional) nonce and check its length.

    Raises:
        AttestationError: not base64, or the wrong length.
    """
    cleaned = text.strip()
    padded = cleaned + "=" * (-len(cleaned) % 4)
    alphabet = "-_" if ("-" in cleaned or "_" in cleaned) else "+/"
    try:
        raw = base64.b64decode(padded, altchars=alphabet.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError("the nonce is not valid base64",
                               hint="pass the nonce exactly as sent, base64-encoded") from None
    return check_nonce(raw)


def read_report_file(path: Path) -> bytes:
    """Read a saved report, at most :data:`MAX_REPORT_BYTES` + 1 bytes (so a larger one is
    refused by the parser, never read whole).

    Raises:
        AttestationError: the file is missing or cannot be read (naming it).
    """
    try:
        with path.open("rb") as f:
            return f.read(MAX_REPORT_BYTES + 1)
    except FileNotFoundError:
        raise AttestationError(f"{path}: report file not found") from None
    except OSError as exc:
        raise AttestationError(f"{path}: cannot read the report ({type(exc).__name__})") from None


def b64(data: bytes) -> str:
    """Standard base64 with padding."""
    return base64.b64encode(data).decode("ascii")


def build_report(provider: AttestationProvider, *, key_configs: bytes,
                 measurement: Measurement, nonce: bytes | None, now: datetime) -> dict[str, Any]:
    """Make an attestation report with evidence from ``provider``.

    Args:
        provider: the platform's provider (``get_provider("dev-software")``, ...).
        key_configs: the server's RFC 9458 §3.2 ``application/ohttp-keys`` list.
        measurement: digests of the code, model and config being served.
        nonce: the client's nonce (8..64 bytes), or None.
        now: the issue time (timezone-aware).

    Returns:
        The report as a JSON-ready dict; serialise it with :func:`dumps_report`.

    Raises:
        AttestationError: malformed key configs or nonce, or the provider failed.
    """
    decode_key_configs(key_configs)
    if nonce is not None:
        check_nonce(nonce)
    platform = provider.platform
    if platform not in PLATFORMS:
        raise AttestationError(f"provider platform {platform!r} is not part of attestation-v1")
    issued_at = format_time(now)
    rd = binding(platform=platform, key_configs=key_configs, measurement=measurement,
                 issued_at=issued_at, nonce=nonce)
    evidence = provider.evidence(rd)
    if evidence.platform != platform or evidence.is_tee != PLATFORMS[platform]:
        raise AttestationError(f"provider {platform!r} returned evidence for another platform")
    return {"version": REPORT_VERSION, "platform": platform, "is_tee": PLATFORMS[platform],
            "warning": WARNINGS[platform], "evidence": evidence.payload,
            "key_configs": b64(key_configs), "measurement": measurement.to_dict(),
            "issued_at": issued_at, "nonce": None if nonce is None else b64(nonce),
            "report_data": rd.hex()}


def dumps_report(report: dict[str, Any]) -> bytes:
    """The canonical serialisation of a report (sorted keys, compact, ASCII)."""
    return canonical_json(report)


@dataclass(frozen=True)
class ParsedReport:
    """A report whose *shape* is valid; nothing in it is verified yet."""

    platform: str
    claimed_is_tee: bool
    evidence: dict[str, Any]
    key_configs: bytes
    measurement: Measurement
    issued_at: datetime
    issued_at_text: str
    nonce: bytes | None
    report_data: bytes


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _malformed(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _malformed(f"{name} is not allowed")


def _b64_field(doc: dict[str, Any], name: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise _malformed(f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"{name} is not valid base64") from None


def loads_report(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """Parse report JSON strictly (no duplicate keys, no NaN or floats, at most 1 MiB, nested
    at most :data:`~sealtune.core.strict_json.MAX_DEPTH` deep)."""
    if isinstance(data, dict):
        return data
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_REPORT_BYTES:
        raise _malformed("larger than 1 MiB")
    try:  # bounded nesting, strict UTF-8, no lone surrogates, no NaN
        doc = strict_json.loads(raw, object_pairs_hook=_no_duplicates,
                                parse_float=lambda _: _reject_constant("a floating-point number"))
    except MalformedJSON:
        raise _malformed("not valid JSON") from None
    if not isinstance(doc, dict):
        raise _malformed("not a JSON object")
    return doc


def parse_report(data: bytes | str | dict[str, Any]) -> ParsedReport:
    """Check the report's shape (attestation-v1) and decode its fields.

    Raises:
        AttestationError: malformed; the message names the field.
    """
    doc = loads_report(data)
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise _malformed("unknown field(s) " + ", ".join(unknown))
    if doc.get("version") != REPORT_VERSION or isinstance(doc.get("version"), bool):
        raise _malformed(f"version must be {REPORT_VERSION}")
    platform = doc.get("platform")
    if not isinstance(platform, str) or platform not in PLATFORMS:
        raise _malformed("platform must be one of " + ", ".join(sorted(PLATFORMS)))
    if not isinstance(doc.get("is_tee"), bool):
        raise _malformed("is_tee must be true or false")
    if not isinstance(doc.get("evidence"), dict):
        raise _malformed("evidence must be an object")
    m = doc.get("measurement")
    if not isinstance(m, dict) or set(m) != {"code", "model", "config"}:
        raise _malformed("measurement must have exactly code, model and config")
    if not all(isinstance(v, str) for v in m.values()):
        raise _malformed("measurement values must be hex strings")
    issued = doc.get("issued_at")
    if not isinstance(issued, str) or not _RFC3339_Z.match(issued):
        raise _malformed("issued_at must be RFC 3339 UTC, e.g. 2025-01-31T12:00:00Z")
    try:
        issued_at = datetime.strptime(issued, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise _malformed("issued_at is not a valid time") from None
    nonce = None if doc.get("nonce") is None else _b64_field(doc, "nonce")
    if nonce is not None and not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise _malformed(f"nonce must be {NONCE_MIN}..{NONCE_MAX} bytes")
    rd = doc.get("report_data")
    if not isinstance(rd, str) or not re.fullmatch(r"[0-9a-f]{128}", rd):
        raise _malformed("report_data must be 128 lowercase hex digits")
    if "warning" in doc and not isinstance(doc["warning"], str):
        raise _malformed("warning must be a string")
    return ParsedReport(platform=platform, claimed_is_tee=doc["is_tee"],
                        evidence=doc["evidence"], key_configs=_b64_field(doc, "key_configs"),
                        measurement=Measurement(**m), issued_at=issued_at,
                        issued_at_text=issued, nonce=nonce, report_data=bytes.fromhex(rd))
