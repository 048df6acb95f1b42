"""``pseudonym``: a keyed, consistent, shape-keeping surrogate.

The surrogate is drawn from HMAC-SHA-256(dataset pseudonym key, type,
canonical value), so within one dataset the same value always gives the
same surrogate (``138 0013 8000`` and ``+86 13800138000`` are one number),
and conversations stay coherent for training. Surrogates keep the shape:

* ``CN_ID``: a real region code, a plausible birth date (1985-2004; the
  legacy 15-digit form before 1985) and a valid GB 11643 check digit;
* ``BANK_CARD``: same length and separators, Luhn-valid, ``62`` or the first
  digit kept (the card network);
* ``PHONE``: a valid number of the same kind (Chinese mobile prefixes), with
  ``+86``, spaces and dashes where they were; the country code (and a
  landline's area code) is kept;
* ``EMAIL``: ``given.family<nn>@example.com|org|net`` (reserved domains);
* ``IP_ADDRESS``: from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 or
  2001:db8::/32 (documentation ranges);
* ``PERSON``: a Chinese name for Chinese input, an English one otherwise;
* ``ADDRESS``: a plausible address in the same language;
* ``PASSPORT`` and custom types: same character classes in the same places;
* ``SECRET``: refused (the policy only allows removing secrets).

Full-width digits stay full-width. Different dataset secrets give unrelated
surrogates.

What this protects against: the real values reaching the model, and
dictionary attacks on the surrogates without the dataset key (a phone
number has only ~10^9 values, but the HMAC key makes guessing useless).
What it does not: linkability is kept *by design* (every record mentioning
the same person carries the same surrogate, so the model can still learn
that one customer's records belong together), the kept prefixes (country
and area code, card network, passport type) and the entity's shape and
position are disclosed, a surrogate can coincide with a real person's data,
and a text that mentions a value in a form the detector missed keeps it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sealtune.data.redact._surrogates import canonical, surrogate
from sealtune.data.redact.base import Effect, Operator, check_options, register_operator
from sealtune.errors import UsageError

if TYPE_CHECKING:
    from sealtune.data.redact.keys import DatasetKeys

_CACHE_LIMIT = 1 << 16


@dataclass(frozen=True)
class Pseudonym:
    """The pseudonym operator (registered as ``pseudonym``)."""

    name: ClassVar[str] = "pseudonym"
    effect: ClassVar[Effect] = "replace"
    needs_keys: ClassVar[bool] = True
    discloses: ClassVar[bool] = True
    # Surrogate generation (phone validation) costs far more than the HMAC, and the
    # canonical form (a phone parse) and the HMAC cost more than a lookup: cache per
    # (keys, type, value), so a value repeated in a dataset costs one dict lookup. The
    # keys object is part of the key (by identity; it is held, so its id is not reused):
    # other keys give other surrogates.
    _cache: dict[tuple[DatasetKeys, str, str], str] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def options(self) -> dict[str, Any]:
        return {}

    def apply(self, value: str, *, entity_type: str, keys: DatasetKeys | None) -> str:
        if keys is None:
            raise UsageError("the pseudonym operator needs the dataset keys")
        if entity_type == "SECRET":
            raise UsageError("secrets are never pseudonymised")
        key = (keys, entity_type, value)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            seed = keys.pseudonym_seed(entity_type, canonical(entity_type, value))
            found = self._cache[key] = surrogate(entity_type, value, seed)
        return found

    @classmethod
    def factory(cls, options: Mapping[str, Any], where: str) -> Operator:
        """Build from policy options (none)."""
        check_options(options, {}, where=where, operator=cls.name)
        return cls()


register_operator(Pseudonym.name, Pseudonym.factory)
