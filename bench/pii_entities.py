"""Entity and hard-negative generators for the PII benchmark corpus.

Each function draws one value in one of the forms a detector must handle:
plain, separated by spaces or dashes, full-width, with country codes, etc.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
import unicodedata
import uuid

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric

from pii_vocab import (
    _ASCII_ALNUM,
    AREA_CODES,
    EN_CITIES,
    EN_FIRST,
    EN_LAST,
    EN_STREETS,
    EN_TYPES,
    ESTATES,
    FW,
    PLACES,
    ROADS,
    TOWNS,
    VILLAGES,
    ZH_GIVEN,
    ZH_RARE,
    ZH_SURNAMES,
)


def _needs_space(text: str) -> bool:
    """True if ``text`` ends in a (possibly full-width) ASCII letter or digit."""
    return bool(text) and unicodedata.normalize("NFKC", text[-1]) in _ASCII_ALNUM


def _digits(r: random.Random, n: int) -> str:
    return "".join(r.choice(string.digits) for _ in range(n))


def _group(r: random.Random, s: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for size in sizes:
        out.append(s[i : i + size])
        i += size
    if i < len(s):
        out.append(s[i:])
    return sep.join(p for p in out if p)


def _styled(r: random.Random, s: str, sizes: tuple[int, ...]) -> str:
    roll = r.random()
    if roll < 0.2:
        return _group(r, s, sizes, " ")
    if roll < 0.3:
        return _group(r, s, sizes, "-")
    if roll < 0.45:
        return (s if r.random() < 0.5 else _group(r, s, sizes, " ")).translate(FW)
    return s


def cn_id(r: random.Random) -> str:
    if r.random() < 0.04:
        return (
            r.choice(AREA_CODES) + f"{r.randint(40, 99):02d}{r.randint(1, 12):02d}"
            f"{r.randint(1, 28):02d}" + _digits(r, 3)
        )
    body = (
        r.choice(AREA_CODES) + f"{r.randint(1950, 2012)}{r.randint(1, 12):02d}"
        f"{r.randint(1, 28):02d}" + _digits(r, 3)
    )
    number = body + ric.calc_check_digit(body + "0")
    if number.endswith("X") and r.random() < 0.2:
        number = number[:-1] + "x"
    return _styled(r, number, (6, 8))


def phone(r: random.Random) -> str:
    kind = r.random()
    if kind < 0.55:
        while True:
            n = r.choice(("13", "15", "18", "17", "19", "16")) + _digits(r, 9)
            if phonenumbers.is_valid_number(
                phonenumbers.PhoneNumber(country_code=86, national_number=int(n))
            ):
                break
        s = _styled(r, n, (3, 4))
        if r.random() < 0.2:
            s = r.choice(("+86 ", "+86-", "+86", "0086 ", "(+86)")) + s
        return s
    if kind < 0.8:
        while True:
            area = r.choice(("10", "21", "20", "755", "571", "28", "27", "25", "29", "532"))
            local = str(r.randint(2, 8)) + _digits(r, 7 if len(area) == 2 else r.choice((6, 7)))
            if phonenumbers.is_valid_number(
                phonenumbers.PhoneNumber(country_code=86, national_number=int(area + local))
            ):
                break
        return r.choice(
            (
                f"0{area}-{local}", f"0{area}{local}", f"(0{area}) {local[:4]} {local[4:]}",
                f"+86 {area} {local[:4]} {local[4:]}",
                f"0{area}-{local}".translate(FW),
            )
        )
    while True:
        region = r.choice(("US", "GB", "DE", "FR", "JP", "SG", "HK", "AU"))
        ex = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        assert ex is not None
        nn = str(ex.national_number)
        ex.national_number = int(nn[:-4] + _digits(r, 4))
        if phonenumbers.is_valid_number(ex):
            break
    fmt = r.choice(
        (phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164)
    )
    text = phonenumbers.format_number(ex, fmt)
    roll = r.random()
    if roll < 0.15:
        text = text.replace(" ", "-")
    elif roll < 0.25 and region == "US":
        text = phonenumbers.format_number(ex, phonenumbers.PhoneNumberFormat.NATIONAL)
    return text


def bank_card(r: random.Random) -> str:
    prefix, length = r.choice(
        (("62", 16), ("62", 19), ("621700", 19), ("4", 16), ("51", 16), ("55", 16), ("37", 15))
    )
    body = prefix + _digits(r, length - len(prefix) - 1)
    number = body + luhn.calc_check_digit(body)
    return _styled(
        r,
        number,
        (4, 6, 5)
        if length == 15
        else (6, 13)
        if length == 19 and r.random() < 0.2
        else (4, 4, 4, 4),
    )


def email(r: random.Random) -> str:
    local = r.choice(
        (
            f"{r.choice(EN_FIRST).lower()}.{r.choice(EN_LAST).lower()}",
            f"zhang{r.randint(1, 9999)}", f"{r.choice(EN_FIRST).lower()}{r.randint(70, 99)}",
            f"support+{r.randint(1, 99)}",
        )
    )
    domain = r.choice(
        (
            "qq.com", "163.com", "gmail.com", "example.org", "corp.com.cn", "outlook.com",
            "mail.research.example.edu", "Example.COM", "sub-domain.example.co.uk",
        )
    )
    s = f"{local}@{domain}"
    if r.random() < 0.1:
        s = s[0].upper() + s[1:]
    return s.translate(FW) if r.random() < 0.1 else s


def ip(r: random.Random) -> str:
    if r.random() < 0.7:
        return ".".join(str(r.randint(1, 254)) for _ in range(4))

    raw = ipaddress.IPv6Address(
        bytes(
            [0x20, 0x01, 0x0D, 0xB8]
            + [r.randint(0, 255) for _ in range(4)]
            + [0] * 4
            + [r.randint(0, 255) for _ in range(4)]
        )
    )
    return raw.compressed if r.random() < 0.7 else raw.exploded


def passport(r: random.Random) -> str:
    return r.choice(
        (
            f"E{_digits(r, 8)}", f"E{r.choice('ABCDEFGH')}{_digits(r, 7)}", f"G{_digits(r, 8)}",
            f"{r.choice('ABCKLP')}{_digits(r, 8)}",
        )
    )


def _b64(r: random.Random, n: int) -> str:
    return base64.urlsafe_b64encode(r.randbytes(n)).decode().rstrip("=")


def secret(r: random.Random) -> tuple[str, str, str]:
    """(text before, the secret, text after)."""
    alnum = string.ascii_letters + string.digits
    rand = lambda n, chars=alnum: "".join(r.choice(chars) for _ in range(n))  # noqa: E731
    kind = r.randrange(13)
    if kind == 0:
        return r.choice(("token=", "export GITHUB_TOKEN=", "GH_TOKEN: ")), "ghp_" + rand(36), ""
    if kind == 1:
        return (
            r.choice(("AWS key ", "aws_access_key_id = ")),
            "AKIA" + rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
            "",
        )
    if kind == 2:
        return "stripe: ", "sk_live_" + rand(24), ""
    if kind == 3:
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        claims = base64.urlsafe_b64encode(
            json.dumps({"sub": r.randint(1, 10**6)}).encode()
        ).decode()
        return "Authorization: Bearer ", f"{header}.{claims.rstrip('=')}.{_b64(r, 32)}", ""
    if kind == 4:
        body = "\n".join(base64.b64encode(r.randbytes(48)).decode() for _ in range(3))
        return (
            "key:\n", f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----", "",
        )
    if kind == 5:
        return (
            r.choice(("密码是", "密码：", "password=", "my password is ", "登录密码 ")),
            r.choice(
                ("Xy7#kq2P", "abc12345", str(r.randint(100000, 999999)), "S3cure!pass", rand(10))
            ),
            "",
        )
    if kind == 6:
        return '"api_key": "', rand(32), '"'
    if kind == 7:
        return "slack ", "xoxb-" + _digits(r, 12) + "-" + rand(24), ""
    if kind == 8:
        return "LTAI key ", "LTAI" + rand(20), ""
    if kind == 9:
        return "OPENAI_API_KEY=", "sk-proj-" + rand(40) + "T3BlbkFJ" + rand(40), ""
    if kind == 10:
        return "maps key ", "AIza" + rand(35, alnum + "-_"), ""
    if kind == 11:
        return "password: '", rand(6) + r.choice("!#%&") + _digits(r, 3), "'"
    return "DATABASE_URL=postgres://app:", rand(12), "@db.internal:5432/main"


def zh_name(r: random.Random) -> str:
    surname = r.choice(ZH_RARE) if r.random() < 0.08 else r.choice(ZH_SURNAMES)
    return surname + "".join(r.choice(ZH_GIVEN) for _ in range(r.choice((1, 2, 2))))


def en_name(r: random.Random) -> str:
    return f"{r.choice(EN_FIRST)} {r.choice(EN_LAST)}"


def zh_address(r: random.Random) -> str:
    province, county = r.choice(PLACES)
    road = r.choice(ROADS)
    form = r.random()
    if form < 0.08:  # rural: no road, no door number (the pattern tier misses these)
        return f"{province}{county}{r.choice(TOWNS)}镇{r.choice(VILLAGES)}村{r.randint(1, 12)}组"
    if form < 0.14:  # a road without a door number (also missed, by design)
        return f"{province}{county}{road}"
    s = f"{province}{county}{road}{r.randint(1, 999)}号"
    roll = r.random()
    if roll < 0.3:
        s += f"{r.choice(ESTATES)}{r.randint(1, 30)}栋{r.randint(1, 6)}单元{r.randint(101, 2808)}室"
    elif roll < 0.5:
        s += f"{r.randint(1, 20)}号楼{r.randint(101, 1808)}室"
    return s


def en_address(r: random.Random) -> str:
    if r.random() < 0.08:  # PO boxes: not street addresses, missed by design
        city, state = r.choice(EN_CITIES)
        return f"PO Box {r.randint(1, 9999)}, {city}, {state} {r.randint(10000, 99999)}"
    s = f"{r.randint(1, 9999)} {r.choice(EN_STREETS)} {r.choice(EN_TYPES)}"
    if r.random() < 0.3:
        s += f", {r.choice(('Apt', 'Suite', 'Unit'))} {r.randint(1, 400)}{r.choice(('', 'B'))}"
    if r.random() < 0.6:
        city, state = r.choice(EN_CITIES)
        s += f", {city}, {state} {r.randint(10000, 99999)}"
    return s


def _negative(r: random.Random) -> str:
    while True:
        order = _digits(r, 18)
        if ric.calc_check_digit(order) != order[-1]:
            break
    while True:
        card = "6" + _digits(r, 15)
        if not luhn.is_valid(card):
            break
    return r.choice(
        (
            f"订单号{order}。", f"流水号 {card}，",
            f"时间戳20{r.randint(10, 25)}{_digits(r, 10)}。",
            f"2024-0{r.randint(1, 9)}-1{r.randint(0, 9)} 1{r.randint(0, 9)}:{r.randint(10, 59)}:30",
            f"version {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 20)}.{r.randint(0, 99)} ",
            f"版本v{r.randint(1, 4)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}，",
            f"commit {r.randbytes(20).hex()} ", f"sha256={r.randbytes(32).hex()} ",
            f"request id {uuid.UUID(bytes=r.randbytes(16))} ",
            f"型号E{_digits(r, 8)}，", f"金额¥{r.randint(1, 99999)}.{r.randint(10, 99)}，",
            "the token is expired. ", "密码错误，请重试。",
            f"OID 1.3.6.1.4.1.{r.randint(1, 99999)} ", f"快递单号SF{_digits(r, 12)}，",
            f"工单编号{_digits(r, 10)}。", "客服热线10086，", f"测试号码12{_digits(r, 9)}。",
            f"地址段{r.randint(256, 999)}.1.1.1 ",
            f"身份证号码校验失败：{order}，",  # wrong check digit, with ID context
            f"ISBN 978-{_digits(r, 1)}-{_digits(r, 3)}-{_digits(r, 5)}-{_digits(r, 1)} ",
            f"price: ${r.randint(1, 999)}.{r.randint(10, 99)}, qty {r.randint(1, 99)} ",
            "token: <your-token-here> ", "password=${DB_PASSWORD} ",
        )
    )
