"""EMAIL, IP_ADDRESS, PASSPORT and SECRET: forms and hard negatives."""

from __future__ import annotations

import base64
import json

import pytest

from sealtune.data.pii import analyze

FW = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})


def found(text: str, etype: str) -> list[str]:
    return [text[e.start:e.end] for e in analyze(text) if e.type == etype]


# --- EMAIL -------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("邮箱john.doe@example.com谢谢", ["john.doe@example.com"]),
    ("mail: Support+12@Mail.Example.CO.UK.", ["Support+12@Mail.Example.CO.UK"]),
    ("ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", ["ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ"]),
    ("a@b, x@y.z, @handle, john at example dot com", []),
    (".lead.dot@example.org", ["lead.dot@example.org"]),
])
def test_email(text: str, expected: list[str]) -> None:
    assert found(text, "EMAIL") == expected


# --- IP_ADDRESS --------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("登录IP192.168.1.10，异常", ["192.168.1.10"]),
    ("server 10.0.0.1:8080 and 172.16.0.0/12.", ["10.0.0.1", "172.16.0.0"]),
    ("v6 2001:db8::8a2e:370:7334 and [fe80::1]:443", ["2001:db8::8a2e:370:7334", "fe80::1"]),
    ("full 2001:0db8:0000:0000:0000:ff00:0042:8329.",
     ["2001:0db8:0000:0000:0000:ff00:0042:8329"]),
    ("mapped ::ffff:10.0.0.1 ok", ["::ffff:10.0.0.1"]),
    ("全角１９２．１６８．１．１０", ["１９２．１６８．１．１０"]),
])
def test_ip_forms(text: str, expected: list[str]) -> None:
    assert found(text, "IP_ADDRESS") == expected


@pytest.mark.parametrize("text", [
    "version 1.2.3.4", "v1.2.3.4", "版本v2.0.1.5", "版本号 3.1.4.1",
    "OID 1.3.6.1.4.1.311", "256.1.1.1", "01.02.03.04",
    "at 12:30:45", "MAC 00:1A:2B:3C:4D:5E", "std::vector", "::1",
])
def test_ip_hard_negatives(text: str) -> None:
    assert found(text, "IP_ADDRESS") == []


# --- PASSPORT ----------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("护照号码：E12345678", ["E12345678"]),
    ("passport no. EA1234567, thanks", ["EA1234567"]),
    ("Passport number: 123456789", ["123456789"]),
    ("护照号：ｅ１２３４５６７８".upper(), ["Ｅ１２３４５６７８"]),
    ("护照E12345678 型号E87654321", ["E12345678"]),
])
def test_passport_with_context(text: str, expected: list[str]) -> None:
    assert found(text, "PASSPORT") == expected


def test_passport_needs_context() -> None:
    assert found("型号E12345678，批次G87654321", "PASSPORT") == []


# --- SECRET ------------------------------------------------------------------

def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _jwt() -> str:
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': 1234567890})}.c2lnbmF0dXJlMTIz"


TOKENS = [
    "ghp_" + "a1B2" * 9,
    "github_pat_" + "A1b2C3d4E5" * 8 + "xy",
    "AKIA" + "QWERTYUIOP234567",
    "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "AIza" + "SyD-1234567890abcdefghijklmnopqrstu",
    "sk-proj-" + "Ab1" * 10 + "T3BlbkFJ" + "Cd2" * 10,
    "glpat-" + "x1Y2z3W4v5U6t7S8r9Q0",
    "npm_" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2",
    "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    "LTAI" + "5tAbCdEfGhIjKlMnOpQr",
    _jwt(),
]


@pytest.mark.parametrize("token", TOKENS)
def test_provider_tokens(token: str) -> None:
    assert found(f"配置里的密钥 {token} 请删除", "SECRET") == [token]
    assert found(f"key={token}\n", "SECRET") == [token]


def test_private_key_block_whole_and_truncated() -> None:
    body = "\n".join(["MIIEowIBAAKCAQEA" + "q" * 48] * 3)
    block = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    assert found(f"key:\n{block}\nthanks", "SECRET") == [block]
    truncated = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}"
    assert found(f"pasted {truncated}", "SECRET") == [truncated]


def test_truncated_block_before_a_whole_one_is_two_secrets() -> None:
    # A body stops at the next BEGIN (the scan for an END no longer runs
    # from every BEGIN to the end of the text): both blocks are found.
    body = "\n".join(["MIIEowIBAAKCAQEA" + "q" * 48] * 3)
    truncated = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{body}"
    block = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    assert found(f"{truncated}\n{block}", "SECRET") == [truncated, block]


@pytest.mark.parametrize(("text", "value"), [
    ("password=hunter2x", "hunter2x"),
    ('"api_key": "s3cr3tV4lue99"', "s3cr3tV4lue99"),
    ("my password is Tr0ub4dor&3.", "Tr0ub4dor&3"),
    ("密码是123456，谢谢", "123456"),
    ("登录密码 Xy7#kq2P 已修改", "Xy7#kq2P"),
    ("口令：abcDEFghiJ", "abcDEFghiJ"),
    ("postgres://app:S3cretPw@db:5432/main", "S3cretPw"),
])
def test_assignments(text: str, value: str) -> None:
    assert found(text, "SECRET") == [value]


@pytest.mark.parametrize("text", [
    "the token is expired", "密码错误，请重试", "password: ********", "password=${DB_PASSWORD}",
    "token: <your-token-here>", "sha256=" + "ab" * 32,
    "commit 3f2a9c1e4b5d6a7f8e9d0c1b2a3f4e5d6c7b8a9f",
    "request id 550e8400-e29b-41d4-a716-446655440000", "the secret is that we care",
    "AKIAIOSFODNN7EXAMPLEX",  # 21 characters: not an access key id
])
def test_secret_hard_negatives(text: str) -> None:
    assert found(text, "SECRET") == []


def test_full_width_token_is_found_at_original_offsets() -> None:
    token = "ghp_" + "a1B2" * 9
    text = "令牌" + token.translate(FW)
    assert found(text, "SECRET") == [token.translate(FW)]
