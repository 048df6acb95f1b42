"""The built-in detectors, registered by name in :data:`DETECTORS` when this package loads.

``prefix_sweep`` and ``repeat_divergence`` (training-data extraction by one
key), ``query_shift`` (a key's prompts against everyone else's; off by
default: it needs the embedding model), ``error_rate``, ``latency`` and
``volume`` (operational anomalies per key and per model), ``regurgitation``
and ``canary`` (outputs repeating training replies or planted canaries; on
when the server has the model's filter or the canaries). Each module says
what its detector catches and what it misses; :mod:`.base` holds the port.

What this protects against and what it does not: see each detector.
"""

from sealtune.monitor.detectors import operational, prefix, regurgitation, repeat, shift
from sealtune.monitor.detectors.base import (
    DETECTORS,
    Detector,
    DetectorContext,
    DetectorSpec,
    register_detector,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "DetectorContext",
    "DetectorSpec",
    "operational",
    "prefix",
    "register_detector",
    "regurgitation",
    "repeat",
    "shift",
]
