"""The ledger part of an evidence bundle: global inclusion proofs, the checkpoint, cosignatures.

Write side: :func:`collect` seals the workspace's ledger (the newest **global**
checkpoint, which also moves the trust state forward), asks the configured
witnesses to cosign it when the workspace has a ``[ledger.witnesses]``
policy (the ledger's own witness client, as ``sealtune audit checkpoint
--witness`` does), and proves every event of the run against it in one pass
over the global tree (``sealtune-global-inclusion-v1``,
``docs/formats/ledger-v1.md`` §6). It writes, under ``ledger/``:

* ``checkpoint.txt`` — the signed global checkpoint note (origin = the ledger's);
* ``cosignatures.txt`` — the witnesses' cosignature lines of that checkpoint
  (only with a witness policy; at least ``k`` that verify, else nothing is written);
* ``proofs/<seq>.json`` — one proof per event, each against that checkpoint.

An event pruned by retention keeps only its leaf hash: its proof has no leaf,
and the statements name it by :data:`PRUNED_DIGEST` (its RFC 6962 leaf hash)
instead of the SHA-256 of its leaf bytes.
:func:`run_events` picks a step's events by time and resource.

Verify side: :func:`check` verifies, offline, with the pinned ledger key, the
ledger's origin and the pinned witnesses: ``ledger.checkpoint``,
``ledger.proofs`` (every event the statements name, leaf digest and all, and
no other, all against ``checkpoint.txt``) and ``ledger.witnesses`` (at least
``k`` pinned witnesses cosigned that checkpoint; with none pinned, it says so).

This module is the only place that knows how the ledger proves things; the
file names it may write are :data:`PATTERNS`.

What this protects against: events edited, dropped or invented after they
were appended (the proofs would not lead to the signed root), proofs or
checkpoints from another ledger (origin and key are checked), a ledger that
showed this checkpoint to the bundle's reader but another history to the
witnesses (with ``k`` pinned witnesses: they cosign only a checkpoint
consistent with everything they saw), forged cosignatures (never counted).
What it does not: show that the events are true or complete (the ledger
proves entries were not changed, not who appended them), show what a pruned
event said, or stop ``k`` colluding witnesses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sealtune.core.cosignature import (
    Cosignature,
    CosignatureVerifier,
    check_cosignatures,
    parse_signature_line,
    parse_signature_lines,
)
from sealtune.core.note import NoteVerifier, parse_checkpoint, parse_note
from sealtune.errors import IntegrityError, PolicyViolation, SealtuneError, UsageError
from sealtune.evidence.report import Check
from sealtune.ledger import Ledger, verify_global_inclusion_proof
from sealtune.ledger.global_proofs import parse_global_inclusion_proof
from sealtune.ledger.global_tree import open_global_checkpoint

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

PREFIX = "ledger/"
CHECKPOINT = "ledger/checkpoint.txt"
COSIGNATURES = "ledger/cosignatures.txt"
#: The DigestSet algorithm that names a pruned event: its RFC 6962 leaf hash
#: ``SHA-256(0x00 || leaf)``, the only thing retention keeps of it.
PRUNED_DIGEST = "rfc6962-leaf"
#: The file names this module writes (the bundle's layout refuses any others under ledger/).
PATTERNS = (re.compile(r"ledger/checkpoint\.txt"), re.compile(r"ledger/cosignatures\.txt"),
            re.compile(r"ledger/proofs/[1-9][0-9]{0,17}\.json"))
_PROOF = re.compile(r"ledger/proofs/([1-9][0-9]{0,17})\.json")


@dataclass(frozen=True)
class LedgerEvidence:
    """What :func:`collect` produced.

    Attributes:
        files: bundle-relative path -> bytes.
        events: sequence number -> digest naming the event: ``sha256:<hex of the leaf
            bytes>``, or ``rfc6962-leaf:<hex leaf hash>`` for a pruned one.
        size: the global checkpoint's size.
        cosigned: witnesses whose cosignature is in the bundle (0 without a policy).
        required: the policy's ``k`` (0 without a policy).
    """

    files: dict[str, bytes]
    events: dict[int, str]
    size: int
    cosigned: int = 0
    required: int = 0


def run_events(ledger: Ledger, *, since: datetime, resources: Sequence[str]) -> list[int]:
    """Sequence numbers of entries appended at or after ``since`` about ``resources``.

    An entry matches when its resource equals one of ``resources`` or starts
    with it followed by ``/`` (``dataset/x`` matches ``dataset/x/conv-7``).
    """
    if not resources:
        raise UsageError("name at least one resource whose events belong to the step")
    return [e.seq for e in ledger.entries(since=since)
            if any(e.resource == r or e.resource.startswith(r + "/") for r in resources)]


def collect(ws: Workspace, seqs: Iterable[int], *, run_id: str) -> LedgerEvidence:
    """Seal the ledger, have it cosigned (with a witness policy), prove each event in ``seqs``.

    Raises:
        LedgerError: an event does not exist, or the ledger cannot sign.
        PolicyViolation: fewer than ``k`` configured witnesses cosigned (nothing written).
        IntegrityError: a witness has seen a longer or different history (rolled back,
            forked), or the trust state does not hold.
    """
    note = ws.seal_ledger()
    text = parse_note(note)[0]
    size = parse_checkpoint(text).size
    files = {CHECKPOINT: note.encode("utf-8")}
    cosigned, required = _cosignatures(ws, note, text, size, run_id=run_id)
    if cosigned:
        files[COSIGNATURES] = "".join(c.line + "\n" for c in cosigned).encode("utf-8")
    events: dict[int, str] = {}
    for proof in ws.ledger.global_inclusion_proofs(seqs, size=size):
        files[f"ledger/proofs/{proof.seq}.json"] = proof.to_json().encode("utf-8")
        events[proof.seq] = (f"{PRUNED_DIGEST}:{proof.leaf_hash.hex()}" if proof.leaf is None
                             else "sha256:" + hashlib.sha256(proof.leaf).hexdigest())
    return LedgerEvidence(files, events, size, len(cosigned), required)


def _valid_stored(ws: Workspace, text: str, size: int,
                  keys: Sequence[CosignatureVerifier]) -> list[Cosignature]:
    """The stored cosignatures of the checkpoint at ``size`` that verify (stores are untrusted)."""
    lines = []
    for line in ws.ledger.anchors.cosignatures(size):
        try:
            lines.append(parse_signature_line(line))
        except IntegrityError:
            continue
    return sorted(check_cosignatures(text, lines, keys).valid, key=lambda c: c.line)


def _cosignatures(ws: Workspace, note: str, text: str, size: int,
                  *, run_id: str) -> tuple[list[Cosignature], int]:
    """Ask the configured witnesses; return the valid cosignatures and ``k`` (or raise)."""
    policy, cfg = ws.witness_policy(), ws.config.ledger.witnesses
    if policy is None or cfg is None:
        return [], 0
    outcomes: list[str] = []
    evidence = False
    if cfg.urls:
        from sealtune.ledger.witness import request_cosignatures  # httpx: only when asked

        run = request_cosignatures(ws.ledger.anchors, note, list(cfg.urls), policy.verifiers)
        evidence = run.evidence
        outcomes = [f"{o.url}: {o.message}" for o in run.outcomes if not o.cosignatures]
    valid = _valid_stored(ws, text, size, policy.verifiers)
    if not evidence and len(valid) >= policy.k:
        return valid, policy.k
    ws.audit("evidence.witnesses_short", f"run/{run_id}", outcome="failure", details={
        "size": size, "cosigned": len(valid), "required": policy.k, "evidence": evidence})
    said = "; ".join(outcomes) or "no witness URLs are configured ([ledger.witnesses] urls)"
    if evidence:
        raise IntegrityError(f"a witness has seen a longer or different history of this audit "
                             f"log (rolled back or forked); the bundle was not written: {said}",
                             hint="keep the workspace as evidence; run 'sealtune audit verify'")
    raise PolicyViolation(
        f"{len(valid)} of the {policy.k} required witnesses cosigned the ledger checkpoint at "
        f"size {size}, so the bundle was not written: {said}",
        hint="the run's steps are complete and recorded: when the witnesses answer, run it "
             "again with --bundle (cached steps take seconds)")


# -- verify side -------------------------------------------------------------------------


class _VerifyOnce(NoteVerifier):
    """A ledger verifier that checks each (note, signature) pair once per bundle.

    Every proof carries the same checkpoint note; its Ed25519 signature need
    not be verified again for each event. Only successes are remembered, so a
    bad signature is refused every time.
    """

    def __init__(self, inner: NoteVerifier) -> None:
        super().__init__(inner.name, inner.public_key)
        self._good: set[tuple[bytes, bytes]] = set()

    def verify(self, message: bytes, signature: bytes) -> bool:
        seen = (bytes(message), bytes(signature))
        if seen in self._good:
            return True
        ok = super().verify(message, signature)
        if ok:
            self._good.add(seen)
        return ok


@dataclass(frozen=True)
class _Head:
    """The bundle's verified checkpoint."""

    note: str
    text: str
    size: int


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise IntegrityError(f"{name} is not UTF-8") from None


