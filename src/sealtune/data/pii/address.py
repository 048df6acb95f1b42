"""ADDRESS (pattern tier): Chinese postal addresses and English street addresses.

Chinese: an address is anchored on its most regular part, a road or lane
with a door number (``...路88号``, ``...大街1号``, ``...弄3号``, ``...胡同5号``),
optionally followed by a building, estate or room part (``海龙大厦5层501室``,
``3号楼2单元1202室``), or on an estate with a building number
(``阳光花园3栋2单元501``). From the anchor the span extends left over the
road name and the administrative divisions (省, 市, 区, 县, 镇 ...) up to a
cue or punctuation (住在, 地址：, 寄到, 位于, a comma); when a province or
major city name occurs in that stretch, the span starts there.

Western, one span over lines: a street line, then up to three parts after a
comma or on the next lines (city; state and ZIP; postcode and city; UK
postcode; country). Street lines: a house number, capitalised words and a
street type (``1600 Amphitheatre Parkway``, ``221B Baker Street``, ``350
Fifth Ave``) with an optional unit (``Apt 4B``, ``Suite 200``); German
(``Hauptstraße 5``) and French (``12 rue de Rivoli``). After an address cue
(``lives at``, ``address:``, ``ship to`` ...) or at the start of a line
that begins with a house number and holds another number (a signature
block), or before an apartment or suite number (``... Rapids\n Apt. 576``),
any Western form: a stretch of numbers, capitalised and upper-case words
(Greek and Cyrillic too), name particles, listed lower-case street types
(``kapu``, ``út``), units and pandas' ``nan`` for an empty field, up to the
first other word or punctuation; a street line found by its type is
extended the same way (and over a building number before it). The stretch
stops at a label line (``Mobile:``), a line that starts with a number and
goes on (a phone line), a sentence's end (not after ``ul.`` or ``Apt.``; a
Hungarian house number keeps its dot: ``Király u. 15.``), and skips a first
line with no number after a cue (the name in ``Billing address: Sara
Schwarz\n 28245 ...``). US military mail: a ``PSC``/``Unit``/``CMR`` box or a
ship (``USNS Bergman``), then ``APO``/``FPO``/``DPO``, ``AA``/``AE``/``AP`` and the
ZIP code.

Honest limits: addresses with no door number (``北京市海淀区中关村``), rural
addresses (``XX村3组``), Western addresses with no street type, cue or line
of their own, and free-form directions are not found;
the left edge of a Chinese address without a cue or a known city is a
guess, so exact-span scores are lower than overlap scores (the benchmark
reports both). The optional NER tier does not help here: jieba only tags
place names, which are not addresses.
"""

from __future__ import annotations

import re

