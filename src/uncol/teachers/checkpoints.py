"""Loading official teacher weights safely and strictly, with errors that say where to get them."""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from uncol.errors import CheckpointError

_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (memoised per path, size and mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def training_globals() -> list:
    """The non-tensor objects official training checkpoints pickle beside their weights (an
    ``argparse.Namespace`` of arguments, numpy loss values): allowed for the safe loader, nothing else."""
    import argparse

    allowed: list = [argparse.Namespace]
    try:
        import numpy as np

        core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
        scalar = core.multiarray.scalar
        allowed += [np.dtype, scalar] + [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    except Exception:  # noqa: BLE001 - numpy absent or moved: the plain safe loader still runs
        return allowed
    return allowed


def read_state_dict(path: str | Path | None, what: str, where: str, inner_key: str | None = None,
                    allowed_globals: list | None = None, strip_prefix: str = "") -> dict[str, torch.Tensor]:
    """``torch.load(path, weights_only=True)`` -> a flat state dict, or a one-line CheckpointError.

    ``what`` names the weights (e.g. ``MedSAM ViT-B (medsam_vit_b.pth)``), ``where`` says where to get them;
    ``inner_key``: a training checkpoint keeps the state dict under this key (e.g. ``model_state_dict``; a
    plain state dict is accepted too); ``allowed_globals`` are the non-tensor objects the safe loader may
    rebuild (:func:`training_globals`); ``strip_prefix`` is removed from every key (``module.`` of DDP copies).
    """
    if path is None or not Path(path).is_file():
        raise CheckpointError(
            f"{what} checkpoint {str(path)!r} not found; download it from {where} and set teacher.checkpoint to its path"
        )
    try:
        with torch.serialization.safe_globals(allowed_globals or []):
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable file
        try:
            names = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))[:5])
        except Exception:  # noqa: BLE001 - not even a zip checkpoint
            names = ""
        first = names or (str(e).splitlines() or [type(e).__name__])[0][:200]
        state = f"ck.get({inner_key!r}, ck)" if inner_key else "ck"
        raise CheckpointError(
            f"{what} checkpoint {str(path)!r} cannot be read safely with weights_only=True ({first}); if you trust it, "
            f"extract the weights once with python -c \"import torch; ck = torch.load('IN', weights_only=False); "
            f"torch.save({state}, 'OUT')\" and set teacher.checkpoint to OUT; official files: {where}"
        ) from None
    if inner_key is not None and isinstance(obj, dict) and inner_key in obj:
        obj = obj[inner_key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        under = f" (neither itself nor under {inner_key!r})" if inner_key else ""
        raise CheckpointError(f"{what} checkpoint {str(path)!r} holds no state dict of tensors{under}; "
                              f"use the official file from {where}")
    return {k.removeprefix(strip_prefix) if strip_prefix else k: v for k, v in obj.items()}


def load_strict(module: nn.Module, state: dict, path: str | Path, what: str, where: str) -> None:
    """``module.load_state_dict(state, strict=True)``; any difference -> one-line CheckpointError naming keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)}!={tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:3]) + (f" (+{len(xs) - 3} more)" if len(xs) > 3 else "")

        parts = [f"{len(missing)} missing keys: {few(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected keys: {few(unexpected)}" if unexpected else "",
                 f"{len(shapes)} shape mismatches: {few(shapes)}" if shapes else ""]
        raise CheckpointError(
            f"{str(path)!r} is not a {what} checkpoint ({'; '.join(p for p in parts if p)}); "
            f"get the official one from {where}"
        )
    module.load_state_dict(state, strict=True)
