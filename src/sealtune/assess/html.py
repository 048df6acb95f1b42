"""``report.html``: one self-contained page people read, drawn from a validated report.

The page holds the verdict, the model and policy digests, one row per
probe (verdict, reason, the figures with their intervals and thresholds),
the plots as inline SVG (:mod:`sealtune.assess.plots`: verdicts, the
exposure histogram, the ROC curves, refusal rates) and each probe's items
(ids and numbers). It is rendered from the report document only, after
:func:`sealtune.assess.report.validate`, so it can show nothing the report
does not hold.

No JavaScript, nothing fetched: a Content-Security-Policy ``meta`` element
(``default-src 'none'``, styles inline only, images from ``data:`` only) so a
browser would refuse a script or a request even if one were injected;
every value is HTML-escaped. Inline styles need ``'unsafe-inline'`` for
``style-src``: SVG drawn by matplotlib styles its elements with ``style``
attributes; with no script allowed at all, styles cannot run code.

What this protects against: a report page that leaks by loading something
(a tracking image, a font, a script) or runs code. What it does not: a
reader who trusts the page over the signed ``report.json`` (the page is not
signed; verify the JSON).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from sealtune.assess import plots
from sealtune.assess.report import validate

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")
MAX_ITEMS_SHOWN = 200
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #212121; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
td, th { border: 1px solid #cfd8dc; padding: 0.25em 0.6em; text-align: left; }
.pass { color: #2e7d32; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
.skipped, .off { color: #757575; } code { font-size: 0.85em; }
.note { color: #546e7a; font-size: 0.9em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else _e(value)


def render_html(doc: Mapping[str, Any]) -> str:
    """The page for a report document (validated here first)."""
    validate(doc)
    probes = list(doc["probes"])
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>sealtune release gate: {_e(doc['verdict'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Release gate: <span class=\"{_e(doc['verdict'])}\">"
        f"{_e(doc['verdict']).upper()}</span></h1>",
        _summary(doc),
        plots.verdicts([p["name"] for p in probes], [p["verdict"] for p in probes]),
        _overview(probes),
        *(_probe_section(p) for p in probes),
        '<p class="note">A pass is a lower bound on what these attacks achieved, not a '
        "proof of privacy or safety: see docs/assess.md. The signed record is report.json "
        "(and its DSSE envelope), not this page.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _summary(doc: Mapping[str, Any]) -> str:
    model, base, policy = doc["model"], doc["base"], doc["policy"]
    rows = [("report", doc["id"]), ("created", doc["created"]),
            ("model", f"{model['name'] or '(directory)'} ({model['source']})"),
            ("model digest", model["digest"]), ("adapter", model["adapter"]),
            ("training job", model["job"] or "—"),
            ("base", "—" if base is None else
             f"{base['name'] or '(directory)'} {'pinned' if base['pinned'] else 'UNPINNED'}"),
            ("base digest", "—" if base is None else base["digest"]),
            ("policy", f"{policy['source']} {policy['digest']}"),
            ("failed", ", ".join(doc["failed"]) or "none"), ("sealtune", doc["sealtune"])]
    return _table(("", ""), [(_e(k), f"<code>{_e(v)}</code>") for k, v in rows])


def _overview(probes: Sequence[Mapping[str, Any]]) -> str:
    rows = [(f'<a href="#{_e(p["name"])}">{_e(p["name"])}</a>',
             f'<span class="{_e(p["verdict"])}">{_e(p["verdict"])}</span>',
             "yes" if p["required"] else "no", _e(p["reason"])) for p in probes]
    return "<h2>Probes</h2>" + _table(("probe", "verdict", "required", "why"), rows)


def _probe_section(probe: Mapping[str, Any]) -> str:
    name = probe["name"]
    out = [f'<h2 id="{_e(name)}">{_e(name)}: <span class="{_e(probe["verdict"])}">'
           f'{_e(probe["verdict"])}</span></h2>', f"<p>{_e(probe['reason'])}</p>"]
    intervals = probe["intervals"]
    metrics = [(_e(k), _num(v) + (f" [{_num(intervals[k][0])}, {_num(intervals[k][1])}]"
                              if k in intervals else "")) for k, v in probe["metrics"].items()]
    if metrics:
        out.append(_table(("figure", "value [95% interval]"), metrics))
    if probe["thresholds"]:
        out.append(_table(("threshold", "value"),
                          [(_e(k), _num(v)) for k, v in probe["thresholds"].items()]))
    plot = _plot(name, probe)
    if plot:
        out.append(plot)
    out.append(_items(probe["items"]))
    return "\n".join(out)


def _plot(name: str, probe: Mapping[str, Any]) -> str | None:
    series = probe["series"]
    if "exposure_included" in series and "exposure_excluded" in series:
        cap = probe["metrics"].get("exposure_cap")
        return plots.exposure_histogram(series["exposure_included"],
                                        series["exposure_excluded"],
                                        cap=cap if isinstance(cap, float) else None)
    curves = {key[: -len("_fpr")]: (series[key], series[key[:-4] + "_tpr"])
              for key in series if key.endswith("_fpr") and key[:-4] + "_tpr" in series}
    if curves:
        return plots.roc(curves)
    if "rate_model" in series and "rate_base" in series:
        # the per-category summary rows (they carry "prompts") label the bars
        labels = [str(i.get("category")) for i in probe["items"] if "prompts" in i]
        labels = labels if len(labels) == len(series["rate_model"]) else [
            str(i) for i in range(len(series["rate_model"]))]
        return plots.rates(labels, series["rate_model"], series["rate_base"],
                           ylabel="refusal rate")
    return None


def _items(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return ""
    columns = list(dict.fromkeys(k for item in items for k in item))
    shown = items[:MAX_ITEMS_SHOWN]
    rows = [tuple(_num(item.get(c)) for c in columns) for item in shown]
    note = (f'<p class="note">{len(items) - len(shown)} more in report.json</p>'
            if len(items) > len(shown) else "")
    return (f"<details><summary>{len(items)} item(s)</summary>"
            + _table(tuple(columns), rows) + note + "</details>")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of cells that are already HTML (every caller escapes its values)."""
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"
