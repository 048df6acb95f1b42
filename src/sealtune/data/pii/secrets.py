"""SECRET: API keys and tokens, private key blocks, JWTs, password assignments.

Catches provider tokens whose format is distinctive (AWS access key ids,
GitHub, GitLab, Slack, Stripe, OpenAI, Anthropic, Google API keys, npm,
PyPI, Hugging Face, SendGrid, Twilio, DigitalOcean, Alibaba Cloud, Tencent
Cloud, Azure storage keys), PEM private key blocks (also truncated ones),
JWTs, passwords in URLs (``postgres://app:PASSWORD@host``), and values
assigned to a credential word: ``password=...``, ``"api_key": "..."``,
``token: ...``, ``my password is ...``, ``密码是...``, ``口令：...``,
``登录密码 ...``. The token rules are data
(``secrets_rules.toml``, adapted from gitleaks, MIT) so they can be updated
without code; the span reported is the secret itself, not the key name.

A password assignment counts only if the value looks like a credential:
letters and digits, or a symbol, or 6+ digits (Chinese PINs and passwords),
8+ letters with upper case inside the word, or 12+ characters; placeholders
(``${DB_PASSWORD}``, ``<token>``, ``***``, ``changeme``, ``null``) are
skipped. So "the token is expired" or "密码错误" are not secrets.

Does not catch: high-entropy strings with no known prefix and no credential
word (a bare 40-hex string is as likely a commit hash as a key, and is
deliberately not reported), secrets split across lines or encoded, provider
formats not in the rule file, or passwords made only of letters shorter
than 12 characters.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from sealtune.data.pii._text import keyword_hits, pick_non_overlapping, register_keywords
from sealtune.data.pii.base import Entity, register_recognizer
from sealtune.errors import ConfigError

NAME = "secrets"
RULES_FILE = "secrets_rules.toml"
# A rule with a ``first`` field is tried where a long token starts: at the
# first letter or digit of a run of these characters, 16 or more from there.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ALNUM = _TOKEN_CHARS - {"_", "-"}

KEYWORDS = (
    "password", "passwd", "passcode", "pwd", "secret", "token", "api_key", "api-key", "apikey",
    "access_key", "access-key", "accesskey", "private_key", "private-key", "credential",
    "密码", "口令", "密钥", "令牌", "授权码", "验证码",
)
_KEYWORD_SET = frozenset(KEYWORDS)
register_keywords(KEYWORDS)
_ASSIGNMENT = re.compile(
    r"[a-z_\-]{0,24}[\"']?\s{0,3}(?:[:=：]|=>|\bis\b|是|为)\s{0,3}[\"'`]?"
    r"([A-Za-z0-9!#$%&()*+\-./:<=>?@\[\]^_{|}~\\]{4,128})",
    re.IGNORECASE,
)
# After a Chinese credential word a plain space also assigns: "登录密码 Xy7#kq2P".
_CJK_ASSIGNMENT = re.compile(
    r"[\s：:=是为]{1,3}[\"'`]?([A-Za-z0-9!#$%&()*+\-./:<=>?@\[\]^_{|}~\\]{4,128})"
)
_PLACEHOLDER = re.compile(
    r"^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^>]*>|%[A-Za-z_]+%|\{\{.*\}\}|\*+|x{3,}|\.+|"
    r"(?i:true|false|null|none|nil|undefined|required|optional|string|changeme|password|"
    r"secret|token|example|redacted|hidden|masked))$"
)
_TRAILING = ".)]}:,;!?"


@dataclass(frozen=True)
class SecretRule:
    """One token rule from the rule file."""

    id: str
    regex: re.Pattern[str]
    group: int = 0
    boundary: bool = True
    score: float = 0.95
    first: str = ""
    keyword: str = ""


def parse_rules(data: dict[str, Any], *, source: str) -> tuple[SecretRule, ...]:
    """Build rules from a parsed rule file; bad rules are a ConfigError naming them."""
    rules: list[SecretRule] = []
    for index, raw in enumerate(data.get("rules", [])):
        where = f"{source}: rules[{index}]"
        unknown = set(raw) - {"id", "regex", "group", "boundary", "score", "source",
                              "description", "first", "keyword"}
        if unknown or "id" not in raw or "regex" not in raw:
            raise ConfigError(f"{where}: needs id and regex, unknown keys {sorted(unknown)}")
        try:
            regex = re.compile(raw["regex"])
        except re.error as exc:
            raise ConfigError(f"{where} ({raw['id']}): invalid regex: {exc.msg}") from None
        group = int(raw.get("group", 0))
        if group > regex.groups:
            raise ConfigError(f"{where} ({raw['id']}): group {group} does not exist")
        rules.append(SecretRule(str(raw["id"]), regex, group, bool(raw.get("boundary", True)),
                                float(raw.get("score", 0.95)), str(raw.get("first", "")),
                                str(raw.get("keyword", "")).lower()))
    return tuple(rules)


def default_rules() -> tuple[SecretRule, ...]:
    """The rules shipped in ``secrets_rules.toml``."""
    text = resources.files("sealtune.data.pii").joinpath(RULES_FILE).read_text("utf-8")
    return parse_rules(tomllib.loads(text), source=RULES_FILE)


def credential_like(value: str) -> bool:
    """True if an assigned value looks like a credential, not a word or placeholder."""
    if _PLACEHOLDER.match(value):
        return False
    has_alpha = any(map(str.isalpha, value))
    has_digit = any(map(str.isdigit, value))
    if has_alpha and has_digit:
        return True
    if not value.isalnum():
        return any(map(str.isalnum, value))
    if has_alpha and len(value) >= 8 and any(map(str.isupper, value[1:])) and \
            any(map(str.islower, value)):
        return True  # mixed case inside the word: "sZvBeKKzzy", not "Tomorrow"
    return (has_digit and len(value) >= 6) or len(value) >= 12


def _token_start(text: str, pos: int) -> bool:
    """True if a long token starts at ``pos`` (a letter or digit with 15+ token chars after).

    It does if only ``_`` and ``-`` come between the start of its run of
    token characters and ``pos``.
    """
    while pos and text[pos - 1] in "_-":
        pos -= 1
    return pos == 0 or text[pos - 1] not in _TOKEN_CHARS


def _bounded(text: str, start: int, end: int) -> bool:
    return (start == 0 or text[start - 1] not in _TOKEN_CHARS) and \
        (end == len(text) or text[end] not in _TOKEN_CHARS)


class SecretsRecognizer:
    """Recognizer for ``SECRET`` (see the module docstring).

    Args:
        rules: token rules; the shipped rule file when omitted.
    """

    name = NAME
    entity_types = frozenset({"SECRET"})

    def __init__(self, rules: tuple[SecretRule, ...] | None = None) -> None:
        self.rules = default_rules() if rules is None else rules
        self._always = tuple(r for r in self.rules if not r.first)
        register_keywords(r.keyword for r in self._always if r.keyword)
        self._by_first: dict[str, list[SecretRule]] = {}
        for rule in self.rules:
            for ch in rule.first:
                self._by_first.setdefault(ch, []).append(rule)
        # Long tokens that start with one of those characters (a plain class
        # first keeps re's fast scan; it stops only at those characters, not at
        # every letter and digit as a scan for all tokens would).
        firsts = "".join(sorted(ch for ch in self._by_first if ch in _ALNUM))
        self._starts = re.compile(f"[{firsts}][0-9A-Za-z_\\-]{{15,}}" if firsts else "(?!)")

    def analyze(self, text: str) -> list[Entity]:
        found: list[tuple[int, int, float]] = []
        hits = keyword_hits(text)
        for rule in self._always:
            if rule.keyword and rule.keyword not in hits:
                continue
            for hit in rule.regex.finditer(text):
                self._keep(text, rule, hit, found)
        for token in self._starts.finditer(text):
            start = token.start()
            if not _token_start(text, start):
                continue  # a letter or digit comes before it in its run: no token start
            for rule in self._by_first[text[start]]:
                m = rule.regex.match(text, start)
                if m:
                    self._keep(text, rule, m, found)
        found.extend(self._assignments(text))
        if not found:
            return []
        return [Entity("SECRET", s, e, sc, NAME) for s, e, sc in pick_non_overlapping(found)]

    @staticmethod
    def _keep(text: str, rule: SecretRule, m: re.Match[str],
              found: list[tuple[int, int, float]]) -> None:
        start, end = m.span(rule.group)
        if not rule.boundary or _bounded(text, start, end):
            found.append((start, end, rule.score))

    @staticmethod
    def _assignments(text: str) -> list[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        for keyword, positions in keyword_hits(text).items():
            if keyword in _KEYWORD_SET:
                cjk = keyword[0] > "\u2e80"
                for pos in positions:
                    found.extend(_assigned_value(text, pos + len(keyword), cjk=cjk))
        return found


def _assigned_value(text: str, pos: int, *, cjk: bool) -> list[tuple[int, int, float]]:
    """The value assigned right after a credential word ending at ``pos``, if any."""
    m = (_CJK_ASSIGNMENT if cjk else _ASSIGNMENT).match(text, pos)
    if m is None:
        return []
    start, end = m.span(1)
    while end > start and text[end - 1] in _TRAILING:
        end -= 1
    if end - start >= 4 and credential_like(text[start:end]):
        return [(start, end, 0.8)]
    return []


register_recognizer(NAME, SecretsRecognizer, entity_types=SecretsRecognizer.entity_types)
