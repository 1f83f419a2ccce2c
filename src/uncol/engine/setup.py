"""Build everything a run needs from a config: dataset, split, model, teacher, method, device."""
from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uncol.config import Config, from_dict, to_dict
from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import SegmentationDataset, load_case
from uncol.data.sampler import TwoStreamLoader
from uncol.data.splits import Split, make_split
from uncol.engine.distributed import DistInfo, barrier
from uncol.errors import ConfigError, DataError
from uncol.eval.evaluate import evaluate_cases
from uncol.eval.prompted import zero_shot
from uncol.methods import METHODS, MethodContext
from uncol.methods.base import stage_iteration_keys
from uncol.models import build_model
from uncol.runtime import cache_root, check_out_dir, prepare_out_dir, remove_stale_temp_files, resolve_device
from uncol.teachers import TEACHERS, build_teacher


def default_teacher_cache() -> Path:
    """Where teacher features are cached when neither ``teacher.cache_dir`` nor ``$UNCOL_CACHE`` is set:
    ``<cache root>/teachers`` (``$XDG_CACHE_HOME/uncol/teachers``, else ``~/.cache/uncol/teachers``),
    shared by all runs and methods."""
    return cache_root() / "teachers"


def model_stride(model: torch.nn.Module) -> int:
    """The factor every input size must be divisible by: the network's total down-sampling
    (``reduction``, 16 for U-Net and V-Net; the UnCoL student's is its backbone's, which its ViT patch equals)."""
    for m in (model, getattr(model, "backbone", None)):
        if isinstance(getattr(m, "reduction", None), int):
            return m.reduction
    return 1


def check_config(cfg: Config, check_device: bool = True) -> None:
    """Every check of a config that needs the registries, before anything is read or written.

    Names (method, model, teacher) exist; stage lengths (``method.params.*_iterations``) are >= 0;
    ``method.params``, ``teacher.params`` and ``model.params`` are
    valid for their component (the model is built on the ``meta`` device: no memory, no time); a method
    that needs a teacher has one; ``data.size`` is divisible by the model's stride; ``train.device``
    exists on this machine (unless ``check_device`` is False: a config checked here, run elsewhere).
    Each failure is one :class:`ConfigError` line naming the key.
    """
    method_cls = METHODS.get(cfg.method.name)
    params = from_dict(method_cls.Params, cfg.method.params, prefix="method.params")
    for key in stage_iteration_keys(method_cls.Params):
        v = getattr(params, key)
        if isinstance(v, int) and v < 0:
            raise ConfigError(f"config key 'method.params.{key}' must be >= 1 (or 0: train.iterations), got {v}")
    if cfg.teacher.name != "none":
        from_dict(TEACHERS.get(cfg.teacher.name).Params, cfg.teacher.params, prefix="teacher.params")
    elif method_cls.needs_teacher:
        raise ConfigError(f"method {cfg.method.name!r} needs a teacher: set teacher.name (e.g. litemedsam)")
    if method_cls.uses_model_config:
        with torch.device("meta"):
            model = build_model(cfg.model, cfg.data.spatial_dims, max(cfg.model.num_classes, 2))
        stride = model_stride(model)
        if any(s % stride for s in cfg.data.size):
            fix = [max(stride, round(s / stride) * stride) for s in cfg.data.size]
            raise ConfigError(f"config key 'data.size' is {list(cfg.data.size)} but model {cfg.model.name!r} needs "
                              f"sizes divisible by {stride}; use e.g. data.size={fix}")
    if check_device:
        resolve_device(cfg.train.device)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def load_split(cfg: Config, spec: Any, out: Path, resume: bool) -> tuple[Any, bool]:
    """The run's split and whether it must be saved: ``out/split.json`` on resume, else made.

    ``make_split`` is deterministic (seeded, sorted ids), so every rank of a distributed run computes
    the same split; only rank 0 saves it (:func:`build_run`). ``data.split.file`` is read by
    ``make_split`` itself.
    """
    saved = out / "split.json"
    if resume and saved.is_file():
        split = Split.load(saved)
        split.check_ids([c.id for c in spec.cases], str(saved))
        return split, False
    return make_split([c.id for c in spec.cases], cfg.data.split), True


def check_val_cases(spec: Any, cfg: Config, ids: list[str]) -> None:
    """Read every validation case once before training, so a broken file fails now and not mid-run."""
    for cid in ids:
        case = load_case(spec, cid, cfg.data)
        if case.label is None:
            raise DataError(f"validation case {cid!r} has no label file; add one to dataset.json or move it to 'test'")


