"""Generalized teachers: frozen promptable foundation models behind one interface (``base.py``).

``import uncol.teachers`` fills the ``TEACHERS`` registry (litemedsam, medsam_vit_b, slicewise,
sam_med3d); :func:`build_teacher` builds one from ``config.teacher``. Heavy model code is imported
when a teacher is built, not here.
"""
from __future__ import annotations

import os
from pathlib import Path

from uncol.config import TeacherConfig, from_dict
from uncol.errors import ConfigError
from uncol.teachers import litemedsam, medsam, sam_med3d, slicewise  # noqa: F401  (register)
from uncol.teachers.base import (
    TEACHERS,
    ClassPrompts,
    PointPrompt,
    Teacher,
    TeacherEmbedding,
    TeacherOutput,
    combine_class_probs,
)
from uncol.teachers.cache import CachedTeacher

__all__ = [
    "TEACHERS", "CachedTeacher", "ClassPrompts", "PointPrompt", "Teacher", "TeacherEmbedding", "TeacherOutput",
    "build_teacher", "combine_class_probs", "resolve_cache_dir",
]


def resolve_cache_dir(cfg: TeacherConfig, default: str | Path | None = None) -> Path | None:
    """``teacher.cache_dir``, else ``$UNCOL_CACHE``, else ``default`` (None: no cache)."""
    d = cfg.cache_dir or os.environ.get("UNCOL_CACHE") or default
    return None if d is None else Path(d)


def build_teacher(
    cfg: TeacherConfig, spatial_dims: int | None, default_cache_dir: str | Path | None = None
) -> Teacher | None:
    """The frozen teacher named by ``cfg.name`` (``"none"`` -> None) for data of ``spatial_dims``.

    ``cfg.params`` is validated by the teacher's ``Params``; ``cfg.mode == "cached"`` wraps it in a
    :class:`CachedTeacher` when a cache folder is known (:func:`resolve_cache_dir`); ``"online"`` never
    caches. ``spatial_dims=None`` skips the dimensionality check (zero-shot runs 2D teachers on slices).
    """
    if cfg.name == "none":
        return None
    try:
        cls = TEACHERS.get(cfg.name)
    except KeyError as e:
        raise ConfigError(f"config key 'teacher.name': {e}") from None
    if spatial_dims is not None and cls.spatial_dims != spatial_dims:
        hint = f" (use teacher.name: slicewise with teacher.params.base: {cfg.name})" if spatial_dims == 3 else ""
        raise ConfigError(
            f"config key 'teacher.name': {cfg.name!r} is a {cls.spatial_dims}D teacher but the data is "
            f"{spatial_dims}D{hint}"
        )
    params = from_dict(cls.Params, cfg.params, prefix="teacher.params")
    teacher = cls.build(cfg.checkpoint, params, spatial_dims or cls.spatial_dims)
    cache_dir = resolve_cache_dir(cfg, default_cache_dir)
    if cfg.mode == "cached" and cache_dir is not None:
        return CachedTeacher(teacher, cache_dir, cfg.cache_memory_mb)
    return teacher
