"""The dataset's provenance as a CycloneDX 1.6 ML-BOM (cyclonedx-python-lib).

One BOM per ingested dataset. Its ``metadata.component`` is the dataset
(type ``data``); ``components`` holds the raw input file and each sealed
output file, all of type ``data`` with their SHA-256 and record counts. The
input's hash is of the raw file as read; an output's hash is the *content
digest* of the sealed file as stored (SHA-256 over its prefix and payload,
skipping the header slots that key rotation rewrites: see
:mod:`sealtune.keys.content` and ``docs/formats/sealed-v1.md``), so anyone
can check the stored files against the BOM without a key, before and after
a rotation; each output says so in its ``sealtune:digest`` property.
Provenance is expressed with what the library models: ``dependencies``
(each output depends on the input; the dataset on its outputs),
``pedigree.ancestors`` of each output (the input), the tool
(sealtune and its version) in ``metadata.tools``, and properties in the
``sealtune:`` namespace: the redaction- and screening-policy digests, the
input format, per-type entity counts and per-action screening counts.

What this protects against: a dataset whose origin and treatment cannot be
shown (which input, which policy, what was removed), and silent substitution
of a stored file (its hash no longer matches). What it does not: the BOM is
not signed here (the registry signs what links to it), so whoever can write
the workspace can rewrite it consistently; and the CycloneDX ``data`` and
``formulation`` blocks (dataset governance, the workflow that made it) are
not modelled by cyclonedx-python-lib 11, so they are not emitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from uuid import uuid4

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion

import sealtune

SCHEMA = SchemaVersion.V1_6
NS = "sealtune"


@dataclass(frozen=True)
class DataFile:
    """One file of the BOM: its role, name, SHA-256, size and record count.

    Attributes:
        role: ``input``, ``data`` or ``quarantine``.
        name: file name (the input's base name; the sealed file's name).
        sha256: hex digest: of the file's bytes (input), or the sealed file's content
            digest (outputs).
        size: bytes.
        records: records it holds.
        properties: more ``sealtune:`` properties (name without namespace -> value).
    """

    role: str
    name: str
    sha256: str
    size: int
    records: int
    properties: Mapping[str, str] = field(default_factory=dict)


def _props(values: Mapping[str, object]) -> list[Property]:
    return [Property(name=f"{NS}:{k}", value=str(v)) for k, v in values.items()]


def _component(f: DataFile, *, ref: str | None, description: str) -> Component:
    return Component(
        name=f.name, type=ComponentType.DATA, bom_ref=ref, description=description,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
        properties=_props({"role": f.role, "records": f.records, "bytes": f.size,
                           **f.properties}))


_DESCRIPTIONS = {
    "input": "raw input file as read (hash of the plaintext file)",
    "data": "cleaned records, sealed (hash: the sealed file's content digest, SHA-256 over "
            "its prefix and payload)",
    "quarantine": "records quarantined by screening, sealed aside for review (hash: the "
                  "sealed file's content digest, SHA-256 over its prefix and payload)",
}
#: The ``sealtune:digest`` property of a sealed output: what its hash covers.
SEALED_DIGEST = "content-sha256: sealed-v1 prefix || payload (header slots excluded)"


def build_bom(*, name: str, created: datetime, input_file: DataFile,
              outputs: Sequence[DataFile], properties: Mapping[str, object]) -> str:
    """Build the dataset's BOM and return it as CycloneDX 1.6 JSON.

    Args:
        name: the dataset name.
        created: when the dataset was made (the BOM's timestamp).
        input_file: the raw input.
        outputs: the sealed output files.
        properties: dataset-level ``sealtune:`` properties (policy digests, counts).
    """
    tool = Component(name="sealtune", type=ComponentType.APPLICATION,
                     version=sealtune.__version__, group="sealtune",
                     description="secure LLM fine-tuning: data stage")
    dataset = Component(name=name, type=ComponentType.DATA, bom_ref=f"dataset:{name}",
                        version=created.strftime("%Y%m%dT%H%M%SZ"),
                        description="sealtune dataset: redacted, minimised, screened, sealed",
                        properties=_props(properties))
    source = _component(input_file, ref="input", description=_DESCRIPTIONS["input"])
    bom = Bom(serial_number=uuid4(), metadata=BomMetaData(
        timestamp=created, tools=ToolRepository(components=[tool]), component=dataset))
    bom.components.add(source)
    made = []
    for out in outputs:
        ancestor = _component(input_file, ref=None, description=_DESCRIPTIONS["input"])
        sealed = DataFile(out.role, out.name, out.sha256, out.size, out.records,
                          {"digest": SEALED_DIGEST, **out.properties})
        component = _component(sealed, ref=f"output:{out.role}",
                               description=_DESCRIPTIONS.get(out.role, out.role))
        component.pedigree = Pedigree(ancestors=[ancestor],
                                      notes="derived from the input by sealtune data ingest")
        bom.components.add(component)
        bom.register_dependency(component, [source])
        made.append(component)
    bom.register_dependency(source, [])
    bom.register_dependency(dataset, made)
    return make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=2)
