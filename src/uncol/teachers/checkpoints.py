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


def read_state_dict(path: str | Path | None, what: str, where: str, inner_key: str | None = None) -> dict:
    """``torch.load(path, weights_only=True)`` -> a flat state dict, or a one-line CheckpointError.

    ``what`` names the weights (e.g. ``MedSAM ViT-B (medsam_vit_b.pth)``), ``where`` says where to get them;
    ``inner_key``: the state dict sits under this key of the saved dict (e.g. ``model_state_dict``).
    """
    if path is None or not Path(path).is_file():
        raise CheckpointError(
            f"{what} checkpoint {str(path)!r} not found; download it from {where} and set teacher.checkpoint to its path"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means an unusable file
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise CheckpointError(
            f"{what} checkpoint {str(path)!r} cannot be read safely ({first}); use the official file from {where}"
        ) from None
    if inner_key is not None:
        if not isinstance(obj, dict) or inner_key not in obj:
            raise CheckpointError(
                f"{what} checkpoint {str(path)!r} has no {inner_key!r} entry; use the official file from {where}"
            )
        obj = obj[inner_key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{what} checkpoint {str(path)!r} is not a state dict of tensors; use the official file from {where}")
    return obj


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
