"""Profiles built on :mod:`uncol.eval.efficiency`: ``uncol profile`` (a config's student) and the
Table-7-like comparison of the student with the foundation-model teachers (parameters, MACs, latency).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from uncol.config import ModelConfig
from uncol.data.dataset import DatasetSpec
from uncol.errors import ConfigError
from uncol.eval.efficiency import count_macs, count_params, profile_model
from uncol.models import build_model


def profile_student(cfg: object, size: Sequence[int] | None = None, num_classes: int | None = None,
                    latency: bool = False, device: str = "cpu", warmup: int = 1, runs: int = 5,
                    log: Callable[[str], None] | None = None) -> dict[str, object]:
    """``uncol profile``: parameters and MACs of ``cfg.model`` for one image/volume (batch 1); with
    ``latency``, also the student's and the config's teacher's latency (median of ``runs`` after ``warmup``)
    and peak memory on ``device`` (:func:`profile_model`): ``student.latency_ms``,
    ``student.peak_memory_mb`` and ``teacher.{latency_ms, peak_memory_mb, weights, ...}`` (:func:`profile_teacher`).

    ``size`` (spatial, torch order) defaults to ``cfg.data.size``; ``num_classes`` defaults to the
    ``dataset.json`` under ``cfg.data.root``, else 2 (the output head changes the counts by a few
    hundred parameters per class; ``num_classes_source`` says which was used). Returns
    ``{"student": {"name", "params", "macs_paper", "macs_full", "macs_exact"}, "input_shape": [1, C, *S],
    "num_classes", "num_classes_source", "spatial_dims"}``; counts are on the meta device (no memory).
    """
    data, mcfg = cfg.data, cfg.model  # type: ignore[attr-defined]
    spatial = tuple(int(s) for s in (size if size else data.size))
    if len(spatial) != data.spatial_dims:
        raise ConfigError(f"profile size {list(spatial)} has {len(spatial)} axes but data.spatial_dims is "
                          f"{data.spatial_dims}; pass --size with {data.spatial_dims} numbers")
    source = "argument"
    if num_classes is None and getattr(mcfg, "num_classes", 0):
        num_classes, source = mcfg.num_classes, "config key model.num_classes"
    if num_classes is None:
        num_classes, source = _dataset_classes(data.root)
    model = build_model(mcfg, spatial_dims=data.spatial_dims, num_classes=num_classes)
    shape = (1, mcfg.in_channels, *spatial)
    macs = count_macs(model, shape)
    student: dict[str, object] = {"name": mcfg.name, "params": count_params(model), "macs_paper": macs["macs_paper"],
                                  "macs_full": macs["macs_full"], "macs_exact": macs["macs_exact"]}
    out: dict[str, object] = {"student": student, "input_shape": list(shape), "num_classes": num_classes,
                              "num_classes_source": source, "spatial_dims": data.spatial_dims}
    if latency:
        if log is not None:
            log(f"timing the student ({mcfg.name}) on {device}: {warmup} warm-up, median of {runs}")
        student.update(_timing(profile_model(model, shape, device, warmup=warmup, runs=runs, macs=False)))
        out["teacher"] = profile_teacher(cfg, shape, device, warmup, runs, log)
    return out


def _timing(r: dict[str, object]) -> dict[str, object]:
    mem = r["peak_memory_bytes"]
    return {"latency_ms": r["latency_ms"], "latency_runs_ms": r["latency_runs_ms"], "device": r["device"],
            "peak_memory_mb": float(mem) / 2**20, "memory_method": r["memory_method"]}  # type: ignore[arg-type]


class _TeacherCall(nn.Module):
    """The config's teacher as one inference: ``encode`` then ``decode`` of one prompt (class 1, a box,
    points or per-slice boxes as the teacher takes) around the middle half of the image -> probabilities."""

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.teacher = teacher

    def forward(self, x: Tensor) -> Tensor:
        from uncol.teachers.prompts import make_prompts

        size = tuple(x.shape[2:])
        label = torch.zeros(x.shape[0], *size, dtype=torch.long, device=x.device)
        label[(slice(None), *(slice(s // 4, max(s // 4 + 1, 3 * s // 4)) for s in size))] = 1
        prompts = make_prompts(label, 2, kind=self.teacher.prompt_kind)  # type: ignore[attr-defined]
        emb = self.teacher.encode(x)  # type: ignore[attr-defined]
        return self.teacher.decode(emb, prompts, 2, size, outputs=("probs",)).probs  # type: ignore[attr-defined]


_RANDOM_TEACHERS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "litemedsam": (lambda: _litemedsam(), (1, 3, 256, 256)),
    "medsam_vit_b": (lambda: _medsam_vit_b(), (1, 3, 1024, 1024)),
    "sam_med3d": (lambda: _sam_med3d(), (1, 1, 128, 128, 128)),
}


def profile_teacher(cfg: object, shape: Sequence[int], device: str = "cpu", warmup: int = 1, runs: int = 5,
                    log: Callable[[str], None] | None = None) -> dict[str, object]:
    """Latency and peak memory of ``cfg.teacher`` answering one prompt for an input of ``shape`` (batch 1).

    The teacher is built as training builds it (its weights; online, no cache). Where its weights are not
    on this machine, the same architecture with random weights is timed at the model's own input size
    (image encoder + one prompt through the decoder; ``weights`` says so): latency does not depend on the
    weights' values. ``{"name": "none"}`` for a config without a teacher."""
    import dataclasses

    from uncol.errors import CheckpointError
    from uncol.teachers import build_teacher

    tcfg = cfg.teacher  # type: ignore[attr-defined]
    if tcfg.name == "none":
        return {"name": "none"}
    try:
        model: nn.Module = _TeacherCall(build_teacher(dataclasses.replace(tcfg, mode="online"), len(shape) - 2))
        weights, tshape = "checkpoint", tuple(shape)
    except CheckpointError as e:
        if tcfg.name not in _RANDOM_TEACHERS:
            raise
        build, tshape = _RANDOM_TEACHERS[tcfg.name]
        model, weights = build(), f"random (timing only; {str(e).split(';')[0]})"
    if log is not None:
        log(f"timing the teacher ({tcfg.name}, {weights.split(' ')[0]} weights) on {device}: input {list(tshape)}")
    r = profile_model(model, tshape, device, warmup=warmup, runs=runs, macs=False)
    return {"name": tcfg.name, "weights": weights, "params": r["params"], "input_shape": list(tshape), **_timing(r)}


