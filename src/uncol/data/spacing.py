"""Per-case voxel sizes from a CSV, for files that store none (PNG).

HC18 ships its pixel sizes as ``training_set_pixel_size_and_HC.csv``::

    filename,pixel size(mm),head circumference (mm)
    000_HC.png,0.0691358041432,44.3

Rule: the first column names the file (``000_HC.png``) or the case (``000_HC``); the spacing columns
are those whose header contains ``spacing`` or ``pixel size`` / ``pixel_size`` (case-insensitive):
one column = the same size on every axis, two or three = one per axis in torch order ``(H, W)`` /
``(D, H, W)``. Values are mm per pixel and must be positive.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from uncol.errors import DataError


def _spacing_columns(header: list[str]) -> list[int]:
    keys = ("spacing", "pixel size", "pixel_size", "pixelsize")
    return [i for i, h in enumerate(header) if i > 0 and any(k in h.strip().lower() for k in keys)]


def read_spacing_csv(path: str | Path) -> dict[str, tuple[float, ...]]:
    """``{case id: spacing}`` from ``path``; the case id is the first column without its file extension.

    A single spacing column gives a 1-tuple (the same size on every axis; see :func:`spacing_for`).
    """
    from uncol.data.io import split_suffix

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: spacing CSV not found; pass the CSV that lists each image's pixel size")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise DataError(f"{path}: spacing CSV has no data rows; expected a header and one row per image")
    cols = _spacing_columns(rows[0])
    if not 1 <= len(cols) <= 3:
        raise DataError(f"{path}: found {len(cols)} spacing columns in header {rows[0]}; name one to three columns "
                        "'spacing...' or 'pixel size...' (mm), after the file-name column")
    out: dict[str, tuple[float, ...]] = {}
    for n, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        try:
            sp = tuple(float(row[c]) for c in cols)
        except (ValueError, IndexError):
            raise DataError(f"{path}: line {n}: spacing {[row[c] for c in cols if c < len(row)]} is not a number") from None
        if not all(math.isfinite(s) and s > 0 for s in sp):
            raise DataError(f"{path}: line {n}: spacing {sp} must be positive mm values")
        out[split_suffix(row[0].strip())[0]] = sp
    return out


def spacing_for(table: dict[str, tuple[float, ...]], case_id: str, ndim: int, csv_path: str | Path) -> tuple[float, ...]:
    """The ``ndim``-axis spacing of ``case_id`` (a DataError naming the CSV when the case has no row)."""
    if case_id not in table:
        raise DataError(f"{csv_path}: no row for image {case_id!r}; add its pixel size to the CSV")
    sp = table[case_id]
    if len(sp) == 1:
        return sp * ndim
    if len(sp) != ndim:
        raise DataError(f"{csv_path}: {case_id!r} has {len(sp)} spacing values for a {ndim}D image")
    return sp
