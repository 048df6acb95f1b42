"""Exports: JSONL lines are the signed leaves; CSV is fixed and spreadsheet-safe."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest

from sealtune.errors import UsageError
from sealtune.ledger import CSV_HEADER, Ledger

MakeLedger = Callable[..., Ledger]


@pytest.fixture
def db(backend_db: Path | str) -> Path | str:
    """Every test here runs over SQLite and PostgreSQL (the LedgerStore conformance)."""
    return backend_db


class Clock(Protocol):
    """The conftest FakeClock, as these tests use it."""

    now: datetime

    def advance(self, delta: timedelta) -> None: ...


def test_jsonl_lines_rehash_to_the_chain(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.append(actor="张三", action="user.login", resource="console", details={"ip": "10.0.0.1"})
    ledger.append(actor="bob", action="file.seal", resource="ds/1", outcome="failure")
    out = io.StringIO()
    assert ledger.export("jsonl", out) == 2
    lines = out.getvalue().splitlines()
    prev = "0" * 64
    for line, entry in zip(lines, ledger.entries(), strict=True):
        digest = hashlib.sha256(b"\x00" + line.encode("utf-8")).hexdigest()
        assert digest == entry.leaf_hash.hex()
        assert json.loads(line)["prev"] == prev
        prev = digest
    assert "张三" in lines[0]


def test_csv_has_fixed_header_and_escapes_formulas(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.append(actor="=HYPERLINK(\"http://x\")", action="user.login", resource="-2+3",
                  details={"k": "=1"})
    ledger.append(actor="alice", action="key.use", resource="@cmd")
    out = io.StringIO(newline="")
    assert ledger.export("csv", out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_HEADER
    assert rows[1][3].startswith("'=") and rows[1][5] == "'-2+3"
    assert json.loads(rows[1][7]) == {"k": "=1"}
    assert rows[2][5] == "'@cmd" and rows[2][0] == "2"


def test_since_and_bad_format(make_ledger: MakeLedger, clock: Clock) -> None:
    ledger = make_ledger()
    ledger.append(actor="a", action="key.use", resource="old")
    clock.advance(timedelta(days=2))
    cut = clock.now
    ledger.append(actor="a", action="key.use", resource="new")
    out = io.StringIO()
    assert ledger.export("jsonl", out, since=cut) == 1
    assert '"resource":"new"' in out.getvalue()
    with pytest.raises(UsageError):
        ledger.export("xml", io.StringIO())  # type: ignore[arg-type]
