"""Build everything a run needs from a config: dataset, split, model, teacher, method, device."""
from __future__ import annotations

import contextlib
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from uncol.config import Config, from_dict
from uncol.engine.distributed import DistInfo
from uncol.errors import ConfigError, DataError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'train.device' is {name!r} but no CUDA device is visible; use 'cpu' or 'auto'")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def prepare_out_dir(out: Path) -> None:
    """Create the run folder, checking it is writable before any work starts."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise DataError(f"output folder {str(out)!r} is not writable ({e.strerror}); choose another --out") from None


def load_split(cfg: Config, spec: Any, out: Path, resume: bool) -> Any:
    """The run's split: reused from ``out/split.json`` on resume, from ``data.split.file`` if given, else made."""
    from uncol.data.splits import Split, make_split

    saved = out / "split.json"
    if resume and saved.is_file():
        return Split.load(saved)
    if cfg.data.split.file:
        split = Split.load(Path(cfg.data.split.file))
    else:
        split = make_split([c.id for c in spec.cases], cfg.data.split)
    split.save(saved)
    return split


def build_method(cfg: Config, num_classes: int, spatial_dims: int, device: torch.device) -> Any:
    """Model + (frozen) teacher + method object from the registries."""
    from uncol.methods import METHODS, MethodContext
    from uncol.models import build_model

    method_cls = METHODS.get(cfg.method.name)
    params = from_dict(method_cls.Params, cfg.method.params, prefix="method.params")
    model = build_model(cfg.model, spatial_dims=spatial_dims, num_classes=num_classes)
    teacher = None
    if method_cls.needs_teacher or cfg.teacher.name != "none":
        from uncol.teachers import build_teacher

        teacher = build_teacher(cfg.teacher, spatial_dims=spatial_dims)
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

    @property
    def has_val(self) -> bool:
        return bool(self.val_ids)

    def make_loader(self, stage: Any) -> Iterator[Any]:
        from uncol.data.sampler import TwoStreamLoader

        unl = self.unlabeled_ds if stage.unlabeled_bs > 0 else None
        if stage.unlabeled_bs > 0 and (unl is None or len(unl) == 0):
            raise DataError("no unlabelled training cases: lower data.split.labeled so that some training cases stay unlabelled")
        return TwoStreamLoader(self.labeled_ds, unl, stage.labeled_bs, stage.unlabeled_bs,
                               seed=self.cfg.train.seed + zlib.crc32(stage.name.encode()) % 10007,
                               num_workers=self.cfg.data.num_workers, rank=self.dist.rank,
                               world_size=self.dist.world_size)

    def to_device(self, batch: Any) -> Any:
        def move(part: dict | None) -> dict | None:
            if part is None:
                return None
            return {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in part.items()}

        return type(batch)(labeled=move(batch.labeled), unlabeled=move(batch.unlabeled))

    def autocast(self) -> contextlib.AbstractContextManager:
        amp = self.cfg.train.amp
        if amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        if self.cfg.train.amp == "fp16" and self.device.type == "cuda":
            if self._scaler is None:
                self._scaler = torch.amp.GradScaler("cuda")
            self._scaler.scale(loss).backward()
            self._scaler.step(optimizer)
            self._scaler.update()
            return
        loss.backward()
        optimizer.step()

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        from uncol.eval.evaluate import evaluate_cases

        ids = self.val_ids
        if self.cfg.eval.max_val_cases:
            ids = ids[: self.cfg.eval.max_val_cases]
        res = evaluate_cases(model, self.spec, ids, self.cfg, self.device, progress=False)
        return {k: float(v) for k, v in res["mean"].items()}

    def model_checkpoint(self, method: Any) -> dict[str, Any]:
        from uncol.config import to_dict

        return {"config": to_dict(self.cfg), "labels": {str(k): v for k, v in self.spec.labels.items()},
                "num_classes": self.spec.num_classes, "spatial_dims": self.cfg.data.spatial_dims,
                "model": {k: v.detach().cpu() for k, v in method.inference_model().state_dict().items()}}


def build_run(cfg: Config, out: Path, dist: DistInfo, resume: bool) -> RunContext:
    from uncol.data.dataset import DatasetSpec
    from uncol.data.datasets import SegmentationDataset

    prepare_out_dir(out)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed + dist.rank * 0, cfg.train.deterministic)
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and dist.enabled:
        torch.cuda.set_device(dist.local_rank)
        device = torch.device("cuda", dist.local_rank)
    if not cfg.data.root:
        raise ConfigError("config key 'data.root' is empty: set it to a dataset folder with dataset.json")
    spec = DatasetSpec.load(Path(cfg.data.root))
    split = load_split(cfg, spec, out, resume)
    method = build_method(cfg, spec.num_classes, cfg.data.spatial_dims, device)
    labeled_ds = SegmentationDataset(spec, split.labeled, cfg.data, train=True, labeled=True)
    unlabeled_ds = (SegmentationDataset(spec, split.unlabeled, cfg.data, train=True, labeled=False)
                    if split.unlabeled else None)
    if cfg.train.channels_last and device.type == "cuda":
        method.student.to(memory_format=torch.channels_last if cfg.data.spatial_dims == 2 else torch.channels_last_3d)
    run = RunContext(cfg=cfg, spec=spec, split=split, method=method, device=device, dist=dist,
                     labeled_ds=labeled_ds, unlabeled_ds=unlabeled_ds, val_ids=list(split.val))
    method.attach_run(run) if hasattr(method, "attach_run") else None
    return run
