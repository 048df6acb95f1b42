"""PERSON (pattern tier): personal names anchored on cues, titles and name lists.

This is the fast tier: no model, no segmentation. It reports a name only
where the text itself says "a name is here":

* Chinese: a surname (about 260 single and 50 compound surnames, which cover
  the great majority of Chinese people) with one or two given-name characters,
  right after a cue (我叫, 姓名：, 联系人, 客户, 持有人, 收款人 ...), right before a
  title (先生, 女士, 老师, 医生, 经理 ...), or before 的 + a personal-data word
  (张伟的手机号); and a lone Chinese name in an English sentence after a word
  that introduces a person ("reset the password for 熊梅", "Contact 张伟"),
  unless it is a listed place or common word (南京, 周一);
* Latin script (:mod:`._person_en`): capitalised words after a title (Mr.,
  Dr. ...) or a cue ("my name is", "Name:", "Dear", "Regards,"); runs of
  capitalised words with a known given name (about 900, looked up without
  diacritics), a middle initial, or surname evidence (a listed surname, a
  surname ending such as ``-sson`` or ``-ović``, diacritics); single
  surnames in a list of names or next to a cue ("says Becker"); lower-case
  names after a cue ("my name is anna schmidt"); pinyin with a Chinese
  surname (``Zhang Wei``). Accented letters and internal capitals belong to
  the word (``Pavlović``, ``McConnell``, ``O'Brien``): a name is never cut
  mid-word.

Honest limits: recall on names with no cue, title or known given name is
low by design ("张伟明天到", "Forwarded to Kowalczyk"); the given-name length
after a cue is a guess (two characters unless the next one is a function
word), so "我叫张伟明天来" yields 张伟明. Names of organisations that look
like names are not told apart. A compound surname always starts a name
after a cue except in a few listed words (上官网, 西门子). The optional NER
tier (``ner.py``: spaCy for English, jieba's ``nr`` tags for Chinese) adds
names without cues at a large cost in speed; the benchmark reports both.
"""

from __future__ import annotations

import re

from sealtune.data.pii import _person_zh
from sealtune.data.pii._person_en import latin_names
from sealtune.data.pii.address import PLACES
from sealtune.data.pii.base import Entity, register_recognizer

NAME = "person"
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁"
    "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武"
    "戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯"
    "纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳穆农司卓古吉缪简"
    "车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎甄丛"
    "仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储芮羊阎丘"
)
COMPOUND_SURNAMES = (
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文",
    "司徒", "夏侯", "轩辕", "令狐", "端木", "独孤", "南宫", "西门", "百里", "呼延", "澹台",
    "太史", "申屠", "钟离", "万俟", "闻人", "赫连", "左丘", "公冶", "公羊", "濮阳", "淳于",
    "太叔", "仲孙", "东郭", "拓跋", "司空", "亓官", "巫马", "公良", "宰父", "颛孙", "漆雕",
    "壤驷", "谷梁", "段干", "公西", "乐正", "羊舌", "梁丘", "完颜", "纳兰",
)
_COMPOUND_SET = frozenset(COMPOUND_SURNAMES)
# Words that start with a compound surname but are not names (上官网: "visit
# the official site"); a compound surname is otherwise always a name start.
_COMPOUND_WORDS = ("上官网", "东方红", "东方人", "东方明珠", "东方航空", "东方财富", "西门子",
                   "百里挑一", "司空见惯", "公孙树", "公羊传", "谷梁传")
