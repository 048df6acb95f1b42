"""NFKC normalisation with offsets back to the original string."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from sealtune.data.pii.normalize import needs_normalization, normalize


def test_ascii_and_plain_chinese_are_untouched() -> None:
    for text in ("plain ascii 123", "您好，请问：订单（已发货）！？", ""):
        norm = normalize(text)
        assert norm.text == text and norm.starts is None


def test_full_width_folds_one_to_one() -> None:
    norm = normalize("电话１３８　００１３ ８０００")
    assert norm.text == "电话138 0013 8000"
    assert norm.starts is None  # same length: offsets need no map
    assert norm.to_original(2, 15) == (2, 15)


def test_expanding_characters_map_back_to_whole_original_chars() -> None:
    text = "面积㎡电话１３８"
    norm = normalize(text)
    assert norm.text == "面积m2电话138"
    start = norm.text.index("138")
    assert norm.to_original(start, start + 3) == (5, 8)
    assert text[5:8] == "１３８"
    # a span ending inside an expansion still covers the whole original char
    assert norm.to_original(2, 3) == (2, 3)


def test_astral_lookalikes_are_normalised() -> None:
    bold = "".join(chr(0x1D7CF + int(d) - 1) if d != "0" else chr(0x1D7CE) for d in "138")
    assert needs_normalization(bold)
    assert normalize(bold).text == "138"


@given(st.text(alphabet=st.sampled_from(list("ab1２３４５　，：㎡ﬁ①𝟏汉字 -@．")), max_size=40))
def test_spans_map_back_inside_the_original(text: str) -> None:
    norm = normalize(text)
    assert unicodedata.normalize("NFKC", norm.text) == unicodedata.normalize("NFKC", text)
    for start in range(len(norm.text)):
        for end in range(start + 1, len(norm.text) + 1):
            s, e = norm.to_original(start, end)
            assert 0 <= s < e <= len(text)