def _checkpoint(files: Mapping[str, bytes], verifiers: Sequence[NoteVerifier],
                origin: str) -> tuple[Check, _Head | None]:
    if CHECKPOINT not in files:
        return Check("ledger.checkpoint", False, f"{CHECKPOINT} is missing"), None
    try:
        note = _text(files[CHECKPOINT], CHECKPOINT)
        cp = open_global_checkpoint(note, verifiers, origin)
    except SealtuneError as exc:
        return Check("ledger.checkpoint", False,
                     f"{CHECKPOINT}: {exc.message} (a global checkpoint of {origin} signed "
                     "by the ledger key was expected)"), None
    return Check("ledger.checkpoint", True,
                 f"a global checkpoint of {origin} signed by the ledger key: "
                 f"{cp.size} entries"), _Head(note, parse_note(note)[0], cp.size)


def _one_proof(seq: int, data: bytes, digest: str, head: _Head | None,
               verifiers: Sequence[NoteVerifier], origin: str) -> tuple[str | None, bool]:
    """What is wrong with one proof file (or None), and whether it proves a pruned event."""
    name = f"ledger/proofs/{seq}.json"
    try:
        proof = parse_global_inclusion_proof(_text(data, name))
        proven = verify_global_inclusion_proof(proof, verifiers, origin=origin)
    except SealtuneError as exc:
        return f"{name}: {exc.message}", False
    if head is not None and proof.checkpoint != head.note:
        return f"{name}: built against another checkpoint than {CHECKPOINT}", False
    alg, _, want = digest.partition(":")
    if alg == "sha256" and proof.leaf is None:
        return (f"{name}: the event was pruned from the ledger, but a statement names its "
                "leaf bytes"), False
    got = {"sha256": proof.leaf and hashlib.sha256(proof.leaf).hexdigest(),
           PRUNED_DIGEST: proven.leaf_hash.hex()}.get(alg)
    if proven.seq != seq or got != want:
        return f"{name}: proves another entry than the statements name", False
    return None, proof.leaf is None


