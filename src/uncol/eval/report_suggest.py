"""The report section "Which case to label next": the ranking of ``uncol suggest`` (``RUN/suggest/``)
with its thumbnails (red: the student's mask; cyan: the foundation teacher's, prompted by the student's box)."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from uncol.errors import DataError
from uncol.eval.html_page import Page, table_html

#: Rows of the ranking shown in the report (the whole ranking stays in suggest.csv).
SHOWN = 12


def read_suggest_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a ``suggest.csv`` (rank order); a file without the ``rank``/``case`` columns is a DataError naming it."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: unreadable suggest ranking ({e}); run uncol suggest again") from None
    if rows and not {"rank", "case"} <= set(rows[0]):
        raise DataError(f"{path}: not a ranking written by uncol suggest (no rank/case columns); run uncol suggest again")
    return rows


def _num(row: dict[str, str], key: str) -> str:
    try:
        v = float(row.get(key) or "nan")
    except ValueError:
        return str(row.get(key))
    return "–" if math.isnan(v) else f"{v:.3f}"


def suggest_section(page: Page, folder: Path, prefix: str = "") -> None:
    """Append the ranking in ``folder/suggest.csv`` (first :data:`SHOWN` rows) and the thumbnails of
    ``folder/thumbnails/`` to ``page``."""
    rows = read_suggest_csv(folder / "suggest.csv")
    page.h2(f"{prefix}Which case to label next")
    teacher = any(_num(r, "disagreement") != "–" for r in rows)
    how = ("the mean of its rank by the student's uncertainty (mean entropy / ln K) and by teacher–student "
           "disagreement (1 − Dice between the student's mask and the foundation teacher's)") if teacher else \
          "the student's uncertainty (mean entropy / ln K; no teacher)"
    page.p(f"from {folder / 'suggest.csv'} (uncol suggest): {len(rows)} cases, each ranked by {how}; "
           "annotate from the top", "note")
    if not rows:
        return
    table: list[list[Any]] = [[r["rank"], r["case"], _num(r, "entropy"), _num(r, "disagreement"), _num(r, "sym_kl"),
                               _num(r, "fg_fraction")] for r in rows[:SHOWN]]
    page.raw(table_html(["rank", "case", "entropy / ln K", "1 − Dice (G, student)", "sym. KL", "foreground"], table))
    figs = []
    for r in rows[:SHOWN]:
        try:
            png = folder / "thumbnails" / f"{int(r['rank']):02d}_{r['case']}.png"
        except ValueError:
            continue
        if png.is_file():
            figs.append(page.figure(png, f"#{r['rank']} {r['case']}: red student, cyan teacher"))
    if figs:
        page.raw(f"<div class=\"row\">{''.join(figs)}</div>")
