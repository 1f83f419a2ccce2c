"""Every registered method that needs no frozen teacher: two steps per stage through the real loop, 2D and 3D.

Drives :func:`uncol.engine.loop.train` on the embedded demo data (HC18 2D at 32x32, hippocampus 3D at
16x32x16) with a tiny U-Net; checks the losses are finite and the student's weights moved.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import uncol.methods  # noqa: F401  (registers the lead's methods)
from uncol.config import Config, from_dict
from uncol.engine import setup
from uncol.engine.checkpoint import load_checkpoint
from uncol.engine.loop import train
from uncol.methods import METHODS, bcp, mean_teacher, ua_mt, urpc  # noqa: F401  (register the baselines)

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo"
MODEL_FOR = {"urpc": "unet_urpc"}  # methods that need a particular network; the rest use the U-Net
FAST_PARAMS = {"ua_mt": {"mc_passes": 2}}  # keep the smoke test cheap
NO_TEACHER = [name for name in METHODS.names() if not METHODS.get(name).needs_teacher]


def _cfg(method: str, spatial_dims: int) -> Config:
    if spatial_dims == 2:
        data = {"root": str(DEMO / "hc18"), "spatial_dims": 2, "size": [32, 32]}
    else:
        data = {"root": str(DEMO / "hippocampus"), "spatial_dims": 3, "size": [16, 32, 16]}
    data.update(split={"ratios": [0.6, 0.2, 0.2], "labeled": 3}, augment={"enabled": False})
    stage_iters = {"pretrain_iterations": 2, "selftrain_iterations": 2} if method == "bcp" else {}
    d = {"data": data,
         "model": {"name": MODEL_FOR.get(method, "unet"), "params": {"feature_chns": [4, 8, 8, 16, 16]}},
         "method": {"name": method, "params": {**FAST_PARAMS.get(method, {}), **stage_iters}},
         "train": {"iterations": 2, "batch_size": 2, "labeled_bs": 2, "unlabeled_bs": 2, "val_every": 100,
                   "save_every": 100, "log_every": 1, "threads": 1, "device": "cpu"},
         "eval": {"max_val_cases": 1}}
    return from_dict(Config, d)


def test_the_baselines_are_registered() -> None:
    assert {"mean_teacher", "ua_mt", "bcp", "urpc"} <= set(METHODS.names())


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("method", NO_TEACHER)
def test_two_steps(method: str, spatial_dims: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    initial: dict[str, torch.Tensor] = {}
    stages: list[str] = []
    build = setup.build_method

    def recording_build(*args, **kwargs):
        m = build(*args, **kwargs)
        initial.update(copy.deepcopy(m.inference_model().state_dict()))
        stages.extend(s.name for s in m.stages())
        return m

    monkeypatch.setattr(setup, "build_method", recording_build)
    cfg = _cfg(method, spatial_dims)
    train(cfg, tmp_path / "run", progress=False)

    recs = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in recs if r["kind"] == "train"]
    assert [r["stage"] for r in steps] == [s for s in stages for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    final = load_checkpoint(tmp_path / "run" / "final.pt")["model"]
    assert final.keys() == initial.keys()
    moved = [k for k in initial if initial[k].is_floating_point() and not torch.equal(initial[k], final[k])]
    assert any(k.endswith("weight") for k in moved), "no weight changed in two steps"
