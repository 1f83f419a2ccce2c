"""Checkpoints: atomic writes, ``weights_only`` loads, a format version and the config inside.

A checkpoint is a plain dict of tensors and builtins (safe to load with ``weights_only=True``)::

    {"format_version": 1, "config": {...}, "labels": {"0": "background", ...},
     "spatial_dims": 2, "num_classes": 2,
     "model": student state_dict,            # what inference needs
     "method": method state_dict,            # student + EMA + projectors (training)
     "optimizer": ..., "scaler": fp16 loss-scaler state or None,
     "stage_index": int (index in method.stages() of the stage to run next), "stage": str,
     "iteration": int (iterations of that stage already done), "rng": {...} (torch/python/numpy/cuda),
     "generators": {name: state} (every torch.Generator attribute of the method's modules and teachers),
     "loader": {...} (sampler epoch + position per stream), "world_size": int,
     "best": {"metric": float, "iteration": int, "stage": str}}

``best.pt`` and ``final.pt`` hold the first block only (what ``evaluate``/``predict`` need).
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uncol.engine.io import atomic_torch_save
from uncol.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` (with ``format_version`` added) atomically: temp file + rename."""
    atomic_torch_save({"format_version": FORMAT_VERSION, **obj}, Path(path))


def safe_load(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(..., weights_only=True)``; refuse pickles that would run code, with one clear line."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{what} {str(p)!r} not found; pass the path of an existing file")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the one-line error says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # garbage bytes or an unsupported pickle opcode
            raise CheckpointError(f"{what} {str(p)!r} was refused by the safe loader (weights_only=True): it is "
                                  "not a plain tensor file (corrupt, or a pickle of Python objects); re-create it, "
                                  "or re-save it as a state dict in an environment you trust") from None
        raise CheckpointError(
            f"{what} {str(p)!r} was refused by the safe loader (weights_only=True): it holds Python objects "
            f"that could run code ({_refusal_reason(str(e))}); load only files you trust, and re-save them as a "
            "plain state dict (torch.save(model.state_dict(), path))"
        ) from None
    except Exception as e:  # noqa: BLE001 - garbage bytes reach the unpickler's internals (IndexError, KeyError, ...)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{what} {str(p)!r} is unreadable or truncated ({first}); re-create or re-download it") from None


def _refusal_reason(text: str) -> str:
    """The informative part of torch's weights-only refusal (``Unsupported global: GLOBAL x``), one line."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    m = re.search(r"Unsupported global[^.]*", text)
    if m:
        return m.group(0).replace(" was not an allowed global by default", " not allowed").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "unsafe pickle")[:160]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"checkpoint {str(path)!r} is not an uncol checkpoint (no format_version); use a file written by `uncol train`")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format {ckpt['format_version']}, newer than this uncol ({FORMAT_VERSION}); upgrade uncol"
        )
    return ckpt


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists which keys differ."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shape:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise CheckpointError(
            f"{source} was made for another architecture: {'; '.join(parts)}; use the config the checkpoint was trained with"
        )
    module.load_state_dict(state, strict=True)


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                          "python_pos": random.getstate()[2], "numpy": torch.from_numpy(np.random.get_state()[1].astype("int64")),
                          "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    import random

    import numpy as np

    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), st["python_pos"]))
    np.random.set_state(("MT19937", st["numpy"].numpy().astype("uint32"), st["numpy_pos"], 0, 0.0))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _generators(method: nn.Module) -> dict[str, torch.Generator]:
    """Every ``torch.Generator`` attribute of ``method``'s modules and of its frozen teachers, by dotted name.

    Methods own generators for their random masks and prompt jitter (``self._gen``); resume restores
    them so that a resumed run draws the same masks as an uninterrupted one. A method needs no hook
    for this; state kept in other objects can use ``nn.Module.get_extra_state``/``set_extra_state``.
    """
    mods = list(method.named_modules())
    for i, t in enumerate(getattr(method, "_teacher", []) or []):
        if isinstance(t, nn.Module):
            mods += [(f"_teacher.{i}.{n}" if n else f"_teacher.{i}", m) for n, m in t.named_modules()]
    found: dict[str, torch.Generator] = {}
    for name, mod in mods:
        for key, value in vars(mod).items():
            if isinstance(value, torch.Generator):
                found[f"{name}.{key}" if name else key] = value
    return found


def generator_states(method: nn.Module) -> dict[str, torch.Tensor]:
    return {k: g.get_state() for k, g in _generators(method).items()}


def set_generator_states(method: nn.Module, states: dict[str, torch.Tensor]) -> None:
    gens = _generators(method)
    for k, st in states.items():
        if k in gens:
            gens[k].set_state(st)
