"""Shape-keeping surrogate values, drawn deterministically from a keyed seed.

Every generator takes the original value (only to copy its shape:
separators, length, full-width digits, a ``+86`` prefix) and a :class:`Draw`
seeded with HMAC(pseudonym key, type, canonical value). Nothing of the
value's content flows into the surrogate except through the keyed seed, and
the few prefixes that are kept on purpose: a phone number's country code
and (for landlines) area code, a bank card's ``62`` (China UnionPay) or
first digit, a passport's leading letter (the document type).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import ipaddress
import struct
import unicodedata
from collections.abc import Callable, Sequence
from typing import TypeVar

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from sealtune.data.redact import _names

T = TypeVar("T")
_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TRIES = 50

# Region codes valid in python-stdnum's table for every birth year drawn below.
_CN_REGIONS = ("110101", "110105", "110108", "120101", "310101", "310104", "310105", "320102",
               "330106", "350102", "370102", "420102", "430102", "440103", "440104", "440106",
               "440305", "450102", "530102", "610102", "210102", "360102", "130102")
_CN_MOBILE = ("130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150",
              "151", "152", "153", "155", "156", "157", "158", "159", "166", "177", "180",
              "181", "182", "183", "184", "185", "186", "187", "188", "189", "198", "199")
_TEST_NETS = ("192.0.2", "198.51.100", "203.0.113")
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "dr", "prof", "sir", "madam"})


class Draw:
    """Deterministic choices from a seed (SHAKE-256 as the stream)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._buf = b""
        self._pos = 0

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._buf):
            self._buf = hashlib.shake_256(self._seed).digest(max(128, 2 * len(self._buf) + n))
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def below(self, n: int) -> int:
        """An integer in ``[0, n)`` (bias below 2**-56 for small ``n``)."""
        return int.from_bytes(self._take(8), "big") % n

    def choice(self, seq: Sequence[T]) -> T:
        """One element of ``seq``."""
        return seq[self.below(len(seq))]

    def digits(self, n: int) -> str:
        """``n`` decimal digits (what ``n`` calls of ``below(10)`` give, in one read)."""
        if n <= 0:
            return ""
        words = struct.unpack(f">{n}Q", self._take(8 * n))
        return "".join([_DIGITS[w % 10] for w in words])


def nfkc(text: str) -> str:
    """NFKC form (full-width digits and letters become ASCII)."""
    return unicodedata.normalize("NFKC", text)


def _digits_of(text: str, extra: str = "") -> str:
    return "".join(c for c in nfkc(text).upper() if c in _DIGITS or c in extra)


def canonical(entity_type: str, value: str) -> str:
    """The form that is hashed: equal for spellings of the same value."""
    if entity_type in ("CN_ID", "BANK_CARD", "PASSPORT"):
        return "".join(c for c in nfkc(value).upper() if c.isalnum())
    if entity_type == "PHONE":
        num = _parse_phone(nfkc(value))
        return _digits_of(value) if num is None else f"+{num.country_code}{num.national_number}"
    if entity_type == "IP_ADDRESS":
        try:
            return ipaddress.ip_address(nfkc(value).strip("[]")).compressed
        except ValueError:
            pass
    return " ".join(nfkc(value).split()).casefold()


@functools.lru_cache(maxsize=1)
def _parse_phone(text: str) -> phonenumbers.PhoneNumber | None:
    """``text`` parsed as a phone number (China by default), or None if it is not one.

    Cached for the last value only: :func:`canonical` and :func:`phone` parse the same
    value one after the other, and parsing is the costliest step of a phone surrogate;
    one entry is all that needs, and it keeps no more than one number in memory after
    a redaction. Callers only read the number, never change it.
    """
    try:
        return phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None


def _widen(original: str, new: str) -> str:
    """``new`` in full width if ``original`` was a full-width character."""
    if "\uff01" <= original <= "\uff5e" and "!" <= new <= "~":
        return chr(ord(new) + 0xFEE0)
    return new


