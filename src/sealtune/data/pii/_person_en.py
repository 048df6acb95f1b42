"""PERSON (pattern tier), Latin script: titles, cues, name lists and name evidence.

The English half of :mod:`.person` (which explains what the tier catches):
capitalised name words after a title (``Mr.``, ``dr.`` in any case) or a cue
("my name is", "Dear", "Regards,"); runs of capitalised words that the
words themselves mark as a name (:mod:`._latin_names`): a known given name
first, a middle initial (``Katie E Miles``), a surname from the list or
with a surname ending (``-sson``, ``-ović``, ``-ová`` ...) or a surname
written with diacritics; a single surname next to a cue ("says Becker");
single names in a list (``Müller, Dubois and Rossi``) unless the list names
a firm (after ``the``/``at``/``of``, before ``is a`` or a capitalised
word); lower-case given names after a cue ("my name is anna schmidt",
"call john") or in a list that is mostly given names. Name words are those
of :mod:`._latin`: accented letters and internal capitals are part of the
word (``Pavlović``, ``McConnell``, ``O'Brien``), and a match that ends
inside a longer word is cut back to its whole words, never reported as part
of a word; an address or firm word after a name (``Suite``, ``Street``,
``Sons``) is cut off. Names are looked up without their diacritics (``José``
is ``Jose``).

Honest limits: all-capital names, lower-case particles (``van``, ``de``),
names outside the Latin script, unknown single names without a cue, and
lower-case names without a cue are not found here; words that are both
names and common words (``May``, ``Grace``, ``Will``) need a title, a cue
or a surname beside them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from sealtune.data.pii import _latin
from sealtune.data.pii._latin import LETTERS, NAME_WORD, continues_word, fold
from sealtune.data.pii._latin_names import (
    AMBIGUOUS,
    GIVEN,
    NOT_NAMES,
    SURNAME_ENDING,
    SURNAMES,
    TRAILING,
    words,
)
from sealtune.data.pii._text import keyword_hits, register_keywords, trie_regex

#: A found name: (start, end, score).
Span = tuple[int, int, float]

_NOT_NAMES = frozenset(
    [
        "Customer", "Customers", "Sir", "Madam", "Team", "All", "Support", "Service", "Valued",
        "Friend", "Friends", "User", "Client", "Clients", "Colleagues", "Hi", "Hello", "Sirs",
        "Manager", "Admin", "Team", "The", "Thank", "Thanks", "Best", "Kind", "Warm", "Regards",
        "Sincerely", "Dear", "Yours", "Member", "Guest", "Patient", "Doctor",
        # sentence starters that follow a "Name:"-style label in dialogue logs
        "We", "I", "You", "Your", "Our", "My", "It", "This", "That", "Let", "Can", "Could",
        "Please", "Is", "Are", "Sorry", "Okay", "Ok", "Yes", "No", "Address", "Phone", "Email",
        "Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Mx", "Name", "Office", "Ship", "Approved",
        "Forwarded", "Spoke", "Tel", "Fax", "Mobile", "Card", "Passport", "Server", "Order",
    ]
)

# A name is one to three name words (:mod:`._latin`: accented letters and
# internal capitals included, every quantifier bounded).
_NAME = f"{NAME_WORD}(?:(?: {_latin.UPPER}\\.?)? {NAME_WORD}|-{NAME_WORD}){{0,2}}"
# A title in any case ("mr. elliott"), then a capitalised name or one lower-case word.
# (Literal alternatives first, so re scans for them fast; the letter before
# a title is checked in code.)
_EN_TITLE = re.compile(rf"(?:Mr|Mrs|Ms|Miss|Dr|Prof|Mx)\.?\s({_NAME}|[a-z]{{2,24}}(?![A-Za-z]))")
_TITLES = ("Mr", "Ms", "Miss", "Dr", "Prof", "Mx")  # one of them starts every match
# Lower-case titles ("mr. elliott") come from the shared keyword scan.
LOWER_TITLES = ("mr. ", "mrs. ", "ms. ", "dr. ", "prof. ")
register_keywords(LOWER_TITLES)
_LOWER_TITLE_SET = frozenset(LOWER_TITLES)
_TITLE_NAME = re.compile(rf"{_NAME}|[a-z]{{2,24}}(?![A-Za-z])")
# Cues are searched in the lower-cased text (a flat alternation of literals),
# then a capitalised name must follow in the original text.
EN_CUES = ("my name is", "name is", "name:", "name :", "i am", "i'm", "this is", "dear",
           "regards,", "sincerely,", "signed,", "contact:", "customer:", "patient:", "attn",
           "from:", "cardholder:")
_EN_CUE_SET = frozenset(EN_CUES)
register_keywords(EN_CUES)
_EN_PAIR = re.compile(rf"({_latin.UPPER}{_latin.LOWER}{{1,14}}) ({NAME_WORD})")
_SPACES = re.compile(r"[ :]*")
_CONTINUES = re.compile(r" [a-z]")
_EN_NAME = re.compile(_NAME)
_PINYIN = re.compile(
    r"(?:(?:[bpmfdtnlgkhjqxrzcsyw]|zh|ch|sh)?(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|"
    r"ai|ei|ao|ou|an|en|in|un|ia|ie|iu|ua|uo|ue|ui|er|a|o|e|i|u|v)){1,2}"
)
FIRST_NAMES = frozenset([
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas",
    "Charles", "Christopher", "Daniel", "Matthew", "Anthony", "Donald", "Steven", "Paul", "Andrew",
    "Joshua", "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward", "Jason",
    "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry",
    "Justin", "Scott", "Brandon", "Benjamin", "Samuel", "Gregory", "Alexander", "Frank", "Patrick",
    "Raymond", "Jack", "Dennis", "Jerry", "Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry",
    "Douglas", "Zachary", "Peter", "Kyle", "Ethan", "Walter", "Noah", "Jeremy", "Christian",
    "Keith", "Roger", "Terry", "Gerald", "Harold", "Sean", "Austin", "Carl", "Arthur", "Lawrence",
    "Dylan", "Jesse", "Jordan", "Bryan", "Billy", "Joe", "Bruce", "Gabriel", "Logan", "Albert",
    "Willie", "Alan", "Juan", "Wayne", "Elijah", "Randy", "Roy", "Vincent", "Ralph", "Eugene",
    "Russell", "Bobby", "Mason", "Philip", "Louis", "Mary", "Patricia", "Jennifer", "Linda",
    "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen", "Lisa", "Nancy", "Betty",
    "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna", "Michelle", "Carol", "Amanda",
    "Dorothy", "Melissa", "Deborah", "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia",
    "Kathleen", "Amy", "Angela", "Shirley", "Anna", "Brenda", "Pamela", "Emma", "Nicole", "Helen",
    "Samantha", "Katherine", "Christine", "Debra", "Rachel", "Carolyn", "Janet", "Catherine",
    "Maria", "Heather", "Diane", "Ruth", "Julie", "Olivia", "Joyce", "Virginia", "Victoria",
    "Kelly", "Lauren", "Christina", "Joan", "Evelyn", "Judith", "Megan", "Andrea", "Cheryl",
    "Hannah", "Jacqueline", "Martha", "Gloria", "Teresa", "Ann", "Sara", "Madison", "Frances",
    "Kathryn", "Janice", "Jean", "Abigail", "Alice", "Julia", "Judy", "Sophia", "Denise", "Amber",
    "Doris", "Marilyn", "Danielle", "Beverly", "Isabella", "Theresa", "Diana", "Natalie",
    "Brittany", "Charlotte", "Marie", "Kayla", "Alexis", "Lori", "Oliver", "Liam", "Lucas", "Mia",
    "Harper", "Amelia", "Ella", "Chloe", "Grace", "Zoe", "Lily", "Leo", "Max", "Oscar", "Hugo",
    "Felix", "Emil", "Anton", "Lukas", "Jonas", "Elias", "Paula", "Clara", "Lena", "Laura",
    "Sofia", "Lucia", "Elena", "Carlos", "Luis", "Miguel", "Pedro", "Jorge", "Diego", "Pablo",
    "Javier", "Alejandro", "Fernando", "Ahmed", "Mohammed", "Omar", "Ali", "Fatima", "Aisha",
    "Priya", "Rahul", "Amit", "Anil", "Sunil", "Ravi", "Deepak", "Sanjay", "Arjun", "Hiroshi",
    "Takashi", "Kenji", "Yuki", "Haruto", "Sakura", "Minjun", "Jiwoo", "Seojun", "Olga", "Ivan",
    "Dmitri", "Sergei", "Natasha", "Tatiana", "Kevin", "Tony", "Jenny", "Vivian", "Cindy", "Eric",
])


_FIRST_LOWER = frozenset(n.lower() for n in FIRST_NAMES)


def _is_pinyin_name(first: str, last: str) -> bool:
    low1, low2 = first.lower(), last.lower()
    return bool(_PINYIN.fullmatch(low1) and _PINYIN.fullmatch(low2)) and (
        low1 in _PINYIN_SURNAMES or low2 in _PINYIN_SURNAMES)


_PINYIN_SURNAMES = frozenset(
    [
        "wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu", "sun",
        "ma", "zhu", "hu", "guo", "he", "gao", "lin", "luo", "zheng", "liang", "xie", "song",
        "tang", "han", "feng", "deng", "cao", "peng", "zeng", "xiao", "tian", "dong", "yuan",
        "pan", "yu", "jiang", "cai", "du", "ye", "cheng", "su", "wei", "lv", "ding", "ren", "shen",
        "yao", "lu", "cui", "zhong", "tan", "qin", "qiu", "fan", "jin", "shi", "jia", "xia", "fu",
        "fang", "bai", "zou", "meng", "xiong",
    ]
)


def _whole_words(text: str, start: int, end: int) -> int:
    """End of the whole words of a name match ``[start, end)`` (``start``: none).

    A match that a letter follows ended inside a longer word (a 25th letter,
    a capital after a capital: ``McDONALD``): its last word is dropped rather
    than half of it reported.
    """
    if continues_word(text, end):
        cut = max(text.rfind(" ", start, end), text.rfind("-", start, end))
        end = cut if cut > start else start
    # "Mrs. Jennifer Alcaraz Suite 541": a trailing label is not part of the name.
    while end > start:
        cut = text.rfind(" ", start, end)
        if cut == -1 or text[cut + 1:end].lower() not in TRAILING:
            break
        end = cut
    return end


_STREET_BEFORE = re.compile(r"\d{1,6} [A-Z][a-z]+ $")


def _lower_titles(text: str) -> list[Span]:
    found = []
    for cue, positions in keyword_hits(text).items():
        if cue in _LOWER_TITLE_SET:
            for at in positions:
                m = _TITLE_NAME.match(text, at + len(cue))
                if m is not None and text[at].islower() and not (at and text[at - 1] in LETTERS) \
                        and m.group() not in _LOW_STOP:
                    end = _whole_words(text, m.start(), m.end())
                    if end > m.start():
                        found.append((m.start(), end, 0.85))
    return found


def _after_titles(text: str) -> list[Span]:
    found = _lower_titles(text)
    if not any(map(text.__contains__, _TITLES)):
        return found  # str's substring search is several times cheaper than re's scan
    for m in _EN_TITLE.finditer(text):
        if m.start() and text[m.start() - 1] in LETTERS:
            continue  # "Programs Manager", "summr. x"
        if text[m.start():m.start() + 3] in ("Dr ", "St ") and _STREET_BEFORE.search(
                text, max(0, m.start() - 25), m.start()):
            continue  # "1737 Cheriton Dr Reuquén": a street type, not a doctor
        end = _whole_words(text, m.start(1), m.end(1))
        if m.group(1).islower() and m.group(1) in _LOW_STOP:
            continue
        if end > m.start(1):
            found.append((m.start(1), end, 0.85))
    return found


def _after_cues(text: str) -> list[Span]:
    found: list[Span] = []
    for cue, positions in keyword_hits(text).items():
        if cue not in _EN_CUE_SET:
            continue
        for at in positions:
            if at and text[at - 1] in LETTERS:
                continue
            after = _SPACES.match(text, at + len(cue))
            name = _EN_NAME.match(text, after.end() if after else at + len(cue))
            if name is None or name.group().split(" ")[0] in _NOT_NAMES:
                continue
            end = _whole_words(text, name.start(), name.end())
            # "Customer: We will follow up" is a speaker label, not a name.
            if end == name.start() or (cue.endswith(":") and _CONTINUES.match(text, end)):
                continue
            if text.startswith(":", end):  # "Authorization:" is a label too
                continue
            if " " in text[name.start():end] or cue[0] not in "it":
                found.append((name.start(), end, 0.8))
    return found


@lru_cache(maxsize=8192)
def _evidence(word: str) -> int:
    """How much ``word`` looks like a name: 2 a known given name, 1 a surname, 0 none."""
    low = fold(word).lower()
    if low in NOT_NAMES:
        return -1
    if (low in GIVEN or low in _FIRST_LOWER) and low not in AMBIGUOUS:
        return 2
    if low in SURNAMES or (len(low) >= _ENDING_MIN and SURNAME_ENDING.search(low)
                           and not low.endswith("person")):
        return 1
    return 0


_ENDING_MIN = 6
_WORD_IN = re.compile(NAME_WORD)
# First words of two-word place names written with diacritics ("São Paulo").
_PLACE_PREFIXES = frozenset(["São", "Santa", "San", "Santo", "Río", "Rio", "Bad", "Sankt", "Île",
                             "Côte", "Costa", "Puerto", "Porto", "Nueva", "Nuevo", "New", "Los",
                             "Las", "La", "Le", "El", "Val", "Mont", "Port", "Saint", "Sainte"])
# An inflected English word ("Awarded", "Building", "Only") is no given name.
_INFLECTED = re.compile(r"(?:ed|ing)$")
# What before a lone surname says it is a person ("says Becker", "by Kónya").
_CUE_BEFORE = re.compile(
    r"(?:says|said|by|named|called|tell|told|ask|asked|with|to|me,|name\?|starring) $")
_CUE_AFTER = re.compile(r" (?:lives|said|says|spent|had|was born|will be|began|is from)")
# Cues strong enough for a capitalised word no list knows ("says Bergqvist.").
_STRONG_BEFORE = re.compile(
    r"(?:says|said|named|called|call me|calls me|named him|named her|starring|Hi|Hello|Dear) $")
_STRONG_AFTER = re.compile(r" (?:lives (?:at|on|in)|said|says|spent a|had given|was born|began)")


def _one_word(text: str, first: int, last: int) -> Span | None:
    """A lone capitalised word: a known given name, or a surname or any word after a cue."""
    mark = _evidence(text[first:last])
    if mark == 2:
        return (first, last, 0.6)
    if mark < 0 or not (text[first - 1:first] == " " or text.startswith(" ", last)):
        return None  # no cue can touch it
    if mark == 1 and (_CUE_BEFORE.search(text, max(0, first - 12), first) or
                      _CUE_AFTER.match(text, last)):
        return (first, last, 0.6)
    if mark == 0 and (_STRONG_BEFORE.search(text, max(0, first - 12), first) or
                      _STRONG_AFTER.match(text, last)):
        return (first, last, 0.55)
    return None


def _chunk_name(text: str, start: int, end: int) -> Span | None:
    """The name inside a run of capitalised words ``[start, end)``, if the words say so."""
    if text.find(" ", start, end) == -1:
        return _one_word(text, start, end)
    words = [(m.start(), m.end()) for m in _WORD_IN.finditer(text, start, end)]
    marks = [_evidence(text[a:b]) for a, b in words]
    while marks and marks[0] < 0:  # "The", "Dear", a month: not part of the name
        words, marks = words[1:], marks[1:]
    if -1 in marks:  # "Jennifer Alcaraz Suite": keep the words before the label
        words, marks = words[:marks.index(-1)], marks[:marks.index(-1)]
    if len(words) < 2:
        return _one_word(text, *words[0]) if words else None
    first, last = words[0][0], words[-1][1]
    has_initial = _INITIAL.search(text, first, last) is not None
    if has_initial or marks[0] == 2 or (marks[-1] == 1 and marks[0] >= 0 and
                                        not text[first:last].isascii()):
        return (first, last, 0.75 if has_initial else 0.7)
    if len(words) == 2 and min(marks) >= 0 and not text[words[1][0]:last].isascii() and \
            text[first:words[0][1]] not in _PLACE_PREFIXES and \
            not _INFLECTED.search(text, first, words[0][1]):
        return (first, last, 0.6)  # a surname with diacritics: "Irena Bílá", "Sigrid Nyström"
    if marks[0] >= 1 or (marks[-1] == 1 and not _INFLECTED.search(text, first, words[0][1])):
        return (first, last, 0.6)
    if len(words) == 2 and _is_pinyin_name(fold(text[first:words[0][1]]),
                                           fold(text[words[1][0]:last])):
        return (first, last, 0.65)
    if len(words) <= 3 and min(marks) >= 0 and first == start and (
            _RUN_AFTER.match(text, last) or (text[first - 1:first] == " " and
                                              _RUN_BEFORE.search(text, max(0, first - 20), first))):
        return (first, last, 0.6)  # "Approved by Wren Oyelaran": no list knows either word
    return None


# Words that take a person: a run of two or three capitalised words right
# after (a verb of handling or talking with its preposition, a greeting, a
# name question) or right before them (lives at, said) is a name.
_RUN_BEFORE = re.compile(
    r"(?:(?:[Aa]pproved|[Ss]igned|[Rr]eviewed|[Ff]orwarded|[Aa]ssigned|[Ee]scalated|[Hh]anded|"
    r"[Rr]eferred|[Tt]ransferred|[Ss]poke|[Ss]poken|[Tt]alked|[Cc]hecked|[Vv]erified|"
    r"[Aa]uthori[sz]ed|[Ss]ubmitted|[Rr]eported) (?:by|to|with|over to)"
    r"|says|said|named|called|call me|[Hh]i|[Hh]ello|[Dd]ear|heard|met|married|[Tt]hanks?"
    r"|asked|told|shouted at|speak to|talk to|name\?|name is) $"
)
_RUN_AFTER = re.compile(r" (?:lives (?:at|on|in)|said|says|shouted|was born|had given|speak)\b")


_INITIAL = re.compile(rf" {_latin.UPPER}\.?(?= )")


# Scans whose matches are few, instead of a look at every capitalised word:
# runs of two or more capitalised words, and known given names on their own
# (a trie-shaped regex). Single words next to a cue come from the shared
# keyword scan.
_GIVEN_TRIE = trie_regex(sorted(n.capitalize() for n in (GIVEN | _FIRST_LOWER) - AMBIGUOUS))
# (Two scans: one alternation of both costs twice as much as the two.)
_MULTI = re.compile(rf"{NAME_WORD}(?:(?: {_latin.UPPER}\.?)? {NAME_WORD}){{1,3}}")
_GIVEN_ALONE = re.compile(rf"(?:{_GIVEN_TRIE})(?!{_latin.LOWER}|['’]?{_latin.UPPER})")
#: Cue words found by the keyword scan: the name follows them ...
NAME_AFTER = frozenset(["says", "said", "named", "called", "call me", "hi", "hello", "dear", "by",
                        "tell", "told", "ask", "asked", "with", "to", "me,", "name?",
                        "calls me", "named him", "named her", "starring"])
#: ... or comes right before them.
NAME_BEFORE = frozenset(["lives", "said", "says", "spent", "had", "was born", "will be", "began",
                         "is from"])
# Registered with the space after them (no hit inside "today"), as the other
# cue lists register the same words: the one-pass scan reports one key per place.
_CUE_KEYS = {w if w in ("me,", "name?", "dear") else w + " ": w for w in NAME_AFTER | NAME_BEFORE}
register_keywords(_CUE_KEYS)
_NEXT_WORD = re.compile(NAME_WORD)


def _word_at(text: str, cue: str, at: int) -> tuple[int, int] | None:
    """The capitalised word after (or else before) the cue ``cue`` found at ``at``."""
    word = _CUE_KEYS[cue]
    if word in NAME_AFTER:
        pos = at + len(word)
        if text.startswith(" ", pos):
            m = _NEXT_WORD.match(text, pos + 1)
            if m is not None:
                return m.span()
    if word in NAME_BEFORE and at > 1 and text[at - 1] == " ":
        start = max(text.rfind(" ", 0, at - 1), text.rfind("\n", 0, at - 1)) + 1
        if at - 1 - start <= 80 and _NEXT_WORD.fullmatch(text, start, at - 1):
            return start, at - 1
    return None


def _cue_words(text: str) -> list[Span]:
    """Single capitalised words right after or before a cue word."""
    found: list[Span] = []
    for cue, positions in keyword_hits(text).items():
        if cue not in _CUE_KEYS:
            continue
        for at in positions:
            if at and text[at - 1] in LETTERS:
                continue  # inside a longer word
            span = _word_at(text, cue, at)
            if span is None or continues_word(text, span[1]) or \
                    (span[0] and text[span[0] - 1] in LETTERS):
                continue
            name = _one_word(text, *span)
            if name is not None:
                found.append(name)
    return found


_LOWER_PREFIX = re.compile(r"(?<![^\W\d_])[a-z]{2,6}-$")  # "ex-", "non-", "anti-"


def _pairs(text: str) -> list[Span]:
    """Capitalised words that a given name, surname, initial or cue marks as a name."""
    found: list[Span] = []
    runs: list[tuple[int, int]] = []  # runs of capitalised words, judged as a whole
    for m in _MULTI.finditer(text):
        if (m.start() and text[m.start() - 1] in LETTERS) or continues_word(text, m.end()):
            continue
        runs.append(m.span())
        start = m.start()
        if text[start - 1:start] == "-" and _LOWER_PREFIX.search(text, max(0, start - 8), start):
            start = text.index(" ", start) + 1  # "ex-Zombie Lundberg": the prefix's word is no name
        span = _chunk_name(text, start, m.end())
        if span is not None:
            found.append(span)
    at = 0
    for m in _GIVEN_ALONE.finditer(text):
        while at < len(runs) and runs[at][1] <= m.start():
            at += 1
        if at < len(runs) and runs[at][0] <= m.start():
            continue  # "Visit São Paulo": part of a run that is no name
        if not (m.start() and text[m.start() - 1] in LETTERS) and _evidence(m.group()) == 2:
            found.append((m.start(), m.end(), 0.6))
    return found + _cue_words(text)


# Lists of single names: "Müller, Dubois and Rossi", "silvana, adam, chad and caleb".
# Found from each " and " (a literal: a fast scan) by matching the items
# before it, anchored at its end, and the one after it.
_AND = re.compile(r" (?:and|&) ")
_CAP_ITEMS = re.compile(rf"(?:{NAME_WORD}, ){{0,8}}{NAME_WORD}$")
_LOW_ITEMS = re.compile(r"(?:[a-z]{2,15}, ){1,8}[a-z]{2,15}$")
_LOW_WORD = re.compile(r"[a-z]{2,15}")
_FIRM_BEFORE = re.compile(r"(?:[Tt]he|at|of|from) $")
_FIRM_AFTER = re.compile(r" (?:[A-Z]|is an? |are an? )")
_REACH = 260  # nine items of up to 27 characters


def _capitalised_list(text: str, start: int, end: int, last: re.Match[str]) -> list[Span]:
    items = _CAP_ITEMS.search(text, max(0, start - _REACH), start)
    if items is None or (items.start() and text[items.start() - 1] in LETTERS):
        return []
    words = [(w.start(), w.end()) for w in _WORD_IN.finditer(text, items.start(), start)]
    words.append(last.span())
    marks = [_evidence(text[a:b]) for a, b in words]
    # "at Jones, Mitchell and Williams", "the Davis, Reynolds and Williamson
    # Orchestra": a firm or a band named after people, not the people.
    if _FIRM_BEFORE.search(text, max(0, items.start() - 5), items.start()) or \
            _FIRM_AFTER.match(text, last.end()) or min(marks) < 0 or max(marks) < 1 or \
            _whole_line(text, items.start(), last.end()):
        return []
    return [(a, b, 0.6) for a, b in words]


_LINE_LEAD = frozenset(" \t>")


def _whole_line(text: str, start: int, end: int) -> bool:
    """True if ``text[start:end]`` is its line's whole content: a list of surnames
    standing alone on a line of a signature block is a firm ("Barnett, Melton and Garcia")."""
    head = text.rfind("\n", 0, start) + 1
    return all(c in _LINE_LEAD for c in text[head:start]) and \
        text[end:].lstrip(" \t")[:1] in ("\n", "")


def _lower_list(text: str, start: int, end: int) -> list[Span]:
    items = _LOW_ITEMS.search(text, max(0, start - _REACH), start)
    last = _LOW_WORD.match(text, end)
    if items is None or last is None or continues_word(text, last.end()) or \
            (items.start() and text[items.start() - 1] in LETTERS):
        return []
    words = [(w.start(), w.end()) for w in _LOW_WORD.finditer(text, items.start(), start)]
    words.append(last.span())
    known = sum(text[a:b] in GIVEN and text[a:b] not in AMBIGUOUS for a, b in words)
    return [(a, b, 0.55) for a, b in words] if known * 2 >= len(words) else []


def _lists(text: str) -> list[Span]:
    found: list[Span] = []
    if " and " not in text and " & " not in text:
        return found
    for m in _AND.finditer(text):
        start = m.start() - 1 if text[m.start() - 1:m.start()] == "," else m.start()
        last = _NEXT_WORD.match(text, m.end())
        if last is not None:
            if not continues_word(text, last.end()):
                found += _capitalised_list(text, start, m.end(), last)
        else:
            found += _lower_list(text, start, m.end())
    return found


# Lower-case names after a cue ("my name is anna schmidt", "call john at 5").
LOWER_CUES = ("my name is", "name is", "i am", "i'm", "call ", "with ", "dear", "hi ",
              "tell ", "ask ", "named ", "called ")
register_keywords(LOWER_CUES)
_LOW_NAME = re.compile(rf"([a-z]{{2,15}})(?: ({_latin.LOWER}{{2,20}}))?(?!{_latin.LOWER})")
_LOW_STOP = words(
    "a an the at on in to of for and or but is was are be been it me you him her us them my "
    "your his our their this that there here from by with as about after before tomorrow today "
    "back again now then please if when so not no yes")


def _lower_after_cues(text: str) -> list[Span]:
    found: list[Span] = []
    for cue, positions in keyword_hits(text).items():
        if cue not in _LOWER_CUE_SET:
            continue
        for at in positions:
            if at and text[at - 1] in LETTERS:
                continue
            after = at + len(cue)
            if cue[-1] != " ":  # shared with EN_CUES: the space is not part of the cue
                if not text.startswith(" ", after):
                    continue
                after += 1
            m = _LOW_NAME.match(text, after)
            if m is None or m.group(1) not in GIVEN or m.group(1) in AMBIGUOUS:
                continue
            second = m.group(2)
            end = m.end(2) if second and second not in _LOW_STOP and second not in GIVEN \
                and (second in SURNAMES or len(second) >= 4) else m.end(1)
            found.append((m.start(1), end, 0.6))
    return found


_LOWER_CUE_SET = frozenset(LOWER_CUES)


# Speaker labels of a script or chat log: a word alone before a colon at the
# start of a line ("Nicole: Remember me?").
# (The first line by .match, the others from their "\n": a literal, a fast scan.)
_SPEAKER_LINE = rf">?[ ]?({NAME_WORD}|[a-z]{{2,15}}):[ \"“]"
_SPEAKER_FIRST, _SPEAKER = re.compile(_SPEAKER_LINE), re.compile("\n" + _SPEAKER_LINE)


def _speakers(text: str) -> list[Span]:
    """Every speaker label, if there are two or more, one is a known given name and
    none is a word that is no name ("Customer:", "Phone:")."""
    if text.count(":") < 2 or "\n" not in text:
        return []
    first = _SPEAKER_FIRST.match(text)
    labels, known = [], False
    for m in (first, *_SPEAKER.finditer(text)) if first else _SPEAKER.finditer(text):
        word = m.group(1).capitalize()
        mark = _evidence(word)
        if mark < 0 or word in _NOT_NAMES:
            return []  # "Customer:", "Phone:": a log or a form, not a script
        labels.append(m.span(1))
        known = known or mark == 2
    return [(a, b, 0.6) for a, b in labels] if len(labels) >= 2 and known else []


# A name called at the start of a line, before a request or question
# ("Warrane, can I please speak to your boss?").
_VOCATIVE_LINE = (rf"({NAME_WORD}), "
                  r"(?:can|could|would|will|please|do you|are you|did you|have you)\b")
_VOCATIVE_FIRST, _VOCATIVE = re.compile(_VOCATIVE_LINE), re.compile("\n" + _VOCATIVE_LINE)


def _vocatives(text: str) -> list[Span]:
    if ", " not in text:
        return []
    found: list[Span] = []
    first = _VOCATIVE_FIRST.match(text)
    for m in (first, *_VOCATIVE.finditer(text)) if first else _VOCATIVE.finditer(text):
        word = m.group(1)
        if word not in _NOT_NAMES and _evidence(word) >= 0:
            found.append((*m.span(1), 0.55))
    return found


def latin_names(text: str) -> list[Span]:
    """Names in Latin script: after a title or a cue, known-given-name pairs, speakers."""
    if _latin.ANY_LETTER.search(text) is None:
        return []  # every rule matches Latin letters (cues and keywords too)
    return _after_titles(text) + _after_cues(text) + _pairs(text) + _lists(text) + \
        _lower_after_cues(text) + _speakers(text) + _vocatives(text)
