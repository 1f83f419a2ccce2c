"""nnU-Net v2 raw dataset folders, read as they are.

An nnU-Net v2 ``dataset.json`` has no ``training`` list; it names the channels and the file ending::

    {"channel_names": {"0": "T2"}, "labels": {"background": 0, "organ": 1},
     "numTraining": 3, "file_ending": ".nii.gz"}

and the files follow the naming convention ``imagesTr/{case}_0000{ending}`` (channel 0),
``labelsTr/{case}{ending}``, ``imagesTs/{case}_0000{ending}`` (optional, unlabelled). A ``dataset``
key (``{"case": {"images": [...], "label": "..."}}``, nnU-Net v2's explicit form) is read instead of
the folders when present. The case id is nnU-Net's identifier (``{case}``, without ``_0000``).

uncol segments one channel: a dataset with several ``channel_names`` is a DataError (split it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from uncol.errors import DataError


def is_nnunet_v2(meta: dict[str, Any]) -> bool:
    """True for an nnU-Net v2 ``dataset.json`` (``channel_names`` and ``file_ending``, no ``training`` list)."""
    return "file_ending" in meta and "channel_names" in meta and not isinstance(meta.get("training"), list)


def _check(meta: dict[str, Any], jpath: Path) -> str:
    ending = meta["file_ending"]
    if not isinstance(ending, str) or not ending.startswith("."):
        raise DataError(f"{jpath}: key 'file_ending' must be a file suffix such as '.nii.gz' (got {ending!r})")
    channels = meta["channel_names"]
    if not isinstance(channels, dict) or len(channels) != 1:
        n = len(channels) if isinstance(channels, dict) else "?"
        raise DataError(
            f"{jpath}: key 'channel_names' lists {n} channels; uncol segments one channel, so keep one "
            "(a dataset.json with channel_names {\"0\": ...}) or convert the cases to single-channel files"
        )
    return ending


def _case(cid: str, image: Path, label: Path | None, jpath: Path, where: str) -> tuple[str, Path, Path | None]:
    for what, p in (("image", image), ("label", label)):
        if p is not None and not p.is_file():
            raise DataError(f"{jpath}: {where} {what} {p} does not exist; add the file or fix the nnU-Net folder")
    return cid, image, label


def _from_folders(root: Path, ending: str, jpath: Path) -> tuple[list, list]:
    labels_dir = root / "labelsTr"
    if not labels_dir.is_dir():
        raise DataError(f"{jpath}: nnU-Net v2 dataset without a 'dataset' key needs {labels_dir}; add labelsTr/")
    train = []
    for lab in sorted(labels_dir.iterdir()):
        if lab.name.endswith(ending) and not lab.name.startswith("."):
            cid = lab.name[: -len(ending)]
            train.append(_case(cid, root / "imagesTr" / f"{cid}_0000{ending}", lab, jpath, f"case {cid!r}:"))
    if not train:
        raise DataError(f"{labels_dir}: no label files ending in {ending!r}; check 'file_ending' in {jpath.name}")
    test = []
    ts = root / "imagesTs"
    if ts.is_dir():
        for img in sorted(ts.iterdir()):
            if img.name.endswith(f"_0000{ending}"):
                test.append((img.name[: -len(f"_0000{ending}")], img, None))
    return train, test


def _from_key(root: Path, entries: Any, jpath: Path) -> list:
    if not isinstance(entries, dict) or not entries:
        raise DataError(f"{jpath}: key 'dataset' must map case ids to {{\"images\": [...], \"label\": ...}}")
    out = []
    for cid, e in sorted(entries.items()):
        ok = isinstance(e, dict) and isinstance(e.get("images"), list) and len(e["images"]) == 1
        if not ok or not isinstance(e.get("label"), str) or not isinstance(e["images"][0], str):
            raise DataError(f"{jpath}: key 'dataset.{cid}' must be {{\"images\": [one path], \"label\": path}} (one channel)")
        img, lab = Path(e["images"][0]), Path(e["label"])
        out.append(_case(str(cid), img if img.is_absolute() else root / img,
                         lab if lab.is_absolute() else root / lab, jpath, f"key 'dataset.{cid}':"))
    return out


def nnunet_cases(
    meta: dict[str, Any], root: Path, jpath: Path
) -> tuple[list[tuple[str, Path, Path | None]], list[tuple[str, Path, Path | None]]]:
    """``(training, test)`` cases ``(id, image, label or None)`` of an nnU-Net v2 raw folder ``root``."""
    ending = _check(meta, jpath)
    if "dataset" in meta:
        return _from_key(root, meta["dataset"], jpath), []
    return _from_folders(root, ending, jpath)
