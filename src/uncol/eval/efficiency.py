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
from collections.abc import Iterable, Sequence
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
    macs: bool = True,
) -> dict[str, object]:
    """Parameters, MACs, peak memory and median latency of one inference ``model(x)``, ``x ~ input_shape``.

    ``macs=False`` skips the MAC count (a model whose forward cannot run on the meta device).

    Returns ``{"params", "macs_paper", "macs_exact", "macs_full", "peak_memory_bytes", "memory_method",
    "latency_ms" (median over ``runs`` after ``warmup``), "latency_runs_ms", "device", "input_shape"}``.
    Memory: on CUDA ``torch.cuda.max_memory_allocated`` during the timed runs minus the memory held
    before them (``memory_method="cuda_max_memory_allocated_delta"``); on CPU the peak resident set
    size of the process (polled each ms) minus the size before the runs (``"cpu_rss_peak_delta"``),
    which also sees allocator caching, so it is an upper bound of the activations' memory.
    """
    dev = torch.device(device)
    out: dict[str, object] = {"params": count_params(model), **(count_macs(model, input_shape) if macs else {})}
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