from sealtune.data.pii._latin import LETTERS, LOWER, UPPER
from sealtune.data.pii._text import keyword_hits, register_keywords
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "address"
# Two anchors, each a regex that starts with a literal or a class (an
# alternation of groups would lose re's fast scan). Both end in a unit right
# after a digit (号, 栋 ...): looking for that with str.find first spares most
# texts both scans (see _digit_before).
_ROAD_NUMBER = re.compile(r"[路街道巷弄里同]\s?\d{1,5}(?:[-之]\d{1,4})?\s?号")
_ESTATE_UNITS = ("号楼", "栋", "幢", "座")
_ESTATE_NUMBER = re.compile(
    rf"(?:小区|花园|公寓|家园|新村|苑|府|城|园)\s?\d{{1,3}}\s?(?:{'|'.join(_ESTATE_UNITS)})"
)
_AFTER = re.compile(
    r"(?:院|[\u4e00-\u9fff]{2,10}?(?:小区|花园|大厦|公寓|广场|中心|大楼|家园|新村|苑|府|城|园))?"
    r"(?:[A-Za-z0-9]{1,5}(?:号楼|栋|幢|座|单元|楼|层|室|号|F))*"
    r"(?:(?<=[元栋幢座层])\d{2,5}(?:室|房)?)?"  # 2单元501: a bare room number
)
# Words that end right before an address (its left edge). Single characters
# such as 和 or 从 are not enough: they occur in place names (和平街, 从江县).
_LEFT_CUE = re.compile(
    "住在|位于|地址是|地址为|地址|住址|寄到|送到|发到|寄往|搬到|来自|家住|收货|送货|我|你|他|她|您|的|在|到|是|为|往"
)
PLACES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江",
    "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州",
    "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港",
    "澳门", "深圳", "广州", "杭州", "南京", "苏州", "成都", "武汉", "西安", "长沙", "郑州",
    "济南", "青岛", "沈阳", "大连", "厦门", "福州", "宁波", "无锡", "合肥", "昆明", "南昌",
    "哈尔滨", "长春", "石家庄", "太原", "南宁", "贵阳", "兰州", "海口", "三亚", "珠海", "东莞",
    "佛山", "温州", "烟台", "潍坊", "徐州", "常州", "嘉兴", "绍兴", "台州", "金华", "泉州",
)
_PLACE = re.compile("|".join(PLACES))
_STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    "Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Plaza|Trail|Crescent|Close|Row"
)
_ASCII_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_EN_TYPE = re.compile(rf"(?:{_STREET_TYPES})\b")
# The house number is possessive (\d{1,6}+): giving digits back could only put
# a digit where [A-Z]?\s must match, so the matches are the same, but re no
# longer backtracks at every digit of every number in the text.
_EN_ADDRESS = re.compile(
    r"\d{1,6}+[A-Z]?\s(?:[NSEW]\.?\s|North\s|South\s|East\s|West\s)?"
    r"(?:[A-Z][a-z]+|\d{1,3}(?:st|nd|rd|th))(?:\s[A-Z][a-z]+){0,3}\s"
    rf"(?:{_STREET_TYPES})\b(?:(?<=St|Rd|Ln|Dr|Ct|Pl|Sq)\.|(?<=Ave|Ter|Cir|Hwy)\.|(?<=Blvd|Pkwy)\.)?"
    r"(?:,?\s(?:Apt|Apartment|Suite|Ste|Unit|Floor|Fl|Room|#)\.?\s?#?[A-Za-z0-9-]{1,6})?"
)
# German-style streets (name + type as one word, then the number) and French
# ones (number, type, name with its particles).
_DE_STREET = re.compile(
    rf"{UPPER}{LOWER}{{1,30}}(?:straße|strasse|str\.|weg|platz|allee|gasse|damm)"
    r" \d{1,4}[a-z]?(?:-\d{1,4})?"
)
_FR_STREET = re.compile(
    r"\d{1,4}(?: ?(?:bis|ter))?,? (?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai"
    rf"|cours|route)(?: (?:de la|de l'|du|des|de|d'|la|le|l')?[ ]?{UPPER}{LOWER}{{1,24}}){{1,3}}"
)
# Words whose presence (found in the shared keyword scan) calls for those two.
_WESTERN_CUES = ("straße", "strasse", "str.", "weg ", "platz", "allee", "gasse", "damm", "rue ",
                 "avenue", "boulevard", "bd ", "place ", "chemin", "allée", "impasse", "quai ",
                 "cours ", "route ")
register_keywords(_WESTERN_CUES)
_WESTERN_CUE_SET = frozenset(_WESTERN_CUES)
# After the street line: a unit, then up to three parts (city, state and ZIP,
# postcode and city, UK postcode, country), after a comma or on the next lines.
_WORDS = rf"{UPPER}{LOWER}{{1,24}}(?:[ -]{UPPER}{LOWER}{{1,24}}){{0,2}}"
_PART = (
    rf"(?:\d{{4,5}} {_WORDS}"                                  # 75001 Paris, 10115 Berlin
    rf"|{_WORDS}(?:,? [A-Z]{{2}})?(?: \d{{5}}(?:-\d{{4}})?)?"   # Mountain View, CA 94043
    r"|[A-Z]{2} \d{5}(?:-\d{4})?"                              # CA 94043 on its own line
    r"|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}"                       # SW1A 2AA
    r"|USA|UK"
    r"|(?:Apt|Apartment|Suite|Ste|Unit|Flat)\.? ?#?[A-Za-z0-9-]{1,6})"
)
_TAIL = re.compile(
    r"(?:,? ?(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.? ?#?[A-Za-z0-9-]{1,6})?"
    rf"(?:(?:, ?|[ ]*\n[ >]*){_PART}){{0,3}}"
)


# Addresses in any Western form after a cue ("lives at", "address:") or at
# the start of a line of a signature block: a stretch of house numbers,
# capitalised and upper-case words, name particles, units, commas and line
# breaks, up to the first other word or punctuation; it must hold a number.
ADDRESS_CUES = ("address:", "address is", "lives at", "live at", "lives on", "living at",
                "located at", "meet me at", "meet you at", "send it to", "sent to", "ship to",
                "return to", "arrived at", "it's in", "moved to", "corner of", "enter on",
                "deliver to", "mail to", "office is at", "reside at", "resides at", "lived in",
                "lives in", "live in", "located in")
