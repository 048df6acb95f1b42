"""EMAIL: e-mail addresses.

Catches ``local@domain.tld`` addresses with an ASCII local part and a domain
of dot-separated labels ending in an alphabetic TLD (2-24 letters), also in
full-width characters (``ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ``, after NFKC) and glued
to Chinese text (``邮箱john@example.com谢谢``).

Does not catch: internationalised addresses with non-ASCII local parts or
Unicode domains, obfuscated forms (``john at example dot com``,
``john[at]example.com``), or addresses whose TLD runs on into following
Latin letters with no separator. It does not check that the domain exists.
"""

from __future__ import annotations

import re

from sealtune.data.pii.base import Entity, register_recognizer

NAME = "email"
_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_DOMAIN = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
)


def _local_start(text: str, at: int) -> int:
    """Start of the local part ending at ``at`` (``at`` if there is none)."""
    start = at
    while start > 0 and at - start < 64 and text[start - 1] in _LOCAL:
        start -= 1
    while start < at and text[start] == ".":  # a local part does not start with a dot
        start += 1
    return start if start < at and text[at - 1] != "." else at


class EmailRecognizer:
    """Recognizer for ``EMAIL`` (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"EMAIL"})

    def analyze(self, text: str) -> list[Entity]:
        # Anchored on "@" (rare) instead of a regex that starts at every letter.
        found: list[Entity] = []
        at = text.find("@")
        while at != -1:
            start = _local_start(text, at)
            domain = _DOMAIN.match(text, at + 1) if start < at else None
            if domain:
                found.append(Entity("EMAIL", start, domain.end(), 0.9, NAME))
            at = text.find("@", at + 1)
        return found


register_recognizer(NAME, EmailRecognizer, entity_types=EmailRecognizer.entity_types)