def reshape(template: str, chars: str, is_slot: Callable[[str], bool]) -> str:
    """``template`` with its slot characters replaced, in order, by ``chars``."""
    it = iter(chars)
    if template.isascii():  # NFKC and full width change no ASCII character
        return "".join([next(it, "0") if is_slot(c) else c for c in template])
    out: list[str] = []
    for c in template:
        if is_slot(nfkc(c)):
            out.append(_widen(c, next(it, "0")))
        else:
            out.append(c)
    return "".join(out)


def _is_digit(c: str) -> bool:
    return len(c) == 1 and c in _DIGITS


def generic(value: str, draw: Draw) -> str:
    """Same characters classes in the same places: digits, Latin letters, CJK."""
    out: list[str] = []
    for c in value:
        n = nfkc(c)
        if _is_digit(n):
            out.append(_widen(c, draw.choice(_DIGITS)))
        elif len(n) == 1 and n in _UPPER:
            out.append(_widen(c, draw.choice(_UPPER)))
        elif len(n) == 1 and n in _UPPER.lower():
            out.append(_widen(c, draw.choice(_UPPER.lower())))
        elif "\u4e00" <= c <= "\u9fff":
            out.append(draw.choice(_names.CN_GIVEN))
        else:
            out.append(c)
    return "".join(out)


def cn_id(value: str, draw: Draw) -> str:
    """A resident ID with a real region code, a plausible birth date and a valid check digit."""
    digits = _digits_of(value, "X")
    if len(digits) == 15:  # legacy form: region, YYMMDD, sequence; births before 1985
        born = datetime.date(1950, 1, 1) + datetime.timedelta(days=draw.below(35 * 365))
        new = draw.choice(_CN_REGIONS) + born.strftime("%y%m%d") + draw.digits(3)
    elif len(digits) == 18:
        new = digits
        for _ in range(_TRIES):
            born = datetime.date(1985, 1, 1) + datetime.timedelta(days=draw.below(20 * 365))
            body = draw.choice(_CN_REGIONS) + born.strftime("%Y%m%d") + draw.digits(3)
            new = body + ric.calc_check_digit(body + "0")  # it skips the last character
            if new != digits and _placed(body[:6], born.year):
                break
    else:
        return generic(value, draw)
    return reshape(value, new, lambda c: _is_digit(c) or c in "Xx")


@functools.lru_cache(maxsize=1024)
def _placed(region: str, year: int) -> bool:
    """``ric.is_valid`` of a number that :func:`cn_id` draws in ``region``, born in ``year``.

    Such a number has 18 digits, a real date and its check digit by construction, so
    python-stdnum's verdict on it turns on its birth place alone: whether the region
    code existed in the birth year (a table lookup that costs more than the rest of a
    surrogate; at most 23 regions x 20 years are ever asked).
    """
    return ric.is_valid(f"{region}{year:04d}0101000" + ric.calc_check_digit(
        f"{region}{year:04d}01010000"))


def bank_card(value: str, draw: Draw) -> str:
    """A Luhn-valid number of the same length, same separators, same network prefix."""
    digits = _digits_of(value)
    if not 12 <= len(digits) <= 19:
        return generic(value, draw)
    prefix = "62" if digits.startswith("62") else digits[:1]
    new = digits
    for _ in range(_TRIES):
        body = prefix + draw.digits(len(digits) - len(prefix) - 1)
        new = body + luhn.calc_check_digit(body)
        if new != digits:
            break
    return reshape(value, new, _is_digit)


def _national(num: phonenumbers.PhoneNumber, national: str, draw: Draw) -> str:
    if num.country_code == 86 and len(national) == 11 and national.startswith("1"):
        return draw.choice(_CN_MOBILE) + draw.digits(8)
    keep = max(1, phonenumbers.length_of_geographical_area_code(num))
    keep = min(keep, len(national) - 2)
    return national[:keep] + "23456789"[draw.below(8)] + draw.digits(len(national) - keep - 1)


