"""PERSON and ADDRESS in the pattern tier: cues, titles, and the honest limits."""

from __future__ import annotations

import pytest

from sealtune.data.pii import analyze


def found(text: str, etype: str) -> list[str]:
    return [text[e.start:e.end] for e in analyze(text) if e.type == etype]


@pytest.mark.parametrize(("text", "expected"), [
    ("客户张伟说快递没到", ["张伟"]),
    ("联系人：欧阳小明，电话", ["欧阳小明"]),
    ("请转告王小明先生，", ["王小明"]),
    ("感谢孙德经理的帮助", ["孙德"]),
    ("和张伟先生约好了", ["张伟"]),
    ("李娜的手机号是多少", ["李娜"]),
    ("我是王经理", []),                      # a surname and a title is not a full name
    ("客户服务中心", []),
    ("My name is John Smith, thanks", ["John Smith"]),
    ("Dear Olivia, your refund", ["Olivia"]),
    ("Dear Customer, your refund", []),
    ("Mr. Kowalczyk called", ["Kowalczyk"]),
    ("Forwarded to Emily Carter yesterday", ["Emily Carter"]),
    ("Zhang Wei will call back", ["Zhang Wei"]),
    ("客户Mary Jones要求退款", ["Mary Jones"]),
])
def test_person(text: str, expected: list[str]) -> None:
    assert found(text, "PERSON") == expected


def test_person_without_cue_is_a_known_limit_of_the_pattern_tier() -> None:
    # Documented: no cue, title, known name or surname ending -> the pattern tier misses it.
    assert found("张伟明天到", "PERSON") == []
    assert found("Forwarded to Brandvold", "PERSON") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("我住在北京市海淀区中关村大街1号海龙大厦5层501室，谢谢",
     ["北京市海淀区中关村大街1号海龙大厦5层501室"]),
    ("地址：浙江省杭州市西湖区文三路88号3号楼1202室。",
     ["浙江省杭州市西湖区文三路88号3号楼1202室"]),
    ("寄到绵阳市涪城区临园路15号", ["绵阳市涪城区临园路15号"]),
    ("送到阳光花园3栋2单元501，", ["阳光花园3栋2单元501"]),
    ("Ship to 1600 Amphitheatre Parkway, Mountain View, CA 94043.",
     ["1600 Amphitheatre Parkway, Mountain View, CA 94043"]),
    ("office: 221B Baker Street, Apt 4, London", ["221B Baker Street, Apt 4, London"]),
    ("我知道3号到", []),
    ("12月3号见", []),
    ("We have 3 Main concerns", []),
])
def test_address(text: str, expected: list[str]) -> None:
    assert found(text, "ADDRESS") == expected


def test_address_without_door_number_is_a_known_limit() -> None:
    assert found("我住在北京市海淀区中关村", "ADDRESS") == []
