"""report.json's schema refuses text; report.html is self-contained, script-free, escaped."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from sealtune.assess.html import CSP, render_html
from sealtune.assess.probes import ProbeResult
from sealtune.assess.report import load, render
from sealtune.errors import IntegrityError

DIGEST = "sha256:" + "ab" * 32


def _doc(**probe: Any) -> dict[str, Any]:
    canary = ProbeResult(
        name="canary_exposure", verdict="fail", reason="included canaries are exposed",
        metrics={"gap": 9.5, "exposure_cap": 11.0, "included": 12},
        intervals={"gap": (8.0, 10.5)}, thresholds={"alpha": 0.01},
        series={"exposure_included": (10.0, 11.0), "exposure_excluded": (1.0, 2.0)},
        items=({"id": "canary-000", "included": True, "exposure": 10.0},), required=True)
    roc = ProbeResult(name="membership", verdict="pass", reason="auc within the limit",
                      series={"loss_fpr": (0.0, 0.5, 1.0), "loss_tpr": (0.0, 0.5, 1.0)})
    return {"format": "sealtune.gate-report/v1", "id": "assess-1", "created": "2026-01-01",
            "sealtune": "0.1.0", "verdict": "fail", "failed": ["canary_exposure"],
            "model": {"name": "m1", "source": "workspace", "digest": DIGEST, "adapter": True,
                      "weights_sha256": None, "job": "job-1"},
            "base": {"name": "tiny", "digest": DIGEST, "pinned": True, "licence": "MIT"},
            "policy": {"source": "gate.yaml", "digest": DIGEST},
            "probes": [canary.to_dict() | probe, roc.to_dict()]}


def test_a_report_round_trips_and_renders_identically() -> None:
    raw = render(_doc())
    assert load(raw) == json.loads(raw)
    assert render(load(raw)) == raw
    assert render_html(_doc()) == render_html(_doc())


@pytest.mark.parametrize("mutate", [
    lambda d: d["probes"][0]["metrics"].__setitem__("text", "the PIN is 1 2 3"),
    lambda d: d["probes"][0]["items"][0].__setitem__("id", "my secret sentence"),
    lambda d: d["probes"][0].__setitem__("extra", 1),
    lambda d: d["probes"][0].__setitem__("reason", "Capitalised free text: 1 2 3 4\nmore"),
    lambda d: d["model"].__setitem__("digest", "sha256:xyz"),
    lambda d: d.__setitem__("verdict", "pass"),
    lambda d: d["probes"][0]["series"].__setitem__("exposure_included", ["10"]),
    lambda d: d["probes"][0]["intervals"].__setitem__("gap", [1.0]),
    lambda d: d.__setitem__("format", "sealtune.gate-report/v2"),
    lambda d: d["model"].__setitem__("note", "x"),
])
def test_the_schema_refuses_text_and_anything_unknown(mutate: Any) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ValueError):
        render(doc)
    with pytest.raises(IntegrityError):
        load(json.dumps(doc).encode())


def test_nan_is_not_json_and_is_refused() -> None:
    raw = render(_doc()).replace(b"9.5", b"NaN")
    with pytest.raises(IntegrityError):
        load(raw)


def test_non_finite_figures_become_null() -> None:
    result = ProbeResult(name="x", verdict="pass", reason="ok",
                         metrics={"a": float("inf")}, intervals={"a": (float("nan"), 1.0)},
                         series={"s": (1.0, float("nan"))})
    out = result.to_dict()
    assert out["metrics"]["a"] is None and out["intervals"]["a"] == [None, 1.0]
    assert out["series"]["s"] == [1.0]


def test_the_page_is_self_contained_with_a_strict_csp_and_no_script() -> None:
    page = render_html(_doc())
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'.replace(
        "'", "&#x27;") in page
    assert "default-src &#x27;none&#x27;" in page
    lowered = page.lower()
    assert "<script" not in lowered and "javascript:" not in lowered
    assert not re.search(r"https?://", page)
    assert not re.search(r"\b(src|href)=\"(?!#)", page)
    assert page.count("<svg") == 3  # verdicts, exposure histogram, ROC
    assert "canary-000" in page and DIGEST in page


def test_the_page_shows_nothing_the_report_does_not_hold() -> None:
    doc = _doc()
    doc["probes"][0]["items"][0]["id"] = "<b>x</b>"  # not a token: refused before rendering
    with pytest.raises(ValueError):
        render_html(copy.deepcopy(doc))
