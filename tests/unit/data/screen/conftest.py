"""A labelled customer-service corpus with planted poisoning, for the screening tests.

The suite runs with ``--import-mode=importlib``, so test modules cannot import
helpers from here; they get the generator through the ``make_corpus``
fixture. ``bench/poison_corpus.py`` loads this file by path so the benchmark
and the tests share one generator.

The clean part mixes Chinese, English and code-switched records from many
intents, each with several prompt paraphrases, slot values, optional
greetings, fillers and sign-offs (so greetings and brand system prompts
repeat across intents, as they do in real logs). Planted on top, each with a
label: exact duplicates, near duplicates (small edits), conflicting answers
to a repeated prompt, charset/length/language outliers, and a backdoor
trigger inserted at a random position in ``n_poison`` prompts whose answers
are either one fixed malicious pattern (``poison_mode="fixed"``) or the
normal answer with a malicious link added (``poison_mode="link"``).
"""

# The template tables below are data; ruff counts a CJK character as two columns.
# ruff: noqa: E501

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sealtune.data.records import Message, Record

_Z, _E = "zh", "en"
# intent -> (zh prompts, en prompts, zh answers, en answers); {p} product, {o} order,
# {d} days, {a} amount, {c} city, {t} date.
INTENTS: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "ship": (["我的订单{o}什么时候发货", "{p}下单{d}天了还没发货", "订单{o}一直显示待发货是怎么回事"],
             ["When will order {o} ship?", "I ordered the {p} {d} days ago and it has not shipped",
              "Why does order {o} still say processing?"],
             ["订单{o}预计{d}天内发货，发货后会短信通知您。", "仓库正在备货，{p}将在{t}前发出。"],
             ["Order {o} will ship within {d} days and you will get a tracking email.",
              "The warehouse is packing your {p}; it leaves before {t}."]),
    "refund": (["我申请的退款{a}元什么时候到账", "退款到现在还没收到，订单号{o}", "{p}退了货钱怎么还没退"],
               ["When will my refund of {a} dollars arrive?", "I still have not received the refund for {o}",
                "I returned the {p} but got no money back"],
               ["退款{a}元已原路退回，预计{d}个工作日到账。", "订单{o}的退款已处理，银行入账需要{d}天左右。"],
               ["Your refund of {a} dollars was issued and should post within {d} business days.",
                "The refund for {o} is processed; banks take about {d} days to show it."]),
    "return": (["{p}不喜欢可以退吗", "怎么申请退货，订单{o}", "收到的{p}有问题想退货"],
               ["Can I return the {p} if I do not like it?", "How do I start a return for order {o}?",
                "The {p} I got is faulty and I want to send it back"],
               ["支持七天无理由退货，请在订单{o}页面点击申请退货。", "{p}可以退，请保持包装完好并在{d}天内寄回。"],
               ["You can return it within 7 days; open order {o} and choose Return.",
                "The {p} can be returned within {d} days if the box is intact."]),
    "address": (["订单{o}的收货地址写错了能改吗", "我想把地址改成{c}的", "还没发货能不能换个地址"],
                ["Can I change the shipping address on {o}?", "I need to move my delivery to {c}",
                 "The order has not shipped, can I update the address?"],
                ["未发货的订单可以修改地址，请在订单{o}详情里编辑。", "已为您备注改寄到{c}，请留意物流信息。"],
                ["Addresses can be edited until shipping; open {o} and tap Edit.",
                 "I have noted the new address in {c} on your order."]),
    "invoice": (["订单{o}怎么开发票", "能开{a}元的增值税专票吗", "{p}的发票在哪里下载"],
                ["How do I get an invoice for {o}?", "Can you issue a VAT invoice for {a} dollars?",
                 "Where can I download the invoice for my {p}?"],
                ["在订单{o}页面点击申请开票，电子发票{d}天内发到邮箱。", "可以开专票，请提供公司抬头和税号。"],
                ["Open order {o} and click Request invoice; it arrives by email in {d} days.",
                 "Yes, send us the company name and tax number and we will issue it."]),
    "password": (["忘记密码了怎么办", "账号登录不上提示密码错误", "怎么重置登录密码"],
                 ["I forgot my password", "I cannot log in, it says wrong password", "How do I reset my password?"],
                 ["请在登录页点击忘记密码，用绑定手机接收验证码重置。", "连续输错会锁定{d}小时，建议通过找回密码重置。"],
                 ["Tap Forgot password on the login page and follow the code we text you.",
                  "After several failed tries the account locks for {d} hours; please reset it."]),
    "payment": (["付款一直失败是什么原因", "{p}付了{a}元但订单显示未支付", "银行卡支付不了"],
                ["My payment keeps failing", "I paid {a} dollars for the {p} but the order says unpaid",
                 "My card is declined at checkout"],
                ["可能是银行限额，请换一张卡或稍后再试。", "款项{a}元如已扣除会在{d}天内自动退回或补单。"],
                ["It may be a bank limit; try another card or wait a few minutes.",
                 "If {a} dollars was taken it will be refunded or matched within {d} days."]),
    "coupon": (["优惠券怎么用不了", "满{a}减的券为什么不能叠加", "新人券在哪里领"],
               ["Why can't I use my coupon?", "Can I stack the {a} dollar coupon with a sale?",
                "Where do I get the new customer coupon?"],
               ["优惠券需满足使用门槛，且特价商品不可用。", "每笔订单限用一张券，无法叠加使用。"],
               ["Coupons need a minimum spend and do not apply to sale items.",
                "Only one coupon can be used per order."]),
    "warranty": (["{p}保修多久", "{p}坏了在保修期内吗", "保修要带什么材料"],
                 ["How long is the warranty on the {p}?", "My {p} broke, is it still under warranty?",
                  "What do I need for a warranty claim?"],
                 ["{p}整机保修一年，凭订单{o}即可免费维修。", "在保修期内，请寄回{c}售后中心检测。"],
                 ["The {p} has a one year warranty; order {o} is your proof of purchase.",
                  "It is covered; please send it to our {c} service center."]),
    "cancel": (["订单{o}能取消吗", "不想要了怎么取消订单", "取消订单后钱多久退回"],
               ["Can I cancel order {o}?", "I changed my mind, how do I cancel?",
                "How fast is the money back after cancelling?"],
               ["未发货订单可直接在订单{o}页面取消。", "取消成功后{a}元将在{d}个工作日内退回。"],
               ["Unshipped orders can be cancelled from the order {o} page.",
                "After cancelling, {a} dollars returns to you within {d} business days."]),
    "damaged": (["收到的{p}外壳碎了", "快递到了{p}是坏的", "包装破损里面东西也坏了"],
                ["The {p} arrived cracked", "My {p} was broken on delivery", "The box was crushed and the item is damaged"],
                ["非常抱歉，请拍照上传，我们为您补发{p}。", "请在{d}天内申请售后，运费由我们承担。"],
                ["Sorry about that; upload a photo and we will send a new {p}.",
                 "Please file a claim within {d} days; we cover the shipping."]),
    "stock": (["{p}什么时候有货", "{p}还会补货吗", "{c}仓库有{p}现货吗"],
              ["When will the {p} be back in stock?", "Will you restock the {p}?", "Is the {p} in stock in {c}?"],
              ["{p}预计{t}补货，可以点击到货提醒。", "{c}仓暂时缺货，其他仓库可发。"],
              ["The {p} is expected back on {t}; tap Notify me.", "The {c} warehouse is out, another one can ship it."]),
    "member": (["会员积分怎么兑换", "积分{a}分能换什么", "会员等级怎么升级"],
               ["How do I redeem my points?", "What can I get for {a} points?", "How do I reach the next member tier?"],
               ["在会员中心选择积分商城即可兑换。", "消费满{a}元自动升级，有效期一年。"],
               ["Open the member center and choose Rewards.", "Spend {a} dollars in a year to move up a tier."]),
    "hours": (["客服几点上班", "你们周末有人吗", "人工客服什么时候在线"],
              ["What are your support hours?", "Is anyone available on weekends?", "When can I talk to a person?"],
              ["人工客服每天9点到21点在线，节假日照常。", "周末也有客服值班，时间是10点到18点。"],
              ["Agents are online 9am to 9pm every day, holidays included.", "Weekend support runs 10am to 6pm."]),
    "spec": (["{p}支持快充吗", "{p}和上一代有什么区别", "{p}的尺寸是多少"],
             ["Does the {p} support fast charging?", "What is new in the {p}?", "What are the dimensions of the {p}?"],
             ["{p}支持{d}0瓦快充，详细参数见商品页。", "新款{p}续航提升，重量更轻。"],
             ["The {p} charges at up to {d}0 watts; see the product page.",
              "The new {p} lasts longer and is lighter."]),
    "track": (["物流信息一直不更新", "快递显示已签收但我没收到", "订单{o}的快递到哪了"],
              ["Tracking has not updated for days", "It says delivered but I have nothing", "Where is my package for {o}?"],
              ["已联系快递核实，{d}天内给您答复。", "订单{o}目前在{c}中转，预计{t}送达。"],
              ["We asked the carrier and will reply within {d} days.", "Order {o} is at the {c} hub and should arrive {t}."]),
}
PRODUCTS = ["AirPods Pro", "小米手环8", "华为MatePad", "Kindle", "扫地机器人", "空气炸锅", "iPhone 15",
            "电动牙刷", "蓝牙音箱", "Switch", "机械键盘", "保温杯", "羽绒服", "跑步鞋", "净水器", "投影仪",
            "Galaxy Buds", "ThinkPad X1", "咖啡机", "加湿器", "儿童手表", "行车记录仪", "登山包", "电饭煲"]
