"""Tables that never cut the identifiers people copy, at any terminal width.

rich fits a table that is wider than the terminal by shrinking every column
and cutting long words with an ellipsis, so at 80 columns a job id or an
API key id came out as ``job-20261207-12…``, which cannot be copied. Here
columns marked ``whole`` (identifiers, and short words like a state) get
the width of their longest value and never wrap; the other columns fold
(wrap, never losing a character); and columns marked ``drop`` are left
out, in their stated order, until the whole columns fit. Where the columns
that cannot be dropped do not fit in a box, the table goes borderless (two
spaces between columns); where even that does not fit, each row prints as
a block of ``header  value`` lines, every value whole. Every value is
always in ``--json``.

Protects against: identifiers cut, ellipsised or split across lines at any
width; cell text read as rich markup (cells are plain text, so a value
holding ``[x]`` prints as is). Does not protect against: a terminal
narrower than one identifier, which shows that one line wrapped (the
output still holds it whole). This module lays out; it knows nothing about
what the tables hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

Cell = str | Text
_FLEX_MIN = 10  # a folding column narrower than this is unreadable (a date is 10)


@dataclass(frozen=True)
class Col:
    """One column.

    Attributes:
        header: the column's title.
        whole: never cut or wrap a value (identifiers people copy, short words).
        drop: at narrow widths columns go in this order (1 first); 0 keeps it.
        justify: ``left`` or ``right`` (numbers).
        min_width: a folding column narrower than this is dropped (or the table
            laid out otherwise) rather than shown.
    """

    header: str
    whole: bool = False
    drop: int = 0
    justify: Literal["left", "right"] = "left"
    min_width: int = _FLEX_MIN


def when(iso: str | None) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` UTC: it wraps at the space, not mid-token."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def _need(columns: Sequence[Col], cells: list[list[Text]], keep: list[int], *,
          boxed: bool) -> int:
    """The narrowest width at which ``keep`` lays out with whole columns intact."""
    total = 0
    for i in keep:
        longest = max([cell_len(columns[i].header)] + [r[i].cell_len for r in cells])
        if columns[i].whole:
            total += longest
        else:
            words = max(cell_len(w) for w in columns[i].header.split())
            total += min(longest, max(columns[i].min_width, words))
    return total + (3 * len(keep) + 1 if boxed else 2 * (len(keep) - 1))


def _layouts(columns: Sequence[Col]) -> list[list[int]]:
    """Column sets from all of them down to the undroppable ones."""
    keep = list(range(len(columns)))
    out = [list(keep)]
    for i in sorted((i for i, c in enumerate(columns) if c.drop),
                    key=lambda i: (columns[i].drop, -i)):
        keep.remove(i)
        out.append(list(keep))
    return out


def _table(columns: Sequence[Col], cells: list[list[Text]], keep: list[int], *,
           boxed: bool, title: str | None, styles: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.HEAVY_HEAD if boxed else None,
                  pad_edge=boxed, show_edge=boxed)
    for i in keep:
        col = columns[i]
        if col.whole:
            width = max([cell_len(col.header)] + [r[i].cell_len for r in cells])
            table.add_column(col.header, justify=col.justify, width=width, no_wrap=True,
                             overflow="ignore")
        else:
            table.add_column(col.header, justify=col.justify, overflow="fold")
    for row, style in zip(cells, styles, strict=True):
        table.add_row(*(row[i] for i in keep), style=style)
    return table


def print_table(console: Console, columns: Sequence[Col], rows: Sequence[Sequence[Cell]], *,
                title: str | None = None, boxed: bool = True,
                row_styles: Sequence[str] | None = None) -> None:
    """Print ``rows`` under ``columns`` at ``console``'s width (see the module docstring).

    Args:
        console: where to print; its width decides the layout.
        columns: the columns, in order.
        rows: one value per column; ``str`` is shown literally.
        title: a title above the table.
        boxed: draw borders (falls back to borderless when narrow).
        row_styles: a rich style per row (``""`` for none).
    """
    cells = [[_text(c) for c in row] for row in rows]
    styles = list(row_styles) if row_styles is not None else [""] * len(cells)
    width = console.width
    for framed in [True, False] if boxed else [False]:
        for keep in _layouts(columns):
            if _need(columns, cells, keep, boxed=framed) <= width:
                console.print(_table(columns, cells, keep, boxed=framed, title=title,
                                     styles=styles))
                return
    _print_records(console, columns, cells, styles=styles, title=title)


def _print_records(console: Console, columns: Sequence[Col], cells: list[list[Text]], *,
                   styles: Sequence[str], title: str | None) -> None:
    """One block per row, one ``header  value`` line per column, nothing cut or wrapped.

    For terminals narrower than the identifiers' table; a value wider than the
    terminal is still one line of output (the terminal may show it on two).
    """
    if title:
        console.print(Text(title), soft_wrap=True)
    pad = max(cell_len(c.header) for c in columns)
    for n, (row, style) in enumerate(zip(cells, styles, strict=True)):
        if n:
            console.print()
        for col, value in zip(columns, row, strict=True):
            line = Text(col.header.ljust(pad) + "  ", style="bold").append_text(value)
            line.stylize(style)
            console.print(line, soft_wrap=True)