# What ends a given name: function characters, and common words that follow
# a name in service dialogue (明 and 天 are given-name characters too, so
# 明天 is a word-level stop).
_STOP = frozenset(
    "的了是在和与及或说也就都还很被把给对向从到为于着过地得吗呢吧啊呀哦嗯您你我他她它们这那有没不个"
    "请帮查问想要会能可让叫等说将再又已"
)
_STOP_WORDS = frozenset(
    [
        "明天", "今天", "昨天", "后天", "前天", "电话", "手机", "身份", "先生", "女士", "小姐",
        "老师", "医生", "大夫", "经理", "主任", "教授", "律师", "同学", "师傅", "阿姨", "住在",
        "家住", "号码", "来自", "已经", "刚才", "现在", "一直", "之前", "以后", "预约", "联系",
        "告诉", "反映", "投诉", "表示", "要求", "需要", "希望", "办理", "申请", "咨询", "来电",
        "致电", "打来", "女儿", "儿子", "妻子", "丈夫", "父亲", "母亲", "今年", "去年", "明年",
        "上午", "下午", "晚上", "早上", "关系", "服务", "信息", "资料", "满意", "体验", "关怀",
    ]
)
# Two-character words whose second character is also a surname: in
# "感谢孙德经理" the 谢 belongs to 感谢, not to the name.
_VERBS_BEFORE = frozenset(
    [
        "感谢", "谢谢", "通知", "转告", "告诉", "联系", "询问", "拜访", "请教", "邀请", "提醒",
        "麻烦", "辛苦", "见到", "找到", "交给", "发给", "打给", "还给", "问候", "尊敬", "亲爱",
        "致电", "来自",
    ]
)
# Everyday words that start with a surname character (麻烦 is not Mr Ma).
_COMMON_WORDS = frozenset(
    [
        "麻烦", "高兴", "方便", "安排", "安全", "安装", "明白", "明天", "关于", "关系", "关注",
        "关闭", "于是", "时间", "时候", "钱包", "金额", "文件", "程序", "毛病", "任何", "常常",
        "马上", "包括", "包裹", "全部", "齐全", "宁可", "司机", "江湖", "黄金", "白天", "万一",
        "严重", "严格", "石头", "林业", "陆续", "龙头", "史上", "成功", "成本", "华为", "谢谢",
        "温度", "温馨", "易于", "应该", "应用", "向来", "平时", "平安", "甘心", "路上", "游戏",
        "管理", "简单", "计划", "商品", "商家", "沙发", "边上", "师傅", "何时", "何况", "连续",
        "连接", "车辆", "项目", "柏油", "宫殿", "康复", "施工", "尚未", "祝贺", "祝您", "包装",
        "邮件", "邮箱", "刘海", "欧洲", "支付", "付款", "费用", "程度", "余额",
        "杜绝", "江苏", "汪洋", "蓝色", "梅花", "童年", "凌晨", "苗条", "牛奶", "葛根", "焦点",
        "魏晋", "贾府", "郑重", "周一", "周二", "周三", "周四", "周五", "周六", "周日", "周末",
        "周年", "周期", "周边", "万元", "高铁", "白色", "黄色", "金色", "高级", "高速", "方式",
        "方法", "方面", "安心", "高价", "全额", "全款", "包邮", "江南", "东西",
    ]
)
_HAN = re.compile(r"[\u4e00-\u9fff]")
# Anchors: a cue (the name follows), or a title or 的 + a personal-data word
# (the name precedes: "张伟的手机号"). One flat alternation of literals keeps
# re's fast first-character scan and finds them all in one pass (no two can
# overlap: no anchor holds 的 or starts inside a data word); which kind of
# anchor matched is looked up afterwards.
ZH_CUES = frozenset(
    [
        "我叫", "我是", "名叫", "叫做", "姓名", "名字", "联系人", "收件人", "收货人", "寄件人",
        "客户", "患者", "病人", "用户", "经办人", "负责人", "签名", "持卡人", "户名", "申请人",
        "投保人", "被保险人", "乘客", "员工", "业主", "租客", "法定代表人", "法人", "紧急联系人",
        "开户人", "借款人", "担保人", "家属", "同事", "朋友", "持有人", "收款人", "付款人",
        "受益人", "监护人", "委托人", "代理人", "承租人", "出租人", "当事人", "报案人", "发件人",
        "经手人", "领取人", "被保人", "开户名", "账户名", "收款方",
        "对接人", "客户资料", "联系",
    ]
)
ZH_TITLES = frozenset(
    [
        "先生", "女士", "小姐", "老师", "医生", "大夫", "经理", "主任", "教授", "律师", "同学",
        "师傅", "阿姨", "院长", "处长", "局长", "科长", "护士",
    ]
)
_ZH_POSSESSIVE = "的(?:手机|电话|身份证|地址|邮箱|银行卡|护照|账号|卡号|住址)"
_PREDICATES = frozenset(_person_zh.SUBJECT_PREDICATES)  # a clause's subject precedes them
_ZH_ANCHOR = re.compile(
    "|".join([*sorted(ZH_CUES | ZH_TITLES | _PREDICATES, key=len, reverse=True), _ZH_POSSESSIVE])
)
_CUE_TAIL = re.compile(r"[是叫为]?[：:\s]{0,2}")
def _given_ok(text: str, start: int, end: int) -> bool:
    return all("\u4e00" <= text[i] <= "\u9fff" and text[i] not in _STOP
               and text[i:i + 2] not in _STOP_WORDS for i in range(start, end))