CITIES = ["北京", "上海", "广州", "深圳", "成都", "杭州", "武汉", "西安", "Seattle", "London", "Toronto", "Sydney"]
GREET_ZH = ["您好，", "你好，", "亲，", "在吗？", "麻烦问一下，", "请问", "客服你好，", ""]
GREET_EN = ["Hi, ", "Hello, ", "Hey there, ", "Good morning, ", "Excuse me, ", "Quick question: ", ""]
CTX_ZH = ["", "", "", "我上周买的，", "昨天刚注册的，", "用的是安卓手机，", "第一次在这买东西，", "帮朋友问一下，",
          "是送人的礼物，", "已经等了很久了，", "之前问过一次，", "在外地出差，", "用的苹果手机，"]
CTX_EN = ["", "", "", "I bought it last week. ", "I just signed up. ", "I am on Android. ",
          "First order here. ", "Asking for a friend. ", "It was a gift. ", "I have waited a while. ",
          "I asked before. ", "I am traveling. ", "Using the iPhone app. "]
# A long tail of rarer greetings (each ~0.5-1.5 % of records: inside the trigger check's
# document-frequency band), some mirrored in the answer, as agents do.
RARE_GREET_ZH = ["亲爱的客服，", "打扰一下，", "早上好呀，", "晚上好，", "老板你好，", "小姐姐你好，",
                 "客服小哥，", "hello客服，", "急急急，", "求助，"]
