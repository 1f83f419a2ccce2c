"""Inference at native resolution: whole-image 2D, slice-wise 2D on volumes, sliding-window 3D (MONAI).

Every path returns class probabilities ``(K, *S_native)`` for one case, from a network whose
``forward(x (B,C,*S)) -> logits (B,K,*S)``; the student runs prompt-free.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from uncol.config import Config
from uncol.data.transforms import fit_image, unfit


@torch.inference_mode()
def predict_probs(model: nn.Module, image: torch.Tensor, cfg: Config, device: torch.device) -> torch.Tensor:
    """image (C,*S) normalised at native size -> probabilities (K,*S) on the CPU.

    - ``data.mode == "whole"``: resize to ``data.size``, one forward pass, logits resized back.
    - ``data.mode == "slices"``: the volume's slices along ``data.slice_axis`` are each resized to ``data.size``.
    - ``data.mode == "patch"``: MONAI sliding-window inference with ``data.size`` windows and
      ``eval.sw_overlap`` overlap (a volume smaller than the window is padded by MONAI).
    """
    modes = [(m, m.training) for m in model.modules()]  # restored exactly afterwards
    model.eval()
    try:
        with _autocast(cfg, device):
            return _predict(model, image, cfg, device)
    finally:
        for m, t in modes:
            m.training = t


def _autocast(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """``train.amp`` (bf16 / fp16) also applies to inference; probabilities are always float32."""
    if cfg.train.amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if cfg.train.amp == "bf16" else torch.float16)


def _predict(model: nn.Module, image: torch.Tensor, cfg: Config, device: torch.device) -> torch.Tensor:
    d = cfg.data
    x = image.unsqueeze(0).to(device).float()
    if cfg.train.channels_last and x.dim() in (4, 5):
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    native = tuple(image.shape[1:])
    if d.mode == "patch":
        from monai.inferers import sliding_window_inference

        logits = sliding_window_inference(x, roi_size=tuple(d.size), sw_batch_size=cfg.eval.sw_batch_size,
                                          predictor=model, overlap=cfg.eval.sw_overlap, mode="gaussian")
        return torch.softmax(logits.float(), dim=1)[0].cpu()
    if d.mode == "slices" and image.dim() == 4:
        axis = 1 + d.slice_axis  # in (C, D, H, W) the spatial axes are 1..3
        slices = x[0].movedim(axis, 1).transpose(0, 1)  # (N, C, h, w)
        out = []
        for i in range(0, slices.shape[0], 16):
            chunk = slices[i:i + 16]
            hw = tuple(chunk.shape[2:])
            lg = model(fit_image(chunk, tuple(d.size), d.resize))
            out.append(torch.softmax(unfit(lg.float(), hw, d.resize), dim=1).cpu())
        probs = torch.cat(out, 0).transpose(0, 1)  # (K, N, h, w)
        return probs.movedim(1, axis)
    logits = model(fit_image(x, tuple(d.size), d.resize))  # data.resize: stretch, or pad keeping the aspect
    logits = unfit(logits.float(), native, d.resize)
    return torch.softmax(logits, dim=1)[0].cpu()
