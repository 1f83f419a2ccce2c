"""Model size and cost: parameters, MACs, peak memory, latency (paper Table 7; SPEC §7).

MAC conventions (per call, for the given input shape, batch included), all from forward hooks
on convolutions, transposed convolutions and linear layers (biases, norms, activations,
interpolation and attention matmuls are not counted):
  * ``macs_exact``: conv ``out.numel() * C_in/groups * prod(k)``, transposed conv
    ``in.numel() * C_out/groups * prod(k)``, linear ``in.numel() / F_in * F_in * F_out``.
  * ``macs_paper``: the paper's tables' convention, i.e. thop's (``ultralytics/thop``, used by the
    authors' code and the semi-supervised literature): as ``macs_exact`` but a transposed conv is
    counted per *output* position, ``out.numel() * C_in/groups * prod(k)`` (stride^d times the
    exact count). Identical to ``macs_exact`` for a network without transposed convs (the 2D
    U-Net/student); it reproduces the published V-Net figure exactly (97.91 G at 128^3, exact 83.82 G).
  * ``macs_full``: FLOPs / 2 from :class:`torch.utils.flop_counter.FlopCounterMode`, i.e.
    ``macs_exact`` plus the attention matmuls (``q k^T`` and ``attn v``); it can be below
    ``macs_paper`` for a network with transposed convs.
The counts run on the ``meta`` device (shapes only, no memory, no arithmetic), so a 128^3 V-Net is
counted in a second on a CPU.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import final

import torch
from torch import Tensor, nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
DEFAULT_EXCLUDE = ("teacher_kv_proj",)


def count_params(
    model: nn.Module, exclude: Iterable[str] = DEFAULT_EXCLUDE, trainable_only: bool = False
) -> int:
    """Number of parameters, leaving out those whose dotted name has a component in ``exclude``
    (default: the training-only ``teacher_kv_proj`` projection of the student)."""
    skip = set(exclude)
    total = 0
    for name, p in model.named_parameters():
        if skip.intersection(name.split(".")) or (trainable_only and not p.requires_grad):
            continue
        total += p.numel()
    return total


def _meta_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).to("meta")
    return m.eval()


def _hook_macs(model: nn.Module, x: Tensor) -> tuple[int, int]:
    """(exact, thop-convention) conv + linear MACs of ``model(x)``."""
    exact = thop = 0

    def hook(m: nn.Module, inp: tuple, out: Tensor) -> None:
        nonlocal exact, thop
        i = inp[0]
        if isinstance(m, _CONV_TS):
            k = math.prod(m.kernel_size)
            exact += i.numel() * (m.out_channels // m.groups) * k
            thop += out.numel() * (m.in_channels // m.groups) * k
        elif isinstance(m, _CONVS):
            n = out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size)
            exact, thop = exact + n, thop + n
        elif isinstance(m, nn.Linear):
            n = i.numel() // m.in_features * m.in_features * m.out_features
            exact, thop = exact + n, thop + n

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, _CONVS + _CONV_TS + (nn.Linear,))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return exact, thop


def count_macs(
    model: nn.Module, input_shape: Sequence[int], exclude: Iterable[str] = DEFAULT_EXCLUDE
) -> dict[str, int]:
    """MACs of ``model(x)`` for ``x`` of shape ``input_shape = (B, C, *S)`` (eval mode, on a meta copy).

    Returns ``{"macs_paper", "macs_exact", "macs_full"}`` (see the module docstring). Modules named in
    ``exclude`` never run in ``forward``, so they cost nothing; the argument is kept for symmetry
    with :func:`count_params`.
    """
    del exclude
    from torch.utils.flop_counter import FlopCounterMode

    m = _meta_copy(model)
    x = torch.zeros(tuple(input_shape), device="meta")
    exact, thop = _hook_macs(m, x)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    return {"macs_paper": int(thop), "macs_exact": int(exact), "macs_full": int(fc.get_total_flops() // 2)}


@final
class _RssPeak:
    """Polls ``/proc/self/statm`` every millisecond; ``peak`` is the largest resident size seen (bytes)."""

    def __init__(self) -> None:
        self.peak = self.base = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):  # not Linux: report 0
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __enter__(self) -> _RssPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._rss())


def profile_model(
    model: nn.Module,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    warmup: int = 2,
    runs: int = 5,
) -> dict[str, object]:
    """Parameters, MACs, peak memory and median latency of one inference ``model(x)``, ``x ~ input_shape``.

    Returns ``{"params", "macs_paper", "macs_exact", "macs_full", "peak_memory_bytes", "memory_method",
    "latency_ms" (median over ``runs`` after ``warmup``), "latency_runs_ms", "device", "input_shape"}``.
    Memory: on CUDA ``torch.cuda.max_memory_allocated`` during the timed runs minus the memory held
    before them (``memory_method="cuda_max_memory_allocated_delta"``); on CPU the peak resident set
    size of the process (polled each ms) minus the size before the runs (``"cpu_rss_peak_delta"``),
    which also sees allocator caching, so it is an upper bound of the activations' memory.
    """
    dev = torch.device(device)
    out: dict[str, object] = {"params": count_params(model), **count_macs(model, input_shape)}
    model = model.to(dev).eval()
    x = torch.randn(tuple(input_shape), device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times: list[float] = []
    cuda = dev.type == "cuda"
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
            base = torch.cuda.memory_allocated(dev)
        with contextlib.nullcontext() if cuda else _RssPeak() as rss:
            for _ in range(runs):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append((time.perf_counter() - t0) * 1000.0)
    if cuda:
        out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(dev) - base)
        out["memory_method"] = "cuda_max_memory_allocated_delta"
    else:
        out["peak_memory_bytes"] = int(rss.peak - rss.base)
        out["memory_method"] = "cpu_rss_peak_delta"
    out["latency_ms"] = statistics.median(times) if times else float("nan")
    out["latency_runs_ms"] = times
    out["device"] = str(dev)
    out["input_shape"] = list(input_shape)
    return out


# ------------------------------------------------------------------------------------------------
# the student of a config, and the Table-7-like comparison


def profile_student(cfg: object, size: Sequence[int] | None = None, num_classes: int | None = None) -> dict[str, object]:
    """``uncol profile``: parameters and MACs of ``cfg.model`` for one image/volume (batch 1).

    ``size`` (spatial, torch order) defaults to ``cfg.data.size``; ``num_classes`` defaults to the
    ``dataset.json`` under ``cfg.data.root``, else 2 (the output head changes the counts by a few
    hundred parameters per class; ``num_classes_source`` says which was used). Returns
    ``{"student": {"name", "params", "macs_paper", "macs_full", "macs_exact"}, "input_shape": [1, C, *S],
    "num_classes", "num_classes_source", "spatial_dims"}``; counts are on the meta device (no memory).
    """
    from uncol.errors import ConfigError
    from uncol.models import build_model

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
    student = {"name": mcfg.name, "params": count_params(model), "macs_paper": macs["macs_paper"],
               "macs_full": macs["macs_full"], "macs_exact": macs["macs_exact"]}
    return {"student": student, "input_shape": list(shape), "num_classes": num_classes,
            "num_classes_source": source, "spatial_dims": data.spatial_dims}


def _dataset_classes(root: str) -> tuple[int, str]:
    from pathlib import Path

    path = Path(root) / "dataset.json" if root else None
    if path is not None and path.is_file():
        from uncol.data.dataset import DatasetSpec

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
    from uncol.config import ModelConfig
    from uncol.models import build_model

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
