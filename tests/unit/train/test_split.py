"""The validation split: deterministic, disjoint, the right size, and a function of each
record alone (not of its position or id)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.data.records import Message, Record
from sealtune.errors import UsageError
from sealtune.train.split import split_records, val_count


def _records(n: int, *, start: int = 0, tag: str = "") -> list[Record]:
    return [Record(id=str(i), line=i + 1, messages=[
        Message("user", f"question {i}{tag}"), Message("assistant", f"answer {i}{tag}")])
        for i in range(start, start + n)]


def _texts(records: list[Record]) -> list[str]:
    return [r.messages[0].content for r in records]


@given(n=st.integers(2, 120), fraction=st.floats(0.01, 0.5), seed=st.integers(0, 2**32))
@settings(max_examples=60, deadline=None)
def test_a_fraction_holds_out_ceil_of_it_disjointly_in_order(n: int, fraction: float,
                                                             seed: int) -> None:
    records = _records(n)
    k = math.ceil(fraction * n)
    if k >= n:
        with pytest.raises(UsageError):
            split_records(records, val_size=fraction, seed=seed)
        return
    train, held = split_records(records, val_size=fraction, seed=seed)
    assert len(held) == k and len(train) == n - k
    assert not {id(r) for r in train} & {id(r) for r in held}
    assert sorted(_texts(train) + _texts(held)) == sorted(_texts(records))
    order = {id(r): i for i, r in enumerate(records)}
    assert [order[id(r)] for r in train] == sorted(order[id(r)] for r in train)
    assert [order[id(r)] for r in held] == sorted(order[id(r)] for r in held)
    assert split_records(records, val_size=fraction, seed=seed) == (train, held)


def test_a_count_holds_out_exactly_that_many_and_the_seed_chooses_which() -> None:
    records = _records(50)
    a = split_records(records, val_size=10, seed=0)
    assert len(a[1]) == 10 and len(a[0]) == 40
    assert split_records(records, val_size=10, seed=0) == a
    assert _texts(split_records(records, val_size=10, seed=1)[1]) != _texts(a[1])
    assert split_records(records, val_size=0, seed=0) == (records, [])


def test_the_split_depends_on_each_record_not_on_its_position_or_id() -> None:
    records = _records(40)
    _, held = split_records(records, val_size=8, seed=3)
    # Renumbered ids and lines, reversed order: the same conversations are held out.
    moved = [Record(id=f"x{i}", line=i + 1, messages=r.messages)
             for i, r in enumerate(reversed(records))]
    assert sorted(_texts(split_records(moved, val_size=8, seed=3)[1])) == sorted(_texts(held))
    # One record more, anywhere: at most one held-out record changes.
    for at in (0, 20, 40):
        grown = records[:at] + _records(1, start=999, tag=" new") + records[at:]
        _, held2 = split_records(grown, val_size=8, seed=3)
        assert len(set(_texts(held)) - set(_texts(held2))) <= 1
    # One record fewer: the training part loses at most one record it had.
    train, held = split_records(records, val_size=8, seed=3)
    for gone in range(0, 40, 7):
        shrunk = records[:gone] + records[gone + 1:]
        train3, _ = split_records(shrunk, val_size=8, seed=3)
        assert len(set(_texts(train3)) - set(_texts(train))) <= 1


def test_a_split_that_leaves_nothing_to_train_on_is_refused() -> None:
    with pytest.raises(UsageError, match=r"val_size \(--val-size\) holds out 4 of the "
                                         r"dataset's 4 records"):
        split_records(_records(4), val_size=4, seed=0)
    with pytest.raises(UsageError):
        split_records(_records(1), val_size=0.5, seed=0)
    assert val_count(0.5, 3) == 2 and val_count(1, 2) == 1 and val_count(0, 0) == 0
