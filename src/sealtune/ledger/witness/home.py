"""A witness's directory: its sealed key, the logs it trusts, and its state.

Layout (directory 0700, files 0600)::

    witness.keyring   the witness's Ed25519 key and name, sealed under a
                      passphrase (the keyring file format, Argon2id + AES-GCM)
    logs.toml         the logs it witnesses: origin and verifier key(s) of each
    state.json        per origin, the size and root hash it last cosigned

``logs.toml`` is configuration and fails closed: missing, unreadable, an
unknown key or a malformed verifier key is a ``ConfigError`` naming the file
and field. ``state.json`` is rewritten atomically (temp file, fsync, rename,
fsync of the directory) before any cosignature is returned.

What this protects against: the witness key at rest in clear (it is sealed);
a witness cosigning for a log it was not configured for; a torn state file
after a crash (the old or the new state is on disk, never half of one).

What it does not: anyone who can write the directory can roll ``state.json``
back, after which the witness would cosign a fork once; keep the directory
on storage only the witness operator controls. The passphrase protects the key
only at rest; the serving process holds it in memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from sealtune.core.cosignature import CosignatureSigner
from sealtune.core.note import NoteVerifier, is_valid_key_name
from sealtune.errors import ConfigError, IntegrityError, UsageError, WorkspaceError
from sealtune.keys.keyfile import KdfParams, KeyFile
from sealtune.ledger.checkpoint import check_origin_prefix
from sealtune.outputs import write_atomic

ENV_HOME = "SEALTUNE_WITNESS_HOME"
ENV_PASSPHRASE = "SEALTUNE_WITNESS_PASSPHRASE"  # noqa: S105 - the variable's name
FORMAT = 1
_SECTION, _RECORD = "witness", "signing-key"


@dataclass(frozen=True)
class TrustedLog:
    """A log the witness cosigns for.

    Attributes:
        origin: the checkpoint origin line that identifies the log.
        verifiers: the log's note verifier keys.
    """

    origin: str
    verifiers: tuple[NoteVerifier, ...]


class WitnessHome:
    """A witness directory. Use :meth:`init` to create one."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    @property
    def keyring_path(self) -> Path:
        return self.root / "witness.keyring"

    @property
    def logs_path(self) -> Path:
        return self.root / "logs.toml"

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    @classmethod
    def init(cls, root: Path, *, name: str, passphrase: str,
             kdf: KdfParams | None = None) -> tuple[WitnessHome, str]:
        """Create a witness directory with a new key; return it and its verifier key.

        Raises:
            UsageError: ``name`` is not a valid key name.
            WorkspaceError: the directory already holds a witness.
        """
        if not is_valid_key_name(name):
            raise UsageError(f"witness name {name!r} is not valid",
                             hint="use a schema-less URL such as witness.example/w1")
        home = cls(root)
        if home.keyring_path.exists():
            raise WorkspaceError(f"{root} already holds a witness")
        home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        home.root.chmod(0o700)
        key = Ed25519PrivateKey.generate()
        raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        keyfile = KeyFile.create(home.keyring_path, passphrase, kdf=kdf)
        keyfile.put(_SECTION, _RECORD, {"ed25519": base64.b64encode(raw).decode(), "name": name})
        if not home.logs_path.exists():
            home._write_logs({})
        if not home.state_path.exists():
            home.save_state({})
        return home, CosignatureSigner(key, name).verifier_key

    def signer(self, passphrase: str) -> CosignatureSigner:
        """Unseal the witness key.

        Raises:
            WorkspaceError: no witness here.
            IntegrityError: wrong passphrase or tampered keyring.
        """
        if not self.keyring_path.exists():
            raise WorkspaceError(f"no witness at {self.root}",
                                 hint="create one with 'sealtune witness init DIR --name NAME'")
        rec = KeyFile.open(self.keyring_path, passphrase).get(_SECTION, _RECORD)
        if rec is None:
            raise IntegrityError(f"{self.keyring_path} holds no witness key")
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(rec["ed25519"]))
        return CosignatureSigner(key, str(rec["name"]))

    # -- trusted logs ------------------------------------------------------------

    def logs(self) -> dict[str, TrustedLog]:
        """Load ``logs.toml`` strictly.

        Raises:
            ConfigError: missing, unparsable, or a malformed entry (the message names it).
        """
        where = str(self.logs_path)
        try:
            raw = tomllib.loads(self.logs_path.read_text("utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{where} not found: the witness trusts no log",
                hint="run 'sealtune witness add-log DIR --origin O --key K'",
            ) from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{where} is not valid TOML ({type(exc).__name__})") from None
        if set(raw) - {"format", "log"} or raw.get("format") != FORMAT:
            raise ConfigError(f"{where}: expected 'format = {FORMAT}' and [[log]] tables only")
        out: dict[str, TrustedLog] = {}
        for i, entry in enumerate(raw.get("log", [])):
            log = _parse_log(entry, f"{where}: log[{i}]")
            if log.origin in out:
                raise ConfigError(f"{where}: log[{i}] repeats origin {log.origin!r}")
            out[log.origin] = log
        return out

    def add_log(self, origin: str, key: str) -> None:
        """Trust ``key`` (a note verifier key) for the log ``origin``.

        Raises:
            ConfigError: the key is malformed or ``logs.toml`` is invalid.
            UsageError: the origin is not valid.
        """
        check_origin_prefix(origin)
        NoteVerifier.from_key_string(key)
        logs = {o: [v.key_string for v in log.verifiers] for o, log in self.logs().items()}
        keys = logs.setdefault(origin, [])
        if key not in keys:
            keys.append(key)
        self._write_logs(logs)

    def _write_logs(self, logs: dict[str, list[str]]) -> None:
        doc: dict[str, Any] = {"format": FORMAT,
                               "log": [{"origin": o, "keys": k} for o, k in logs.items()]}
        write_atomic(self.logs_path, tomli_w.dumps(doc).encode("utf-8"))

    # -- state ---------------------------------------------------------------------

    def load_state(self) -> dict[str, tuple[int, bytes]]:
        """Load ``state.json``: origin -> (size, root hash) last cosigned.

        Raises:
            IntegrityError: missing or malformed (a witness never guesses its state).
        """
        bad = IntegrityError(f"{self.state_path} is missing or malformed",
                             hint="restore it from a backup; never recreate it empty for a "
                                  "witness that has cosigned (it would cosign forks)")
        try:
            doc = json.loads(self.state_path.read_text("utf-8"))
            logs = doc["logs"]
            if doc.get("format") != FORMAT or not isinstance(logs, dict):
                raise bad
            state = {}
            for origin, rec in logs.items():
                size, root = rec["size"], base64.b64decode(rec["root"], validate=True)
                if type(size) is not int or size < 0 or len(root) != 32:
                    raise bad
                state[str(origin)] = (size, root)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            raise bad from None
        return state

    def save_state(self, state: dict[str, tuple[int, bytes]]) -> None:
        """Persist the state atomically and durably (before a cosignature is returned)."""
        doc = {"format": FORMAT, "logs": {
            origin: {"size": size, "root": base64.b64encode(root).decode("ascii")}
            for origin, (size, root) in sorted(state.items())}}
        write_atomic(self.state_path, json.dumps(doc, indent=1, sort_keys=True).encode())


def _parse_log(entry: Any, where: str) -> TrustedLog:
    if not isinstance(entry, dict) or set(entry) != {"origin", "keys"}:
        raise ConfigError(f"{where} must have exactly 'origin' and 'keys'")
    origin, keys = entry["origin"], entry["keys"]
    if not isinstance(origin, str) or not isinstance(keys, list) or not keys:
        raise ConfigError(f"{where}: origin must be a string and keys a non-empty list")
    try:
        check_origin_prefix(origin)
    except UsageError:
        raise ConfigError(f"{where}: origin {origin!r} is not a valid origin") from None
    verifiers = []
    for j, key in enumerate(keys):
        try:
            verifiers.append(NoteVerifier.from_key_string(key if isinstance(key, str) else ""))
        except ConfigError as exc:
            raise ConfigError(f"{where}.keys[{j}]: {exc.message}", hint=exc.hint) from None
    return TrustedLog(origin, tuple(verifiers))
