"""Transparency-log witnesses (C2SP tlog-witness, tlog-cosignature v1 Ed25519).

A witness keeps, per log origin, the newest checkpoint it cosigned, and only
cosigns a new one that is consistent with it: a log cannot roll back or show
two different histories without the witnesses refusing. ``sealtune witness
serve`` runs one (:mod:`.home`, :mod:`.service`, :mod:`.server`);
``sealtune audit checkpoint --witness URL`` asks witnesses to cosign the
ledger's global checkpoint (:mod:`.client`); ``audit verify`` enforces the
workspace's k-of-n policy on the stored cosignatures.

What this protects against and what it does not is stated in each module.
"""

from sealtune.ledger.witness.client import WitnessOutcome, WitnessRun, request_cosignatures
from sealtune.ledger.witness.home import WitnessHome
from sealtune.ledger.witness.server import WitnessServer, lock_home, make_server, run_witness
from sealtune.ledger.witness.service import Reply, Witness

__all__ = [
    "Reply",
    "Witness",
    "WitnessHome",
    "WitnessOutcome",
    "WitnessRun",
    "WitnessServer",
    "lock_home",
    "make_server",
    "request_cosignatures",
    "run_witness",
]
