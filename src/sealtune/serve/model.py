"""Where the served model's files come from: a plain directory or a sealed one, in memory.

A **sealed model directory** holds the training stage's outputs: each file
``NAME.sealed`` is ``NAME`` sealed in format sealed-v1 (see
``docs/formats/sealed-v1.md``); small non-weight files (``config.json``,
tokenizer files) may sit beside them in the clear. :class:`SealedModelDir`
authenticates and decrypts each sealed file into memory only (the engine
builds the model from bytes, e.g. ``safetensors.torch.load``), so plaintext
weights never touch the disk. A model *name* resolves to
``<workspace>/models/<name>/`` (the training stage's ``--out-name``).

Every source computes a **model digest** for the attestation measurement:
SHA-256 over the sorted lines ``<sha256 of the plaintext> <file name>\\n``,
so a sealed and a plain copy of the same model measure the same. A **LoRA
adapter** (the training stage's default output) is served over its base
model: :func:`resolve_base` takes the base from ``--base`` or from the
training record ``model.json``, and refuses a base whose digest differs from
the one recorded at training; the measurement then covers both
(:func:`adapter_digest`).

What this protects against: reading weights from disk without a KEK (they
stay sealed at rest), a modified sealed file (``IntegrityError``, nothing is
loaded), and pickle weights (refused: safetensors only). What it does not:
the server process holds the plaintext weights in memory (swap included,
unless the host disables it); Python cannot wipe them; and the clear
``config.json`` / tokenizer of a sealed directory are not authenticated by
sealing (the measurement covers them, so a verifier pinning the model digest
still notices a change). A LoRA adapter's base is a plain directory: its
digest is checked when the server starts and its files are read after, so
whoever can write it in between is not stopped by the check (the measured
digest is taken over the bytes loaded, so a verifier pinning it still is).
A registry version (``--model NAME@vN``) arrives already resolved as a
:class:`ModelSource` whose files the registry checks against their signature
as they are read (:mod:`sealtune.registry.watch`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sealtune.errors import ConfigError, IntegrityError, UsageError
from sealtune.keys.sealing import unseal_into

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService

SEALED_SUFFIX = ".sealed"
#: A LoRA adapter's configuration (peft); a directory holding it without a
#: ``config.json`` is an adapter, served over its base model.
ADAPTER_CONFIG = "adapter_config.json"
MANIFEST = "model.json"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
_MAX_FILES = 4096


class ModelFiles(Protocol):
    """A model's files, read into memory by name.

    Attributes:
        label: where they come from (for messages).
        digests: ``name -> sha256 hex`` of the plaintext of each file read so far.
    """

    label: str
    digests: dict[str, str]

    def names(self) -> list[str]:
        """File names (plaintext names, sorted)."""
        ...

    def read(self, name: str) -> bytes:
        """The plaintext bytes of ``name``.

        Raises:
            ConfigError: no such file.
            IntegrityError: a sealed file failed authentication.
        """
        ...


@dataclass(frozen=True)
class ModelSource:
    """A model resolved elsewhere (a registry version), handed to the server as it is.

    Attributes:
        files: the model's files (checked as they are read).
        base: the base model under a LoRA adapter, or None for a whole model.
        model_id: the served model id.
        registry: what the attestation's config measurement names (version,
            signature digest, signer), or None.
    """

    files: ModelFiles
    base: ModelFiles | None
    model_id: str
    registry: dict[str, Any] | None = None


def _check_names(names: list[str], where: Path) -> None:
    if len(names) > _MAX_FILES:
        raise ConfigError(f"{where} holds too many files to be a model directory")
    pickled = [n for n in names if n.endswith(_PICKLE_SUFFIXES)]
    if pickled:
        raise ConfigError(f"{where}: pickle weight files are refused ({', '.join(pickled)})",
                          hint="convert the model to safetensors")


def _seen(digests: dict[str, str], name: str, data: bytes) -> bytes:
    digests[name] = hashlib.sha256(data).hexdigest()
    return data


class PlainModelDir:
    """A model directory in the clear (a base model, or a tiny test model)."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a model directory", hint="check --model")
        self.root = root
        self.label = str(root)
        self.digests: dict[str, str] = {}
        self._names = sorted(p.name for p in root.iterdir() if p.is_file())
        _check_names(self._names, root)

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, name: str) -> bytes:
        if name not in self._names:
            raise ConfigError(f"{self.root} has no file {name!r}")
        return _seen(self.digests, name, (self.root / name).read_bytes())


