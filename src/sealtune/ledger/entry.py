"""Audit events and ledger entries: validation and the canonical leaf encoding.

An entry's leaf is the canonical JSON (sorted keys, no spaces, UTF-8, no NaN)
of ``{v, seq, time, actor, action, resource, outcome, details, segment,
prev}``; its RFC 6962 leaf hash is what the Merkle tree and the ``prev``
chain commit to. The stored leaf bytes are authoritative: third parties hash
them as they are and never need to re-serialise.

What this protects against: malformed or oversized events (non-JSON values,
NaN, non-string keys, control characters in names, log injection into text
exports), and a leaf that does not match its row (checked by verify).

What it does not: it cannot tell whether ``details`` carries sensitive data.
Never put sample text, prompts, secrets or key material in events; that is
the caller's duty. Only types and sizes are checked here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sealtune.core.hashchain import leaf_hash
from sealtune.errors import UsageError
from sealtune.ledger.base import EntryRow

Outcome = Literal["success", "failure", "denied"]
OUTCOMES: tuple[Outcome, ...] = ("success", "failure", "denied")
LEAF_VERSION = 1
ZERO_PREV = "0" * 64
MAX_DETAILS_BYTES = 8192
MAX_DETAILS_DEPTH = 16
MAX_NAME_CHARS = 512
_ACTION = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
LEAF_KEYS = frozenset(
    {"v", "seq", "time", "actor", "action", "resource", "outcome", "details", "segment", "prev"}
)
JSONValue = Any
"""A JSON value: None, bool, int, finite float, str, list or str-keyed dict."""


class InvalidEventError(UsageError):
    """An audit event was rejected: a field is missing, malformed or too large."""


def canonical_json(value: object) -> bytes:
    """Encode ``value`` as canonical JSON bytes (sorted keys, compact, UTF-8).

    Raises:
        ValueError: the value holds NaN/Infinity or text that is not valid UTF-8.
        TypeError: the value holds a non-JSON type.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return text.encode("utf-8")


def format_time(when: datetime) -> str:
    """Format an aware datetime as UTC ISO-8601 with microseconds and ``Z``.

    Raises:
        InvalidEventError: ``when`` is naive (no time zone).
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidEventError("ledger times must be timezone-aware", hint="use datetime.now(UTC)")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse the canonical ledger time format strictly.

    Raises:
        ValueError: ``text`` is not in the canonical format.
    """
    if not _TIME.fullmatch(text):
        raise ValueError("not a canonical ledger time")
    return datetime.fromisoformat(text)  # 3.11+ reads the trailing Z as UTC


