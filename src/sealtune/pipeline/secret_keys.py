"""Secrets never go in a pipeline file: a key that looks like one is refused.

:func:`refuse_secrets` walks the parsed file (:mod:`sealtune.yaml_source`)
and refuses, at its line and column, any key whose words say it holds a
secret (passphrase, password, PIN, token, secret, API key, private key,
credential), anywhere outside the inline data policy (whose keys name PII
types, not secrets).

What this protects against: a passphrase, PIN or token written into a file
that is versioned, shared and read by the run. What it does not: a secret
under an innocent key name, or a secret as a value (keys are named, never
given: the file has no field that takes one).
"""

from __future__ import annotations

import itertools
import re

from sealtune.yaml_source import YMap, YNode, YSeq

__all__ = ["refuse_secrets"]

_SECRET_WORDS = {"passphrase", "password", "passwd", "pin", "token", "secret", "apikey",
                 "credential", "credentials"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")}


def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", key).lower())
            if w]


def _secret_like(key: str) -> bool:
    words = _words(key)
    return any(w in _SECRET_WORDS for w in words) or any(
        pair in _SECRET_PAIRS for pair in itertools.pairwise(words)) or \
        "".join(words) in {"apikey", "privatekey", "accesskey"}


def refuse_secrets(node: YNode, path: str) -> None:
    """Refuse any key that looks like a secret, outside the inline data policy."""
    if isinstance(node, YSeq):
        for i, item in enumerate(node.items):
            refuse_secrets(item, f"{path}[{i}]")
        return
    if not isinstance(node, YMap) or path == "steps.data.policy":
        return
    for key, value in node.items.items():
        where = f"{path}.{key}" if path else key
        if _secret_like(key):
            raise node.key_marks[key].error(
                where, "looks like a secret: secrets never go in a pipeline file",
                hint="name keys by reference (keys: [customer]); the keyring passphrase comes "
                     "from SEALTUNE_PASSPHRASE or a prompt, HSM PINs and tokens from their "
                     "environment variables")
        refuse_secrets(value, where)