register_keywords(ADDRESS_CUES)
_ADDRESS_CUE_SET = frozenset(ADDRESS_CUES)
# A house number may carry the dot of an ordinal ("Király u. 15.", Hungarian);
# a listed lower-case street type goes before a number ("Csabai kapu 39",
# "Rákóczi út 13."); a token followed by a colon is a label ("Mobile:") and
# one followed by a hyphen and a digit is a phone number: both end the address.
_TOKEN = (
    rf"(?:\d{{1,6}}+(?:[A-Za-z]|\.(?=[ \n]|$))?"
    rf"|(?:[dl]')?{UPPER}[{UPPER[1:-1]}{LOWER[1:-1]}'.\-]{{0,30}}+"
    r"|(?:de|do|da|dos|das|del|di|van|der|den|ten|la|le|du|des|and|e|am|an|im|ul\.|u\.|z"
    r"|utca|str|gate|vei|veien|vej|gata|gatan|katu|tie|straat|terrasse|rua|avenida|calle|via"
    r"|rue|avenue|plads|allé)(?= )"
    r"|(?:kapu|út|útja|tér|köz|sor|fasor|körút|rkp\.|krt\.|põik|tänav|tee|iela|trg|ulica"
    r"|ulice|náměstí|třída|gade|vænget|stræti|vegur|vägen|väg|gränd|weg|straße|strasse|gasse"
    r"|platz|laan|plein|kade|gracht|dreef)(?= \d)"
    r"|[\u0386-\u03ab\u0410-\u042f][\u0386-\u03ce\u0400-\u04ff]{1,30}+"  # Greek, Cyrillic
    r"|\([A-Z][a-z]{1,20}\))(?![:@]|-\d)"
)
# After the first token, "nan" too: the empty field (state, postcode) of an
# address exported from a table by pandas, which writes a missing value so.
_GENERIC = re.compile(
    rf"{_TOKEN}(?:(?:,? ?\n[ >]*(?:, ?)?|, ?| )(?:{_TOKEN}|nan(?![^\W\d_]))){{1,16}}")
# A line that starts with a number and goes on is no address line (a phone
# line, "655 437 108 office"); a postcode alone on its line is.
_NUMBER_LINE = re.compile(r"\n[ >,]*\d+[A-Za-z]?\.?[ ,]+\S")
# Hungarian street types: the house number after them keeps its dot.
_ORDINAL_STREET = re.compile(
    r"(?:\b(?:u|utca|út|útja|tér|krt|körút|rkp|köz|sor|fasor|kapu)\.? \d{1,5}\.)$")
_LINE_START = re.compile(rf"\n[ >]*(\d{{1,6}} {UPPER})")  # a literal first: a fast scan
_TRAILING = re.compile(r"(?:[ ,\n>]+(?:and|e|de|do|da|[Tt]he|[A-Z]))+$")
_DIGIT = re.compile(r"\d")
_LINE_BODY = re.compile(r"\n[ >\n]*")
_NUMBERS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[a-z]{2}\.(?=\s)|\d\.(?=\s+[^\d\s])")
# Street and unit abbreviations: their dot ends no sentence ("ul. Miła 57").
# (Only those that stand before a name or number: "Elm Ave. Could" ends one.)
_ABBREVIATIONS = frozenset(["apt", "ul", "str", "avda", "av", "rkp", "krt", "ste", "al", "os",
                            "nr"])


def _generic(text: str, start: int, *, line: bool) -> tuple[int, int] | None:
    m = _GENERIC.match(text, start)
    if m is None:
        return None
    end = m.end()
    trail = _TRAILING.search(text, start, end)
    if trail:
        end = trail.start()
    for stop in _SENTENCE_END.finditer(text, start, end):
        word = text[text.rfind(" ", start, stop.end()) + 1:stop.end() - 1].lower()
        if word.isdigit() and _ORDINAL_STREET.search(text, start, stop.end()):
            continue  # "Rákóczi út 66. Apt. 268": the house number's own dot
        if word not in _ABBREVIATIONS:  # "478 Oak Road. Can I": the sentence ends
            end = stop.end() - 1
            break
    other = _NUMBER_LINE.search(text, start + 1, end + 2)
    if other and other.start() < end:
        end = other.start()
    if text[end - 1] == "." and end - start > 4 and not _ORDINAL_STREET.search(text, start, end):
        end -= 1  # "Sweden." ends a sentence (a final "St." gives up a dot, not data)
    body = text[start:end]
    numbers = len(_NUMBERS.findall(body))
    if not numbers or (line and numbers < 2) or " " not in body:
        return None
    if end < len(text) and text[end] in LETTERS:
        return None
    return start, end


