"""Events that outlive retention: what a prune carries forward, and its check.

Retention (``audit prune``) deletes whole segments' entries and keeps only
their leaf hashes. Some events must stay readable for longer than any
retention: that a key was destroyed (the proof of a crypto-shred) and that a
model version was revoked. Before such an entry is deleted, prune appends a
``ledger.kept`` event quoting it: ``{"seq": N, "leaf": "<its leaf bytes>"}``.
Verify hashes the quoted leaf and compares it with the kept leaf hash of entry
N, so the quote is as trustworthy as the entry was.

What this protects against: losing the record of a key destruction or a
revocation to retention; a ``ledger.kept`` event whose quote differs from the
entry it names (verify fails). What it does not: it keeps only the actions in
:data:`KEEP_ON_PRUNE`; a leaf too large to quote (over ``MAX_QUOTE`` bytes) is
kept by its hash, action, resource and time only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from sealtune.core.hashchain import leaf_hash
from sealtune.ledger.base import EntryFilter, EntryRow, ReadTxn
from sealtune.ledger.entry import Event

KEEP_ON_PRUNE = ("key.destroy", "registry.revoke")
KEPT_ACTION = "ledger.kept"
MAX_QUOTE = 7000  # the quote must fit the 8 KiB limit on an event's details
_PAGE = 500


def _rows(txn: ReadTxn, action: str, *, before: int) -> Iterator[EntryRow]:
    after = 0
    while True:
        rows = txn.query(EntryFilter(action=action), after_seq=after, limit=_PAGE)
        for row in rows:
            if row.seq >= before:
                return
            yield row
        if len(rows) < _PAGE:
            return
        after = rows[-1].seq


def kept_events(txn: ReadTxn, *, before: int, actor: str) -> list[Event]:
    """The ``ledger.kept`` events quoting the entries below ``before`` that must outlive it."""
    events = []
    for action in KEEP_ON_PRUNE:
        for row in _rows(txn, action, before=before):
            leaf = bytes(row.leaf)
            details: dict[str, object] = {"seq": row.seq}
            if len(leaf) <= MAX_QUOTE:
                details["leaf"] = leaf.decode("utf-8")
            else:
                details |= {"leaf_hash": leaf_hash(leaf).hex(), "action": row.action,
                            "time": row.time}
            events.append(Event(actor, KEPT_ACTION, row.resource, "success", details))
    return events


def check_kept(txn: ReadTxn, fail: Callable[[int, str], None]) -> None:
    """Check every ``ledger.kept`` quote against the kept hash of the entry it names."""
    for row in _rows(txn, KEPT_ACTION, before=2**62):
        try:
            details = json.loads(row.details)
            seq = int(details["seq"])
            quoted = (leaf_hash(details["leaf"].encode("utf-8")) if "leaf" in details
                      else bytes.fromhex(details["leaf_hash"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            fail(row.seq, f"entry {row.seq} (ledger.kept) is malformed")
            continue
        if not 0 < seq < row.seq:
            fail(row.seq, f"entry {row.seq} (ledger.kept) names entry {seq}, which is not "
                          "before it")
            continue
        kept = txn.tree_leaf_hashes(seq, 1)
        if kept != [quoted]:
            fail(row.seq, f"entry {row.seq} (ledger.kept) quotes entry {seq} wrongly: its "
                          "leaf hash differs from the one the log keeps")
