"""Probe ``model_files``: what is in the model directory, checked without loading anything.

Every entry of the model's directory (and of the base model's, when one is
named) is classified:

* ``*.safetensors``: the header is validated against the file's size
  (:mod:`sealtune.assess.safetensors_check`: offsets, dtypes, shapes,
  overlaps, gaps, trailing data, header length); a bad one is
  ``safetensors_invalid`` with the problem's code;
* pickle formats (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``,
  ``.pickle``, ``.joblib``): every pickle in them is analysed by fickling
  (a static analyser: it reads the opcodes and never unpickles) and by
  sealtune's own opcode allow-list (:mod:`sealtune.train.picklescan`); a
  pickle is refused by default, and with ``unsafe_allow_pickle: true`` passes only
  if the allow-list accepts it and fickling rates it below "likely overtly
  malicious";
* custom code: ``.py`` and native libraries, an ``auto_map`` or
  ``trust_remote_code`` in the JSON configs (what ``trust_remote_code=True``
  would import), executables (an executable bit, or ELF / PE / ``#!`` magic);
* links, special files and sub-directories (a loader could follow them);
* anything not on the list of the files a Hugging Face model directory
  holds (``unknown_file``): a failure by default, a warning with
  ``unknown_files: warn``.

What a pass shows: the directory holds only well-formed safetensors weights
and known configuration files, and nothing that would run code when loaded
with ``trust_remote_code=False``. What it does not: that the weights are
benign (a backdoor is well-formed), or that the tokenizer's and config's
parsers have no bugs an adversarial file could reach.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

from sealtune.assess.files import FileEntry, ModelTree
from sealtune.assess.policy import Run, Setting
from sealtune.assess.probes.base import Measured, ProbeResult, Scalar, Verdict
from sealtune.assess.probes.context import ProbeContext
from sealtune.assess.safetensors_check import HeaderProblem, check_header
from sealtune.core.bloom import FILE_NAME as BLOOM_FILE

KNOWN = frozenset({
    "config.json", "generation_config.json", "model.safetensors.index.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "vocab.txt",
    "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
    "chat_template.json", "adapter_config.json", "preprocessor_config.json",
    "training.json", "model.json", "README.md", "LICENSE", "LICENSE.txt", "LICENSE.md",
    "NOTICE", "USE_POLICY.md", ".gitattributes", "sealtune-tiny.json",
    # the monitor's keyed Bloom filter of the training replies (sealtune.core.bloom: data
    # in a strictly parsed format, never code), written beside the weights by training
    BLOOM_FILE})
PICKLE = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
CODE = (".py", ".pyc", ".pyo", ".so", ".dylib", ".dll", ".exe", ".sh", ".bat", ".ps1")
JSON_CONFIGS = frozenset({"config.json", "tokenizer_config.json", "adapter_config.json",
                          "generation_config.json", "preprocessor_config.json"})
MAGIC = (b"\x7fELF", b"MZ", b"#!", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
#: fickling's "likely overtly malicious": at or above it a pickle never passes.
MALICIOUS = 4
MAX_PICKLE = 256 << 20
MAX_CONFIG = 16 << 20
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.,:/+=-]")
#: Findings that fail the probe whatever the settings.
BLOCKING = frozenset({"safetensors_invalid", "custom_code", "remote_code_config",
                      "executable", "link", "special_file", "directory", "unreadable",
                      "config_invalid"})


SETTINGS = {
    "unsafe_allow_pickle": Setting(False, "let a pickle pass if sealtune's opcode allow-list "
                            "accepts it and fickling rates it below likely-malicious"),
    "unknown_files": Setting("fail", "a file no model directory needs: fail or warn",
                             choices=("fail", "warn")),
}


def _token(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name)[:128]


class ModelFilesProbe:
    """See the module docstring."""

    name = "model_files"
    needs = frozenset({"files"})
    default_run: Run = "required"
    settings = SETTINGS

    def measure(self, ctx: ProbeContext, settings: Mapping[str, Any]) -> Measured:
        rows: list[dict[str, Scalar]] = []
        counts = {"files": 0, "bytes": 0, "safetensors": 0, "tensors": 0, "pickles": 0}
        for part, tree in (("model", ctx.files), ("base", ctx.base_files)):
            if tree is None:
                continue
            for entry in tree.entries():
                for finding in _classify(tree, entry, counts):
                    rows.append({"part": part, "file": _token(entry.name), **finding})
        return Measured(self.name, scalars=dict(counts), rows=tuple(rows))

    def judge(self, measured: Measured, settings: Mapping[str, Any]) -> ProbeResult:
        unsafe_allow_pickle = bool(settings.get("unsafe_allow_pickle", False))
        warn_unknown = settings.get("unknown_files", "fail") == "warn"
        items = []
        for row in measured.rows:
            kind = str(row["finding"])
            blocking = kind in BLOCKING or (kind == "unknown_file" and not warn_unknown) or (
                kind == "pickle" and not (unsafe_allow_pickle and row.get("allowlisted") is True
                                          and int(row.get("severity") or 0) < MALICIOUS))
            items.append({**row, "blocking": blocking})
        blocked = [i for i in items if i["blocking"]]
        verdict: Verdict = ("fail" if blocked or not measured.scalars.get("safetensors")
                            else "pass")
        reason = ("blocking findings in the model files" if blocked else
                  "no safetensors weights" if verdict == "fail" else
                  "safetensors only, no code, no unknown files")
        return ProbeResult(
            name=self.name, verdict=verdict, reason=reason,
            metrics={**measured.scalars, "findings": len(items), "blocking": len(blocked)},
            thresholds={"unsafe_allow_pickle": unsafe_allow_pickle,
                        "unknown_files": "warn" if warn_unknown else "fail"},
            items=tuple(items))


def _classify(tree: ModelTree, entry: FileEntry,
              counts: dict[str, int]) -> Iterator[dict[str, Scalar]]:
    """The findings of one entry (none for a good, known file)."""
    if entry.kind != "file":
        yield {"finding": {"link": "link", "dir": "directory"}.get(entry.kind, "special_file")}
        return
    counts["files"] += 1
    counts["bytes"] += entry.size
    name = entry.name.rsplit("/", 1)[-1]
    try:
        yield from _file_findings(tree, entry, name, counts)
    except OSError:
        yield {"finding": "unreadable"}


def _file_findings(tree: ModelTree, entry: FileEntry, name: str,
                   counts: dict[str, int]) -> Iterator[dict[str, Scalar]]:
    with tree.open(entry.name) as fh:
        head = fh.read(4)
    if entry.executable or head.startswith(MAGIC):
        yield {"finding": "executable"}
    if "/" in entry.name:
        yield {"finding": "unknown_file"}  # weights and configs sit at the top
    if name.endswith(".safetensors"):
        counts["safetensors"] += 1
        yield from _safetensors(tree, entry, counts)
    elif name.endswith(PICKLE):
        counts["pickles"] += 1
        yield from _pickle(tree, entry)
    elif name.endswith(CODE):
        yield {"finding": "custom_code"}
    elif name in JSON_CONFIGS:
        yield from _config(tree, entry)
    elif name not in KNOWN:
        yield {"finding": "unknown_file"}


def _safetensors(tree: ModelTree, entry: FileEntry,
                 counts: dict[str, int]) -> Iterator[dict[str, Scalar]]:
    with tree.open(entry.name) as fh:
        try:
            counts["tensors"] += check_header(fh, entry.size)
        except HeaderProblem as problem:
            yield {"finding": "safetensors_invalid", "problem": problem.code}


def _config(tree: ModelTree, entry: FileEntry) -> Iterator[dict[str, Scalar]]:
    """``auto_map`` / ``trust_remote_code`` in a JSON config: code a loader would import."""
    if entry.size > MAX_CONFIG:
        yield {"finding": "config_invalid"}
        return
    with tree.open(entry.name) as fh:
        raw = fh.read(MAX_CONFIG + 1)
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        yield {"finding": "config_invalid"}
        return
    if isinstance(doc, dict) and ("auto_map" in doc or "trust_remote_code" in doc):
        yield {"finding": "remote_code_config"}


def _pickles(tree: ModelTree, entry: FileEntry) -> Iterator[bytes]:
    """The raw pickles in a file: the ``.pkl`` members of a zip (torch.save), or the file."""
    with tree.open(entry.name) as fh:
        if not zipfile.is_zipfile(fh):
            fh.seek(0)
            yield fh.read(MAX_PICKLE + 1)
            return
        fh.seek(0)
        with zipfile.ZipFile(fh) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".pkl"):
                    if info.file_size > MAX_PICKLE:
                        yield b"\0" * (MAX_PICKLE + 1)  # too large: refused below
                        continue
                    yield archive.read(info)


def _pickle(tree: ModelTree, entry: FileEntry) -> Iterator[dict[str, Scalar]]:
    """Each pickle's fickling severity and sealtune allow-list result (never unpickled)."""
    from sealtune.train.picklescan import scan_bytes

    found = False
    for data in _pickles(tree, entry):
        found = True
        if len(data) > MAX_PICKLE:
            yield {"finding": "pickle", "severity": 5, "allowlisted": False}
            continue
        yield {"finding": "pickle", "severity": fickling_severity(data),
               "allowlisted": scan_bytes(data).safe}
    if not found:
        yield {"finding": "pickle", "severity": 5, "allowlisted": False}


def fickling_severity(data: bytes) -> int:
    """fickling's severity of one raw pickle, 0 (likely safe) to 5 (overtly malicious).

    fickling parses the opcodes and interprets them symbolically; it imports
    nothing the pickle names and calls nothing. A pickle it cannot parse is
    rated 5.
    """
    from fickling.analysis import check_safety
    from fickling.fickle import Pickled

    try:
        severity = check_safety(Pickled.load(data)).severity
    except Exception:  # any parse failure of hostile bytes: the worst rating
        return 5
    return int(severity.value[0])