def _dataset_classes(root: str) -> tuple[int, str]:
    path = Path(root) / "dataset.json" if root else None
    if path is not None and path.is_file():
        return DatasetSpec.load(Path(root)).num_classes, str(path)
    return 2, "default (no dataset.json under data.root)"


class _Sam2DOneBox(nn.Module):
    """SAM-family 2D teacher for timing: image encoder + one box prompt through the mask decoder.

    ``x (1, 3, S, S)`` -> single-mask logits ``(1, 1, S/4, S/4)`` (SAM's low-resolution output)."""

    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> None:
        super().__init__()
        self.image_encoder, self.prompt_encoder, self.mask_decoder = image_encoder, prompt_encoder, mask_decoder
        self.requires_grad_(False)  # frozen, as a teacher is (and FlopCounterMode needs no grad hooks)

    def forward(self, x: Tensor) -> Tensor:
        s = x.shape[-1]
        box = torch.zeros(1, 4, device=x.device) + torch.tensor([s / 4, s / 4, 3 * s / 4, 3 * s / 4]).to(x.device)
        emb = self.image_encoder(x)
        sparse, dense = self.prompt_encoder(points=None, boxes=box, masks=None)
        logits, _ = self.mask_decoder(image_embeddings=emb, image_pe=self.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                      multimask_output=False)
        return logits


