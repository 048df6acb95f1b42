"""Loading the base model safely, and writing the trained weights as safetensors.

A model directory is untrusted input: pickle weights (``pytorch_model.bin``
and friends) run code when loaded, and ``trust_remote_code`` would import
Python files shipped with the model. :func:`load_base` therefore loads
safetensors only, never remote code, never from the network
(``local_files_only``); pickle weights are refused unless the caller passes
``unsafe_allow_pickle=True`` — and then each pickle file is first scanned opcode by
opcode (:mod:`sealtune.train.picklescan`) and loaded by transformers with
``torch.load(weights_only=True)``. Outputs are written as safetensors only.

What this does not protect against: a malicious tokenizer or config that
exploits a parser bug in ``tokenizers``/``transformers``, or weights that are
safe to load but poisoned (a backdoored base model); the leakage audit and
the provenance record address the latter, not this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sealtune.errors import ConfigError, PolicyViolation
from sealtune.train.picklescan import PICKLE_SUFFIXES, require_safe

UNSAFE_ALLOW_PICKLE_NOTE = ("unsafe_allow_pickle: the base model's weights were loaded from "
                            "pickle after an opcode scan (weaker than safetensors)")


def weight_files(base_dir: Path) -> tuple[list[Path], list[Path]]:
    """The safetensors and the pickle-format weight files at the top of ``base_dir``."""
    files = sorted(p for p in base_dir.iterdir() if p.is_file())
    safes = [p for p in files if p.suffix == ".safetensors"]
    pickles = [p for p in files if p.suffix in PICKLE_SUFFIXES]
    return safes, pickles


def _check_weights(base_dir: Path, unsafe_allow_pickle: bool) -> tuple[bool, list[str]]:
    """Return (use_safetensors, notes); scan or refuse pickle weights."""
    if not base_dir.is_dir():
        raise ConfigError(f"base model directory {base_dir} does not exist")
    safes, pickles = weight_files(base_dir)
    if safes:
        return True, []  # pickle files beside safetensors are never loaded
    if not pickles:
        raise ConfigError(f"no model weights in {base_dir}",
                          hint="the directory needs model.safetensors (or shards of it)")
    if not unsafe_allow_pickle:
        raise PolicyViolation(
            f"the base model's weights in {base_dir} are pickle files "
            f"({', '.join(p.name for p in pickles)}), which can run code when loaded",
            hint="convert the model to safetensors, or set 'unsafe_allow_pickle: true' in "
                 "the training config to load them after an opcode scan (recorded in the "
                 "audit ledger)")
    for path in pickles:
        require_safe(path)
    return False, [UNSAFE_ALLOW_PICKLE_NOTE]


def load_base(base_dir: Path, *, unsafe_allow_pickle: bool = False) -> tuple[Any, Any, list[str]]:
    """Load a causal LM and its tokenizer from a local directory.

    Returns:
        ``(model, tokenizer, notes)``; ``notes`` records weakened defaults.

    Raises:
        ConfigError: no directory or no weights.
        PolicyViolation: pickle weights without ``unsafe_allow_pickle``.
        UnsafePickleError: a pickle file imports something outside the allow-list.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    use_safetensors, notes = _check_weights(base_dir, unsafe_allow_pickle)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, use_safetensors=use_safetensors, trust_remote_code=False,
        local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_dir, trust_remote_code=False,
                                              local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, notes


def save_weights(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """Write the adapter (LoRA) or the full model, and the tokenizer, as safetensors."""
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    bad = [p.name for p in out_dir.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if bad:  # never ship pickle, whatever a library version decides to write
        for name in bad:
            (out_dir / name).unlink()
        raise ConfigError(f"the training libraries wrote pickle files ({', '.join(bad)})",
                          hint="upgrade transformers/peft; outputs must be safetensors")


_MAX_HEADER = 100 << 20  # the safetensors library's own limit on the JSON header


def weights_digest(directory: Path) -> str:
    """``sha256:`` over every tensor of the ``*.safetensors`` files at the top of ``directory``.

    Per file (sorted by name) and per tensor (sorted by name) it hashes the name,
    dtype, shape and raw bytes, and leaves the file's free-form metadata out, so two
    runs that compute the same weights get the same digest however the library
    orders or annotates the file. Linear in the files' size; reads no pickle.

    Raises:
        ConfigError: a file is not well-formed safetensors.
    """
    import hashlib
    import json
    import struct

    outer = hashlib.sha256()
    for path in sorted(directory.glob("*.safetensors")):
        data = path.read_bytes()
        try:
            (size,) = struct.unpack("<Q", data[:8])
            if size > _MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(data[8:8 + size])
            if not isinstance(header, dict):
                raise ValueError("header is not an object")
            body = memoryview(data)[8 + size:]
            outer.update(f"F {path.name}\n".encode())
            for name in sorted(k for k in header if k != "__metadata__"):
                entry = header[name]
                start, end = entry["data_offsets"]
                if not 0 <= start <= end <= len(body):
                    raise ValueError("offsets out of range")
                outer.update(f"T {name}\0{entry['dtype']}\0{entry['shape']}\n".encode())
                outer.update(hashlib.sha256(body[start:end]).digest())
        except (struct.error, ValueError, KeyError, TypeError):
            raise ConfigError(f"{path.name} is not a well-formed safetensors file") from None
    return "sha256:" + outer.hexdigest()
