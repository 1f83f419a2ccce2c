"""Label names and colours beside written masks, for 3D Slicer, ITK-SNAP and scripts.

We write three small text files into the folder of masks rather than a Slicer ``.seg.nrrd``: they go
with every mask format uncol writes (NIfTI, NRRD, MHA, PNG), each viewer has a documented importer
for one of them, and the masks stay plain label maps that every tool reads.

- ``labels.json``: ``{"0": {"name": "background", "color": [0, 0, 0]}, "1": {...}}`` (scripts);
- ``labels_slicer.ctbl``: a 3D Slicer colour table (``index name R G B A``); load it with the mask
  and choose it as the label map's colour table: segments get their names and colours;
- ``labels_itksnap.txt``: an ITK-SNAP label description file (Segmentation > Import Label Descriptions).

Colours: background black, then matplotlib's ``tab10`` palette (repeating after 10 classes).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

FILES = ("labels.json", "labels_slicer.ctbl", "labels_itksnap.txt")


def label_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """RGB 0..255 per class: background (0) black, then ``tab10``."""
    from matplotlib import colormaps

    tab = colormaps["tab10"].colors
    return [(0, 0, 0)] + [tuple(round(255 * c) for c in tab[(k - 1) % 10]) for k in range(1, num_classes)]


def write_label_tables(folder: str | Path, labels: Mapping[int, str]) -> list[Path]:
    """Write :data:`FILES` for ``labels`` {index: name} into ``folder`` (atomically); returns their paths."""
    from uncol.runtime import atomic_write_json, atomic_write_text

    folder = Path(folder)
    names = {int(k): str(v) for k, v in sorted(labels.items())}
    colors = label_colors(max(names) + 1)
    atomic_write_json(folder / FILES[0], {str(k): {"name": v, "color": list(colors[k])} for k, v in names.items()})
    slicer = ["# 3D Slicer colour table written by uncol: index name R G B A"]
    slicer += [f"{k} {v.replace(' ', '_')} {r} {g} {b} {0 if k == 0 else 255}"
               for k, v in names.items() for r, g, b in [colors[k]]]
    atomic_write_text(folder / FILES[1], "\n".join(slicer) + "\n")
    snap = ["# ITK-SnAP Label Description File (written by uncol)",
            "#    IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL"]
    snap += [f'{k:7d} {r:5d} {g:4d} {b:4d} {0 if k == 0 else 1:9d} {int(k > 0):2d} {int(k > 0):2d}    "{v}"'
             for k, v in names.items() for r, g, b in [colors[k]]]
    atomic_write_text(folder / FILES[2], "\n".join(snap) + "\n")
    return [folder / f for f in FILES]


def read_label_names(path: str | Path) -> dict[int, str]:
    """``{index: name}`` from a ``labels.json`` written by :func:`write_label_tables`."""
    meta = json.loads(Path(path).read_text())
    return {int(k): str(v["name"]) for k, v in meta.items()}
