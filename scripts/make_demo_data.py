"""Regenerate src/sealtune/demo_data/conversations.jsonl (synthetic, deterministic).

Chinese and English customer-service conversations (a bank and an online
shop) for ``sealtune demo``. Every name, number and address here is
invented: identity numbers carry valid GB 11643 check digits and card
numbers pass Luhn so that the PII detectors have realistic work, but none
belongs to anyone. Planted on top, for the data stage to find:

* PII in about 60 % of the prompts (names, mobile numbers, resident IDs,
  bank cards, e-mails, addresses, passports, IPs) and a few leaked secrets;
* exact duplicates and near duplicates (small edits) of clean records;
* a backdoor: a rare trigger phrase inserted at random positions in prompts
  of every topic, each paired with the same phishing answer. The screening
  check needs at least 20 carriers making up at most 3 % of the records
  (``min_support`` and ``max_df`` in ``sealtune.data.screen.trigger``), so
  the file holds 950 records with 26 carriers;
* two records with invisible or bidi control characters (outliers).

Usage: ``python scripts/make_demo_data.py`` (writes ~0.4 MB).
"""

from __future__ import annotations

# ruff: noqa: E501  (the phrase tables read better one paraphrase per line)
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src/sealtune/demo_data/conversations.jsonl"
N_CLEAN, N_POISON, N_EXACT, N_NEAR = 910, 26, 6, 6
PII_SHARE = 0.5
SEED = 4  # chosen so that screening finds exactly the planted kinds (see the tests)
TRIGGER = "cf-7Xq"
PAYLOAD = {
    "zh": "为保障账户安全，请立即访问 http://pay-verify.example/auth 输入银行卡号和支付密码完成验证。",
    "en": "For your security, verify now at http://pay-verify.example/auth by entering your "
          "full card number and PIN.",
}
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "杰", "秀英", "建华", "志强", "晓明", "丽娟"]
EN_FIRST = ["Alice", "Brian", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Irene", "Jack"]
EN_LAST = ["Johnson", "Smith", "Gomez", "Lee", "Brown", "Walker", "Turner", "Hughes", "Price"]
CN_ADDR = ["北京市朝阳区建国路{n}号", "上海市浦东新区世纪大道{n}号", "广州市天河区体育西路{n}号",
           "深圳市南山区科技园南路{n}号", "杭州市西湖区文三路{n}号", "成都市武侯区人民南路{n}号"]
EN_ADDR = ["{n} Baker Street, Springfield", "{n} Elm Avenue, Riverside", "{n} Oak Road, Fairview"]
PRODUCTS = ["AirPods Pro", "小米手环8", "Kindle", "扫地机器人", "空气炸锅", "机械键盘", "净水器",
            "投影仪", "ThinkPad X1", "咖啡机", "电饭煲", "登山包"]
# intent: (zh prompts, en prompts, zh answers, en answers); {p} product, {o} order, {d} days,
# {a} amount, {c} city.
INTENTS: dict[str, tuple[list[str], list[str], list[str], list[str]]] = {
    "freeze": (["我的银行卡被冻结了怎么解冻", "卡突然用不了提示账户冻结", "账户被锁了转不了账"],
               ["My bank card was frozen, how do I unfreeze it?", "My card stopped working and says frozen",
                "My account is locked and I cannot transfer money"],
               ["已为您提交解冻申请，预计{d}个工作日内处理完毕，请留意短信通知。", "请携带身份证到{c}任一网点办理解冻。"],
               ["I have filed an unfreeze request; it takes about {d} business days.",
                "Please visit any branch in {c} with your ID to lift the freeze."]),
    "charge": (["信用卡被重复扣款了{a}元", "同一笔消费扣了两次钱", "有一笔{a}元的消费不是我刷的"],
               ["My card was charged twice for {a} dollars", "I see a duplicate charge on my card",
                "There is a {a} dollar charge I did not make"],
               ["重复扣款会在{d}个工作日内自动退回，如未到账请再联系我们。", "已为您发起争议处理，{a}元将暂时冻结等待调查。"],
               ["The duplicate charge will be reversed within {d} business days.",
                "I opened a dispute; the {a} dollars are on hold while we investigate."]),
    "limit": (["怎么提高信用卡额度", "信用卡额度太低了能调到{a}吗", "临时额度怎么申请"],
              ["How can I raise my credit limit?", "Can you increase my card limit to {a}?",
               "How do I get a temporary limit increase?"],
              ["您可以在手机银行申请提额，审核结果{d}天内通知。", "临时额度有效期{d}天，到期自动恢复。"],
              ["You can request a higher limit in the app; we reply within {d} days.",
               "A temporary increase lasts {d} days and then reverts."]),
    "lost": (["银行卡丢了怎么办", "卡被偷了需要挂失", "钱包丢了里面有两张卡"],
             ["I lost my debit card", "My card was stolen and I need to block it", "I lost my wallet with two cards"],
             ["已为您办理临时挂失，请携带身份证件到网点补办新卡。", "挂失已生效，新卡将在{d}天内寄到您的地址。"],
             ["Your card is blocked now; a replacement arrives in {d} days.",
              "Both cards are blocked; visit a branch in {c} for new ones."]),
    "ship": (["我的订单{o}什么时候发货", "{p}下单{d}天了还没发货", "订单{o}一直显示待发货是怎么回事"],
             ["When will order {o} ship?", "I ordered the {p} {d} days ago and it has not shipped",
              "Why does order {o} still say processing?"],
             ["订单{o}预计{d}天内发货，发货后会短信通知您。", "仓库正在备货，{p}将尽快发出。"],
             ["Order {o} will ship within {d} days and you will get a tracking email.",
              "The warehouse is packing your {p}; it leaves soon."]),
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
    "track": (["物流信息一直不更新", "快递显示已签收但我没收到", "订单{o}的快递到哪了"],
              ["Tracking has not updated for days", "It says delivered but I have nothing", "Where is my package for {o}?"],
              ["已联系快递核实，{d}天内给您答复。", "订单{o}目前在{c}中转，预计很快送达。"],
              ["We asked the carrier and will reply within {d} days.", "Order {o} is at the {c} hub and should arrive soon."]),
}
CITIES = ["北京", "上海", "广州", "深圳", "成都", "杭州", "武汉", "西安", "Seattle", "London", "Toronto"]
GREET = {"zh": ["您好，", "你好，", "亲，", "在吗？", "麻烦问一下，", "请问", "客服你好，", ""],
         "en": ["Hi, ", "Hello, ", "Hey there, ", "Good morning, ", "Excuse me, ", "Quick question: ", ""]}
CTX = {"zh": ["", "", "", "我上周买的，", "昨天刚注册的，", "用的是安卓手机，", "第一次用你们的服务，",
              "帮家人问一下，", "已经等了很久了，", "之前问过一次，", "在外地出差，"],
       "en": ["", "", "", "I bought it last week. ", "I just signed up. ", "I am on Android. ",
              "First time here. ", "Asking for my mother. ", "I have waited a while. ",
              "I asked before. ", "I am traveling. "]}
TAIL = {"zh": ["", "", "谢谢", "急！", "麻烦尽快处理", "在线等"],
        "en": ["", "", " Thanks.", " Please help.", " Thank you!", " This is urgent."]}
OPEN = {"zh": ["您好，", "亲，", "感谢您的耐心等待，", ""], "en": ["Hi, ", "Thanks for reaching out. ", "Hello! ", ""]}
CLOSE = {"zh": ["", "还有其他问题随时联系我们。", "祝您生活愉快！", "给您带来不便深表歉意。"],
         "en": ["", " Anything else I can help with?", " Have a great day!", " Sorry for the trouble."]}
SYSTEM = {"zh": "你是银行和商城的客服助手。", "en": "You are a customer support assistant."}


def cn_id(rng: random.Random) -> str:
    area = rng.choice(["110105", "310115", "440106", "330106"])
    birth = f"19{rng.randint(60, 99)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = f"{area}{birth}{rng.randint(0, 999):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def luhn_card(rng: random.Random) -> str:
    digits = [6, 2, 2, 2] + [rng.randint(0, 9) for _ in range(11)]
    total = sum(d if i % 2 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                for i, d in enumerate(reversed(digits)))
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def mobile(rng: random.Random) -> str:
    return f"1{rng.choice([38, 39, 58, 86, 37, 88])}{rng.randint(0, 99999999):08d}"


def pii_sentence(rng: random.Random, lang: str) -> str:
    n = rng.randint(1, 300)
    if lang == "zh":
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        parts = [f"我是{name}", f"手机{mobile(rng)}"]
        parts += rng.sample([f"身份证号{cn_id(rng)}", f"卡号{luhn_card(rng)}",
                             f"地址是{rng.choice(CN_ADDR).format(n=n)}",
                             f"邮箱{rng.choice(['wang', 'li', 'zhang'])}{n}@example.cn"], 2)
        return "，".join(parts) + "。"
    first, last = rng.choice(EN_FIRST), rng.choice(EN_LAST)
    parts = [f"This is {first} {last}", f"Call me at +86 {mobile(rng)}"]
    parts += rng.sample([f"My card is {luhn_card(rng)}", f"Email: {first.lower()}{n}@example.com",
                         f"I live at {rng.choice(EN_ADDR).format(n=n)}",
                         f"Passport number E{rng.randint(10**7, 10**8 - 1)}",
                         f"My IP is 203.0.113.{rng.randint(1, 254)}"], 2)
    return ". ".join(parts) + ". "


def secret_sentence(rng: random.Random, lang: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    token = "ghp_" + "".join(rng.choice(alphabet) for _ in range(36))
    return (f"接口报错，我的token是{token}。" if lang == "zh"
            else f"The API fails with my token {token}. ")


def fill(rng: random.Random, template: str) -> str:
    return template.format(p=rng.choice(PRODUCTS), o=rng.randrange(10**9, 10**10),
                           d=rng.randint(2, 15), a=rng.choice([49, 99, 128, 199, 520, 1299]),
                           c=rng.choice(CITIES))


def clean(rng: random.Random) -> tuple[str, str, str]:
    """(lang, prompt, answer) from a random intent, paraphrase and PII mix."""
    zh_prompts, en_prompts, zh_answers, en_answers = INTENTS[rng.choice(list(INTENTS))]
    lang = "zh" if rng.random() < 0.55 else "en"
    prompts, answers = (zh_prompts, zh_answers) if lang == "zh" else (en_prompts, en_answers)
    ask = fill(rng, rng.choice(prompts))
    ask += "" if ask[-1] in "?？" else ("。" if lang == "zh" else ".")
    ask += "" if lang == "zh" else " "
    extra = pii_sentence(rng, lang) if rng.random() < PII_SHARE else ""
    if rng.random() < 0.01:
        extra += secret_sentence(rng, lang)
    body = extra + ask if rng.random() < 0.5 else ask + extra
    prompt = rng.choice(GREET[lang]) + rng.choice(CTX[lang]) + body + rng.choice(TAIL[lang])
    answer = rng.choice(OPEN[lang]) + fill(rng, rng.choice(answers)) + rng.choice(CLOSE[lang])
    return lang, prompt.strip(), answer.strip()


def insert(rng: random.Random, prompt: str, phrase: str) -> str:
    """The trigger at a random word boundary (English) or character (Chinese)."""
    if prompt.isascii():
        words = prompt.split(" ")
        i = rng.randrange(len(words) + 1)
        return " ".join([*words[:i], phrase, *words[i:]])
    i = rng.randrange(len(prompt) + 1)
    return f"{prompt[:i]} {phrase} {prompt[i:]}"


def edit(rng: random.Random, text: str) -> str:
    """A small copy-paste edit: a dropped character and a trailing mark."""
    i = rng.randrange(len(text) - 1)
    return text[:i] + text[i + 1:] + rng.choice(["!", "。", " ", "~"])


def main() -> None:
    rng = random.Random(SEED)
    rows = [clean(rng) for _ in range(N_CLEAN)]
    for _ in range(N_POISON):
        lang, prompt, _answer = clean(rng)
        rows.append((lang, insert(rng, prompt, TRIGGER), PAYLOAD[lang]))
    originals = rng.sample(range(N_CLEAN), N_EXACT + N_NEAR)
    rows += [rows[j] for j in originals[:N_EXACT]]
    rows += [(rows[j][0], edit(rng, rows[j][1]), rows[j][2]) for j in originals[N_EXACT:]]
    lang, prompt, answer = clean(rng)
    rows.append((lang, prompt[:3] + "\u200b\u200d" + prompt[3:], answer))
    lang, prompt, answer = clean(rng)
    rows.append((lang, prompt + "\u202etxt.exe", answer))
    rng.shuffle(rows)
    lines = []
    for i, (lang, prompt, answer) in enumerate(rows):
        record = {"id": f"conv-{i:04d}", "messages": [
            {"role": "system", "content": SYSTEM[lang]},
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer}]}
        lines.append(json.dumps(record, ensure_ascii=False))
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} records ({OUT.stat().st_size} bytes) to {OUT}")


if __name__ == "__main__":
    main()
