"""What the run timeline shows of a ledger entry's resource: never a host path."""

from __future__ import annotations

from typing import Any

from sealtune.api.views import _timeline_event
from sealtune.ledger.entry import Entry

DIGEST = "sha256:" + "ab" * 32


def _entry(action: str, resource: str, details: dict[str, Any]) -> Entry:
    return Entry(seq=7, time="2026-01-01T00:00:00.000000Z", actor="alice", action=action,
                 resource=resource, outcome="success", details=details, segment=1,
                 prev="0" * 64, leaf=b"{}", leaf_hash=b"\0" * 32)


def test_an_unpinned_base_shows_as_such_by_digest_even_from_an_older_ledger() -> None:
    for resource in (f"base/{DIGEST}", "/home/ana/models/tiny-base"):
        shown = _timeline_event(_entry("base.unpinned", resource, {"digest": DIGEST}))
        assert shown["resource"] == f"unpinned base {DIGEST}"


def test_other_host_paths_show_by_their_last_component_only() -> None:
    shown = _timeline_event(_entry("sandbox.created", "/srv/ws/pipelines/x/out.sealed", {}))
    assert shown["resource"] == "…/out.sealed"
    assert _timeline_event(_entry("base.added", "base/tiny", {}))["resource"] == "base/tiny"
    assert _timeline_event(_entry("pipeline.step_started", "pipeline/p/train", {"run": "r"})
                           )["resource"] == "pipeline/p/train"
