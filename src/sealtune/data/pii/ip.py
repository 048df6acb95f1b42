"""IP_ADDRESS: IPv4 and IPv6 addresses.

Catches dotted-quad IPv4 addresses with octets 0-255 and no leading zeros
(``192.168.1.10``, also glued to Chinese text or in full-width digits), and
IPv6 addresses in full, compressed (``2001:db8::8a2e:370:7334``, ``fe80::1``)
or IPv4-suffixed form, validated with the standard library's ``ipaddress``.
Private and loopback addresses are reported too: an internal address is
still sensitive in a training set.

Does not catch: IPv4 with leading zeros or fewer than four parts, addresses
with a port or CIDR suffix beyond the address itself (the address part is
still reported), zone ids (``%eth0``), or IPv6 with a single non-empty group
(``::1``, too ambiguous in code). Dotted numbers after a version word
(``v1.2.3.4``, ``version 1.2.3.4``, ``版本1.2.3.4``) and longer dotted runs
(OIDs such as ``1.3.6.1.4.1``) are deliberately not IP addresses.
"""

from __future__ import annotations

import ipaddress
import re

from sealtune.data.pii.base import Entity, register_recognizer

NAME = "ip_address"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# No leading lookbehind: it would disable re's fast scan; the left border is
# checked in code instead.
_V4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![0-9]|\.[0-9])")
_V4_STRICT = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_V6 = re.compile(
    r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]{0,35}"
    r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![A-Za-z0-9_:]|\.\d)"
)
_V4_HINT = re.compile(r"\.\d{1,3}\.\d{1,3}\.\d")  # starts with a literal: a fast scan
_V6_HINT = re.compile(r"::|:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")  # literal start: fast scan
# What may not touch an address on the left. Letters may (mixed text such as
# "登录IP10.0.0.1"), except hex letters before IPv6; "v1.2.3.4" is handled as
# a version below.
_LEFT_V4 = frozenset("0123456789_.")
_LEFT_V6 = frozenset("0123456789abcdefABCDEF_.:")
_VERSIONED = re.compile(r"(?:\b(?:v|version|ver\.?|release|build)|版本号?)[ :=：]*$",
                        re.IGNORECASE | re.ASCII)


_DIGITS_DOTS = frozenset("0123456789.")
_HEX_COLONS = frozenset("0123456789abcdefABCDEF:")


def _back(text: str, pos: int, chars: frozenset[str]) -> int:
    """Where the run of ``chars`` that contains ``pos`` starts (the scan starts there)."""
    while pos > 0 and text[pos - 1] in chars:
        pos -= 1
    return pos


def _versioned(text: str, start: int) -> bool:
    return _VERSIONED.search(text, max(0, start - 12), start) is not None


class IpRecognizer:
    """Recognizer for ``IP_ADDRESS`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"IP_ADDRESS"})

    def analyze(self, text: str) -> list[Entity]:
        found: list[Entity] = []
        hint = _V4_HINT.search(text) if "." in text else None
        if hint:
            for m in _V4.finditer(text, _back(text, hint.start(), _DIGITS_DOTS)):
                start = m.start()
                if (start and text[start - 1] in _LEFT_V4) or not _V4_STRICT.fullmatch(m.group()):
                    continue
                if not _versioned(text, start):
                    found.append(Entity("IP_ADDRESS", start, m.end(), 0.85, NAME))
        hint = _V6_HINT.search(text) if ":" in text else None
        if hint:
            for m in _V6.finditer(text, _back(text, hint.start(), _HEX_COLONS)):
                candidate = m.group()
                if m.start() and text[m.start() - 1] in _LEFT_V6:
                    continue
                if sum(1 for g in candidate.split(":") if g) < 2:
                    continue
                try:
                    ipaddress.IPv6Address(candidate)
                except ValueError:
                    continue
                found.append(Entity("IP_ADDRESS", m.start(), m.end(), 0.85, NAME))
        return found


register_recognizer(NAME, IpRecognizer, entity_types=IpRecognizer.entity_types)
