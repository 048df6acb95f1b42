"""Exact and near duplicates, and the MinHash engine they stand on."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from datasketch import MinHash

from sealtune.data.records import Message, Record
from sealtune.data.screen import CheckConfig, _text, screen

DUP_CHECKS = {"exact_duplicate": CheckConfig(), "near_duplicate": CheckConfig()}


def rec(rid: str, prompt: str, response: str) -> Record:
    return Record(rid, 1, [Message("user", prompt), Message("assistant", response)])


def by_check(records: list[Record]) -> dict[str, dict[str, tuple[str, ...]]]:
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for f in screen(records, config=DUP_CHECKS).findings:
        out.setdefault(f.check, {})[f.record_id] = f.related_ids
    return out


def test_signatures_match_datasketch_minhash() -> None:
    texts = ["您好，订单4821044337怎么开发票", "", "ab", "When will order 42 ship? " * 5,
             "x" * 9000]
    sigs = _text.signatures(texts, num_perm=128, n=4)
    hashes, offsets = _text.shingle_hashes(texts, 4)
    for i in range(len(texts)):
        ref = MinHash(num_perm=128, seed=_text.MINHASH_SEED, hashfunc=int)
        ref.update_batch([int(h) for h in hashes[offsets[i]:offsets[i + 1]]])
        assert np.array_equal(ref.hashvalues, sigs[i])


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (32, 1), (7, 99)])
def test_permutations_are_datasketch_s_own(num_perm: int, seed: int) -> None:
    a, b = _text.permutations(num_perm, seed)
    ref = MinHash(num_perm=num_perm, seed=seed).permutations
    assert a.dtype == b.dtype == np.uint32
    assert np.array_equal(a, ref[0]) and np.array_equal(b, ref[1])


def test_screening_starts_without_datasketch_or_scipy() -> None:
    """Every screening process (each data worker too) would pay about a second for them."""
    code = ("import sys, sealtune.data.screen as s, sealtune.data.parallel, "
            "sealtune.data.parallel_redaction; s.screen([]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'datasketch')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_exact_duplicates_after_normalisation_keep_the_first() -> None:
    found = by_check([
        rec("a", "我的订单ABC123什么时候发货？", "预计三天内发货。"),
        # case, surrounding spaces, half-width question mark:
        rec("b", " 我的订单abc123什么时候发货?\n", "预计三天内发货。 "),
        rec("c", "我的订单ＡＢＣ１２３什么时候发货？", "预计三天内发货。"),  # full-width
        rec("d", "我的订单ABC123什么时候发货？", "已经发货了。"),
    ])
    assert found["exact_duplicate"] == {"b": ("a",), "c": ("a",)}
    assert "near_duplicate" not in found  # exact copies are not reported twice


def test_near_duplicates_in_unspaced_chinese_form_one_cluster() -> None:
    base = ("你好，我上周买的扫地机器人一直显示待发货，订单号4551852333，"
            "麻烦帮我查一下什么时候能发出")
    answer = "您好，仓库正在备货，扫地机器人将在3月5日前发出，发货后会短信通知您。"
    records = [
        rec("orig", base, answer),
        rec("copy1", base.replace("麻烦", "请"), answer),
        rec("copy2", base + "！", answer + "祝您生活愉快"),
        rec("other", "我想把收货地址改成杭州的，订单还没发货能改吗", "未发货的订单可以修改地址。"),
    ]
    near = by_check(records).get("near_duplicate", {})
    assert set(near) == {"copy1", "copy2"}
    assert all(related[0] == "orig" for related in near.values())


def test_planted_near_duplicates_are_found(corpus_factory) -> None:
    corpus = corpus_factory(3000, seed=3, n_poison=0, n_near=60, n_exact=0, n_conflict=0,
                            n_outlier=0)
    report = screen(corpus.records, config=DUP_CHECKS)
    pairs = {frozenset((f.record_id, f.related_ids[0])) for f in report.findings}
    clusters: dict[str, set[str]] = {}
    for f in report.findings:  # a copy found through a third record is found too
        members = {f.record_id, *f.related_ids}
        for m in members:
            clusters.setdefault(m, set()).update(members)
    found = [p for p in corpus.near_pairs if p in pairs or set(p) <= clusters.get(min(p), set())]
    assert len(found) >= 0.9 * len(corpus.near_pairs)


def test_distinct_records_are_not_duplicates() -> None:
    records = [rec(str(i), f"问题{i}：订单{i * 7919}的发票怎么开，第{i}次咨询", f"回答{i * 31}")
               for i in range(50)]
    assert by_check(records) == {}


_SYSTEM = ("You are the support assistant of Northwind. Answer politely and briefly and never "
           "ask for a password.")
_PRODUCTS = ["router", "air purifier", "rice cooker", "shaver", "kettle", "humidifier",
             "e-reader", "robot vacuum", "water filter", "coffee maker", "dash cam", "toaster",
             "projector", "smart watch", "hair dryer", "desk lamp", "power bank", "scale",
             "air fryer", "dishwasher", "stick vacuum", "kids watch", "earbuds", "blender",
             "game controller"]


def templated(product: str, code: int, rid: str) -> Record:
    return Record(rid, 1, [
        Message("system", _SYSTEM),
        Message("user", f"My {product} shows error E{code}. What should I do?"),
        Message("assistant", f"Error E{code} on the {product} usually means a sensor fault; "
                             f"unplug it, restart it, and if it still shows E{code}, bring "
                             f"the receipt to a service point.")])


def test_two_edit_copy_among_template_mates_is_still_found() -> None:
    """400 records of one template (product x error code, 4 products per code) and a copy of
    one with two small edits: only the copy is reported, naming its source."""
    records = [templated(_PRODUCTS[i % 25], i // 4, f"t{i}") for i in range(400)]
    src = records[123]
    prompt = src.messages[1].content
    copy = Record("copy", 1, [src.messages[0], Message("user", "  " + prompt[:9] + prompt[10:]),
                              src.messages[2]])
    near = by_check([*records, copy]).get("near_duplicate", {})
    assert set(near) == {"copy"} and near["copy"][0] == "t123"


def test_chats_differing_only_in_an_amount_are_kept() -> None:
    records = [rec(str(a), f"My card ending 4821 was charged {a} dollars and it was not me",
                   f"I have logged a dispute for {a} dollars on the card ending 4821; the "
                   "amount is on hold while we investigate.") for a in (129, 1299, 12, 1290)]
    assert by_check(records) == {}


def test_a_number_formatted_or_split_by_an_edit_is_the_same_number() -> None:
    """``1,299``, ``1 299`` and ``1299`` have the same digits: a copy that formats (or an
    edit that splits) a number is still a copy (order of the digits counts)."""
    prompt = "I was charged {} dollars twice for order 88172634, please refund one"
    answer = "The duplicate charge of {} dollars on order 88172634 will be refunded in 5 days."
    records = [rec("orig", prompt.format("1299"), answer.format("1299")),
               rec("comma", prompt.format("1,299") + "!", answer.format("1,299")),
               rec("split", prompt.format("12 99"), answer.format("1299") + " "),
               rec("other", prompt.format("9912"), answer.format("9912"))]
    near = by_check(records).get("near_duplicate", {})
    assert set(near) == {"comma", "split"}
    assert all(related[0] == "orig" for related in near.values())