def _western(text: str) -> list[Entity]:
    found: list[Entity] = []
    for cue, positions in keyword_hits(text).items():
        if cue not in _ADDRESS_CUE_SET:
            continue
        for at in positions:
            after = at + len(cue)
            while after < len(text) and text[after] in " \n":
                after += 1
            span = _generic(text, after, line=False)
            if span and "\n" in text[span[0]:span[1]] and \
                    not _DIGIT.search(text, span[0], text.index("\n", span[0])):
                # "Billing address: Sara Schwarz\n 28245 ...": the name line is no address
                body = _LINE_BODY.match(text, text.index("\n", span[0]))
                span = _generic(text, body.end(), line=False) if body else None
            if span:
                # "the corner of A and B" is the address, its article included
                first = at - 4 if cue == "corner of" and text[at - 4:at] == "the " else span[0]
                found.append(Entity("ADDRESS", first, span[1], 0.8, NAME))
    if "\n" in text:  # (the recognizer saw a digit)
        for m in _LINE_START.finditer("\n" + text):  # the first line starts one too
            span = _generic(text, m.start(1) - 1, line=True)
            if span:
                found.append(Entity("ADDRESS", *span, 0.8, NAME))
    return found


# An apartment or suite number marks an address without a cue or street type
# ("Serenade Opus 420 Gairbekov Rapids\n Apt. 576\n Voormezele"): the street
# line is the stretch of address tokens right before it (on its line, or on
# the line above when the unit starts a line); it must hold a number.
_UNIT = re.compile(r"(?:Apt|Suite|Unit)\.? #?\d{1,5}\b")
_UNIT_WORDS = frozenset(["apt", "suite", "unit"])
register_keywords((*_UNIT_WORDS, "po a"))
_STREET_BEFORE = re.compile(rf"(?<![^\s>])(?:{_TOKEN} ){{0,7}}{_TOKEN},?$")


def _after_units(text: str) -> list[Entity]:
    found: list[Entity] = []
    for m in _UNIT.finditer(text):
        end = m.start()
        while end and text[end - 1] in " \t>":
            end -= 1
        if end and text[end - 1] == "\n":
            end -= 1  # the unit starts its line: the street is the line above
        limit = max(text.rfind("\n", 0, end) + 1, end - 80)
        street = _STREET_BEFORE.search(text, limit, end) if end else None
        if street is None or not _DIGIT.search(text, street.start(), end):
            continue
        span = _generic(text, street.start(), line=False)
        if span and span[1] >= m.end():
            found.append(Entity("ADDRESS", *span, 0.75, NAME))
    return found


def _left_edge(text: str, anchor: int) -> int:
    """Where a Chinese address ending in the road at ``anchor`` starts."""
    start = anchor
    limit = max(0, anchor - 30)
    while start > limit and ("\u4e00" <= text[start - 1] <= "\u9fff" or text[start - 1].isdigit()
                             or (text[start - 1] == " " and start > 1 and
                                 "\u4e00" <= text[start - 2] <= "\u9fff")):
        start -= 1  # a single space between Han parts ("张江园区 软件园") stays inside
    cues = [m.end() for m in _LEFT_CUE.finditer(text, start, anchor)]
    if cues:
        start = cues[-1]
    place = _PLACE.search(text, start, anchor)
    return place.start() if place else start


def _digit_before(text: str, marks: tuple[str, ...]) -> bool:
    """True if one of ``marks`` follows a digit, as the door or building number's unit does.

    A cheap test (str.find) that spares most texts the anchors' regex scans.
    """
    for mark in marks:
        at = text.find(mark, 1)
        while at != -1:
            if text[at - 1].isdecimal() or (text[at - 1] == " " and text[at - 2].isdecimal()):
                return True  # "12号楼", "12 号楼"
            at = text.find(mark, at + 1)
    return False


def _chinese(text: str) -> list[Entity]:
    found: list[Entity] = []
    roads = _ROAD_NUMBER.finditer(text) if _digit_before(text, ("号",)) else ()
    estates = _ESTATE_NUMBER.finditer(text) if _digit_before(text, _ESTATE_UNITS) else ()
    for m in (*roads, *estates):
        start = _left_edge(text, m.start())
        if m.start() - start < 2:  # a road needs a name before 路/街
            continue
        end = _AFTER.match(text, m.end())
        stop = end.end() if end else m.end()
        found.append(Entity("ADDRESS", start, stop, 0.8, NAME))
    return found