def _proofs(files: Mapping[str, bytes], events: Mapping[int, str], head: _Head | None,
            verifiers: Sequence[NoteVerifier], origin: str) -> Check:
    proofs = {int(m.group(1)): data for p, data in files.items()
              if (m := _PROOF.fullmatch(p)) is not None}
    problems = [f"event {s} has no proof" for s in sorted(set(events) - set(proofs))]
    problems += [f"proof {s} is for an event no statement names"
                 for s in sorted(set(proofs) - set(events))]
    pruned = 0
    for seq in sorted(set(proofs) & set(events)):
        problem, was_pruned = _one_proof(seq, proofs[seq], events[seq], head, verifiers, origin)
        pruned += was_pruned
        if problem is not None:
            problems.append(problem)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check("ledger.proofs", False, problems[0] + more)
    where = f" at size {head.size}" if head is not None else ""
    gone = (f"; {pruned} of them pruned by retention: only their leaf hashes remain, so what "
            "they said cannot be shown") if pruned else ""
    return Check("ledger.proofs", True, f"{len(events)} events proven included in the signed "
                 f"global checkpoint{where}{gone}")


def _when(c: Cosignature) -> str:
    return datetime.fromtimestamp(min(c.timestamp, 253402300799), UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _witnesses(files: Mapping[str, bytes], head: _Head | None,
               witnesses: tuple[Sequence[CosignatureVerifier], int] | None) -> Check:
    name = "ledger.witnesses"
    if witnesses is None:
        if COSIGNATURES in files:
            return Check(name, True, f"no witnesses pinned: the cosignatures in {COSIGNATURES} "
                         "were not checked (pin witness keys to check them)")
        return Check(name, True, "no witnesses pinned, and the bundle has no cosignatures: "
                     "nothing shows that the ledger showed others this same checkpoint")
    keys, k = witnesses
    if head is None:
        return Check(name, False, f"{k} witness cosignatures required, but there is no "
                     "verified checkpoint to check them against")
    if COSIGNATURES not in files:
        return Check(name, False, f"0 of the {k} required pinned witnesses cosigned: the "
                     f"bundle has no {COSIGNATURES}")
    try:
        lines = parse_signature_lines(_text(files[COSIGNATURES], COSIGNATURES))
    except IntegrityError as exc:
        return Check(name, False, f"{COSIGNATURES}: {exc.message}")
    result = check_cosignatures(head.text, lines, keys)
    if result.invalid:
        return Check(name, False, f"a cosignature by pinned witness {result.invalid[0]} does "
                     "not verify for this checkpoint (forged, edited or of another checkpoint)")
    who = ", ".join(f"{c.name} at {_when(c)}" for c in result.valid)
    if len(result.valid) < k:
        return Check(name, False, f"{len(result.valid)} of the {k} required pinned witnesses "
                     f"cosigned the checkpoint at size {head.size}"
                     f"{': ' + who if who else ''}; the bundle does not meet the pinned policy")
    return Check(name, True, f"{len(result.valid)} pinned witnesses cosigned the checkpoint at "
                 f"size {head.size} ({k} required): {who}")


def check(files: Mapping[str, bytes], *, events: Mapping[int, str],
          verifiers: Sequence[NoteVerifier], origin: str,
          witnesses: tuple[Sequence[CosignatureVerifier], int] | None = None) -> list[Check]:
    """Verify the ledger files of a bundle.

    Args:
        files: bundle-relative path -> bytes (only ``ledger/`` paths are read).
        events: the events the statements name: seq -> ``sha256:<hex of the leaf>``
            or ``rfc6962-leaf:<hex leaf hash>``.
        verifiers: the pinned ledger key(s).
        origin: the ledger's origin.
        witnesses: the pinned witness keys and how many must have cosigned; None:
            no witnesses pinned.

    Returns:
        ``ledger.checkpoint``, ``ledger.proofs`` and ``ledger.witnesses``.
    """
    verifiers = [_VerifyOnce(v) for v in verifiers]
    first, head = _checkpoint(files, verifiers, origin)
    return [first, _proofs(files, events, head, verifiers, origin),
            _witnesses(files, head, witnesses)]
