"""The release gate's probes, registered by name (:data:`PROBES`).

Each probe is one module (see its docstring for what a pass shows and what
it does not) implementing :class:`~sealtune.assess.probes.base.Probe`;
:func:`~sealtune.assess.probes.base.register_probe` adds it and refuses a
duplicate name. The policy (:mod:`sealtune.assess.policy`) has one section
per registered name.
"""

from __future__ import annotations

from sealtune.assess.probes.base import (
    PROBES,
    Measured,
    Probe,
    ProbeResult,
    register_probe,
    skipped,
    verdict_of,
)
from sealtune.assess.probes.canary_exposure import CanaryExposureProbe
from sealtune.assess.probes.context import DpClaim, ProbeContext
from sealtune.assess.probes.extraction import ExtractionProbe
from sealtune.assess.probes.membership import MembershipProbe
from sealtune.assess.probes.model_files import ModelFilesProbe
from sealtune.assess.probes.pii_regurgitation import PiiRegurgitationProbe
from sealtune.assess.probes.safety_drift import SafetyDriftProbe
from sealtune.assess.probes.utility import UtilityProbe

__all__ = ["PROBES", "DpClaim", "Measured", "Probe", "ProbeContext", "ProbeResult",
           "register_probe", "skipped", "verdict_of"]

for _probe in (ModelFilesProbe(), UtilityProbe(), CanaryExposureProbe(), MembershipProbe(),
               ExtractionProbe(), PiiRegurgitationProbe(), SafetyDriftProbe()):
    register_probe(_probe)
