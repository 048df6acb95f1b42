"""Server key configurations (RFC 9458 §3): encode, decode, and pick one to seal to.

What this protects against: a malformed, truncated or padded configuration
or list (refused with :class:`KeyConfigError`), and a silent downgrade: a
client never falls back to a suite other than X25519 / HKDF-SHA256 /
AES-256-GCM, nor to plaintext. What it does not: decide whether a
configuration is the server's; it must come from a verified attestation
report.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sealtune.core.hazmat import hpke
from sealtune.core.protocol._framing import _REATTEST, _V1, _Profile
from sealtune.core.protocol.errors import KeyConfigError


@dataclass(frozen=True)
class KeyConfig:
    """One RFC 9458 §3.1 key configuration.

    Attributes:
        key_id: the server's 8-bit key identifier.
        kem_id: the HPKE KEM (only DHKEM(X25519, HKDF-SHA256), 0x0020).
        public_key: the raw 32-byte X25519 public key.
        suites: the offered ``(kdf_id, aead_id)`` pairs, in the server's order.
    """

    key_id: int
    kem_id: int
    public_key: bytes
    suites: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        ok = (0 <= self.key_id <= 0xFF and self.kem_id == hpke.KEM_ID
              and len(self.public_key) == hpke.N_PK and 0 < len(self.suites) < 0x4000
              and len(set(self.suites)) == len(self.suites)
              and all(0 <= i <= 0xFFFF for pair in self.suites for i in pair))
        if not ok:
            raise KeyConfigError("the server key configuration is malformed",
                                 hint=_REATTEST)

    def encode(self) -> bytes:
        """Return the RFC 9458 §3.1 encoding."""
        algs = b"".join(struct.pack(">HH", kdf, aead) for kdf, aead in self.suites)
        return (struct.pack(">BH", self.key_id, self.kem_id) + self.public_key
                + struct.pack(">H", len(algs)) + algs)

    @classmethod
    def decode(cls, data: bytes) -> KeyConfig:
        """Parse one key configuration; the whole of ``data`` must be consumed.

        Raises:
            KeyConfigError: malformed, trailing bytes, or a KEM other than X25519.
        """
        fixed = 3 + hpke.N_PK + 2
        if len(data) < fixed or struct.unpack_from(">H", data, 1)[0] != hpke.KEM_ID:
            raise KeyConfigError("the server key configuration is malformed or not X25519",
                                 hint=_REATTEST)
        (length,) = struct.unpack_from(">H", data, fixed - 2)
        if length % 4 or len(data) != fixed + length:
            raise KeyConfigError("the server key configuration is malformed", hint=_REATTEST)
        pairs = tuple(struct.iter_unpack(">HH", data[fixed:]))
        return cls(data[0], hpke.KEM_ID, bytes(data[3 : 3 + hpke.N_PK]), pairs)

    def supports(self) -> bool:
        """Whether this configuration offers sealtune's suite (HKDF-SHA256, AES-256-GCM)."""
        return self._offers(_V1)

    def _offers(self, profile: _Profile) -> bool:
        return (self.kem_id == profile.suite.kem_id
                and (profile.suite.kdf_id, profile.suite.aead_id) in self.suites)


def encode_key_configs(configs: list[KeyConfig] | tuple[KeyConfig, ...]) -> bytes:
    """Encode ``application/ohttp-keys`` (RFC 9458 §3.2): u16 length + config, repeated."""
    return b"".join(struct.pack(">H", len(c := cfg.encode())) + c for cfg in configs)


def decode_key_configs(data: bytes) -> tuple[KeyConfig, ...]:
    """Decode ``application/ohttp-keys``, skipping configurations for other KEMs.

    Raises:
        KeyConfigError: the framing is malformed or no configuration is usable.
    """
    configs, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise KeyConfigError("the server key configuration list is malformed",
                                 hint=_REATTEST)
        (length,) = struct.unpack_from(">H", data, pos)
        body = data[pos + 2 : pos + 2 + length]
        if len(body) != length or length < 3:
            raise KeyConfigError("the server key configuration list is malformed",
                                 hint=_REATTEST)
        if struct.unpack_from(">H", body, 1)[0] == hpke.KEM_ID:  # RFC 9458 §3.2: skip others
            configs.append(KeyConfig.decode(body))
        pos += 2 + length
    if not configs:
        raise KeyConfigError("the server offers no X25519 key configuration", hint=_REATTEST)
    return tuple(configs)


def select_key_config(configs: list[KeyConfig] | tuple[KeyConfig, ...]) -> KeyConfig:
    """Return the first configuration that offers sealtune's suite.

    Raises:
        KeyConfigError: none does (never a fall-back to plaintext).
    """
    for config in configs:
        if config.supports():
            return config
    raise KeyConfigError("the server offers no cipher suite this client supports "
                         "(X25519, HKDF-SHA256, AES-256-GCM)",
                         hint="upgrade the client or the server so that both speak e2e-v1")

