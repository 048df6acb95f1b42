"""Bundled vocabularies for surrogate names, e-mail addresses and street addresses.

Common Chinese surnames and given-name characters, common English given and
family names, and a few real city / district / road names used only to
build plausible surrogate addresses. The lists are generic (no real
person's full name is stored); a surrogate may still coincide with a real
name or address, as any plausible fake can.
"""

from __future__ import annotations

CN_SURNAMES = tuple(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚"
)
CN_GIVEN = tuple(
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红鹏飞建国志浩宇轩然欣怡梓涵子睿思雨"
    "晨阳博文佳琪嘉豪俊凯雪梅丹婷晓东海波宁辉斌凤兰琳颖晶慧莉倩雯蕾诗悦瑶彤昊天宏亮"
)
EN_GIVEN = (
    "James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "William",
    "Elizabeth", "David", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark",
    "Margaret", "Paul", "Sandra", "Steven", "Ashley", "Andrew", "Emily", "Kevin", "Donna",
    "Brian", "Michelle", "George", "Carol", "Edward", "Amanda", "Ronald", "Melissa", "Timothy",
    "Deborah", "Jason", "Stephanie", "Jeffrey", "Rebecca", "Ryan", "Laura", "Jacob", "Helen",
    "Gary", "Sharon", "Nicholas", "Cynthia", "Eric", "Kathleen", "Olivia", "Noah", "Emma",
)
EN_FAMILY = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore",
    "Jackson", "Martin", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis",
    "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen",
    "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell",
    "Mitchell", "Carter", "Roberts", "Chen", "Wang", "Li", "Zhang", "Liu", "Huang", "Zhao",
    "Wu", "Zhou", "Lin", "Ho", "Wong", "Cheung", "Parker", "Evans", "Edwards", "Collins",
)
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")

CN_PLACES = (
    ("北京市", "朝阳区"), ("北京市", "海淀区"), ("上海市", "徐汇区"), ("上海市", "浦东新区"),
    ("广州市", "天河区"), ("广州市", "越秀区"), ("深圳市", "南山区"), ("深圳市", "福田区"),
    ("杭州市", "西湖区"), ("南京市", "玄武区"), ("成都市", "武侯区"), ("武汉市", "江岸区"),
    ("西安市", "雁塔区"), ("重庆市", "渝中区"), ("天津市", "和平区"), ("苏州市", "姑苏区"),
)
CN_ROADS = (
    "人民路", "解放路", "中山路", "建设路", "和平路", "新华路", "文化路", "胜利路", "青年路",
    "光明路", "长江路", "黄河路", "幸福路", "朝阳路", "团结路", "东风路", "花园路", "学院路",
)
EN_STREETS = (
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Park", "Lake", "Hill", "Washington",
    "Lincoln", "Sunset", "River", "Church", "Highland", "Meadow", "Forest", "Spring",
)
EN_STREET_SUFFIXES = ("St", "Ave", "Rd", "Blvd", "Lane", "Drive", "Way", "Court")
EN_CITIES = (
    "Springfield", "Riverside", "Franklin", "Greenville", "Fairview", "Madison", "Clinton",
    "Georgetown", "Salem", "Arlington", "Ashland", "Dover", "Oxford", "Milton", "Newport",
)