def is_given_name(chars: str) -> bool:
    """True if ``chars`` (one or two characters) can be a Chinese given name.

    For the NER tier, which joins a surname that a segmenter split off
    (诸葛 | 悦) to the characters after it.
    """
    return 1 <= len(chars) <= 2 and _given_ok(chars, 0, len(chars))


def _name_after(text: str, start: int) -> int:
    """End of a Chinese name starting at ``start`` (``start`` if there is none)."""
    if text[start:start + 2] in _COMMON_WORDS:
        return start
    if text[start:start + 2] in _COMPOUND_SET:
        if text.startswith(_COMPOUND_WORDS, start):
            return start
        cut = start + 2
    elif start < len(text) and text[start] in SURNAMES:
        cut = start + 1
    else:
        return start
    given = cut
    while given < cut + 2 and given < len(text) and _given_ok(text, given, given + 1):
        given += 1
    return given if given > cut else start


def _name_before(text: str, end: int) -> int:
    """Start of a Chinese name ending at ``end`` (``end`` if there is none)."""
    for size in (4, 3):
        if text[end - size:end - size + 2] in _COMPOUND_SET and \
                _given_ok(text, end - size + 2, end):
            return end - size
    # Most Chinese names have three characters: prefer them, unless the
    # character in front is a function word that is also a surname (向, 于).
    if end >= 3 and text[end - 3] in SURNAMES and text[end - 3] not in _STOP and \
            text[end - 4:end - 2] not in _VERBS_BEFORE and _given_ok(text, end - 2, end) and \
            text[end - 3:end - 1] not in _COMMON_WORDS:
        return end - 3
    if end >= 2 and text[end - 2] in SURNAMES and _given_ok(text, end - 1, end) and \
            text[end - 2:end] not in _COMMON_WORDS:
        return end - 2
    return end


def _zh(text: str) -> list[Entity]:
    found: list[Entity] = []
    for m in _ZH_ANCHOR.finditer(text):
        if m.group() in _PREDICATES:
            subject = _person_zh.subject_before(text, m.start(), _name_before)
            if subject:
                found.append(Entity("PERSON", *subject, NAME))
            continue
        if m.group() in ZH_CUES:
            tail = _CUE_TAIL.match(text, m.end())
            start = tail.end() if tail else m.end()
            end = _name_after(text, start)
            # "用户：麻烦核实一下" is a speaker label, "联系人：张伟，" a field:
            # after a colon the name must end the clause.
            if end > start and tail and tail.group() and tail.group()[-1] in "：:" and \
                    end < len(text) and "\u4e00" <= text[end] <= "\u9fff":
                continue
        else:  # a title or a possessive
            end = m.start()
            start = _name_before(text, end)
        if end > start:
            found.append(Entity("PERSON", start, end, 0.85, NAME))
    return found


