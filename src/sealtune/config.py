"""Typed workspace configuration (``$SEALTUNE_HOME/config.toml``).

Fails closed: a missing file, an unknown section or key, or a value of the
wrong type is a :class:`~sealtune.errors.ConfigError` naming the file and the
field, never a silent default. Secrets (PINs, tokens) are never stored here:
the config names the environment variable that carries them.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from sealtune.errors import ConfigError

CONFIG_FORMAT = 1


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the HSM token is. The PIN comes from the environment variable ``pin_env``."""

    module: str
    token_label: str
    pin_env: str = "SEALTUNE_PKCS11_PIN"


@dataclass(frozen=True)
class OpenBaoConfig:
    """Where the OpenBao / Vault transit engine is. The token comes from ``token_env``."""

    addr: str
    mount: str = "transit"
    token_env: str = "SEALTUNE_OPENBAO_TOKEN"  # noqa: S105 - a variable name, not a token
    namespace: str = ""
    key_prefix: str = "sealtune-"


@dataclass(frozen=True)
class WitnessPolicyConfig:
    """``[ledger.witnesses]``: ``k`` of these witnesses must cosign a recent checkpoint.

    Attributes:
        k: how many distinct witnesses must cosign (1 <= k <= len(keys)).
        keys: witness verifier keys (``name+keyid+base64(0x04 || key)``).
        urls: witnesses ``audit checkpoint --witness`` asks when given no URL.
        max_unwitnessed: at most this many entries may follow the newest checkpoint
            that ``k`` witnesses cosigned (0: every entry must be witnessed, so
            ``audit checkpoint --witness`` must run after every command).
    """

    k: int
    keys: tuple[str, ...]
    urls: tuple[str, ...] = ()
    max_unwitnessed: int = 1000