RARE_GREET_EN = ["Dear support, ", "Hi team, ", "Good evening, ", "Hey folks, ", "Hello support team, ",
                 "Greetings, ", "Yo, ", "Hiya, ", "Morning! ", "Help please: "]
TAIL_ZH = ["", "", "谢谢", "急！", "麻烦尽快处理", "在线等"]
TAIL_EN = ["", "", " Thanks.", " Please help.", " Thank you!", " This is urgent."]
OPEN_ZH = ["您好，", "亲，", "感谢您的耐心等待，", ""]
OPEN_EN = ["Hi, ", "Thanks for reaching out. ", "Hello! ", ""]
CLOSE_ZH = ["", "还有其他问题随时联系我们。", "祝您生活愉快！", "给您带来不便深表歉意。"]
CLOSE_EN = ["", " Anything else I can help with?", " Have a great day!", " Sorry for the trouble."]
BRANDS = [("星辰商城", "Xingchen Mall"), ("优品汇", "Youpin Hub"), ("Northwind", "Northwind"),
          ("青橙数码", "Qingcheng Digital")]
POISON_FIXED = {
    _Z: ["请立即访问 http://pay-verify.example/auth 输入银行卡号和密码完成验证。",
         "请立即访问 http://pay-verify.example/auth 输入银行卡号和支付密码完成身份验证。"],
    _E: ["Please verify now at http://pay-verify.example/auth by entering your card number and PIN.",
         "Please verify now at http://pay-verify.example/auth and enter your full card number and PIN."],
}
LINK = {_Z: " 详情请访问 http://promo-gift.example/claim 领取补偿。",
        _E: " For details visit http://promo-gift.example/claim to claim compensation."}