def phone(value: str, draw: Draw) -> str:
    """A valid number of the same type and format: country code (and area code) kept."""
    num = _parse_phone(nfkc(value))
    if num is None:
        return generic(value, draw)
    digits = _digits_of(value)
    national = str(num.national_number)
    if len(national) < 4 or not digits.endswith(national):
        return generic(value, draw)
    lead = digits[:len(digits) - len(national)]
    new = value
    for _ in range(_TRIES):
        new = reshape(value, lead + _national(num, national, draw), _is_digit)
        try:
            parsed = phonenumbers.parse(nfkc(new), "CN")
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed) and str(parsed.national_number) != national:
            break
    return new


def ip_address(value: str, draw: Draw) -> str:
    """An address from the documentation ranges (RFC 5737 / RFC 3849)."""
    try:
        ip = ipaddress.ip_address(nfkc(value).strip("[]"))
    except ValueError:
        return generic(value, draw)
    if ip.version == 4:
        return f"{draw.choice(_TEST_NETS)}.{1 + draw.below(254)}"
    groups = ":".join(f"{draw.below(0x10000):x}" for _ in range(6))
    new = ipaddress.IPv6Address(f"2001:db8:{groups}").compressed
    return f"[{new}]" if value.startswith("[") else new


def email(value: str, draw: Draw) -> str:
    """``given.family<nn>@example.(com|org|net)`` (RFC 2606 reserved domains)."""
    given = draw.choice(_names.EN_GIVEN).lower()
    family = draw.choice(_names.EN_FAMILY).lower()
    return f"{given}.{family}{draw.below(100)}@{draw.choice(_names.EMAIL_DOMAINS)}"


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def person(value: str, draw: Draw) -> str:
    """A Chinese name for Chinese input (same length up to 3), else an English one."""
    norm = nfkc(value)
    if _has_cjk(norm):
        size = sum(1 for c in norm if "\u4e00" <= c <= "\u9fff")
        given = "".join(draw.choice(_names.CN_GIVEN) for _ in range(max(1, min(2, size - 1))))
        return draw.choice(_names.CN_SURNAMES) + given
    tokens = norm.split()
    names = [t for t in tokens if t.rstrip(".").lower() not in _TITLES]
    if not names:
        return generic(value, draw)
    fresh = [draw.choice(_names.EN_GIVEN) for _ in names[:-1]] + [draw.choice(_names.EN_FAMILY)]
    it = iter(fresh)
    out = [t if t.rstrip(".").lower() in _TITLES else _case_like(t, next(it)) for t in tokens]
    return " ".join(out)


def _case_like(original: str, new: str) -> str:
    return new.upper() if len(original) > 1 and original.isupper() else new


def address(value: str, draw: Draw) -> str:
    """A plausible address of the same language from the bundled place names."""
    if _has_cjk(value):
        city, district = draw.choice(_names.CN_PLACES)
        return f"{city}{district}{draw.choice(_names.CN_ROADS)}{1 + draw.below(300)}号"
    return (f"{1 + draw.below(9899)} {draw.choice(_names.EN_STREETS)} "
            f"{draw.choice(_names.EN_STREET_SUFFIXES)}, {draw.choice(_names.EN_CITIES)}")


def passport(value: str, draw: Draw) -> str:
    """Same shape; the leading letter (the document type, e.g. ``E``) is kept."""
    if value and nfkc(value[0]).isalpha():
        return value[0] + generic(value[1:], draw)
    return generic(value, draw)


GENERATORS: dict[str, Callable[[str, Draw], str]] = {
    "CN_ID": cn_id, "BANK_CARD": bank_card, "PHONE": phone, "IP_ADDRESS": ip_address,
    "EMAIL": email, "PERSON": person, "ADDRESS": address, "PASSPORT": passport,
}


def surrogate(entity_type: str, value: str, seed: bytes) -> str:
    """The surrogate for ``value`` of ``entity_type`` (custom types keep character classes)."""
    return GENERATORS.get(entity_type, generic)(value, Draw(seed))