@dataclass(frozen=True)
class LedgerConfig:
    """Audit ledger settings."""

    checkpoint_every: int = 1000
    segment_max_entries: int = 100_000
    segment_max_age_hours: int = 24
    retention_days: int = 180
    witnesses: WitnessPolicyConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``[ledger]`` table (without an unset witness policy)."""
        doc = asdict(self)
        if self.witnesses is None:
            del doc["witnesses"]
        else:
            doc["witnesses"] = {k: list(v) if isinstance(v, tuple) else v
                                for k, v in doc["witnesses"].items()}
        return doc


#: The embedded defaults of ``[storage]``: files and SQLite inside the workspace.
DEFAULT_BLOBS = "file:blobs"
DEFAULT_META = "sqlite:catalogue.db"


@dataclass(frozen=True)
class StorageConfig:
    """``[storage]``: where sealed artifacts (``blobs``) and catalogues (``meta``) live.

    ``meta = "postgresql://..."`` also puts the audit ledger in that database.
    URLs never carry secrets: S3 credentials come from the ``AWS_*`` variables,
    the PostgreSQL password from ``PGPASSWORD`` or ``~/.pgpass``.
    """

    blobs: str = DEFAULT_BLOBS
    meta: str = DEFAULT_META

    def __post_init__(self) -> None:
        check_storage_url(self.blobs, field="storage.blobs", schemes=("file", "s3"))
        check_storage_url(self.meta, field="storage.meta", schemes=("sqlite", "postgresql"))

    @property
    def is_default(self) -> bool:
        """Whether both stores are the embedded defaults."""
        return (self.blobs, self.meta) == (DEFAULT_BLOBS, DEFAULT_META)


def check_storage_url(url: str, *, field: str, schemes: tuple[str, ...]) -> None:
    """Refuse a storage URL with an unknown scheme or a password in it.

    Raises:
        ConfigError: naming ``field`` (the password itself is never echoed).
    """
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ConfigError(f"{field} must be a URL of scheme {' or '.join(schemes)}",
                          hint=f"e.g. {schemes[-1]}://...")
    if parts.password is not None or any(k == "password" for k, _ in parse_qsl(parts.query)):
        raise ConfigError(
            f"{field} carries a password, and config.toml must hold no secrets",
            hint="remove it from the URL; set PGPASSWORD or use ~/.pgpass (AWS_* for S3)")


@dataclass(frozen=True)
class WorkspaceConfig:
    """The whole workspace config."""

    workspace_id: str
    created: str
    default_key: str = "platform"
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    pkcs11: Pkcs11Config | None = None
    openbao: OpenBaoConfig | None = None
    storage: StorageConfig = field(default_factory=StorageConfig)

    def to_toml(self) -> str:
        doc: dict[str, Any] = {
            "format": CONFIG_FORMAT,
            "workspace": {
                "id": self.workspace_id,
                "created": self.created,
                "default_key": self.default_key,
            },
            "ledger": self.ledger.to_dict(),
        }
        keyring: dict[str, Any] = {}
        if self.pkcs11:
            keyring["pkcs11"] = asdict(self.pkcs11)
        if self.openbao:
            keyring["openbao"] = asdict(self.openbao)
        if keyring:
            doc["keyring"] = keyring
        if not self.storage.is_default:
            doc["storage"] = asdict(self.storage)
        return tomli_w.dumps(doc)


T = TypeVar("T")


def _section(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys and bad types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{where}.{key} is not a known setting",
                hint=f"known settings: {', '.join(sorted(known))}",
            )
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in data:
            continue
        value = data[name]
        expected = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if expected == "int" and (
            not isinstance(value, int) or isinstance(value, bool) or value <= 0
        ):
            raise ConfigError(f"{where}.{name} must be a positive integer")
        if expected == "str" and not isinstance(value, str):
            raise ConfigError(f"{where}.{name} must be a string")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError:
        missing = [n for n, f in known.items() if n not in data and f.default is f.default_factory]
        raise ConfigError(f"{where} is missing required settings: {', '.join(missing)}") from None


def _witness_section(data: Any, where: str) -> WitnessPolicyConfig:
    """Parse ``[ledger.witnesses]``: every key must be a valid cosignature key."""
    from sealtune.core.cosignature import CosignatureVerifier

    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(data) - {"k", "keys", "urls", "max_unwitnessed"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]} is not a known setting",
                          hint="known settings: k, keys, urls, max_unwitnessed")
    slack = data.get("max_unwitnessed", WitnessPolicyConfig.max_unwitnessed)
    if not isinstance(slack, int) or isinstance(slack, bool) or slack < 0:
        raise ConfigError(f"{where}.max_unwitnessed must be an integer >= 0",
                          hint="0 requires every entry to be witnessed")
    keys, urls, k = data.get("keys"), data.get("urls", []), data.get("k")
    if not isinstance(keys, list) or not keys or not all(isinstance(x, str) for x in keys):
        raise ConfigError(f"{where}.keys must be a non-empty list of witness verifier keys")
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls
    ):
        raise ConfigError(f"{where}.urls must be a list of http(s) URLs")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(keys):
        raise ConfigError(f"{where}.k must be an integer from 1 to the number of keys")
    ids = set()
    for i, key in enumerate(keys):
        try:
            v = CosignatureVerifier.from_key_string(key)
        except ConfigError as exc:
            raise ConfigError(f"{where}.keys[{i}]: {exc.message}", hint=exc.hint) from None
        ids.add((v.name, v.key_id))
    if len(ids) != len(keys):
        raise ConfigError(f"{where}.keys lists a witness twice")
    return WitnessPolicyConfig(k, tuple(keys), tuple(urls), slack)


def _ledger_section(data: Any, where: str) -> LedgerConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table")
    rest = {k: v for k, v in data.items() if k != "witnesses"}
    base = _section(LedgerConfig, rest, where)
    if "witnesses" not in data:
        return base
    return replace(base, witnesses=_witness_section(data["witnesses"], f"{where}.witnesses"))


def load_config(path: Path) -> WorkspaceConfig:
    """Load and validate ``config.toml``.

    Raises:
        ConfigError: missing, unparsable, or invalid (the message names the field).
    """
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path} not found", hint="run 'sealtune init' to create a workspace"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    where = str(path)
    allowed = {"format", "workspace", "ledger", "keyring", "storage"}
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"{where}: unknown section {key!r}",
                hint=f"known sections: {', '.join(sorted(allowed))}",
            )
    if raw.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"{where}: 'format' must be {CONFIG_FORMAT}")
    ws = raw.get("workspace")
    if (
        not isinstance(ws, dict)
        or not isinstance(ws.get("id"), str)
        or not isinstance(ws.get("created"), str)
    ):
        raise ConfigError(f"{where}: [workspace] needs string 'id' and 'created'")
    for key in ws:
        if key not in {"id", "created", "default_key"}:
            raise ConfigError(f"{where}: workspace.{key} is not a known setting")
    default_key = ws.get("default_key", "platform")
    if not isinstance(default_key, str) or not default_key:
        raise ConfigError(f"{where}: workspace.default_key must be a non-empty string")
    ledger = _ledger_section(raw.get("ledger", {}), f"{where}: ledger")
    keyring = raw.get("keyring", {})
    if not isinstance(keyring, dict):
        raise ConfigError(f"{where}: [keyring] must be a table")
    for key in keyring:
        if key not in {"pkcs11", "openbao"}:
            raise ConfigError(
                f"{where}: keyring.{key} is not a configurable backend",
                hint="configurable backends: pkcs11, openbao (local needs no config)",
            )
    pkcs11 = (
        _section(Pkcs11Config, keyring["pkcs11"], f"{where}: keyring.pkcs11")
        if "pkcs11" in keyring
        else None
    )
    openbao = (
        _section(OpenBaoConfig, keyring["openbao"], f"{where}: keyring.openbao")
        if "openbao" in keyring
        else None
    )
    storage = _section(StorageConfig, raw.get("storage", {}), f"{where}: storage")
    return WorkspaceConfig(
        workspace_id=ws["id"],
        created=ws["created"],
        default_key=default_key,
        ledger=ledger,
        pkcs11=pkcs11,
        openbao=openbao,
        storage=storage,
    )
