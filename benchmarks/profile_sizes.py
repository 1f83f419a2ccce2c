"""Print the measured sizes of the U-Net, V-Net and UnCoL students against the published figures.

    python benchmarks/profile_sizes.py            # params and MACs (meta device, ~5 s on a CPU)
    python benchmarks/profile_sizes.py --latency  # also latency/peak memory of one inference (slow on CPU in 3D)

MACs per image/volume (batch 1, 1 input channel); conventions in ``uncol.eval.efficiency``.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

import torch
from torch import nn

from uncol.config import ModelConfig
from uncol.eval.efficiency import _CONV_TS, _CONVS, _meta_copy, count_macs, count_params, profile_model
from uncol.models import build_model

# (name, dims, classes, input, published params (M), published GMACs, where from)
CASES = [
    ("unet", 2, 4, (1, 1, 256, 256), 1.81, 3.01, "SSL4MIS U-Net, SPEC"),
    ("vnet", 3, 2, (1, 1, 128, 128, 128), 9.44, 97.9, "UA-MT/MC-Net V-Net, SPEC"),
    ("uncol_student", 2, 5, (1, 1, 256, 256), 3.53, 3.60, "paper Table 7 (OASIS)"),
    ("uncol_student", 3, 3, (1, 1, 128, 128, 128), 13.94, 144.45, "paper Table 7 (ImageTBAD)"),
]


def per_component(model: nn.Module, shape: tuple[int, ...]) -> dict[str, list[float]]:
    """{top-level child: [params, exact MACs, paper MACs]} (teacher_kv_proj's params reported apart)."""
    m = _meta_copy(model)
    acc: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for name, child in model.named_children():
        acc[name][0] = sum(p.numel() for p in child.parameters())

    def hook_for(top: str):
        def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            if isinstance(mod, _CONV_TS):
                k = math.prod(mod.kernel_size)
                acc[top][1] += inp[0].numel() * mod.out_channels // mod.groups * k
                acc[top][2] += out.numel() * mod.in_channels // mod.groups * k
            elif isinstance(mod, _CONVS):
                n = out.numel() * mod.in_channels // mod.groups * math.prod(mod.kernel_size)
                acc[top][1] += n
                acc[top][2] += n
            elif isinstance(mod, nn.Linear):
                n = inp[0].numel() * mod.out_features
                acc[top][1] += n
                acc[top][2] += n

        return hook

    for name, mod in m.named_modules():
        if isinstance(mod, _CONVS + _CONV_TS + (nn.Linear,)):
            mod.register_forward_hook(hook_for(name.split(".")[0]))
    with torch.no_grad():
        m(torch.zeros(shape, device="meta"))
    return dict(acc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    print(
        f"{'model':<15}{'dims':>5}{'K':>3}  {'params':>12} {'paper':>7} {'Δ':>7}  {'GMACs paper':>11} {'paper':>7} {'Δ':>7}"
        f"  {'exact':>8} {'full':>8}  source"
    )
    for name, d, k, shape, p_ref, m_ref, src in CASES:
        model = build_model(ModelConfig(name=name), d, k)
        n = count_params(model)
        macs = count_macs(model, shape)
        g = macs["macs_paper"] / 1e9
        print(
            f"{name:<15}{d:>5}{k:>3}  {n:>12,} {p_ref:>6.2f}M {100 * (n / 1e6 / p_ref - 1):>+6.1f}%"
            f"  {g:>11.3f} {m_ref:>7.2f} {100 * (g / m_ref - 1):>+6.1f}%"
            f"  {macs['macs_exact'] / 1e9:>8.3f} {macs['macs_full'] / 1e9:>8.3f}  {src}"
        )
        if name == "uncol_student":
            for comp, (pp, me, mp) in per_component(model, shape).items():
                print(
                    f"    {comp:<16} params {int(pp):>11,}   GMACs exact {me / 1e9:8.3f}   paper {mp / 1e9:8.3f}"
                )
        if args.latency:
            r = profile_model(model, shape, args.device, warmup=1, runs=3)
            print(
                f"    latency {r['latency_ms']:.1f} ms, peak memory {r['peak_memory_bytes'] / 2**20:.1f} MiB "
                f"({r['memory_method']}) on {r['device']}"
            )


if __name__ == "__main__":
    main()