class SealedModelDir:
    """A sealed model directory: ``*.sealed`` files are opened in memory with ``keys``.

    Args:
        root: the directory.
        keys: the workspace key service (unwraps each file's data key; the
            key service records every unwrap in the audit ledger).
    """

    def __init__(self, root: Path, *, keys: KeyService) -> None:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a model directory", hint="check --model")
        self.root = root
        self.label = str(root)
        self._keys = keys
        self.digests: dict[str, str] = {}
        files = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        self._sealed = {f[: -len(SEALED_SUFFIX)]: f for f in files if f.endswith(SEALED_SUFFIX)}
        clear = [f for f in files if not f.endswith(SEALED_SUFFIX)]
        weights = [f for f in clear if f.endswith(".safetensors")]
        if weights:
            raise ConfigError(f"{root}: weights in the clear inside a sealed model directory "
                              f"({', '.join(weights)})", hint="seal them or remove them")
        self._clear = set(clear)
        _check_names(sorted(self._clear | set(self._sealed)), root)

    def names(self) -> list[str]:
        return sorted(self._clear | set(self._sealed))

    def read(self, name: str) -> bytes:
        if name in self._clear:
            return _seen(self.digests, name, (self.root / name).read_bytes())
        sealed = self._sealed.get(name)
        if sealed is None:
            raise ConfigError(f"{self.root} has no file {name!r}")
        out = io.BytesIO()
        path = self.root / sealed
        try:
            unseal_into(path, out, keys=self._keys)
        except IntegrityError:
            raise IntegrityError(f"{path} failed its integrity check",
                                 hint="the sealed model was modified; restore it from the "
                                      "registry or retrain") from None
        return _seen(self.digests, name, out.getvalue())


def is_sealed_dir(root: Path) -> bool:
    """Whether ``root`` holds any ``*.sealed`` file."""
    return any(p.name.endswith(SEALED_SUFFIX) for p in root.iterdir() if p.is_file())


def resolve_model(spec: str, *, keys: KeyService | None, workspace_root: Path | None
                  ) -> ModelFiles:
    """Resolve ``--model DIR_OR_NAME`` to its files.

    A directory is used as it is (sealed if it holds ``*.sealed`` files); a
    bare name is looked up as ``<workspace>/models/<name>/``.

    Raises:
        ConfigError: nothing found under that path or name.
        UsageError: a sealed model without a workspace to unseal it.
    """
    path = Path(spec)
    if not path.is_dir() and workspace_root is not None and "/" not in spec:
        path = workspace_root / "models" / spec
    if not path.is_dir():
        raise ConfigError(f"no model directory or workspace model named {spec!r}",
                          hint="pass a model directory, or the --out-name of a training run")
    if not is_sealed_dir(path):
        return PlainModelDir(path)
    if keys is None:
        raise UsageError(f"{path} is sealed and no workspace is open to unseal it",
                         hint="set SEALTUNE_HOME to the workspace that holds its keys")
    return SealedModelDir(path, keys=keys)


def is_adapter(files: ModelFiles) -> bool:
    """Whether ``files`` are a LoRA adapter (no ``config.json`` of a whole model)."""
    names = files.names()
    return ADAPTER_CONFIG in names and "config.json" not in names


def resolve_base(root: Path, *, base: Path | None) -> PlainModelDir:
    """The base model under the adapter in ``root``, checked against the training record.

    The base is ``base`` if given, else the path in the training stage's
    ``model.json``; when ``model.json`` records the base's digest, the base
    must still match it (a changed base would silently serve another model).

    Raises:
        ConfigError: no base given or recorded, or it is not a directory.
        IntegrityError: the base differs from the one the adapter was trained on.
    """
    from sealtune.sandbox.measurement import digest_tree

    recorded = _recorded_base(root)
    chosen = base or (Path(recorded["path"]) if recorded.get("path") else None)
    if chosen is None:
        raise ConfigError(f"{root} is a LoRA adapter and names no base model",
                          hint="pass --base DIR: the base model it was trained on")
    if not chosen.is_dir():
        raise ConfigError(f"the base model {chosen} of {root} is not a directory",
                          hint="pass --base DIR: the base model it was trained on")
    expected = recorded.get("digest")
    if expected is not None and digest_tree(chosen) != expected:
        raise IntegrityError(f"the base model at {chosen} is not the one {root.name} was "
                             "trained on (its digest differs from model.json)",
                             hint="pass --base with the exact base model used in training")
    return PlainModelDir(chosen)


def _recorded_base(root: Path) -> dict[str, str]:
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base") or {}
    except (ValueError, UnicodeDecodeError, AttributeError):
        raise ConfigError(f"{path} is not valid JSON",
                          hint="restore the model directory from a trusted copy") from None
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: 'base' must be an object")
    return {k: str(v) for k, v in base.items() if k in ("path", "digest") and v is not None}


def adapter_digest(adapter: ModelFiles, base: ModelFiles) -> str:
    """The measured model of an adapter served over a base (both parts, labelled)."""
    both = f"adapter {model_digest(adapter)}\nbase {model_digest(base)}\n"
    return hashlib.sha256(both.encode()).hexdigest()


def model_digest(files: ModelFiles) -> str:
    """SHA-256 (hex) over ``<sha256(plaintext)> <name>\\n`` per file, sorted by name."""
    manifest = hashlib.sha256()
    for name in files.names():
        if name not in files.digests:
            files.read(name)
        digest = files.digests[name]
        manifest.update(f"{digest} {name}\n".encode())
    return manifest.hexdigest()