def check_learnable(cfg: Config, labeled_ds: Any, unlabeled_ds: Any) -> None:
    """Refuse data that leaves the model nothing to learn (one ``DataError`` line, before training).

    The images' channel count must equal ``model.in_channels`` (images are read as one grey channel);
    not every training image may be constant after normalisation; some labelled case must hold foreground.
    """
    root = cfg.data.root
    channels = int(labeled_ds.images[0].shape[0])
    if METHODS.get(cfg.method.name).uses_model_config and cfg.model.in_channels != channels:
        raise DataError(f"config key 'model.in_channels' is {cfg.model.in_channels} but the images of {root!r} have "
                        f"{channels} channel(s) (colour images are read as grey); set model.in_channels: {channels}")
    images = [*labeled_ds.images, *(unlabeled_ds.images if unlabeled_ds is not None else [])]
    if all(bool(img.amax() == img.amin()) for img in images):
        raise DataError(f"every training image of {root!r} is constant after normalisation (data.normalize: "
                        f"{cfg.data.normalize}); the model has nothing to learn: check the image files and data.normalize")
    if not any(y is not None and bool(y.any()) for y in labeled_ds.labels):
        raise DataError(f"none of the {len(labeled_ds.case_ids)} labelled training cases of {root!r} holds a foreground "
                        "voxel; the model has nothing to learn: check the label files or raise data.split.labeled")


def build_method(cfg: Config, num_classes: int, spatial_dims: int, device: torch.device) -> Any:
    """Model + (frozen) teacher + method object from the registries."""
    method_cls = METHODS.get(cfg.method.name)
    params = from_dict(method_cls.Params, cfg.method.params, prefix="method.params")
    model = build_model(cfg.model, spatial_dims=spatial_dims, num_classes=num_classes)
    teacher = None
    if method_cls.needs_teacher or cfg.teacher.name != "none":
        teacher = build_teacher(cfg.teacher, spatial_dims=spatial_dims, default_cache_dir=default_teacher_cache())
        if teacher is None and method_cls.needs_teacher:
            raise ConfigError(f"method {cfg.method.name!r} needs a teacher: set teacher.name (e.g. litemedsam)")
        if teacher is not None:
            teacher = teacher.to(device).eval().requires_grad_(False)
    method = method_cls(MethodContext(cfg=cfg, model=model, teacher=teacher, num_classes=num_classes,
                                      spatial_dims=spatial_dims), params)
    return method.to(device)


