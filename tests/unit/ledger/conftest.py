"""Shared fixtures for the audit ledger unit tests.

The suite runs with ``--import-mode=importlib``, so test modules cannot import
helpers from this directory; everything shared is a fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtune.core.note import NoteSigner
from sealtune.ledger import Ledger

ORIGIN = "sealtune.test/ws-1/audit"


class FakeClock:
    """A clock that advances one second per reading (times stay distinct)."""

    def __init__(self, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def origin() -> str:
    return ORIGIN


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner(Ed25519PrivateKey.generate(), "sealtune.test/ledger-key")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """A ledger location on each store adapter: a SQLite file, then a PostgreSQL schema.

    A test module that overrides ``db`` with this runs every test over both backends.
    """
    if request.param == "sqlite":
        return tmp_path / "ledger.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def make_ledger(
    db: Path, signer: NoteSigner, clock: FakeClock
) -> Iterator[Callable[..., Ledger]]:
    opened: list[Ledger] = []

    def make(**kwargs: Any) -> Ledger:
        options: dict[str, Any] = {"signer": signer, "origin": ORIGIN, "clock": clock}
        options.update(kwargs)
        ledger = Ledger.open(options.pop("path", db), **options)
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


@pytest.fixture
def fill() -> Callable[[Ledger, int], None]:
    """Append n simple events, one transaction each."""

    def fill_(ledger: Ledger, n: int) -> None:
        for i in range(n):
            ledger.append(actor="alice", action="key.use", resource=f"key/{i}", details={"i": i})

    return fill_
