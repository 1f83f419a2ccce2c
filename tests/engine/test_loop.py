"""The loop's checkpoint selection for multi-stage methods: ``best.pt`` is the last stage's best, never an
earlier stage's; each earlier stage keeps ``best_<stage>.pt``; the summary says where ``best`` came from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uncol.config import load_config
from uncol.engine.loop import train
from uncol.methods.base import METHODS, StagePlan
from uncol.methods.supervised import Supervised

DEMO = Path(__file__).resolve().parents[2] / "src" / "uncol" / "assets" / "demo" / "hc18"
#: validation Dice per stage and iteration: stage 1 scores better than anything in stage 2
SCORES = {("stage1", 1): 0.9, ("stage1", 2): 0.8, ("stage2", 1): 0.5, ("stage2", 2): 0.4}


class TwoStages(Supervised):
    """Supervised, twice, with a scripted validation score (the declared ``validate`` hook)."""

    def stages(self) -> list[StagePlan]:
        return [StagePlan("stage1", 2, 2), StagePlan("stage2", 2, 2)]

    def begin_stage(self, name: str, resumed: bool = False) -> None:
        super().begin_stage(name, resumed)
        self.calls = 0

    def validate(self, run: object) -> dict[str, float]:
        self.calls += 1
        return {"dice": SCORES[(self.stage, self.calls)]}


@pytest.fixture
def two_stages():
    METHODS.register("test_two_stages")(TwoStages)
    yield
    METHODS._items.pop("test_two_stages")


def _cfg(**extra: str):
    return load_config(None, [f"data.root={DEMO}", "data.size=[32,32]", "data.split.ratios=[0.7,0.1,0.2]",
                              "data.split.labeled=4", "model.params={feature_chns: [2, 4, 4, 8, 8]}",
                              "method.name=test_two_stages", "train.batch_size=2", "train.val_every=1",
                              "train.threads=1", "train.device=cpu", "eval.max_val_cases=1",
                              *[f"{k}={v}" for k, v in extra.items()]])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_best_pt_is_the_last_stage_best_even_when_stage1_scored_higher(tmp_path: Path, two_stages: None) -> None:
    summary = train(_cfg(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert summary["best"] == {"metric": 0.5, "iteration": 1, "stage": "stage2", "file": "best.pt"}
    assert summary["stage_bests"]["stage1"] == {"metric": 0.9, "iteration": 1, "stage": "stage1",
                                                "file": "best_stage1.pt"}
    assert json.loads((run / "summary.json").read_text())["best"]["stage"] == "stage2"
    best, stage1, final = _weights(run / "best.pt"), _weights(run / "best_stage1.pt"), _weights(run / "final.pt")
    assert not _same(best, stage1) and not _same(best, final)  # stage 2 after 1 step; stage 1 after 1; end
    assert not (run / "best_stage2.pt").exists()


def test_without_validation_best_pt_is_the_last_stage_final_model(tmp_path: Path, two_stages: None) -> None:
    summary = train(_cfg(**{"data.split.ratios": "[0.8,0.0,0.2]"}), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert _same(_weights(run / "best.pt"), _weights(run / "final.pt"))
    assert summary["best"] == {"metric": None, "iteration": 2, "stage": "stage2", "file": "best.pt"}
    assert summary["stage_bests"] == {} and not list(run.glob("best_*.pt"))


def test_resume_at_the_stage_boundary_keeps_stage1_best(tmp_path: Path, two_stages: None) -> None:
    cut = train(_cfg(**{"train.save_every": "1"}), tmp_path / "run", progress=False, stop_after=2)
    assert cut == {"stopped_at": 2, "stage": "stage1"}
    summary = train(_cfg(**{"train.save_every": "1"}), tmp_path / "run", resume=True, progress=False)
    assert summary["stage_bests"]["stage1"]["metric"] == 0.9 and summary["best"]["stage"] == "stage2"