# A Chinese name in an English sentence ("reset the password for 熊梅"): a
# lone run of two to four Han characters after one of these words, that is a
# surname and a given name as a whole (no place, no common word).
_EN_LEADS = frozenset(
    [
        "for", "to", "from", "by", "with", "and", "cc", "contact", "contacted", "call", "called",
        "ask", "asked", "tell", "told", "thank", "thanks", "dear", "hi", "hello", "customer",
        "user", "client", "patient", "named", "name", "agent", "holder", "cardholder", "am",
        "i'm", "mr", "mrs", "ms", "miss", "dr", "prof", "attn", "regards", "sincerely", "signed",
        "meet", "met", "assigned", "assign", "email", "emailed", "visit", "visited", "owner",
    ]
)
_HAN_AFTER_SPACE = re.compile(r" ([\u4e00-\u9fff]{2,4})(?![\u4e00-\u9fff])")
_NOT_A_PERSON = frozenset(PLACES)
_PLACE_END = frozenset("省市区县镇乡村路街")


def _word_before(text: str, space: int) -> str:
    """The word before ``text[space]`` (lower case, trailing punctuation cut; 16 chars at most)."""
    start = space
    while start > 0 and space - start < 16 and not text[start - 1].isspace():
        start -= 1
    return text[start:space].rstrip(".,:;").lower()


def _zh_in_latin(text: str) -> list[Entity]:
    found = []
    for m in _HAN_AFTER_SPACE.finditer(text):
        start, end = m.span(1)
        if m.group(1) in _NOT_A_PERSON or text[end - 1] in _PLACE_END or \
                _name_after(text, start) != end or _word_before(text, m.start()) not in _EN_LEADS:
            continue
        found.append(Entity("PERSON", start, end, 0.7, NAME))
    return found


def _whole_name(item: str) -> bool:
    """True if ``item`` is exactly a Chinese name (surname + given), not a place or word."""
    return 2 <= len(item) <= 4 and item not in _NOT_A_PERSON and \
        item[-1] not in _PLACE_END and _name_after(item, 0) == len(item)


def _cut_before(text: str, dot: int) -> int:
    """Where the first part of a dotted name ending at ``dot`` starts: after a cue, a verb
    or a function character, else at most 5 characters back."""
    start = dot
    while start > 0 and dot - start < 5 and "\u4e00" <= text[start - 1] <= "\u9fff" and \
            text[start - 1] not in _STOP:
        start -= 1
        head = text[max(0, start - 5):start]
        if any(head.endswith(c) for c in ZH_CUES) or head[-2:] in _VERBS_BEFORE:
            break
    return start


def _zh_shapes(text: str) -> list[Entity]:
    spans = [*_person_zh.compound_names(text, _name_after),
             *_person_zh.listed_names(text, _whole_name),
             *_person_zh.signature_names(text, _whole_name)]
    if "·" in text or "•" in text or "・" in text or "‧" in text:
        spans += _person_zh.dotted_names(text, _STOP, _cut_before)
    return [Entity("PERSON", s, e, score, NAME) for s, e, score in spans]


class PersonRecognizer:
    """Recognizer for ``PERSON`` in the pattern tier (see the module docstring)."""

    name = NAME
    entity_types = frozenset({"PERSON"})

    def analyze(self, text: str) -> list[Entity]:
        found = [Entity("PERSON", s, e, score, NAME) for s, e, score in latin_names(text)]
        if not text.isascii() and _HAN.search(text):
            found.extend(_zh(text))
            found.extend(_zh_shapes(text))
            if " " in text:
                found.extend(_zh_in_latin(text))
        return found


register_recognizer(NAME, PersonRecognizer, entity_types=PersonRecognizer.entity_types)
