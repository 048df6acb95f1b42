"""The report's plots as inline SVG strings (matplotlib, no pyplot, no fonts, no URLs).

Each function draws numbers into a :class:`matplotlib.figure.Figure` (the
object API: no global pyplot state, no GUI backend; SVG is written by
matplotlib's own SVG backend) and returns the ``<svg>`` element alone:
the XML declaration, the DOCTYPE (which names a DTD URL), the metadata
block and the namespace declarations are removed, glyphs are paths
(``svg.fonttype = path``: no font is referenced), element ids are salted
with a fixed string (the same report draws the same bytes).

What this protects against: a report page that fetches anything (fonts,
DTDs, scripts) or differs between two renderings of one report. What it
does not: the plots show only the numbers they are given; read them with
the probe's caveats (``docs/assess.md``).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

_HEAD = re.compile(r"^.*?(?=<svg)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
#: Namespace declarations: names, not fetched, but an HTML page needs none (HTML5 parses
#: inline SVG and xlink:href natively), and a page with no URL at all is simpler to check.
_XMLNS = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')
_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "skipped": "#9e9e9e", "off": "#bdbdbd"}


def _svg(fig: object) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "sealtune-gate",
                                "font.family": "DejaVu Sans"}):
        fig.savefig(buf, format="svg", bbox_inches="tight",  # type: ignore[attr-defined]
                    metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = _METADATA.sub("", _HEAD.sub("", buf.getvalue(), count=1), count=1)
    head, _, rest = text.partition(">")
    return (_XMLNS.sub("", head) + ">" + rest).strip()


def _figure(width: float = 5.2, height: float = 3.0) -> tuple[object, object]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    return fig, fig.subplots()


def exposure_histogram(included: Sequence[float], excluded: Sequence[float], *,
                       cap: float | None) -> str:
    """Histogram of canary exposures (bits), included against left-out."""
    fig, ax = _figure()
    top = cap if cap else max([*included, *excluded, 1.0])
    bins = [top * i / 20 for i in range(21)]
    ax.hist([list(excluded), list(included)], bins=bins,  # type: ignore[attr-defined]
            label=[f"left out ({len(excluded)})", f"included ({len(included)})"],
            color=["#90a4ae", "#c62828"])
    ax.set_xlabel("exposure (bits)")  # type: ignore[attr-defined]
    ax.set_ylabel("canaries")  # type: ignore[attr-defined]
    ax.legend(frameon=False)  # type: ignore[attr-defined]
    return _svg(fig)


def roc(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> str:
    """ROC curves (log-log, as membership inference is judged at low FPR), with chance."""
    fig, ax = _figure(4.2, 4.0)
    floor = 1e-3
    ax.plot([floor, 1], [floor, 1], linestyle=":", color="#757575",  # type: ignore[attr-defined]
            label="chance")
    for label, (fpr, tpr) in curves.items():
        ax.step([max(x, floor) for x in fpr], [max(y, floor) for y in tpr],  # type: ignore[attr-defined]
                where="post", label=label)
    ax.set_xscale("log")  # type: ignore[attr-defined]
    ax.set_yscale("log")  # type: ignore[attr-defined]
    ax.set_xlabel("false positive rate")  # type: ignore[attr-defined]
    ax.set_ylabel("true positive rate")  # type: ignore[attr-defined]
    ax.legend(frameon=False, loc="lower right")  # type: ignore[attr-defined]
    return _svg(fig)


def rates(labels: Sequence[str], model: Sequence[float], base: Sequence[float], *,
          ylabel: str) -> str:
    """Paired bars: a rate per category for the model and the base model."""
    fig, ax = _figure(max(4.0, 0.9 * len(labels) + 2), 3.0)
    xs = list(range(len(labels)))
    ax.bar([x - 0.2 for x in xs], base, width=0.4, label="base",  # type: ignore[attr-defined]
           color="#90a4ae")
    ax.bar([x + 0.2 for x in xs], model, width=0.4, label="model",  # type: ignore[attr-defined]
           color="#1565c0")
    ax.set_xticks(xs, labels, rotation=20, ha="right")  # type: ignore[attr-defined]
    ax.set_ylim(0, 1)  # type: ignore[attr-defined]
    ax.set_ylabel(ylabel)  # type: ignore[attr-defined]
    ax.legend(frameon=False)  # type: ignore[attr-defined]
    return _svg(fig)


def verdicts(names: Sequence[str], outcomes: Sequence[str]) -> str:
    """One coloured cell per probe: pass, fail, skipped, off."""
    fig, ax = _figure(max(4.0, 1.1 * len(names)), 1.1)
    for i, (name, verdict) in enumerate(zip(names, outcomes, strict=True)):
        ax.add_patch(_rect(i, _COLOURS.get(verdict, "#000000")))  # type: ignore[attr-defined]
        ax.text(i + 0.5, 0.62, name.replace("_", "\n"), ha="center",  # type: ignore[attr-defined]
                va="center", fontsize=7, color="white")
        ax.text(i + 0.5, 0.2, verdict, ha="center", va="center",  # type: ignore[attr-defined]
                fontsize=8, color="white", fontweight="bold")
    ax.set_xlim(0, len(names))  # type: ignore[attr-defined]
    ax.set_ylim(0, 1)  # type: ignore[attr-defined]
    ax.set_axis_off()  # type: ignore[attr-defined]
    return _svg(fig)


def _rect(i: int, colour: str) -> object:
    from matplotlib.patches import Rectangle

    return Rectangle((i + 0.03, 0.0), 0.94, 1.0, color=colour)
