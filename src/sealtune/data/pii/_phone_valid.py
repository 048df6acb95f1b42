"""Validity of a phone number from libphonenumber's metadata, at a fraction of the cost.

``phonenumbers.is_valid_number`` answers by walking up to eleven number
types (general, premium rate, toll free ... fixed line, mobile) with one
pattern lookup and two regex matches each; the PHONE recognizer asks it
about every ``+`` or ``00`` candidate, where it was most of the cost.
:func:`is_valid` gives the same answer from the same metadata with one
regular expression per region and number length: the general pattern as a
lookahead, then the type patterns as alternatives. Each is built on first
use and cached (a few thousand at most: regions times lengths).

The region of a calling code shared by several regions (``+1``, ``+44``,
``+7`` ...) is chosen as phonenumbers chooses it: the first region whose
leading-digits pattern matches, or else whose number types accept the number.

This is an optimisation, not a second opinion: any change of phonenumbers
that makes the answers differ is caught by the unit tests, which compare the
two on every calling code.
"""

from __future__ import annotations

import re
from functools import lru_cache

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, REGION_CODE_FOR_NON_GEO_ENTITY
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

# The number types of phonenumbers' _number_type_helper, in its order; a
# number is valid if it matches the general description and one of these
# (the mobile pattern only if it differs from the fixed-line one).
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
          "voicemail", "fixed_line")


def is_valid(country_code: int, national: str) -> bool:
    """``phonenumbers.is_valid_number`` for ``+<country_code><national>``.

    Args:
        country_code: the calling code.
        national: the national significant number, ASCII digits without a
            leading zero (``str(PhoneNumber.national_number)``).
    """
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if regions is None:
        return False
    region = regions[0] if len(regions) == 1 else _region(national, regions)
    if region is None:
        return False
    pattern = _pattern(country_code, region, len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


def is_fixed_line(country_code: int, national: str) -> bool:
    """``phonenumbers.number_type`` is FIXED_LINE or FIXED_LINE_OR_MOBILE (same arguments)."""
    regions = COUNTRY_CODE_TO_REGION_CODE.get(country_code)
    if regions is None:
        return False
    region = regions[0] if len(regions) == 1 else _region(national, regions)
    metadata = None if region is None else \
        PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if metadata is None:
        return False
    pattern = _fixed_pattern(metadata, len(national))
    return pattern is not None and pattern.fullmatch(national) is not None


def _region(national: str, regions: tuple[str, ...]) -> str | None:
    """The region phonenumbers assigns a number of a shared calling code to."""
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if _compiled(metadata.leading_digits).match(national):
                return region
        else:
            pattern = _type_pattern(metadata, len(national))
            if pattern is not None and pattern.fullmatch(national):
                return region
    return None


@lru_cache(maxsize=4096)
def _pattern(country_code: int, region: str, length: int) -> re.Pattern[str] | None:
    """Valid numbers of ``length`` digits for ``region`` (None: there are none)."""
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region.upper())
    if metadata is None or (region != REGION_CODE_FOR_NON_GEO_ENTITY
                            and country_code != metadata.country_code):
        return None
    return _type_pattern(metadata, length)


def _type_pattern(metadata: PhoneMetadata, length: int) -> re.Pattern[str] | None:
    """Numbers of ``length`` digits whose type in ``metadata`` is known (None: none are)."""
    key = (metadata.id, metadata.country_code, length)
    if key not in _TYPE_PATTERNS:
        general = _patterns(metadata, ("general_desc",), length)
        mobile = () if metadata.same_mobile_and_fixed_line_pattern else ("mobile",)
        types = _patterns(metadata, (*_TYPES, *mobile), length)
        _TYPE_PATTERNS[key] = re.compile(
            f"(?=(?:{general[0]})\\Z)(?:{_either(types)})"
        ) if general and types else None
    return _TYPE_PATTERNS[key]


def _fixed_pattern(metadata: PhoneMetadata, length: int) -> re.Pattern[str] | None:
    """Numbers of ``length`` digits that ``metadata`` types as fixed line (or fixed or mobile).

    That is the general pattern, none of the types phonenumbers tries before
    the fixed line (a negative lookahead), and the fixed-line pattern.
    """
    key = (metadata.id, metadata.country_code, length)
    if key not in _FIXED_PATTERNS:
        general = _patterns(metadata, ("general_desc",), length)
        fixed = _patterns(metadata, ("fixed_line",), length)
        before = _patterns(metadata, _TYPES[:-1], length)
        exclude = f"(?!(?:{_either(before)})\\Z)" if before else ""
        _FIXED_PATTERNS[key] = re.compile(
            f"(?=(?:{general[0]})\\Z){exclude}(?:{fixed[0]})"
        ) if general and fixed else None
    return _FIXED_PATTERNS[key]


#: (region, calling code, length) -> pattern (None: no number matches).
_TYPE_PATTERNS: dict[tuple[str, int | None, int], re.Pattern[str] | None] = {}
_FIXED_PATTERNS: dict[tuple[str, int | None, int], re.Pattern[str] | None] = {}


def _patterns(metadata: PhoneMetadata, names: tuple[str, ...], length: int) -> list[str]:
    """The patterns of the named descriptions that a number of ``length`` digits can match.

    As phonenumbers' _is_number_matching_desc: no description or no pattern
    never matches; a description without possible lengths allows any length.
    """
    found = []
    for name in names:
        desc: PhoneNumberDesc | None = getattr(metadata, name)
        if desc is None or not desc.national_number_pattern:
            continue
        if not desc.possible_length or length in desc.possible_length:
            found.append(desc.national_number_pattern)
    return found


def _either(patterns: list[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
