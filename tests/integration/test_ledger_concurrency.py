"""Several processes appending to one ledger file keep one valid, gap-free chain."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger

ORIGIN = "sealtune.test/concurrency"
KEY_NAME = "sealtune.test/ledger-key"
WORKERS = 4
PER_WORKER = 200


# The suite imports tests with --import-mode=importlib, so a function defined here
# cannot be pickled by reference into a spawned child; the child runs this code.
WORKER = """
import time
from pathlib import Path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger

signer = None if KEY is None else NoteSigner(Ed25519PrivateKey.from_private_bytes(KEY), KEY_NAME)
# Small segments and checkpoint intervals, so closes and signatures race too.
with Ledger.open(Path(PATH), signer=signer, origin=ORIGIN, checkpoint_every=25,
                 segment_max_entries=150) as ledger:
    for i in range(PER_WORKER):
        ledger.append(actor=f"worker-{WORKER_ID}", action="test.append", resource=f"r/{i}",
                      details={"i": i})
        # SQLite's busy handler favours whoever just committed; a short pause
        # lets the processes really interleave instead of taking turns in bulk.
        time.sleep(0.001)
"""


def test_four_processes_append_concurrently(tmp_path: Path) -> None:
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    signer = NoteSigner(private, KEY_NAME)
    path = tmp_path / "ledger.db"
    Ledger.open(path, signer=signer, origin=ORIGIN).close()

    ctx = multiprocessing.get_context("spawn")
    # Two workers hold the signer, two do not (they append; others sign for them).
    procs = [
        ctx.Process(target=exec, args=(WORKER, {
            "PATH": str(path), "WORKER_ID": w, "KEY": raw if w < 2 else None,
            "KEY_NAME": KEY_NAME, "ORIGIN": ORIGIN, "PER_WORKER": PER_WORKER,
        }))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    with Ledger.open(path, signer=signer, origin=ORIGIN, checkpoint_every=25) as ledger:
        entries = list(ledger.entries())
        assert [e.seq for e in entries] == list(range(1, WORKERS * PER_WORKER + 1))
        assert Counter(e.actor for e in entries) == {f"worker-{w}": PER_WORKER
                                                     for w in range(WORKERS)}
        for w in range(WORKERS):  # each process's own appends stay in its order
            mine = [e.details["i"] for e in entries if e.actor == f"worker-{w}"]
            assert mine == list(range(PER_WORKER))
        report = ledger.verify(signer.verifier())
        assert report.ok, report.problems
        # The signing workers alone append 400 > 150 entries, so segments did close;
        # how many depends on the interleaving (signer-less appends never close one).
        assert report.entries_checked == WORKERS * PER_WORKER and report.segments >= 2
        ledger.checkpoint()
        assert ledger.verify(signer.verifier()).unsigned_tail == 0