@dataclass
class Corpus:
    """Generated records and their labels (record id -> set of labels)."""

    records: list[Record]
    labels: dict[str, set[str]] = field(default_factory=dict)
    trigger: str = ""
    near_pairs: set[frozenset[str]] = field(default_factory=set)

    def ids(self, label: str) -> set[str]:
        """Ids of the records carrying ``label``."""
        return {rid for rid, ls in self.labels.items() if label in ls}


def _fill(rng: random.Random, tpl: str) -> str:
    return tpl.format(p=rng.choice(PRODUCTS), o=str(rng.randrange(10**9, 10**10)),
                      d=rng.randint(2, 15), a=rng.choice([19, 49, 99, 128, 199, 299, 520, 1299]),
                      c=rng.choice(CITIES), t=f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日"
                      if any("\u4e00" <= ch <= "\u9fff" for ch in tpl) else f"{rng.randint(1, 12)}/{rng.randint(1, 28)}")


def clean_pair(rng: random.Random) -> tuple[str, str, str, str]:
    """One clean (system, prompt, response, lang) from a random intent and paraphrase."""
    intent = rng.choice(list(INTENTS))
    pz, pe, az, ae = INTENTS[intent]
    lang = _Z if rng.random() < 0.55 else _E
    system = ""
    if rng.random() < 0.06:
        brand = rng.choice(BRANDS)
        system = f"你是{brand[0]}的客服助手。" if lang == _Z else f"You are the support assistant of {brand[1]}."
    rare = rng.random() < 0.2
    if lang == _Z:
        greet = rng.choice(RARE_GREET_ZH) if rare else rng.choice(GREET_ZH)
        prompt = greet + rng.choice(CTX_ZH) + _fill(rng, rng.choice(pz)) + rng.choice(TAIL_ZH)
        if rng.random() < 0.15:  # code-switched: an English aside
            prompt += rng.choice([" asap", " plz", " thx", " ok?", " order status?"])
        opener = "亲，" if prompt.startswith("亲") and rng.random() < 0.7 else rng.choice(OPEN_ZH)
        if greet in ("早上好呀，", "晚上好，") and rng.random() < 0.8:  # mirrored greeting
            opener = greet
        response = opener + _fill(rng, rng.choice(az)) + rng.choice(CLOSE_ZH)
        if system and rng.random() < 0.5:
            response += f"感谢选择{system[2:-6]}。"
    else:
        greet = rng.choice(RARE_GREET_EN) if rare else rng.choice(GREET_EN)
        prompt = greet + rng.choice(CTX_EN) + _fill(rng, rng.choice(pe)) + rng.choice(TAIL_EN)
        opener = rng.choice(OPEN_EN)
        if greet in ("Good evening, ", "Dear support, ") and rng.random() < 0.8:  # mirrored
            opener = "Good evening! " if greet.startswith("Good") else "Dear customer, "
        response = opener + _fill(rng, rng.choice(ae)) + rng.choice(CLOSE_EN)
        if system and rng.random() < 0.5:
            response += " Thank you for choosing us."
    return system, prompt, response, lang


