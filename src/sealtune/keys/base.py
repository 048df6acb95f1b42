"""The Keyring port: key-encryption keys (KEKs) held by a backend.

A keyring holds KEKs by name; each KEK has integer versions (1, 2, ...).
``wrap`` encrypts a file's data key under the current version of a KEK and
``unwrap`` reverses it, with associated data binding the wrapped key to the
file it belongs to, so a wrapped key copied into another file's header does
not unwrap there. Backends: ``local`` (a passphrase-sealed keyring file),
``pkcs11`` (an HSM token; the KEK never leaves it) and ``openbao`` (a
HashiCorp Vault / OpenBao transit engine).

What this protects against: data keys at rest in clear; a stolen sealed file
without access to the keyring. What it does not: a compromised process that
holds an unwrapped data key in memory, or a backend operator who holds the
KEK (that is what ``pkcs11`` and ``openbao`` move to the customer's side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from sealtune.core.wrapped_key import WrappedKey
from sealtune.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from sealtune.workspace import Workspace

# WrappedKey is a record of the sealed-file format (core); it is part of this
# port's public types, so it is re-exported here.
__all__ = [
    "ALGORITHMS",
    "DATA_KEY_BYTES",
    "KEYRINGS",
    "Algorithm",
    "KeyInfo",
    "Keyring",
    "KeyringFactory",
    "WrappedKey",
    "keyring_for",
    "register_keyring",
    "require_module",
]

Algorithm = Literal["aes-256-gcm", "sm4-gcm"]
ALGORITHMS: tuple[Algorithm, ...] = ("aes-256-gcm", "sm4-gcm")

#: Data key length in bytes per payload algorithm.
DATA_KEY_BYTES: dict[str, int] = {"aes-256-gcm": 32, "sm4-gcm": 16}


@dataclass(frozen=True)
class KeyInfo:
    """Public description of a KEK: never contains key material.

    Attributes:
        name: the key's name, unique in the workspace.
        backend: ``local``, ``pkcs11`` or ``openbao``.
        algorithm: payload algorithm for files sealed under this key.
        current: the version new wraps use.
        versions: versions that can still unwrap (not retired or destroyed).
        state: ``active``, ``destroyed``, or ``creating`` (a create that was
            interrupted before it finished: unusable until destroyed).
        created: ISO-8601 UTC time of creation.
        details: backend-specific, non-secret facts (token label, mount ...).
    """

    name: str
    backend: str
    algorithm: str
    current: int
    versions: tuple[int, ...]
    state: Literal["active", "destroyed", "creating"] = "active"
    created: str = ""
    details: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"{self.backend}:{self.name}"


@runtime_checkable
class Keyring(Protocol):
    """A backend that holds KEKs. Every method raises a ``KeyringError``
    subclass on backend failure and ``IntegrityError`` when a wrapped key
    does not authenticate (tampering, wrong key, wrong associated data)."""

    backend: str

    def create(self, name: str, *, algorithm: Algorithm) -> KeyInfo:
        """Create KEK ``name`` at version 1. Refuses an existing name."""
        ...

    def wrap(self, name: str, data_key: bytes, *, aad: bytes) -> WrappedKey:
        """Encrypt ``data_key`` under the current version of KEK ``name``."""
        ...

    def unwrap(self, wrapped: WrappedKey, *, aad: bytes) -> bytes:
        """Decrypt a wrapped data key; ``aad`` must equal the one used to wrap."""
        ...

    def rotate(self, name: str) -> KeyInfo:
        """Add a new version and make it current; old versions still unwrap."""
        ...

    def retire(self, name: str, *, below: int) -> KeyInfo:
        """Make versions lower than ``below`` unusable (destroy them)."""
        ...

    def destroy(self, name: str) -> None:
        """Destroy every version of KEK ``name`` (crypto-shredding)."""
        ...

    def describe(self, name: str) -> KeyInfo:
        """Describe KEK ``name``."""
        ...

    def list(self) -> list[KeyInfo]:
        """Describe every KEK this backend holds for this workspace."""
        ...


KeyringFactory = Callable[["Workspace"], Keyring]

#: Backend name -> factory. Adapters register themselves on import; factories
#: import heavy optional dependencies lazily and fail with an install hint.
KEYRINGS: dict[str, KeyringFactory] = {}


def register_keyring(name: str, factory: KeyringFactory) -> None:
    """Register a keyring backend under ``name``; duplicates are refused."""
    if name in KEYRINGS:
        raise ValueError(f"keyring backend {name!r} is already registered")
    KEYRINGS[name] = factory


def _load_builtin_backends() -> None:
    # Importing the adapter modules registers them; they import their heavy
    # dependencies (python-pkcs11, hvac) only when a keyring is constructed.
    from sealtune.keys import local, openbao, pkcs11  # noqa: F401


def keyring_for(workspace: Workspace, backend: str) -> Keyring:
    """Return the workspace's keyring for ``backend``.

    Raises:
        ConfigError: the backend name is unknown.
        BackendUnavailableError: it is not configured or its package is missing.
    """
    # Always import the built-ins (cheap after the first time): checking for an
    # empty registry instead would miss them once any one adapter was imported.
    _load_builtin_backends()
    try:
        factory = KEYRINGS[backend]
    except KeyError:
        known = ", ".join(sorted(KEYRINGS))
        raise ConfigError(
            f"unknown keyring backend {backend!r}", hint=f"use one of: {known}"
        ) from None
    return factory(workspace)


def require_module(module: str, *, extra: str) -> None:
    """Raise an install hint if an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BackendUnavailableError(
            f"the {extra} backend needs the Python package {module!r}",
            hint=f"pip install 'sealtune[{extra}]'",
        )