def _check_name(field_name: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidEventError(f"event field {field_name!r} must be a string")
    if (not value and not allow_empty) or len(value) > MAX_NAME_CHARS:
        raise InvalidEventError(
            f"event field {field_name!r} must have 1 to {MAX_NAME_CHARS} characters"
        )
    if _CONTROL.search(value):
        raise InvalidEventError(f"event field {field_name!r} contains control characters")
    return value


def _check_json(value: object, depth: int) -> None:
    if depth > MAX_DETAILS_DEPTH:
        raise InvalidEventError("event details are nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidEventError("event details must not hold NaN or Infinity")
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidEventError("event details keys must be strings")
            _check_json(item, depth + 1)
        return
    raise InvalidEventError(
        f"event details hold a {type(value).__name__}; only JSON types are allowed",
        hint="convert values to str, int, float, bool, None, list or dict first",
    )


def check_details(details: Mapping[str, object] | None) -> tuple[dict[str, JSONValue], str]:
    """Validate event details and return them with their canonical JSON text.

    Raises:
        InvalidEventError: not a str-keyed JSON object, or over the size limit.
    """
    if details is None:
        details = {}
    if not isinstance(details, Mapping):
        raise InvalidEventError("event details must be a JSON object (a mapping)")
    value = dict(details)
    _check_json(value, 0)
    try:
        encoded = canonical_json(value)
    except (ValueError, TypeError):
        raise InvalidEventError("event details are not valid JSON text") from None
    if len(encoded) > MAX_DETAILS_BYTES:
        raise InvalidEventError(
            f"event details exceed {MAX_DETAILS_BYTES} bytes",
            hint="record identifiers and counts, never payloads",
        )
    return cast(dict[str, JSONValue], json.loads(encoded)), encoded.decode("utf-8")


@dataclass(frozen=True)
class Event:
    """An audit event before it is appended (validated on construction).

    Attributes:
        actor: who acted (user, service or key name).
        action: dotted lower-case verb, e.g. ``key.create`` or ``file.seal``.
        resource: what was acted on (may be empty).
        outcome: ``success``, ``failure`` or ``denied``.
        details: a JSON object of non-sensitive facts.
    """

    actor: str
    action: str
    resource: str
    outcome: Outcome = "success"
    details: Mapping[str, JSONValue] = field(default_factory=dict, hash=False)
    details_json: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name("actor", self.actor)
        _check_name("resource", self.resource, allow_empty=True)
        if not isinstance(self.action, str) or not _ACTION.fullmatch(self.action):
            raise InvalidEventError(
                "event action must be dotted lower-case words",
                hint="for example 'key.create' or 'file.seal'",
            )
        if self.outcome not in OUTCOMES:
            raise InvalidEventError("event outcome must be success, failure or denied")
        details, text = check_details(self.details)
        object.__setattr__(self, "details", details)
        object.__setattr__(self, "details_json", text)

    @classmethod
    def coerce(cls, value: Event | Mapping[str, Any]) -> Event:
        """Return ``value`` as an Event (accepts a mapping with the same keys).

        Raises:
            InvalidEventError: unknown or missing keys, or invalid fields.
        """
        if isinstance(value, Event):
            return value
        if not isinstance(value, Mapping):
            raise InvalidEventError("events must be Event objects or mappings")
        unknown = set(value) - {"actor", "action", "resource", "outcome", "details"}
        if unknown:
            raise InvalidEventError(f"unknown event keys: {sorted(unknown)}")
        try:
            return cls(**value)
        except TypeError:
            raise InvalidEventError("event needs actor, action and resource") from None


@dataclass(frozen=True)
class Entry:
    """One appended ledger entry, as signed.

    Attributes:
        seq: global sequence number, from 1, without gaps.
        time: UTC time of the append, canonical ``YYYY-MM-DDTHH:MM:SS.ffffffZ``
            (see :attr:`timestamp` for a datetime).
        actor: see :class:`Event`.
        action: see :class:`Event`.
        resource: see :class:`Event`.
        outcome: see :class:`Event`.
        details: see :class:`Event`.
        segment: the segment (Merkle tree) holding the entry.
        prev: hex leaf hash of entry ``seq - 1`` (64 zeros for seq 1).
        leaf: the canonical leaf bytes (what is hashed).
        leaf_hash: ``SHA-256(0x00 || leaf)``.
    """

    seq: int
    time: str
    actor: str
    action: str
    resource: str
    outcome: Outcome
    details: Mapping[str, JSONValue] = field(hash=False)
    segment: int
    prev: str
    leaf: bytes = field(repr=False)
    leaf_hash: bytes = field(repr=False)

    @property
    def timestamp(self) -> datetime:
        """The append time as an aware UTC datetime."""
        return parse_time(self.time)

    def to_dict(self) -> dict[str, JSONValue]:
        """Return the leaf object (what the leaf bytes encode), ready for ``json.dumps``."""
        return cast(dict[str, JSONValue], json.loads(self.leaf))

    def to_json(self) -> dict[str, JSONValue]:
        """Same as :meth:`to_dict` (the name the CLI uses)."""
        return self.to_dict()


def build_leaf(*, seq: int, time: str, event: Event, segment: int, prev: str) -> bytes:
    """Return the canonical leaf bytes for an event at a position in the log."""
    obj = {
        "v": LEAF_VERSION, "seq": seq, "time": time, "actor": event.actor,
        "action": event.action, "resource": event.resource, "outcome": event.outcome,
        "details": event.details, "segment": segment, "prev": prev,
    }
    return canonical_json(obj)


def parse_leaf(leaf: bytes, *, check_event: bool = True) -> dict[str, JSONValue]:
    """Parse leaf bytes strictly: canonical encoding, exact keys, field types.

    Args:
        leaf: the leaf bytes.
        check_event: also apply the full :class:`Event` validation (names,
            action syntax, details limits); verify skips it for speed, since a
            leaf the ledger signed was validated when it was appended.

    Raises:
        ValueError: the leaf is not a well-formed version 1 leaf.
    """
    try:
        obj = json.loads(leaf.decode("utf-8"))
        if not isinstance(obj, dict) or obj.keys() != LEAF_KEYS or canonical_json(obj) != leaf:
            raise ValueError("leaf is not canonical")
    except (ValueError, TypeError, RecursionError) as exc:  # incl. UnicodeDecodeError
        raise ValueError("leaf is not canonical JSON") from exc
    ok = (
        obj["v"] == LEAF_VERSION
        and all(type(obj[k]) is int and obj[k] >= 1 for k in ("seq", "segment"))
        and all(isinstance(obj[k], str) for k in ("actor", "action", "resource", "outcome"))
        and obj["outcome"] in OUTCOMES
        and isinstance(obj["details"], dict)
        and isinstance(obj["time"], str) and _TIME.fullmatch(obj["time"]) is not None
        and isinstance(obj["prev"], str) and _HEX64.fullmatch(obj["prev"]) is not None
    )
    if not ok:
        raise ValueError("leaf fields are malformed")
    if check_event:
        try:
            Event(obj["actor"], obj["action"], obj["resource"], obj["outcome"], obj["details"])
            parse_time(obj["time"])
        except InvalidEventError as exc:
            raise ValueError("leaf holds an invalid event") from exc
    return obj


def entry_from_leaf(leaf: bytes) -> Entry:
    """Build an :class:`Entry` from leaf bytes alone (as a third party would).

    Raises:
        ValueError: the leaf is malformed.
    """
    obj = parse_leaf(leaf)
    return Entry(
        seq=obj["seq"], time=obj["time"], actor=obj["actor"], action=obj["action"],
        resource=obj["resource"], outcome=obj["outcome"], details=obj["details"],
        segment=obj["segment"], prev=obj["prev"], leaf=leaf, leaf_hash=leaf_hash(leaf),
    )


def entry_from_row(row: EntryRow) -> Entry:
    """Build an :class:`Entry` from stored columns (no verification)."""
    return Entry(
        seq=row.seq, time=row.time, actor=row.actor, action=row.action,
        resource=row.resource, outcome=cast(Outcome, row.outcome),
        details=json.loads(row.details), segment=row.segment, prev=row.prev,
        leaf=bytes(row.leaf), leaf_hash=bytes(row.leaf_hash),
    )