@dataclass
class RunContext:
    cfg: Config
    spec: Any
    split: Any
    method: Any
    device: torch.device
    dist: DistInfo
    labeled_ds: Any
    unlabeled_ds: Any
    val_ids: list[str] = field(default_factory=list)
    _scaler: Any = None
    progress: bool = True  # progress bars (teacher-cache fills as well as the training bar)

    @property
    def has_val(self) -> bool:
        """Whether training validates: validation cases exist and the method wants validation."""
        return bool(self.val_ids) and self.method.validates()

    @property
    def val_cases(self) -> list[str]:
        """The validation cases scored at each validation point (``eval.max_val_cases`` first ones)."""
        n = self.cfg.eval.max_val_cases
        return self.val_ids[:n] if n else self.val_ids

    def make_loader(self, stage: Any) -> Iterator[Any]:
        unl = self.unlabeled_ds if stage.unlabeled_bs > 0 else None
        if stage.unlabeled_bs > 0 and (unl is None or len(unl) == 0):
            raise DataError("no unlabelled training cases: lower data.split.labeled so that some training cases stay unlabelled")
        return TwoStreamLoader(self.labeled_ds, unl, stage.labeled_bs, stage.unlabeled_bs,
                               seed=self.cfg.train.seed + zlib.crc32(stage.name.encode()) % 10007,
                               num_workers=self.cfg.data.num_workers, rank=self.dist.rank,
                               world_size=self.dist.world_size)

    def to_device(self, batch: Any) -> Any:
        """``batch`` with its tensors on the run's device (images in channels-last order when asked)."""
        fmt = _channels_last(self.cfg.data.spatial_dims) if self.cfg.train.channels_last else None

        def move(part: dict | None) -> dict | None:
            if part is None:
                return None
            out = {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in part.items()}
            if fmt is not None and torch.is_tensor(out.get("image")):
                out["image"] = out["image"].contiguous(memory_format=fmt)
            return out

        return type(batch)(labeled=move(batch.labeled), unlabeled=move(batch.unlabeled))

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass per ``train.amp`` (none | bf16 | fp16), on CPU or CUDA."""
        amp = self.cfg.train.amp
        if amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    @property
    def scaler(self) -> Any:
        """The fp16 loss scaler (CUDA only; bf16 and fp32 need none), created on first use."""
        if self._scaler is None and self.cfg.train.amp == "fp16" and self.device.type == "cuda":
            self._scaler = torch.amp.GradScaler("cuda")
        return self._scaler

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Back-propagate ``loss`` and step ``optimizer`` (through the fp16 loss scaler when active)."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optimizer)
            self.scaler.update()
            return
        loss.backward()
        optimizer.step()

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        """Mean metrics of the prompt-free ``model`` on :attr:`val_cases` (the engine's default validation)."""
        res = evaluate_cases(model, self.spec, self.val_cases, self.cfg, self.device, progress=False)
        return {k: float(v) for k, v in res["mean"].items()}

    def validate_prompted(self, teacher: Any, jitter_px: float) -> dict[str, float]:
        """Mean metrics of a prompted model (a ``Teacher``) on :attr:`val_cases`, prompted with ground-truth
        boxes jittered by ``jitter_px`` (MedSAM's 1024-px frame; seed 0)."""
        res = zero_shot(teacher, self.spec, self.val_cases, self.cfg.data, jitter_px, seed=0,
                        convention=self.cfg.eval.convention, slice_axis=self.cfg.data.slice_axis, progress=False)
        return {k: float(v) for k, v in res["mean"].items()}

    def model_checkpoint(self, method: Any) -> dict[str, Any]:
        return {"config": to_dict(self.cfg), "labels": {str(k): v for k, v in self.spec.labels.items()},
                "num_classes": self.spec.num_classes, "spatial_dims": self.cfg.data.spatial_dims,
                "model": {k: v.detach().cpu() for k, v in method.inference_model().state_dict().items()}}


def build_run(cfg: Config, out: Path, dist: DistInfo, resume: bool, stages: list[str] | None = None,
              overwrite: bool = False) -> RunContext:
    """Validate the config and read the data (nothing written), then create the run folder (rank 0).

    Order matters for bad input: every check that can fail (output folder, dataset, split, model,
    teacher, every training and validation case, :func:`check_learnable`) runs before the first file is
    written, so a failing run leaves no run folder (or, with ``--resume``/``--overwrite``, an unchanged
    one); ``overwrite`` deletes the old run's files only then.
    """
    check_config(cfg)
    check_out_dir(out)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)  # the same seed on every rank
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and dist.enabled:
        torch.cuda.set_device(dist.local_rank)
        device = torch.device("cuda", dist.local_rank)
    if not cfg.data.root:
        raise ConfigError("config key 'data.root' is empty: set it to a dataset folder with dataset.json")
    spec = DatasetSpec.load(Path(cfg.data.root))
    if cfg.model.num_classes and cfg.model.num_classes != spec.num_classes:
        raise ConfigError(f"config key 'model.num_classes' is {cfg.model.num_classes} but {cfg.data.root!r} declares "
                          f"{spec.num_classes} labels; remove the key or fix dataset.json")
    split, new_split = load_split(cfg, spec, out, resume)
    method = build_method(cfg, spec.num_classes, cfg.data.spatial_dims, device)
    names = [s.name for s in method.stages()]
    if stages is not None and not set(stages) & set(names):
        raise ConfigError(f"--stage {', '.join(stages)}: method {cfg.method.name!r} has stages {', '.join(names)}; "
                          "pick one of those")
    labeled_ds = SegmentationDataset(spec, split.labeled, cfg.data, train=True, labeled=True)
    unlabeled_ds = (SegmentationDataset(spec, split.unlabeled, cfg.data, train=True, labeled=False)
                    if split.unlabeled else None)
    val_ids = list(split.val)
    check_val_cases(spec, cfg, val_ids[: cfg.eval.max_val_cases] if cfg.eval.max_val_cases else val_ids)
    check_learnable(cfg, labeled_ds, unlabeled_ds)
    if cfg.train.channels_last:
        method.student.to(memory_format=_channels_last(cfg.data.spatial_dims))
    # ---- everything checked: now (and only now) write
    if dist.rank == 0:
        if overwrite:
            from uncol.engine.runfolder import clear_run

            clear_run(out)
        prepare_out_dir(out)
        remove_stale_temp_files(out)
        if new_split:
            split.save(out / "split.json")
    barrier(dist)
    run = RunContext(cfg=cfg, spec=spec, split=split, method=method, device=device, dist=dist,
                     labeled_ds=labeled_ds, unlabeled_ds=unlabeled_ds, val_ids=val_ids)
    method.attach_run(run)
    return run


def _channels_last(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
