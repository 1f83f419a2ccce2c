"""Seeded train/val/test splits and the labelled subset, saved as JSON beside a run.

Split file format (also what a user writes to fix the split by case lists)::

    {"train": [...], "val": [...], "test": [...], "labeled": [...], "unlabeled": [...], "seed": 0}

``labeled``/``unlabeled`` may be omitted from a hand-written file: they are then drawn from
``train`` with ``SplitConfig.labeled`` and ``seed``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uncol.config import SplitConfig
from uncol.errors import DataError
from uncol.runtime import read_json_object


@dataclass(frozen=True)
class Split:
    """Case ids of each part; ``labeled`` + ``unlabeled`` = ``train`` (disjoint)."""

    train: list[str]
    val: list[str]
    test: list[str]
    labeled: list[str]
    unlabeled: list[str]
    meta: dict = field(default_factory=dict)  # how it was made (seed, ratios, ...), for the record

    def save(self, path: str | Path) -> None:
        """Write the split as JSON (atomically)."""
        from uncol.runtime import atomic_write_json

        atomic_write_json(Path(path), asdict(self))

    @classmethod
    def load(cls, path: str | Path, labeled: float | None = None, seed: int = 0) -> Split:
        """Read a split file; without ``labeled`` lists, draw them from ``train`` (needs ``labeled``)."""
        path = Path(path)
        raw = read_json_object(path, "split file", "fix data.split.file or remove it to split by ratio",
                               "train/val/test lists")
        parts: dict[str, list[str]] = {}
        for key in ("train", "val", "test", "labeled", "unlabeled"):
            v = raw.get(key, [] if key in ("val", "test") else None)
            if v is None:
                continue
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise DataError(f"{path}: key {key!r} must be a list of case ids")
            parts[key] = v
        if "train" not in parts or not parts["train"]:
            raise DataError(f"{path}: key 'train' is missing or empty; list the training case ids")
        meta = raw.get("meta", {}) if isinstance(raw.get("meta"), dict) else {}
        seed = raw.get("seed", meta.get("seed", seed))
        if isinstance(seed, bool) or not (isinstance(seed, int) or isinstance(seed, float) and seed.is_integer()):
            raise DataError(f"{path}: key 'seed' must be an integer, got {seed!r}; set it or remove the key")
        seed = int(seed)
        if "labeled" not in parts:
            if labeled is None:
                raise DataError(f"{path}: key 'labeled' is missing; list the labelled case ids or set data.split.labeled")
            lab = _labeled_subset(parts["train"], labeled, seed)
            parts["labeled"] = lab
        if "unlabeled" not in parts:
            lab_set = set(parts["labeled"])
            parts["unlabeled"] = [c for c in parts["train"] if c not in lab_set]
        split = cls(parts["train"], parts["val"], parts["test"], parts["labeled"], parts["unlabeled"], meta)
        _check(split, str(path))
        return split

    def check_ids(self, case_ids: Sequence[str], where: str) -> None:
        """DataError if the split names a case that the dataset lacks."""
        known = set(case_ids)
        for key in ("train", "val", "test"):
            bad = [c for c in getattr(self, key) if c not in known]
            if bad:
                raise DataError(f"{where}: split '{key}' names case {bad[0]!r} that the dataset lacks ({len(bad)} such)")


def _check(s: Split, where: str) -> None:
    seen: dict[str, str] = {}
    for key in ("train", "val", "test"):
        for c in getattr(s, key):
            if c in seen:
                raise DataError(f"{where}: case {c!r} is in both '{seen[c]}' and '{key}'; a case belongs to one part")
            seen[c] = key
    train = set(s.train)
    if not set(s.labeled) <= train or not set(s.unlabeled) <= train or set(s.labeled) & set(s.unlabeled):
        raise DataError(f"{where}: 'labeled' and 'unlabeled' must be disjoint subsets of 'train'")
    if not s.labeled:
        raise DataError(f"{where}: no labelled cases; list at least one in 'labeled'")


def _labeled_subset(train: list[str], labeled: float, seed: int) -> list[str]:
    """A float ``labeled`` <= 1: that fraction of ``train`` (rounded; 1.0 = all); an int: that count.

    YAML keeps the distinction: ``labeled: 0.05`` and ``labeled: 1.0`` are ratios, ``labeled: 4`` a count.
    Seeded, in train order."""
    n = len(train)
    if isinstance(labeled, float) and labeled <= 1:
        k = round(labeled * n)
        if k < 1:
            raise DataError(
                f"config key 'data.split.labeled'={labeled} leaves 0 of {n} training cases labelled; "
                f"use at least {1 / n:.4g} (1 case) or a count >= 1"
            )
    else:
        k = int(labeled)
        if k > n:
            raise DataError(f"config key 'data.split.labeled'={labeled} asks for more labelled cases than the {n} training cases")
    rng = np.random.default_rng([seed, 1])
    chosen = set(rng.permutation(n)[:k].tolist())
    return [c for i, c in enumerate(train) if i in chosen]


def _groups(case_ids: list[str], group_by: str | None) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    rx = None
    if group_by:
        try:
            rx = re.compile(group_by)
        except re.error as e:
            raise DataError(f"config key 'data.split.group_by' is not a valid regex ({e})") from None
    for c in case_ids:
        key = c
        if rx is not None:
            m = rx.search(c)
            if m is None:
                raise DataError(f"config key 'data.split.group_by'={group_by!r} does not match case {c!r}; fix the regex")
            key = m.group(1) if m.groups() else m.group(0)
        groups.setdefault(key, []).append(c)
    return groups


def make_split(case_ids: Sequence[str], cfg: SplitConfig) -> Split:
    """Split ``case_ids`` by ``cfg.ratios`` (train/val/test), seeded by ``cfg.seed``.

    With ``cfg.group_by`` (a regex; its first group, else the whole match, is the group key)
    all cases of a group land in the same part; the ratios then count groups. A part with a
    non-zero ratio gets at least one group. ``cfg.file`` reuses that split file exactly. The
    labelled subset (``cfg.labeled``: ratio < 1 or count >= 1) is drawn from ``train``.
    """
    case_ids = list(case_ids)
    if not case_ids:
        raise DataError("the dataset has no cases to split; check dataset.json 'training'")
    if len(set(case_ids)) != len(case_ids):
        raise DataError("duplicate case ids given to make_split; case ids must be unique")
    if cfg.file:
        split = Split.load(cfg.file, labeled=cfg.labeled, seed=cfg.seed)
        split.check_ids(case_ids, str(cfg.file))
        return split
    groups = _groups(sorted(case_ids), cfg.group_by)
    keys = sorted(groups)
    n = len(keys)
    order = [keys[i] for i in np.random.default_rng([cfg.seed, 0]).permutation(n)]
    _, r_val, r_test = cfg.ratios
    n_val = max(1, round(r_val * n)) if r_val > 0 else 0
    n_test = max(1, round(r_test * n)) if r_test > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(
            f"config key 'data.split.ratios'={list(cfg.ratios)} leaves no training cases among {n} "
            f"{'groups' if cfg.group_by else 'cases'}; add cases or lower the val/test ratios"
        )
    test_keys, val_keys, train_keys = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]

    def flat(ks: list[str]) -> list[str]:
        return sorted(c for k in ks for c in groups[k])

    train = flat(train_keys)
    labeled = _labeled_subset(train, cfg.labeled, cfg.seed)
    lab = set(labeled)
    meta: dict[str, Any] = {"seed": cfg.seed, "ratios": list(cfg.ratios), "labeled_arg": cfg.labeled, "group_by": cfg.group_by}
    split = Split(train, flat(val_keys), flat(test_keys), labeled, [c for c in train if c not in lab], meta)
    _check(split, "make_split")
    return split
