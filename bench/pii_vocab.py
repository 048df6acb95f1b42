"""Vocabularies for the PII benchmark corpus (bench/pii_corpus.py).

Names, roads, cities and filler sentences are the generator's own, deliberately
not the detector's lists. Area codes and county names come from
python-stdnum's register of Chinese administrative divisions (``loc.dat``).
"""

from __future__ import annotations

import string
from pathlib import Path

from stdnum.cn import ric

_LOC = Path(ric.__file__).with_name("loc.dat")


def _load_areas() -> tuple[list[str], list[tuple[str, str]]]:
    codes: list[str] = []
    places: list[tuple[str, str]] = []
    province = ("", "")
    for line in _LOC.read_text("utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if not line.startswith(" "):
            code, rest = line.split(" ", 1)
            province = (code, rest.split('"')[1])
        else:
            code, rest = line.strip().split(" ", 1)
            name = rest.split('"')[1]
            if not code.endswith("00") and not name.startswith("[") and name != "市辖区":
                codes.append(province[0] + code)
                places.append((province[1], name))
    return codes, places


AREA_CODES, PLACES = _load_areas()
_ASCII_ALNUM = frozenset(string.ascii_letters + string.digits)
FW = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)} | {" ": "\u3000"})

ZH_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏"
    "吕丁沈姚卢姜崔钟谭陆汪范金廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武"
    "戴莫孔向汤常康施牛樊葛邢齐乔伍庞颜倪庄聂章鲁岳翟殷詹申耿关兰焦俞左柳甘祝包宁舒阮柯"
)
ZH_RARE = ("欧阳", "司马", "上官", "诸葛", "皇甫", "令狐", "慕容", "阚", "綦", "禤", "茆", "笪")
ZH_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉建国志红梅林玲婷飞雪慧宇浩然"
    "子轩梓涵欣怡思远晨曦嘉琪雨桐俊熙博文佳怡诗琪一诺天佑雅琴海燕春晓晓东振华德福永"
)
EN_FIRST = [
    "James", "Mary", "Robert", "Linda", "Michael", "Sarah", "David", "Emily", "Daniel", "Olivia",
    "Thomas", "Sophia", "Kevin", "Grace", "Siobhan", "Kwame", "Ingrid", "Aurelio", "Thandiwe",
    "Bjorn", "Mateo", "Yusuf", "Anika", "Declan", "Leilani", "Ravi", "Priya", "Tobias", "Annika",
    "Soren", "Matilda", "Ezra", "Imogen", "Caspian", "Nadia", "Florian", "Wren",
]
EN_LAST = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
    "Taylor", "Thomas", "Moore", "Martin", "Kowalczyk", "Okafor", "Lindqvist", "Fitzgerald",
    "Nakamura", "Haddad", "Rossi", "Dubois", "Novak", "Schmidt", "Oyelaran", "Castellanos",
    "Whitfield", "Abernathy", "Chen", "Wang", "Li", "Zhang", "Liu",
]
ROADS = [
    "中关村大街", "建国路", "人民路", "解放路", "中山路", "南京东路", "淮海中路", "文三路",
    "天府大道", "深南大道", "科技园路", "长江路", "和平街", "学院路", "滨江大道", "光华路",
    "青年路", "幸福巷", "梧桐巷", "西湖路", "东风路", "延安西路", "珠江新城花城大道",
]
ESTATES = [
    "阳光花园", "碧桂园", "万科城市花园", "金地小区", "翠湖公寓", "海龙大厦", "国贸中心",
    "锦绣家园", "丽都新村", "世纪广场",
]
EN_STREETS = [
    "Main", "Baker", "Amphitheatre", "Market", "Fifth", "Park", "Oak", "Maple", "Cedar", "Elm",
    "Washington", "Lake", "Hill", "Sunset", "Mission", "Broadway", "Spring", "Church", "Highland",
]
EN_TYPES = [
    "Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Drive", "Way",
    "Parkway", "Place",
]
EN_CITIES = [
    ("Mountain View", "CA"), ("Seattle", "WA"), ("Austin", "TX"), ("Boston", "MA"),
    ("Denver", "CO"), ("Portland", "OR"), ("San Jose", "CA"), ("Chicago", "IL"),
]
ZH_FILL = (
    "您好，我想咨询一下订单的情况。", "请尽快帮我处理，谢谢！", "快递已经三天没有更新了。",
    "我上周提交的申请还没有结果。", "系统提示支付失败，请问怎么回事？", "麻烦核实一下信息。",
    "好的，我们已经为您登记。", "客服人员会在24小时内回复。", "这个问题我们会转给技术部门。",
    "请问还有其他可以帮您的吗？", "非常抱歉给您带来不便。",
    "我们会尽快安排退款，预计3到5个工作日到账。", "您的反馈我们已经记录，稍后会有专人联系您。",
    "请您耐心等待，我们正在核实物流信息。", "这个商品支持七天无理由退货。",
    "您可以在个人中心查看最新的处理进度。", "好的，明白了，谢谢。",
    "上次的发票抬头写错了，需要重新开具。", "会员积分什么时候可以使用？", "请帮我取消这个订单。",
)
EN_FILL = (
    "Hello, I need help with my account.", "The package has not arrived yet.",
    "Please escalate this ticket.", "Thanks for your patience.", "We have updated your request.",
    "The payment failed twice today.", "Could you confirm the details below?",
    "Is there anything else I can help you with?", "Sorry for the inconvenience caused.",
    "Your refund will be processed within 3-5 business days.",
    "I have attached the screenshot of the error message.", "Let me check that for you.",
    "The invoice shows the wrong billing address.", "Can I change my delivery date?",
    "We will follow up by the end of the week.", "Okay, that works for me, thanks!",
)
TOWNS = ("城关", "新华", "东坝", "石桥", "柳林", "高桥", "马家", "黄土")
VILLAGES = ("大王", "小李", "前进", "红旗", "东风", "杨柳", "上坪", "河西")