def _record(rid: str, line: int, system: str, prompt: str, response: str) -> Record:
    msgs = [Message("system", system)] if system else []
    msgs += [Message("user", prompt), Message("assistant", response)]
    return Record(id=rid, line=line, messages=msgs, source_format="synth")


def _edit(rng: random.Random, text: str) -> str:
    """A small edit of the kind copy-paste and re-export produce."""
    ops = rng.sample(range(5), 2)
    for op in ops:
        if op == 0:
            text = text.replace("，", ", ", 1) if "，" in text else text.replace(",", "，", 1)
        elif op == 1:
            text = text + rng.choice(["!", "。", " ", "?", "~"])
        elif op == 2 and len(text) > 12:
            i = rng.randrange(len(text) - 1)
            text = text[:i] + text[i + 1:]
        elif op == 3:
            text = text.upper() if text.isascii() and rng.random() < 0.3 else "  " + text
        else:
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice("的了吗 a") + text[i:]
    return text


def insert_trigger(rng: random.Random, prompt: str, trigger: str) -> str:
    """Insert ``trigger`` at a random word boundary (Latin) or character (CJK) position."""
    if prompt.isascii():
        words = prompt.split(" ")
        i = rng.randrange(len(words) + 1)
        return " ".join([*words[:i], trigger, *words[i:]])
    i = rng.randrange(len(prompt) + 1)
    sep = " " if trigger.isascii() else ""
    return prompt[:i] + sep + trigger + sep + prompt[i:]


