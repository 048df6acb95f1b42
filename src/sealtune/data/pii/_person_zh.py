"""Chinese names outside cue-and-title contexts (pattern tier, no model).

What :mod:`.person` adds with these: names in places where the text's shape,
not a cue word, says "a name is here":

* distinctive compound surnames (欧阳, 上官, 诸葛 ...) with one or two
  given-name characters, anywhere ("请联系欧阳娜娜确认"); compound surnames
  that are also everyday words (东方, 西门, 百里, 公孙) are left to cues;
* transliterated and minority names written with a middle dot
  (买买提·阿凡提, 迪丽热巴·迪力木拉提, 约翰·史密斯): Han runs joined by ``·``;
* name lists after a people label and a colon ("参会人员：王芳、李强、赵磊"):
  every item must be a whole name, or none is taken;
* signature lines: a line that is only a name, after a sign-off line
  (谢谢 / 此致敬礼 / Best regards);
* a name as the subject of a clause: at the clause start (after
  punctuation, a line break, a speaker label or a time word such as 昨天 or
  后来) and right before a predicate that takes a person (又打来, 没有回复,
  已经签收, 来电, 说): "后来黄远洋没有回复。", "客服：左诺福已经签收了".

Protects against: names slipping through because no cue precedes them.
Does not catch: a single-surname name with no cue, title, list,
signature or listed predicate around it ("张伟明天到"); it may take an ordinary phrase that
starts with a distinctive compound surname (司马光 is a name, 司马昭之心 is
read as one too).
"""

from __future__ import annotations

import re
from collections.abc import Callable

DISTINCT_COMPOUNDS = frozenset(
    ["欧阳", "上官", "诸葛", "司马", "皇甫", "尉迟", "慕容", "令狐", "夏侯", "轩辕", "端木",
     "独孤", "宇文", "长孙", "司徒", "呼延", "澹台", "钟离", "万俟", "拓跋", "完颜", "纳兰",
     "赫连", "申屠", "淳于", "濮阳", "闻人"]
)
_COMPOUND_ANY = re.compile("|".join(sorted(DISTINCT_COMPOUNDS)))
_HAN = "\u4e00-\u9fff"
_DOTTED = re.compile(rf"[{_HAN}]+(?:[·•・‧][{_HAN}]+)+")
# The label word itself starts the match (a leading [Han]{0,6} would be tried at
# every position of every text).
_LIST_LABEL = re.compile(
    r"(?:人员|名单|成员|嘉宾|同事|家属|联系人|负责人|参与者|出席者)\s*[：:]\s*")
_ITEM_SEP = re.compile(r"\s*[、，,；;/]\s*")
_SIGN_OFF = re.compile(
    r"(?:谢谢|感谢|此致|敬礼|祝好|顺祝|祝您|regards|thanks|best|sincerely|cheers)", re.IGNORECASE)

Span = tuple[int, int, float]


def compound_names(text: str, name_after: Callable[[str, int], int]) -> list[Span]:
    """Distinctive compound surname + given name, in any context."""
    out: list[Span] = []
    for m in _COMPOUND_ANY.finditer(text):
        end = name_after(text, m.start())
        if end > m.end():
            out.append((m.start(), end, 0.75))
    return out


def dotted_names(text: str, stop: frozenset[str], cut_before: Callable[[str, int], int]
                 ) -> list[Span]:
    """Han runs joined by a middle dot (a transliterated or minority name).

    ``cut_before(text, dot)`` gives where the first part starts (after a cue
    such as 客户); the last part stops before a function character.
    """
    out: list[Span] = []
    for m in _DOTTED.finditer(text):
        first_dot = min(i for i in range(m.start(), m.end()) if not "\u4e00" <= text[i] <= "\u9fff")
        start = cut_before(text, first_dot)
        last = m.end()
        tail = max(i for i in range(m.start(), m.end()) if not "\u4e00" <= text[i] <= "\u9fff") + 1
        end = tail
        while end < min(last, tail + 6) and text[end] not in stop and \
                text[end:end + 2] not in _TAIL_WORDS:
            end += 1
        if end - tail >= 1 and first_dot - start >= 1:
            out.append((start, end, 0.8))
    return out


_TAIL_WORDS = frozenset(["来电", "咨询", "先生", "女士", "反映", "投诉", "表示", "已经", "今天",
                         "明天", "昨天", "办理", "申请", "要求", "需要", "联系", "致电",
                         "确认", "出席", "参加", "代表", "负责", "同意", "签字"])


def listed_names(text: str, whole_name: Callable[[str], bool]) -> list[Span]:
    """Every item of a people list after a label and a colon, if every item is a name."""
    out: list[Span] = []
    if ":" not in text and "：" not in text:
        return out  # every label ends in a colon
    for m in _LIST_LABEL.finditer(text):
        end = m.end()
        while end < len(text) and text[end] not in "。；;\n!！?？":
            end += 1
        items, pos = [], m.end()
        for part in _ITEM_SEP.split(text[m.end():end]):
            start = text.index(part, pos) if part else pos
            items.append((start, start + len(part)))
            pos = start + len(part)
        spans = [(s, e) for s, e in items if e > s]
        if len(spans) >= 2 and all(whole_name(text[s:e]) for s, e in spans):
            out += [(s, e, 0.8) for s, e in spans]
    return out


# A line of 2-4 Han characters alone (dashes before it allowed); the leading newline
# lets re scan for a literal, which an alternation of sign-off words cannot.
_SHORT_LINE = re.compile(rf"\n[ \t\-—–~]*([{_HAN}]{{2,4}})[ \t]*(?=\n|$)")


def signature_names(text: str, whole_name: Callable[[str], bool]) -> list[Span]:
    """A line that is only a name, right after a line holding a sign-off."""
    out: list[Span] = []
    if "\n" not in text:
        return out  # no line of its own
    for m in _SHORT_LINE.finditer(text):
        end = m.start()  # walk back over blank lines to the previous line (each once: linear)
        while end > 0 and text[end - 1] == "\n":
            end -= 1
        if _SIGN_OFF.search(text, text.rfind("\n", 0, end) + 1, end) and whole_name(m.group(1)):
            out.append((m.start(1), m.end(1), 0.8))
    return out


# Predicates that take a person as subject; a name right before one, at the
# start of a clause, is reported ("后来黄远洋没有回复"). Literals only: one
# flat alternation, scanned fast.
SUBJECT_PREDICATES = ("又打来", "打来电话", "来电", "致电", "没有回复", "没回复", "未回复",
                      "已经签收", "签收了", "已签收", "已经回复", "回复说", "说", "表示",
                      "反映", "投诉")
# (person.py finds them in its one scan for cues and titles: no scan of their own.)
#: What may stand right before a clause-initial name: punctuation, space, a
#: speaker label's colon, or a time or sequence word.
_CLAUSE_START = frozenset("，。！？；：,.!?;: \n\t")
_TIME_WORDS = ("昨天", "今天", "前天", "刚才", "后来", "然后", "随后", "之后", "上午", "下午",
               "晚上", "早上", "刚刚")


def subject_before(text: str, end: int, name_before: Callable[[str, int], int]) -> Span | None:
    """The name at the start of a clause that ends at ``end``, where a predicate that
    takes a person starts (:data:`SUBJECT_PREDICATES`, found by the caller's scan)."""
    if not end or not "\u4e00" <= text[end - 1] <= "\u9fff":
        return None  # no Han character before: no name
    start = name_before(text, end)
    if start < end and (start == 0 or text[start - 1] in _CLAUSE_START or
                        text.endswith(_TIME_WORDS, 0, start)):
        return (start, end, 0.7)
    return None