class _Sam3DOnePoint(nn.Module):
    """SAM-Med3D for timing: image encoder + one point prompt through the mask decoder (random weights)."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.sam = sam.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        emb, _ = self.sam.encode(x)
        g = self.sam.cfg.img_size
        coords = torch.zeros(1, 1, 3, device=x.device) + g / 2
        labels = torch.ones(1, 1, dtype=torch.long, device=x.device)
        mask = torch.zeros(1, 1, *(4 * emb.shape[-1],) * 3, device=x.device)
        return self.sam.decode(emb, (coords, labels), mask)[0]


def _litemedsam() -> nn.Module:
    from uncol.teachers.litemedsam import _build_parts

    return _Sam2DOneBox(*_build_parts())


def _medsam_vit_b() -> nn.Module:
    from uncol.teachers.medsam import build_sam_vit_b_parts

    return _Sam2DOneBox(*build_sam_vit_b_parts(1024))


def _sam_med3d() -> nn.Module:
    from uncol.teachers.sam3d.model import Sam3D, Sam3DConfig

    return _Sam3DOnePoint(Sam3D(Sam3DConfig()))


def default_profile_entries() -> list[tuple[str, str, object, tuple[int, ...]]]:
    """``(dims, label, builder, input_shape)`` rows of the Table-7-like comparison (paper sizes, batch 1).

    Teachers run with random weights (timing only): image encoder + one prompt through the decoder.
    Students/baselines use the K of the paper's datasets (OASIS 5 classes in 2D, ImageTBAD 3 in 3D).
    """
    def model(name: str, d: int, k: int) -> Callable[[], nn.Module]:
        return lambda: build_model(ModelConfig(name=name), spatial_dims=d, num_classes=k)

    return [
        ("2D", "LiteMedSAM (teacher) 256²", _litemedsam, (1, 3, 256, 256)),
        ("2D", "MedSAM ViT-B (teacher) 1024²", _medsam_vit_b, (1, 3, 1024, 1024)),
        ("2D", "U-Net (MT/UA-MT/BCP group) 256²", model("unet", 2, 5), (1, 1, 256, 256)),
        ("2D", "UnCoL student 256²", model("uncol_student", 2, 5), (1, 1, 256, 256)),
        ("3D", "SAM-Med3D (teacher) 128³", _sam_med3d, (1, 1, 128, 128, 128)),
        ("3D", "V-Net (MT/UA-MT/BCP group) 128³", model("vnet", 3, 3), (1, 1, 128, 128, 128)),
        ("3D", "UnCoL student 128³", model("uncol_student", 3, 3), (1, 1, 128, 128, 128)),
    ]


def profile_table(
    entries: Sequence[tuple[str, str, object, tuple[int, ...]]] | None = None,
    device: str | torch.device = "cpu",
    warmup: int = 1,
    runs: int = 5,
    runs_for: dict[str, int] | None = None,
    latency: bool = True,
    log: object = None,
) -> tuple[str, list[dict[str, object]]]:
    """Profile each ``(dims, label, builder, input_shape)`` row (default :func:`default_profile_entries`).

    ``runs_for`` overrides ``runs`` per label (e.g. few runs for a slow teacher); ``latency=False``
    only counts parameters and MACs. ``log`` (a callable taking a str) reports progress.
    Returns ``(markdown table, rows)``; each row is :func:`profile_model`'s dict plus ``dims``,
    ``label``, ``runs``. Latency ratios in the table are relative to LiteMedSAM and MedSAM ViT-B
    when those rows are present (student latency / teacher latency).
    """
    rows: list[dict[str, object]] = []
    for dims, label, build, shape in entries if entries is not None else default_profile_entries():
        model = build()  # type: ignore[operator]
        n = (runs_for or {}).get(label, runs)
        if latency:
            r = profile_model(model, shape, device, warmup=warmup, runs=n)
        else:
            r = {"params": count_params(model), **count_macs(model, shape), "input_shape": list(shape)}
        r.update(dims=dims, label=label, runs=n if latency else 0)
        rows.append(r)
        del model
        if log is not None:
            log(f"{label}: {r['params'] / 1e6:.2f} M params, {r['macs_paper'] / 1e9:.2f} GMACs"  # type: ignore[operator]
                + (f", {r['latency_ms']:.1f} ms" if latency else ""))
    return format_profile_table(rows), rows


def format_profile_table(rows: Sequence[dict[str, object]]) -> str:
    """Markdown: dims, model, params (M), GMACs paper/full, peak memory (MiB), latency (ms, median of N)."""
    head = "| Dim. | Model | Params (M) | MACs paper (G) | MACs full (G) | Peak mem. (MiB) | Latency (ms) | runs |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        mem = r.get("peak_memory_bytes")
        lat = r.get("latency_ms")
        lines.append(
            f"| {r['dims']} | {r['label']} | {r['params'] / 1e6:.2f} | {r['macs_paper'] / 1e9:.2f} | "  # type: ignore[operator]
            f"{r['macs_full'] / 1e9:.2f} | {'–' if mem is None else f'{mem / 2**20:.0f}'} | "  # type: ignore[operator]
            f"{'–' if lat is None else f'{lat:.1f}'} | {r.get('runs', '–')} |"
        )
    return "\n".join(lines)


def latency_ratios(rows: Sequence[dict[str, object]], student: str, references: Sequence[str]) -> dict[str, float]:
    """``{reference label: latency(student) / latency(reference)}`` for the rows named (labels)."""
    by = {str(r["label"]): r for r in rows}
    s = float(by[student]["latency_ms"])  # type: ignore[arg-type]
    return {ref: s / float(by[ref]["latency_ms"]) for ref in references if ref in by}  # type: ignore[arg-type]
