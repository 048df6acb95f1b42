"""``token``: a reversible token, the value encrypted under the dataset token key.

A value becomes ``⟦TOK:PHONE:<base64url>⟧``, the base64url of ``nonce |
AES-256-GCM ciphertext | tag`` with the entity type as associated data.
With ``deterministic: true`` (the default) the nonce is an HMAC of the type
and value (a synthetic IV), so the same value gives the same token across
records, like a pseudonym; with ``false`` every occurrence gets a random
nonce and tokens cannot be linked.

:func:`detokenize` restores the values. It refuses to run without an
``audit`` callback and records every call in it (success or failure, with
the token count and types, never values) *before* the plaintext is
returned, so restoring PII always leaves a trace in the audit ledger.

What this protects against: the value reaching the model or anyone without
the dataset key; any change to a token, or a token moved to another entity
type, fails authentication (opaque :class:`~sealtune.errors.IntegrityError`).
What it does not: tokens are reversible *by design* by whoever holds the
dataset key (the sealed dataset secret is the thing to guard, and
destroying it makes tokens permanently irreversible), the token's length
grows with the value's length, deterministic tokens are linkable, and a
model trained on tokens may emit them, which is harmless only while the
key stays sealed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sealtune.data.redact.base import Effect, Operator, check_options, register_operator
from sealtune.data.redact.keys import DatasetKeys, b64url, unb64url
from sealtune.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from sealtune.ledger.entry import Outcome

#: A token in text: ⟦TOK:<TYPE>:<base64url>⟧.
TOKEN_PATTERN = re.compile(r"⟦TOK:([A-Z][A-Z0-9_]{0,39}):([A-Za-z0-9_-]+)⟧")
AUDIT_ACTION = "data.detokenize"


class AuditSink(Protocol):
    """Where detokenisation is recorded: ``Workspace.audit`` and ``KeyService.audit`` fit."""

    def __call__(self, action: str, resource: str, *, outcome: Outcome = "success",
                 details: dict[str, Any] | None = None) -> None: ...


@dataclass(frozen=True)
class Token:
    """The token operator (registered as ``token``)."""

    deterministic: bool = True
    name: ClassVar[str] = "token"
    effect: ClassVar[Effect] = "replace"
    needs_keys: ClassVar[bool] = True
    discloses: ClassVar[bool] = True

    def options(self) -> dict[str, Any]:
        return {"deterministic": self.deterministic}

    def apply(self, value: str, *, entity_type: str, keys: DatasetKeys | None) -> str:
        if keys is None:
            raise UsageError("the token operator needs the dataset keys")
        return tokenize(value, entity_type=entity_type, keys=keys,
                        deterministic=self.deterministic)

    @classmethod
    def factory(cls, options: Mapping[str, Any], where: str) -> Operator:
        """Build from policy options (``deterministic``)."""
        check_options(options, {"deterministic": bool}, where=where, operator=cls.name)
        return cls(**options)


def tokenize(value: str, *, entity_type: str, keys: DatasetKeys, deterministic: bool = True) -> str:
    """The token text for ``value`` of ``entity_type``."""
    blob = keys.token_key.seal(entity_type, value, deterministic=deterministic)
    return f"⟦TOK:{entity_type}:{b64url(blob)}⟧"


def detokenize(text: str, keys: DatasetKeys, *, audit: AuditSink, resource: str) -> str:
    """``text`` with every token replaced by its value; records the restore in ``audit``.

    Args:
        text: text holding tokens.
        keys: the dataset's keys (unwrapped from the sealed dataset secret).
        audit: called once, before the plaintext is returned, as
            ``audit("data.detokenize", resource, outcome=..., details={"tokens": n,
            "types": {...}})``; if it raises, nothing is returned.
        resource: what is being restored (e.g. the dataset name), for the audit event.

    Raises:
        UsageError: no audit callback was given.
        IntegrityError: a token does not open with this key (wrong key or altered token).
    """
    if audit is None or not callable(audit):
        raise UsageError("detokenize needs an audit callback",
                         hint="pass audit=workspace.audit so that every restore is recorded")
    types: Counter[str] = Counter()

    def restore(match: re.Match[str]) -> str:
        types[match.group(1)] += 1
        return keys.token_key.open(match.group(1), unb64url(match.group(2)))

    try:
        restored = TOKEN_PATTERN.sub(restore, text)
    except IntegrityError:
        audit(AUDIT_ACTION, resource, outcome="failure",
              details={"tokens": sum(types.values()), "error": "IntegrityError"})
        raise
    audit(AUDIT_ACTION, resource, details={"tokens": sum(types.values()), "types": dict(types)})
    return restored


register_operator(Token.name, Token.factory)
