"""The data stage: parse, detect PII and secrets, redact, screen, seal, record provenance.

The public surface (loaded lazily: ``import sealtune.data`` loads neither
numpy, datasketch nor cyclonedx until a name that needs them is used):

* :func:`scan` (findings, changes nothing), from :mod:`sealtune.data.ingest`,
  and :func:`ingest_dataset` (redact, minimise, screen and seal a dataset,
  with findings and an ML-BOM, in the data sandbox by default), from
  :mod:`sealtune.data.sandboxed`;
* the workspace's datasets: :func:`list_datasets`, :func:`show_dataset`,
  :func:`read_dataset`, :func:`export_bom`, :func:`open_dataset_keys`
  (:mod:`sealtune.data.store`) and :func:`export_dataset` (the redacted
  records in plaintext, audited: :mod:`sealtune.data.export`);
* review without a plaintext file: :func:`review_items` (quarantined and
  flagged records, masked) and :func:`apply_review` (release or drop,
  audited, published as the dataset's next revision) (:mod:`sealtune.data.review`);
* the policy: :class:`Policy`, :func:`load_policy`, :func:`parse_policy`,
  :func:`default_policy`, :func:`write_default_policy`
  (:mod:`sealtune.data.policy`);
* the parts: :class:`Analyzer` (:mod:`sealtune.data.pii`), :class:`Redactor`,
  :class:`DatasetKeys`, :func:`detokenize` (:mod:`sealtune.data.redact`),
  :class:`Record`, :class:`Message` (:mod:`sealtune.data.records`).

The ingest verb is exported as ``ingest_dataset``: the name ``ingest`` is
its module's, and a package attribute cannot be both.

The stage never logs record text; errors name the file, line and field
only. What each part protects against and what it does not is stated in
its module (:mod:`sealtune.data.ingest` for the whole).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealtune._lazy import attach

if TYPE_CHECKING:
    from sealtune.data.export import ExportResult, export_dataset
    from sealtune.data.ingest import IngestResult, ScanReport, scan
    from sealtune.data.pii import ENTITY_TYPES, Analyzer
    from sealtune.data.policy import (
        UNSAFE_NO_DATASET_WIDE,
        Policy,
        default_policy,
        load_policy,
        parse_policy,
        write_default_policy,
    )
    from sealtune.data.records import Message, Record
    from sealtune.data.redact import DatasetKeys, Redactor, detokenize
    from sealtune.data.review import ReviewItem, ReviewResult, apply_review, review_items
    from sealtune.data.sandboxed import ingest_dataset
    from sealtune.data.store import (
        DatasetInfo,
        export_bom,
        list_datasets,
        open_dataset_keys,
        read_dataset,
        show_dataset,
    )

__all__ = [
    "ENTITY_TYPES",
    "UNSAFE_NO_DATASET_WIDE",
    "Analyzer",
    "DatasetInfo",
    "DatasetKeys",
    "ExportResult",
    "IngestResult",
    "Message",
    "Policy",
    "Record",
    "Redactor",
    "ReviewItem",
    "ReviewResult",
    "ScanReport",
    "apply_review",
    "default_policy",
    "detokenize",
    "export_bom",
    "export_dataset",
    "ingest_dataset",
    "list_datasets",
    "load_policy",
    "open_dataset_keys",
    "parse_policy",
    "read_dataset",
    "review_items",
    "scan",
    "show_dataset",
    "write_default_policy",
]

__getattr__, __dir__ = attach(__name__, {
    **dict.fromkeys(("ExportResult", "export_dataset"), "sealtune.data.export"),
    **dict.fromkeys(("IngestResult", "ScanReport", "scan"), "sealtune.data.ingest"),
    "ingest_dataset": "sealtune.data.sandboxed",
    **dict.fromkeys(("ENTITY_TYPES", "Analyzer"), "sealtune.data.pii"),
    **dict.fromkeys(("UNSAFE_NO_DATASET_WIDE", "Policy", "default_policy", "load_policy",
                     "parse_policy", "write_default_policy"), "sealtune.data.policy"),
    **dict.fromkeys(("Message", "Record"), "sealtune.data.records"),
    **dict.fromkeys(("DatasetKeys", "Redactor", "detokenize"), "sealtune.data.redact"),
    **dict.fromkeys(("ReviewItem", "ReviewResult", "apply_review", "review_items"),
                    "sealtune.data.review"),
    **dict.fromkeys(("DatasetInfo", "export_bom", "list_datasets", "open_dataset_keys",
                     "read_dataset", "show_dataset"), "sealtune.data.store"),
})
