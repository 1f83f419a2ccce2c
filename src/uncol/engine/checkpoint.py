"""Training checkpoints: what ``last.pt`` holds beyond the weights (RNG and generator states).

The file format itself (atomic writes, ``weights_only`` loads, the format version) is in :mod:`uncol.runtime`.

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

from typing import Any

import torch
from torch import nn

# the file format (write, safe load, strict state load, finite check) is the runtime layer's: eval reads checkpoints too
from uncol.runtime import (
    FORMAT_VERSION,
    check_finite_state,
    load_checkpoint,
    load_state_strict,
    nonfinite_keys,
    safe_load,
    save_checkpoint,
)

__all__ = [
    "FORMAT_VERSION",
    "check_finite_state",
    "generator_states",
    "load_checkpoint",
    "load_state_strict",
    "nonfinite_keys",
    "rng_state",
    "safe_load",
    "save_checkpoint",
    "set_generator_states",
    "set_rng_state",
]


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
