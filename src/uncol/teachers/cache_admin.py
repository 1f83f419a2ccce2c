"""List and clear the teacher feature cache (``uncol cache list`` / ``uncol cache clear``).

The cache (:mod:`uncol.teachers.cache`) holds one fp16 file per image under
``<root>/<TeacherClass>-<hash>/<ab>/<image-hash>.pt``; a folder is one teacher configuration (name,
checkpoint, preprocessing). Files carry no dataset name: the entries of a dataset are found by hashing
its images exactly as training does (:func:`dataset_keys`, which needs the training config because
the hash is of the normalised, resized image).

Only the cache's own files are touched: ``*.pt`` files two levels below a ``<Name>-<16 hex>`` folder.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from uncol.errors import DataError

_FOLDER = re.compile(r"^(?P<teacher>.+)-(?P<hash>[0-9a-f]{16})$")


@dataclass
class CacheFolder:
    """One teacher configuration: ``teacher`` class name, ``files`` and ``bytes`` on disk, the
    ``fingerprint`` stored in its entries ("" when none could be read), and per-dataset
    ``datasets`` {name: (files, bytes)} when dataset keys were given."""

    path: Path
    teacher: str
    files: int
    bytes: int
    fingerprint: str = ""
    datasets: dict[str, tuple[int, int]] = field(default_factory=dict)


def _entries(folder: Path) -> list[Path]:
    return sorted(p for sub in folder.iterdir() if sub.is_dir() for p in sub.glob("*.pt"))


def _fingerprint(entries: list[Path]) -> str:
    import torch

    for p in entries[:3]:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            return str(obj.get("fingerprint", "")) if isinstance(obj, dict) else ""
        except Exception:  # noqa: BLE001, S112  a damaged entry: try the next
            continue
    return ""


def cache_folders(root: str | Path) -> list[Path]:
    """The teacher-configuration folders under ``root`` (empty when ``root`` does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _FOLDER.match(p.name))


def list_cache(root: str | Path, datasets: dict[str, set[str]] | None = None) -> list[CacheFolder]:
    """Size on disk per teacher configuration, and per dataset for the image-hash sets in ``datasets``."""
    out = []
    for folder in cache_folders(root):
        entries = _entries(folder)
        sizes = {p.stem: p.stat().st_size for p in entries}
        per = {name: (sum(1 for k in keys if k in sizes), sum(sizes.get(k, 0) for k in keys))
               for name, keys in (datasets or {}).items()}
        out.append(CacheFolder(folder, _FOLDER.match(folder.name)["teacher"], len(entries), sum(sizes.values()),
                               _fingerprint(entries), per))
    return out


def clear_cache(root: str | Path, teacher: str | None = None, keys: Iterable[str] | None = None,
                dry_run: bool = False) -> tuple[int, int]:
    """Delete cache entries: all, or those of ``teacher`` (class name, e.g. ``LiteMedSAMTeacher``, or a
    folder name), and/or only the image hashes in ``keys``. Returns ``(files, bytes)`` removed (or that
    would be, with ``dry_run``); emptied folders are removed too."""
    folders = cache_folders(root)
    if teacher is not None:
        folders = [f for f in folders if teacher in (f.name, _FOLDER.match(f.name)["teacher"])]
        if not folders:
            names = sorted({_FOLDER.match(f.name)["teacher"] for f in cache_folders(root)})
            raise DataError(f"{root}: no cache of teacher {teacher!r}; present: {', '.join(names) or 'none'}")
    wanted = None if keys is None else set(keys)
    n = size = 0
    for folder in folders:
        for p in _entries(folder):
            if wanted is None or p.stem in wanted:
                n, size = n + 1, size + p.stat().st_size
                if not dry_run:
                    p.unlink()
        if not dry_run:
            for sub in sorted(folder.iterdir()):
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
            if not any(folder.iterdir()):
                folder.rmdir()
    return n, size


def dataset_keys(cfg: object, data_root: str | Path | None = None) -> set[str]:
    """The cache keys (image hashes) of every training image of a dataset under training config ``cfg``
    (a :class:`uncol.config.Config`): each case (or slice) normalised and resized by ``cfg.data``, as
    the trainer fills the cache. ``data_root`` overrides ``cfg.data.root``."""
    from dataclasses import replace

    from uncol.data.dataset import DatasetSpec
    from uncol.data.datasets import SegmentationDataset
    from uncol.teachers.cache import image_hash

    data = cfg.data if data_root is None else replace(cfg.data, root=str(data_root))  # type: ignore[attr-defined]
    if data.mode == "patch":
        return set()  # random patches are never cached (the teacher runs online)
    spec = DatasetSpec.load(data.root)
    ds = SegmentationDataset(spec, spec.case_ids, data, train=True, labeled=False)
    ds.keep_base = True
    return {image_hash(ds.get_seeded(i, 0)["base_image"]) for i in range(len(ds))}


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
