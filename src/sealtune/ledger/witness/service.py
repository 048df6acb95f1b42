"""The witness's logic (no HTTP): check an ``add-checkpoint`` request, cosign it.

Implements the checks of C2SP tlog-witness in the order the specification
gives them: a malformed request is 400; an unknown origin 404; a checkpoint
without a valid signature by a key trusted for that origin 403; an old size
above the checkpoint's 400; an old size other than the one last cosigned 409
(with that size as ``text/x.tlog.size``), as is a different root at the same
size; a consistency proof that does not verify 422 (also an empty tree whose
root is not the empty hash). Only then is the new size and root persisted,
atomically and before answering, and a v1 cosignature returned. The check of
the old size and the update happen under one lock, so two racing requests can
never roll the state back.

What this protects against: a log (or whoever holds its key) getting two
inconsistent views cosigned by this witness (split view), rolling its tree
back, or a request that is not from a trusted log; unbounded or malformed input.

What it does not: it cannot tell that the log's entries are honest, only that
its tree grows append-only as seen by this witness; a witness whose state file
is rolled back (see :mod:`sealtune.ledger.witness.home`) can be fooled once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sealtune.core.cosignature import CosignatureSigner
from sealtune.core.hashchain import EMPTY_ROOT, verify_consistency
from sealtune.core.note import open_note, parse_checkpoint, parse_note
from sealtune.core.tlog_witness import SIZE_CONTENT_TYPE, format_size, parse_add_checkpoint
from sealtune.errors import IntegrityError
from sealtune.ledger.witness.home import TrustedLog, WitnessHome

TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, content type and body."""

    status: int
    content_type: str
    body: bytes


def _text(status: int, message: str) -> Reply:
    return Reply(status, TEXT, (message + "\n").encode())


class Witness:
    """Cosigns checkpoints of trusted logs that only grow.

    Args:
        signer: the witness key.
        logs: the trusted logs, by origin.
        home: where the state is persisted.
        clock: returns POSIX seconds (the cosignature timestamp).
    """

    def __init__(self, *, signer: CosignatureSigner, logs: Mapping[str, TrustedLog],
                 home: WitnessHome, clock: Callable[[], float] = time.time) -> None:
        self._signer = signer
        self._logs = dict(logs)
        self._home = home
        self._clock = clock
        self._lock = threading.Lock()
        self._state = home.load_state()

    @property
    def name(self) -> str:
        """The witness name."""
        return self._signer.name

    @property
    def verifier_key(self) -> str:
        """The witness's vkey."""
        return self._signer.verifier_key

    def add_checkpoint(self, body: bytes) -> Reply:
        """Handle one ``POST /add-checkpoint`` body."""
        try:
            req = parse_add_checkpoint(body)
            text = parse_note(req.checkpoint)[0]
            cp = parse_checkpoint(text)
        except IntegrityError as exc:
            return _text(400, exc.message)
        log = self._logs.get(cp.origin)
        if log is None:
            return _text(404, "unknown log origin")
        try:
            open_note(req.checkpoint, log.verifiers)
        except IntegrityError:
            return _text(403, "no valid signature by a key trusted for this log")
        if req.old_size > cp.size:
            return _text(400, "old size is larger than the checkpoint size")
        with self._lock:
            size, root = self._state.get(cp.origin, (0, EMPTY_ROOT))
            if req.old_size != size:
                return Reply(409, SIZE_CONTENT_TYPE, format_size(size))
            if cp.size == size and size > 0 and cp.root != root:
                return Reply(409, SIZE_CONTENT_TYPE, format_size(size))
            if not verify_consistency(size, cp.size, req.proof, root, cp.root):
                return _text(422, "the consistency proof does not verify")
            if (cp.size, cp.root) != (size, root):
                state = {**self._state, cp.origin: (cp.size, cp.root)}
                self._home.save_state(state)  # durable before anything is answered
                self._state = state
        line = self._signer.cosign(text, int(self._clock()))
        return Reply(200, TEXT, line.encode("utf-8"))
