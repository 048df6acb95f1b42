"""A signing key pair generated and kept on the workspace's PKCS#11 token (the shared part).

One key pair per purpose and workspace, labelled
``sealtune/<workspace id>/<purpose>/<kind>``: the private key is generated on
the token (``TOKEN``, ``PRIVATE``, ``SENSITIVE`` true, ``EXTRACTABLE`` false,
``SIGN`` only, not modifiable) and signs with ``C_Sign``; the public key is
read from the public object's ``CKA_EC_POINT``. The curve-specific parts (the
mechanisms, the curve, decoding the point, the signature's form) are the
subclasses': :mod:`sealtune.keys.pkcs11_ecdsa` (P-256, the registry) and
:mod:`sealtune.keys.pkcs11_ed25519` (Ed25519, evidence).

Protects against: theft of the signing key from the host's disk or the
workspace (it never leaves the token). Does not protect against: a host that
has the PIN signing whatever it likes while it has the token; a token without
the mechanisms (:meth:`TokenKeyPair.supported` says so; the caller decides).
Sessions and their lock are the ``pkcs11`` keyring's; creating a pair from two
processes at once is serialised by the caller (``keys.token_lock``).
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from sealtune.config import Pkcs11Config
from sealtune.errors import KeyringError
from sealtune.keys.pkcs11 import Pkcs11Keyring


class TokenKeyPair:
    """A key pair for one purpose on the token; subclasses name the curve and mechanisms.

    Args:
        config: the token (module, label, PIN variable).
        workspace_id: scopes the label, like the keyring's KEKs.
        purpose: what the key is for (e.g. ``registry``); part of the label.
    """

    KIND: ClassVar[str]  # the label's last part, e.g. "ed25519"
    NAME: ClassVar[str]  # in messages, e.g. "Ed25519"
    KEY_TYPE: ClassVar[str]  # pkcs11.KeyType member
    GENERATE: ClassVar[str]  # pkcs11.Mechanism member that makes the pair
    SIGN: ClassVar[str]  # pkcs11.Mechanism member that signs
    CURVE_OID: ClassVar[str]  # CKA_EC_PARAMS, as a named curve
    PRIVATE_EXTRA: ClassVar[tuple[str, ...]] = ()  # pkcs11.Attribute members set False

    def __init__(self, config: Pkcs11Config, *, workspace_id: str, purpose: str) -> None:
        self._ring = Pkcs11Keyring(config, workspace_id=workspace_id)
        self._label = f"sealtune/{workspace_id}/{purpose}/{self.KIND}"
        self._token_label = config.token_label

    @property
    def label(self) -> str:
        """The label of both objects on the token."""
        return self._label

    def supported(self) -> bool:
        """Whether the token offers this curve's key generation and signing mechanisms."""
        from pkcs11 import Mechanism

        with self._ring._session() as s:
            mechanisms = set(s.token.slot.get_mechanisms())
        return {getattr(Mechanism, self.GENERATE), getattr(Mechanism, self.SIGN)} <= mechanisms

    def _find(self, session: Any, cls: Any) -> Any | None:
        from pkcs11 import Attribute, KeyType

        found = list(session.get_objects({Attribute.CLASS: cls, Attribute.LABEL: self._label,
                                          Attribute.KEY_TYPE: getattr(KeyType, self.KEY_TYPE)}))
        if len(found) > 1:
            raise KeyringError(f"token {self._token_label!r} holds several objects labelled "
                               f"{self._label!r}", hint="remove the extra ones")
        return found[0] if found else None

    def _generate(self, session: Any) -> Any:
        from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag
        from pkcs11.util.ec import encode_named_curve_parameters

        params = session.create_domain_parameters(
            getattr(KeyType, self.KEY_TYPE),
            {Attribute.EC_PARAMS: encode_named_curve_parameters(self.CURVE_OID)}, local=True)
        private = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                   Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                   Attribute.MODIFIABLE: False}
        private |= {getattr(Attribute, name): False for name in self.PRIVATE_EXTRA}
        public, _private = params.generate_keypair(
            mechanism=getattr(Mechanism, self.GENERATE), store=True, label=self._label,
            id=hashlib.sha256(self._label.encode()).digest()[:16],
            capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
            public_template={Attribute.TOKEN: True, Attribute.VERIFY: True,
                             Attribute.MODIFIABLE: False},
            private_template=private)
        return public

    def _point(self, *, create: bool) -> tuple[bytes | None, bool]:
        """The public object's ``CKA_EC_POINT`` (None if absent), generating it if asked."""
        from pkcs11 import Attribute, ObjectClass

        with self._ring._session(rw=create) as s:
            public = self._find(s, ObjectClass.PUBLIC_KEY)
            created = public is None and create
            if created:
                public = self._generate(s)
            return (None if public is None else bytes(public[Attribute.EC_POINT])), created

    def _sign(self, payload: bytes) -> bytes:
        """``C_Sign`` of ``payload`` with the private key.

        Raises:
            KeyringError: the pair is missing or the token refused.
        """
        from pkcs11 import Mechanism, ObjectClass

        with self._ring._session() as s:
            private = self._find(s, ObjectClass.PRIVATE_KEY)
            if private is None:
                raise KeyringError(f"no {self.NAME} key {self._label!r} on token "
                                   f"{self._token_label!r}")
            return bytes(private.sign(payload, mechanism=getattr(Mechanism, self.SIGN)))
