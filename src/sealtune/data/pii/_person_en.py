"""PERSON (pattern tier), Latin script: titles, cues and given-name pairs.

The English half of :mod:`.person` (which explains what the tier catches):
capitalised name words after a title (``Mr.``, ``Dr.`` ...) or a cue ("my
name is", "Dear", "Regards,"), and pairs whose first word is a common given
name (about 300) or which are pinyin with a Chinese surname. Name words are
those of :mod:`._latin`: accented letters and internal capitals are part of
the word (``Pavlović``, ``McConnell``, ``O'Brien``), and a match that ends
inside a longer word is cut back to its whole words, never reported as part
of a word. Given names are looked up without their diacritics (``José`` is
``Jose``).

Honest limits: all-capital names, lower-case particles (``van``, ``de``),
names outside the Latin script, and surnames with no title, cue or known
given name in front are not found here.
"""

from __future__ import annotations

import re

from sealtune.data.pii import _latin
from sealtune.data.pii._latin import LETTERS, NAME_WORD, continues_word, fold
from sealtune.data.pii._text import keyword_hits, register_keywords

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
_NAME = f"{NAME_WORD}(?:[ -]{NAME_WORD}){{0,2}}"
_EN_TITLE = re.compile(rf"(?:Mr|Mrs|Ms|Miss|Dr|Prof|Mx)\.?\s({_NAME})")
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
    if not continues_word(text, end):
        return end
    cut = max(text.rfind(" ", start, end), text.rfind("-", start, end))
    return cut if cut > start else start


def _after_titles(text: str) -> list[Span]:
    found = []
    for m in _EN_TITLE.finditer(text):
        end = _whole_words(text, m.start(1), m.end(1))
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


def _pairs(text: str) -> list[Span]:
    """A known given name (or pinyin with a Chinese surname) and one more name word."""
    found: list[Span] = []
    pos = 0
    while (m := _EN_PAIR.search(text, pos)) is not None:
        # On a miss, look again from the second word: in "Thanks Emily
        # Carter" the pair "Thanks Emily" must not hide "Emily Carter".
        pos = m.start(2)
        if (m.start() and text[m.start() - 1] in LETTERS) or continues_word(text, m.end()):
            continue
        first, last = fold(m.group(1)), fold(m.group(2))
        if first in FIRST_NAMES:
            found.append((m.start(), m.end(), 0.7))
        elif _is_pinyin_name(first, last):
            found.append((m.start(), m.end(), 0.65))
        else:
            continue
        pos = m.end()
    return found


def latin_names(text: str) -> list[Span]:
    """Names in Latin script: after a title or a cue, and known-given-name pairs."""
    return _after_titles(text) + _after_cues(text) + _pairs(text)
