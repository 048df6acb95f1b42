"""The pipeline file's typed schema (frozen dataclasses) and its validator.

:func:`load_pipeline` reads ``pipeline.yaml`` (:mod:`sealtune.yaml_source`) and
checks all of it before anything runs: the shape, every key (an unknown one
is an error that suggests the closest allowed key and lists them), every
type and value, that the files it names exist, the data policy (a file or
inline) and the training settings (:mod:`.train_fields`). Errors name the
file, the line and the column, the key's path and the fix:
``pipeline.yaml:12:5: steps.train.lora.rank: must be an integer >= 1``. Paths in the
file are relative to the file. The format is documented in
``docs/pipeline.md``.

What this protects against: a typo or a wrong type run silently with a
default, a secret written into the file (a key that looks like one --
passphrase, password, PIN, token, secret, API key, private key, credential
-- is refused anywhere outside the inline policy: keys are named, never
given). What it does not: check that the
keys it names exist (that needs the workspace: the runner checks them, with
the same positions, before the first step runs) or that a valid pipeline is
a wise one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sealtune.errors import ConfigError
from sealtune.pipeline.secret_keys import refuse_secrets
from sealtune.pipeline.train_fields import check_train_fields, train_field_names, unknown_key
from sealtune.yaml_source import Mark, YMap, YNode, YScalar, YSeq, read_source, to_plain

if TYPE_CHECKING:
    from sealtune.assess.policy import GatePolicy
    from sealtune.data.policy import Policy
    from sealtune.train.config import TrainConfig

__all__ = ["STEP_ORDER", "AssessStep", "DataStep", "Pipeline", "TrainStep", "load_pipeline"]

VERSION = 1
#: The steps, in the order they run (later stages join as they land).
STEP_ORDER = ("data", "train", "assess")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
_TOP = ("version", "name", "workspace", "steps")
_DATA = ("input", "input_sha256", "format", "text_field", "on_error", "policy", "dataset",
         "keys")
_TRAIN_OWN = ("base", "out", "keys", "threads", "nproc", "tmpfs_mb", "timeout_s")
_ASSESS = ("policy", "report_dir", "threads", "timeout_s")
_MAX_NPROC = 64


@dataclass(frozen=True)
class DataStep:
    """``steps.data``: scan, redact, screen and seal one raw input as a dataset.

    Attributes:
        input: the raw input file (absolute).
        dataset: the dataset name's prefix (the stored name adds the step key).
        policy: the data policy (a file, inline, or the built-in default).
        policy_source: where the policy came from, for messages.
        format: the input format, or None to detect it.
        text_field: plain JSONL / CSV: the field that holds the text.
        on_error: ``fail`` or ``skip`` for malformed lines (None: the policy's).
        keys: KEK names to seal under (None: the workspace's default key).
        input_sha256: if set, the input must have this SHA-256 (hex).
    """

    input: Path
    dataset: str
    policy: Policy
    policy_source: str
    format: str | None = None
    text_field: str | None = None
    on_error: str | None = None
    keys: tuple[str, ...] | None = None
    input_sha256: str | None = None

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings (what its cache key covers, with the policy digest)."""
        return {"dataset": self.dataset, "format": self.format, "text_field": self.text_field,
                "on_error": self.on_error, "keys": None if self.keys is None else list(self.keys),
                "policy_digest": "sha256:" + self.policy.digest()}


@dataclass(frozen=True)
class TrainStep:
    """``steps.train``: fine-tune ``base`` on the data step's dataset in the sandbox.

    Attributes:
        base: the base model directory (absolute), or the name of a registered base
            (``sealtune models base add``), resolved and verified when the step runs.
        out: the model name's prefix (the stored name adds the step key).
        config: the training settings.
        keys: KEK names to seal the model under (None: the dataset's KEKs).
        threads: torch threads in the sandbox (fixed, so results repeat bit for bit).
        nproc: training processes in the sandbox.
        tmpfs_mb: the sandbox's private tmpfs, in MiB.
        timeout_s: seconds after which the job is stopped (None: no limit).
    """

    base: Path | str
    out: str
    config: TrainConfig
    keys: tuple[str, ...] | None = None
    threads: int = 1
    nproc: int = 1
    tmpfs_mb: int = 1024
    timeout_s: float | None = None

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings (every training field, defaults included)."""
        return {"out": self.out, "keys": None if self.keys is None else list(self.keys),
                "threads": self.threads, "nproc": self.nproc, "tmpfs_mb": self.tmpfs_mb,
                "timeout_s": self.timeout_s, "config": self.config.to_dict()}


@dataclass(frozen=True)
class AssessStep:
    """``steps.assess``: the release gate on the train step's model (``docs/assess.md``).

    Attributes:
        policy: the gate policy (a file, or the built-in default).
        policy_source: where the policy came from, for messages.
        report_dir: where ``report.json``, ``report.html`` and ``report.dsse.json`` go
            (absolute; the sealed copies go into the workspace either way).
        threads: torch threads in the gate's sandbox.
        timeout_s: seconds after which the gate's sandbox is stopped (None: no limit).
    """

    policy: GatePolicy
    policy_source: str
    report_dir: Path
    threads: int = 1
    timeout_s: float | None = None

    def settings(self) -> dict[str, Any]:
        """The step's normalised settings (the policy by its digest; not where reports go)."""
        return {"policy_digest": self.policy.digest, "threads": self.threads,
                "timeout_s": self.timeout_s}


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline file.

    Attributes:
        name: the pipeline's name (its run state lives under it in the workspace).
        source: the file (absolute).
        display: the file as the user named it (for messages).
        workspace: the workspace directory, or None for ``$SEALTUNE_HOME``.
        data: the data step.
        train: the train step, or None.
        assess: the release gate step, or None (needs the train step).
        marks: dotted key path -> where it was written (for errors found at run time).
    """

    name: str
    source: Path
    display: str
    workspace: Path | None
    data: DataStep
    train: TrainStep | None = None
    assess: AssessStep | None = None
    marks: Mapping[str, Mark] = field(default_factory=dict, compare=False)

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps this pipeline runs, in order."""
        return tuple(s for s in STEP_ORDER if s == "data" or getattr(self, s) is not None)

    def error(self, path: str, problem: str, *, hint: str | None = None) -> ConfigError:
        """A ConfigError placed at ``path`` (or the nearest enclosing key written)."""
        probe = path
        while probe and probe not in self.marks:
            probe = probe.rpartition(".")[0]
        mark = self.marks.get(probe) or Mark(self.display, 1, 1)
        return mark.error(path, problem, hint=hint)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline file; nothing runs.

    Raises:
        ConfigError: anything wrong, with file, line, column, key path and hint.
    """
    display = str(path)
    source = Path(path).absolute()
    top = read_source(source, display=display)
    refuse_secrets(top, "")
    _keys(top, "", _TOP, required=("version", "name", "steps"))
    version = top.items["version"]
    if not (isinstance(version, YScalar) and version.value == VERSION
            and not isinstance(version.value, bool)):
        raise version.mark.error("version", f"must be {VERSION}",
                                 hint=f"write 'version: {VERSION}'")
    name = _string(top.items["name"], "name", pattern=_NAME,
                   rule="1-64 letters, digits, '.', '_' or '-'")
    base_dir = source.parent
    workspace = None
    if "workspace" in top.items:
        workspace = _path(top.items["workspace"], "workspace", base_dir)
    steps = _section(top.items["steps"], "steps")
    _keys(steps, "steps", STEP_ORDER, required=("data",))
    marks = _marks(top, "")
    data = _data(_section(steps.items["data"], "steps.data"), base_dir)
    train = assess = None
    if "train" in steps.items:
        train = _train(_section(steps.items["train"], "steps.train"), base_dir)
    if "assess" in steps.items:
        if train is None:
            raise steps.key_marks["assess"].error("steps.assess", "needs a train step (it "
                                                  "assesses the trained model)",
                                                  hint="add steps.train, or remove "
                                                       "steps.assess")
        assess = _assess(_section(steps.items["assess"], "steps.assess"), base_dir)
    return Pipeline(name=name, source=source, display=display, workspace=workspace, data=data,
                    train=train, assess=assess, marks=marks)


# -- sections ----------------------------------------------------------------------------


def _data(section: YMap, base_dir: Path) -> DataStep:
    path = "steps.data"
    _keys(section, path, _DATA, required=("input", "dataset"))
    get = section.items.get
    input_path = _path(section.items["input"], f"{path}.input", base_dir, kind="file")
    fmt = _choice(get("format"), f"{path}.format", ("auto", *_formats()), default="auto")
    on_error = _choice(get("on_error"), f"{path}.on_error", ("fail", "skip"), default=None)
    policy, policy_source = _policy(get("policy"), f"{path}.policy", base_dir)
    pin = None
    if "input_sha256" in section.items:
        pin = _string(section.items["input_sha256"], f"{path}.input_sha256", pattern=_SHA256,
                      rule="64 hex digits, optionally after 'sha256:'").removeprefix("sha256:")
    return DataStep(
        input=input_path,
        dataset=_string(section.items["dataset"], f"{path}.dataset", pattern=_SHORT_NAME,
                        rule="1-48 letters, digits, '.', '_' or '-'"),
        policy=policy, policy_source=policy_source,
        format=None if fmt == "auto" else fmt,
        text_field=None if get("text_field") is None else _string(
            section.items["text_field"], f"{path}.text_field"),
        on_error=on_error, keys=_key_names(get("keys"), f"{path}.keys"), input_sha256=pin)


def _train(section: YMap, base_dir: Path) -> TrainStep:
    path = "steps.train"
    fields = train_field_names()
    _keys(section, path, (*_TRAIN_OWN, *fields), required=("base", "out"))
    get = section.items.get
    config = check_train_fields(section, [k for k in section.items if k in fields], path=path)
    timeout = get("timeout_s")
    return TrainStep(
        base=_base(section.items["base"], f"{path}.base", base_dir),
        out=_string(section.items["out"], f"{path}.out", pattern=_SHORT_NAME,
                    rule="1-48 letters, digits, '.', '_' or '-'"),
        config=config, keys=_key_names(get("keys"), f"{path}.keys"),
        threads=_int(get("threads"), f"{path}.threads", 1, 256, default=1),
        nproc=_int(get("nproc"), f"{path}.nproc", 1, _MAX_NPROC, default=1),
        tmpfs_mb=_int(get("tmpfs_mb"), f"{path}.tmpfs_mb", 64, 1 << 20, default=1024),
        timeout_s=None if timeout is None or (isinstance(timeout, YScalar) and timeout.value
                                              is None) else _positive(timeout,
                                                                      f"{path}.timeout_s"))


def _assess(section: YMap, base_dir: Path) -> AssessStep:
    from sealtune.assess.policy import default_policy_text, load_policy, parse_policy

    path = "steps.assess"
    _keys(section, path, _ASSESS, required=())
    get = section.items.get
    node = get("policy")
    if node is None or (isinstance(node, YScalar) and node.value is None):
        policy, source = parse_policy(default_policy_text()), "the built-in default gate policy"
    else:
        file = _path(node, f"{path}.policy", base_dir, kind="file")
        policy, source = load_policy(file), str(file)
    report = get("report_dir")
    timeout = get("timeout_s")
    return AssessStep(
        policy=policy, policy_source=source,
        report_dir=base_dir / "gate-report" if report is None else _path(
            report, f"{path}.report_dir", base_dir),
        threads=_int(get("threads"), f"{path}.threads", 1, 256, default=1),
        timeout_s=None if timeout is None or (isinstance(timeout, YScalar) and timeout.value
                                              is None) else _positive(timeout,
                                                                      f"{path}.timeout_s"))


def _policy(node: YNode | None, path: str, base_dir: Path) -> tuple[Policy, str]:
    from sealtune.data.policy import default_policy, load_policy, parse_policy

    if node is None or (isinstance(node, YScalar) and node.value is None):
        return default_policy(), "the built-in default policy"
    if isinstance(node, YMap):
        return parse_policy(to_plain(node), source=f"{node.mark}: {path}"), f"inline ({path})"
    file = _path(node, path, base_dir, kind="file")
    return load_policy(file), str(file)


# -- checks ------------------------------------------------------------------------------


def _section(node: YNode, path: str) -> YMap:
    if not isinstance(node, YMap):
        raise node.mark.error(path, "must be a mapping", hint="see docs/pipeline.md")
    return node


def _keys(section: YMap, path: str, allowed: Iterable[str], *, required: Iterable[str]) -> None:
    names = tuple(allowed)
    for key in section.items:
        if key not in names:
            raise unknown_key(section.key_marks[key], path, key, names)
    for key in required:
        if key not in section.items:
            raise section.mark.error(f"{path}.{key}" if path else key, "required",
                                     hint=f"add '{key}:' here (see docs/pipeline.md)")


def _string(node: YNode, path: str, *, pattern: re.Pattern[str] | None = None,
            rule: str = "") -> str:
    if not isinstance(node, YScalar) or not isinstance(node.value, str) or not node.value:
        raise node.mark.error(path, "must be a non-empty string")
    if pattern is not None and not pattern.match(node.value):
        raise node.mark.error(path, f"{node.value!r} is not allowed", hint=f"use {rule}")
    return node.value


def _choice(node: YNode | None, path: str, choices: tuple[str, ...],
            default: str | None) -> str | None:
    if node is None:
        return default
    if not isinstance(node, YScalar) or node.value not in choices or isinstance(node.value,
                                                                                 bool):
        raise node.mark.error(path, "must be one of " + ", ".join(choices))
    return str(node.value)


def _int(node: YNode | None, path: str, low: int, high: int, *, default: int) -> int:
    if node is None:
        return default
    value = node.value if isinstance(node, YScalar) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise node.mark.error(path, "must be an integer")
    if not low <= value <= high:
        raise node.mark.error(path, f"must be from {low} to {high}")
    return value


def _positive(node: YNode, path: str) -> float:
    value = node.value if isinstance(node, YScalar) else None
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise node.mark.error(path, "must be a positive number (or null)")
    return float(value)


def _key_names(node: YNode | None, path: str) -> tuple[str, ...] | None:
    if node is None:
        return None
    if not isinstance(node, YSeq) or not node.items:
        raise node.mark.error(path, "must be a list of key names, e.g. [customer]",
                              hint="keys are named, never given: 'sealtune keys list' shows them")
    names = tuple(_string(n, f"{path}[{i}]", pattern=_KEY_NAME, rule="a key name")
                  for i, n in enumerate(node.items))
    if len(set(names)) != len(names):
        raise node.mark.error(path, "names a key twice")
    return names


def _path(node: YNode, path: str, base_dir: Path, *, kind: str | None = None) -> Path:
    text = _string(node, path)
    resolved = (base_dir / Path(text).expanduser()).absolute()
    if kind == "file" and not resolved.is_file():
        raise node.mark.error(path, f"{text}: no such file (relative paths start at the "
                              "pipeline file's directory)", hint="fix the path")
    if kind == "dir" and not resolved.is_dir():
        raise node.mark.error(path, f"{text}: no such directory (relative paths start at the "
                              "pipeline file's directory)", hint="fix the path; 'sealtune "
                              "models make-tiny DIR' writes a tiny local model")
    return resolved


def _base(node: YNode, path: str, base_dir: Path) -> Path | str:
    """A directory (as :func:`_path`), or a plain name: a registered base, checked at run."""
    text = _string(node, path)
    if _NAME.match(text) and not (base_dir / text).is_dir():
        return text
    return _path(node, path, base_dir, kind="dir")


def _formats() -> tuple[str, ...]:
    from sealtune.data.formats import FORMATS

    return tuple(FORMATS)


def _marks(node: YNode, path: str) -> dict[str, Mark]:
    """Dotted path -> mark of every key written (for run-time errors)."""
    out: dict[str, Mark] = {}
    if isinstance(node, YMap):
        for key, value in node.items.items():
            where = f"{path}.{key}" if path else key
            out[where] = node.key_marks[key]
            if isinstance(value, YMap):
                out.update(_marks(value, where))
            elif isinstance(value, YSeq):
                out.update({f"{where}[{i}]": item.mark for i, item in enumerate(value.items)})
    return out