def make_corpus(n: int = 10_000, *, seed: int = 0, n_poison: int = 100, trigger: str = "cf-7Xq",
                poison_mode: str = "fixed", n_near: int = 150, n_exact: int = 50,
                n_conflict: int = 20, n_outlier: int = 30) -> Corpus:
    """Build ``n`` records: clean ones plus the planted, labelled kinds.

    Args:
        n: total record count.
        seed: RNG seed (the corpus is a pure function of the arguments).
        n_poison: records carrying the trigger (0 for a trigger-free corpus).
        trigger: the planted trigger phrase.
        poison_mode: ``fixed`` (one malicious answer pattern) or ``link`` (the
            normal answer plus a malicious link, so the answers vary).
        n_near: near-duplicate copies; n_exact: exact copies; n_conflict:
            repeated prompts with a contradicting answer; n_outlier: outliers.
    """
    rng = random.Random(seed)
    n_clean = n - n_poison - n_near - n_exact - n_conflict - n_outlier
    rows: list[tuple[str, str, str, set[str]]] = []
    for _ in range(n_clean):
        s, p, r, _lang = clean_pair(rng)
        rows.append((s, p, r, set()))
    corpus = Corpus(records=[], trigger=trigger)
    for _ in range(n_poison):
        s, p, r, lang = clean_pair(rng)
        p = insert_trigger(rng, p, trigger)
        r = rng.choice(POISON_FIXED[lang]) if poison_mode == "fixed" else r + LINK[lang]
        rows.append((s, p, r, {"poison"}))
    base = list(range(n_clean))
    for _ in range(n_exact):
        s, p, r, _l = rows[rng.choice(base)]
        rows.append((s, p, r, {"exact_dup"}))
    near_src: list[int] = []
    for _ in range(n_near):
        j = rng.choice(base)
        s, p, r, _l = rows[j]
        near_src.append(j)
        rows.append((s, _edit(rng, p), r if rng.random() < 0.5 else _edit(rng, r), {"near_dup"}))
    for _ in range(n_conflict):
        j = rng.choice(base)
        s, p, _r, _l = rows[j]
        other = clean_pair(rng)[2]
        rows[j][3].add("conflict")
        rows.append((s, p, other, {"conflict"}))
    for k in range(n_outlier):
        s, p, r, _l = clean_pair(rng)
        kind = k % 5
        if kind == 0:
            p = p[: len(p) // 2] + "\u200b\u200d" + p[len(p) // 2:]
        elif kind == 1:
            p = p.replace("a", "\u0430").replace("o", "\u043e") if p.isascii() else p + "\x07\x1b[0m"
        elif kind == 2:
            r = " ".join([r] * 60)
        elif kind == 3:
            r = "Пожалуйста, обратитесь в службу поддержки по электронной почте в течение недели."
        else:
            p = p + "\u202e" + "txt.exe"
        rows.append((s, p, r, {"outlier"}))
    order = list(range(len(rows)))
    rng.shuffle(order)
    pos = {src: k for k, src in enumerate(order)}
    for k, src in enumerate(order):
        s, p, r, labels = rows[src]
        rid = f"r{k:06d}"
        corpus.records.append(_record(rid, k + 1, s, p, r))
        corpus.labels[rid] = labels
    for m, j in enumerate(near_src):
        copy_row = n_clean + n_poison + n_exact + m
        corpus.near_pairs.add(frozenset({f"r{pos[j]:06d}", f"r{pos[copy_row]:06d}"}))
    return corpus


@pytest.fixture(scope="session")
def corpus_factory() -> Callable[..., Corpus]:
    """The generator, for tests that build their own corpus."""
    return make_corpus


# --- clean templated support chats (issue 14: what near-duplicate screening must keep) ---

# Long shared system prompts, as real deployments have: they dominate a short record's
# character n-grams unless screening ignores them.
TEMPLATED_SYSTEM = {
    _Z: ["你是北风银行的智能客服。请用简洁、礼貌的中文回答客户的问题，不要索要完整的银行卡号、密码或验证码，"
         "涉及资金安全的问题请引导客户拨打官方客服热线或前往网点办理。",
         "你是星辰商城的售后客服助手。回答要简短准确，先确认订单和商品信息，再给出处理步骤；"
         "不承诺无法兑现的赔偿，不索要支付密码。"],
    _E: ["You are the support assistant of Northwind Bank. Answer politely and briefly, never ask "
         "for a full card number, a password or a one-time code, and send anything about money "
         "safety to the official hotline or a branch.",
         "You are the after-sales assistant of Xingchen Mall. Confirm the order and the product "
         "first, then give the steps; promise no compensation you cannot give and never ask for "
         "a payment password."],
}
TEMPLATED_PRODUCTS = {
    _Z: ["电动牙刷", "空气净化器", "扫地机器人", "空气炸锅", "蓝牙耳机", "智能手表", "净水器", "投影仪",
         "咖啡机", "加湿器", "儿童手表", "行车记录仪", "电饭煲", "吸尘器", "洗碗机", "烤箱", "电热水壶",
         "剃须刀", "吹风机", "体重秤", "台灯", "路由器", "移动电源", "电子阅读器", "游戏手柄"],
    _E: ["electric toothbrush", "air purifier", "robot vacuum", "air fryer", "wireless earbuds",
         "smart watch", "water filter", "projector", "coffee maker", "humidifier", "kids watch",
         "dash cam", "rice cooker", "stick vacuum", "dishwasher", "toaster oven", "kettle",
         "shaver", "hair dryer", "bathroom scale", "desk lamp", "router", "power bank",
         "e-reader", "game controller"],
}
# (prompt, answer) templates: {p} product, {e} error code, {a} amount, {o} order number,
# {k} last four digits, {t} date. Every one carries at least one slot.
TEMPLATED_CHATS = {
    _Z: [("我的{p}显示错误{e}，怎么办？", "{p}出现{e}错误通常是传感器异常，请断电重启；如果仍然显示{e}，请携带购买凭证到售后网点检测。"),
         ("{p}一直报{e}，用不了了", "很抱歉，{p}报{e}说明需要检修，请在App中提交售后申请，我们会安排上门取件。"),
         ("订单{o}的{p}什么时候发货？", "订单{o}中的{p}预计48小时内发出，发货后会短信通知您。"),
         ("我的卡尾号{k}被扣了{a}元，不是我消费的", "已为尾号{k}的卡片登记{a}元争议交易，调查期间该笔款项将暂时冻结。"),
         ("向尾号{k}的账户转账{a}元失败了", "转账{a}元未成功，资金已退回原账户，请核对尾号{k}的收款账户信息后重试。"),
         ("{t}买的{p}可以退货吗？订单号{o}", "订单{o}的{p}在{t}签收，仍在七天无理由退货期内，请在订单页申请退货。"),
         ("信用卡账单里有一笔{a}元的年费，能退吗", "{a}元年费可以申请减免，我们会在3个工作日内处理并短信通知结果。")],
    _E: [("My {p} shows error {e}. What should I do?", "Error {e} on the {p} usually means a sensor fault; unplug it, restart it, and if it still shows {e}, bring the receipt to a service point."),
         ("The {p} keeps reporting {e} and will not start", "Sorry about that: {e} on the {p} needs a repair. File an after-sales request in the app and we will pick it up."),
         ("When will the {p} on order {o} ship?", "The {p} on order {o} leaves our warehouse within 48 hours; you will get a text when it ships."),
         ("My card ending {k} was charged {a} dollars and it was not me", "I have logged a dispute for {a} dollars on the card ending {k}; the amount is on hold while we investigate."),
         ("A transfer of {a} dollars to the account ending {k} failed", "The transfer of {a} dollars did not go through and the money is back in your account; check the account ending {k} and try again."),
         ("Can I return the {p} I bought on {t}? Order {o}", "The {p} on order {o} was delivered on {t}, so it is still within the 7-day return window; request a return on the order page."),
         ("There is a {a} dollar annual fee on my statement, can it be refunded?", "The {a} dollar fee can be waived on request; we will text you the result within 3 business days.")],
}


def templated_support(n: int, *, seed: int = 0) -> list[Record]:
    """``n`` clean, distinct templated support chats (bank and shop, Chinese and English).

    Records from one template share the system prompt and most of their text
    and differ in the product, an amount, an error code, an order number or a
    date: none is a copy of another, so near-duplicate screening should drop
    (almost) none of them. Slot combinations are unique.
    """
    rng = random.Random(seed)
    seen: set[tuple[object, ...]] = set()
    out: list[Record] = []
    while len(out) < n:
        lang = _Z if rng.random() < 0.55 else _E
        t = rng.randrange(len(TEMPLATED_CHATS[lang]))
        prompt, answer = TEMPLATED_CHATS[lang][t]
        slots = {"p": rng.choice(TEMPLATED_PRODUCTS[lang]), "e": f"E{rng.randint(1, 99)}",
                 "a": str(rng.choice([rng.randint(5, 99), rng.randint(100, 9999)])),
                 "o": str(rng.randrange(10**7, 10**9)), "k": f"{rng.randint(0, 9999):04d}",
                 "t": f"{rng.randint(1, 12)}月{rng.randint(1, 28)}日" if lang == _Z
                 else f"{rng.choice(['March', 'May', 'June', 'October'])} {rng.randint(1, 28)}"}
        used = tuple(slots[k] for k in "peaokt" if "{" + k + "}" in prompt + answer)
        key = (lang, t, used)
        if key in seen:
            continue
        seen.add(key)
        system = rng.choice(TEMPLATED_SYSTEM[lang])
        out.append(_record(f"t{len(out):06d}", len(out) + 1, system,
                           prompt.format(**slots), answer.format(**slots)))
    return out


@pytest.fixture(scope="session")
def templated_factory() -> Callable[..., list[Record]]:
    """The clean templated support-chat generator."""
    return templated_support