def _english(text: str) -> list[Entity]:
    for m in _EN_TYPE.finditer(text):
        if m.start() and text[m.start() - 1].isspace():
            streets = [_EN_ADDRESS]
            break
    else:
        streets = []  # every English address has a street type as a word after a space
    if not _WESTERN_CUE_SET.isdisjoint(keyword_hits(text)):
        streets += [_DE_STREET, _FR_STREET]
    found: list[Entity] = []
    for street in streets:
        for m in street.finditer(text):
            if m.start() and (text[m.start() - 1] in _ASCII_ALNUM or
                              text[m.start() - 1] in LETTERS):
                continue
            found.append(Entity("ADDRESS", *street_span(text, m), 0.8, NAME))
    return found


def street_span(text: str, m: re.Match[str]) -> tuple[int, int]:
    """The whole address around a street line ``m``: a building number before it,
    a unit and the parts after it."""
    tail = _TAIL.match(text, m.end())
    start, end = m.start(), tail.end() if tail else m.end()
    number = _NUMBER_BEFORE.search(text, max(0, start - 8), start) \
        if text[start - 2:start - 1].isdigit() else None
    if number and (not number.start() or not text[number.start() - 1].isalnum()):
        start = number.start()  # "1987 74 Diakou Street": a building and a door number
    return start, max(end, _rest_of_address(text, start, m.end()))


_NUMBER_BEFORE = re.compile(r"\d{1,6} $")
_AND_WORD = re.compile(r" and ")
_NEXT_PART = re.compile(r",|[ \t]*\n| (?:Apt|Apartment|Suite|Ste|Unit|Flat)\b"
                        r"| [A-Z][^\W\d_]{0,30}(?: [A-Z][^\W\d_]{0,30}){0,3}"
                        r"[ \t]*(?:\n|[?!;])")


def _rest_of_address(text: str, start: int, street_end: int) -> int:
    """End of the lines after a street line that the generic form reads as its rest
    (units, city, upper-case city, region, postcode, country), up to an " and "."""
    if not _NEXT_PART.match(text, street_end):
        return street_end  # "10 Pro Dr Smith": a comma, a unit or a line break starts a part
    span = _generic(text, start, line=False)
    if span is None or span[1] <= street_end:
        return street_end
    joined = _AND_WORD.search(text, street_end, span[1])
    end = joined.start() if joined else span[1]
    while text[end - 1] in ", ":
        end -= 1  # "..., RS 24893, and USNV Botolen": the comma goes with the "and"
    return end


# US military mail: a unit line (PSC 1234, Box 5678 / Unit 1234 Box 5678 / a
# ship: USNS Bergman), then APO, FPO or DPO, AA/AE/AP and the ZIP code, on the
# next line or after a comma. Found from the second part (it starts with a
# letter class: a fast scan), the unit line looked for right before it.
_MILITARY_POST = re.compile(r"[AFDafd][Pp][Oo] [Aa][AEPaep] \d{5}(?:-\d{4})?(?!\d)")
_MILITARY_UNIT = re.compile(
    r"(?i:(?:PSC|CMR|Unit) \d{1,5},? Box \d{1,5}"
    r"|(?:USNS|USNV|USS|USCGC) [^\W\d_][\w'’.-]{0,30}(?: [^\W\d_][\w'’.-]{0,30}){0,2})"
    r"(?:,? ?\n[ >]*|, ?| )$"
)


def _military(text: str) -> list[Entity]:
    found: list[Entity] = []
    for m in _MILITARY_POST.finditer(text):
        if m.start() and text[m.start() - 1].isalnum():
            continue
        unit = _MILITARY_UNIT.search(text, max(0, m.start() - 80), m.start())
        if unit and (not unit.start() or not text[unit.start() - 1].isalnum()):
            found.append(Entity("ADDRESS", unit.start(), m.end(), 0.85, NAME))
    return found


class AddressRecognizer:
    """Recognizer for ``ADDRESS`` in the pattern tier (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"ADDRESS"})

    def analyze(self, text: str) -> list[Entity]:
        if _DIGIT.search(text) is None:
            return []  # every form above holds a number (and re's \d is str.isdecimal)
        found = _english(text) + _western(text)
        hits = keyword_hits(text)  # shared, cached: spares the scans below most texts
        if "po a" in hits:  # APO/FPO/DPO and AA/AE/AP
            found.extend(_military(text))
        if not _UNIT_WORDS.isdisjoint(hits):
            found.extend(_after_units(text))
        if not text.isascii():
            found.extend(_chinese(text))
        return found


register_recognizer(NAME, AddressRecognizer, entity_types=AddressRecognizer.entity_types)
