"""Asking witnesses to cosign the ledger's newest global checkpoint.

For each witness URL: post the checkpoint with ``old`` = the size that witness
last cosigned (as recorded in the ledger) and a consistency proof from there;
on 409 retry with the size the witness reports, once or twice; keep only
cosignatures that verify against the configured witness keys, store them
beside the checkpoint and record the new size.

What this protects against: a rolled-back or forked ledger quietly getting
new cosignatures: a witness that cosigned more entries than the ledger holds
(409 with a larger size), or that refuses the consistency proof from the size
it holds (422, or 409 at the same size), is reported as evidence and the
command exits 3; forged or unknown cosignature lines are never stored.

What it does not: a witness that is down or refuses (403, 404) just does not
cosign; whether enough did is the policy's business (``audit verify``). The
transport is plain HTTP unless the URL is https; cosignatures are
authenticated by signature, not by the channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from sealtune.core.cosignature import (
    Cosignature,
    CosignatureVerifier,
    check_cosignatures,
    parse_signature_lines,
)
from sealtune.core.note import parse_checkpoint, parse_note
from sealtune.core.tlog_witness import SIZE_CONTENT_TYPE, AddCheckpoint, parse_size
from sealtune.errors import IntegrityError, PolicyViolation, UsageError
from sealtune.ledger.anchors import Anchors

MAX_RESPONSE_BYTES = 64 * 1024
_ATTEMPTS = 3


@dataclass(frozen=True)
class WitnessOutcome:
    """What one witness did.

    Attributes:
        url: the witness's submission prefix.
        cosignatures: verified cosignatures it returned (empty if it did not cosign).
        message: a sentence for people.
        evidence: True when its answer shows the ledger rolled back or forked.
    """

    url: str
    cosignatures: tuple[Cosignature, ...]
    message: str
    evidence: bool = False


@dataclass(frozen=True)
class WitnessRun:
    """The outcome of asking every witness.

    Attributes:
        size: the global checkpoint's size.
        outcomes: one per URL, in order.
        cosigned: distinct witness keys whose cosignature verified.
    """

    size: int
    outcomes: tuple[WitnessOutcome, ...]
    cosigned: int

    @property
    def evidence(self) -> bool:
        """Whether any witness showed the ledger rolled back or forked."""
        return any(o.evidence for o in self.outcomes)

    def raise_if_failed(self, k: int) -> None:
        """Raise unless no witness showed a rollback or fork and at least ``k`` cosigned.

        Raises:
            IntegrityError: a witness has seen a different or longer history.
            PolicyViolation: fewer than ``k`` witnesses cosigned.
        """
        if self.evidence:
            raise IntegrityError("a witness has seen a different or longer history of this "
                                 "audit log: it was rolled back or forked",
                                 hint="keep the workspace as evidence; run 'sealtune audit "
                                      "verify'")
        if self.cosigned < k:
            raise PolicyViolation(f"{self.cosigned} of the {k} required witnesses cosigned "
                                  f"the checkpoint at size {self.size}",
                                  hint="check that the witnesses run and trust this log's key")


def request_cosignatures(
    anchors: Anchors, note: str, urls: Sequence[str], verifiers: Sequence[CosignatureVerifier],
    *, http: httpx.Client | None = None, timeout: float = 10.0,
) -> WitnessRun:
    """Ask each witness to cosign global checkpoint ``note``; store what verifies.

    Args:
        anchors: the ledger's anchors (proofs, cosignature and size records).
        note: the newest signed global checkpoint.
        urls: witness submission prefixes (``POST <url>/add-checkpoint``), http or https.
        verifiers: the witness keys whose cosignatures are kept.
        http: the HTTP client (timeouts are its business); None: one of this
            module's, with ``timeout`` seconds per request.
        timeout: see ``http``.

    Raises:
        UsageError: a URL that is not http or https.
    """
    if any(not u.startswith(("http://", "https://")) for u in urls):
        raise UsageError("witness URLs must be http or https URLs")
    if http is None:
        with httpx.Client(timeout=timeout) as own:
            return request_cosignatures(anchors, note, urls, verifiers, http=own)
    text = parse_note(note)[0]
    size = parse_checkpoint(text).size
    outcomes = []
    for url in urls:
        outcome = _ask(anchors, note, text, size, url.rstrip("/"), verifiers, http)
        if outcome.cosignatures:
            anchors.add_cosignatures(size, outcome.cosignatures)
            anchors.set_witness_size(url.rstrip("/"), size)
        outcomes.append(outcome)
    keys = {(c.name, c.key_id) for o in outcomes for c in o.cosignatures}
    return WitnessRun(size, tuple(outcomes), len(keys))


def _ask(anchors: Anchors, note: str, text: str, size: int, url: str,
         verifiers: Sequence[CosignatureVerifier], http: httpx.Client) -> WitnessOutcome:
    old = anchors.witness_size(url)
    if old > size:
        old = 0  # the record is only a hint (and in the database): let the witness say
    for _ in range(_ATTEMPTS):
        if old > size:
            return WitnessOutcome(url, (), f"the witness cosigned {old} entries but the ledger "
                                  f"holds {size}: the ledger was rolled back", evidence=True)
        proof = anchors.global_consistency_proof(old, size)
        body = AddCheckpoint(old, tuple(proof), note).to_body()
        try:
            resp = http.post(f"{url}/add-checkpoint", content=body,
                             headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.HTTPError as exc:
            return WitnessOutcome(url, (), f"unreachable ({type(exc).__name__})")
        data = resp.content[:MAX_RESPONSE_BYTES + 1]
        if resp.status_code == 409 and resp.headers.get("content-type", "").startswith(
                SIZE_CONTENT_TYPE):
            try:
                held = parse_size(data)
            except IntegrityError:
                return WitnessOutcome(url, (), "answered 409 with a malformed size")
            if held == old:
                return WitnessOutcome(url, (), f"the witness holds a different tree at size "
                                      f"{old}: the ledger forked", evidence=True)
            old = held
            continue
        return _interpret(url, resp.status_code, data, text, size, old, verifiers)
    return WitnessOutcome(url, (), "the witness kept changing its size (409); try again")


def _interpret(url: str, status: int, data: bytes, text: str, size: int, old: int,
               verifiers: Sequence[CosignatureVerifier]) -> WitnessOutcome:
    if status == 200:
        try:
            lines = parse_signature_lines(data.decode("utf-8"))
        except (UnicodeDecodeError, IntegrityError):
            return WitnessOutcome(url, (), "answered 200 with malformed signature lines")
        check = check_cosignatures(text, lines, verifiers)
        if not check.valid:
            return WitnessOutcome(url, (), "returned no valid cosignature by a configured "
                                  "witness key (ignored)")
        names = ", ".join(c.name for c in check.valid)
        return WitnessOutcome(url, check.valid, f"cosigned size {size} ({names})")
    if status == 422:
        return WitnessOutcome(url, (), f"the witness rejected the consistency proof from size "
                              f"{old} it cosigned: the ledger forked or was rewritten",
                              evidence=True)
    if status == 403:
        return WitnessOutcome(url, (), "the witness does not trust this ledger's key "
                              "(on the witness: sealtune witness add-log --origin ... --key ...)")
    if status == 404:
        return WitnessOutcome(url, (), "the witness does not know this ledger's origin "
                              "(on the witness: sealtune witness add-log --origin ... --key ...)")
    return WitnessOutcome(url, (), f"answered HTTP {status}")
