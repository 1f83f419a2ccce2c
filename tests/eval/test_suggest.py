"""uncol suggest: the scores have known answers; the ranking, CSV and thumbnails are written."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from uncol.eval.suggest import mask_disagreement, mean_entropy, rank_rows, symmetric_kl


def test_scores_known_answers() -> None:
    assert mean_entropy(torch.full((4, 3, 3), 0.25)) == pytest.approx(1.0)
    onehot = torch.nn.functional.one_hot(torch.zeros(3, 3).long(), 3).permute(2, 0, 1).float()
    assert mean_entropy(onehot) == pytest.approx(0, abs=1e-9)
    a = np.zeros((10, 10), int)
    b = np.zeros((10, 10), int)
    a[0:4, 0:5] = 1  # 20 px
    b[2:6, 0:5] = 1  # 20 px, 10 shared
    assert mask_disagreement(a, b, 2) == pytest.approx(1 - 2 * 10 / 40)
    assert mask_disagreement(a * 0, b * 0, 3) == 0.0 and mask_disagreement(a, a * 2, 3) == 1.0
    p = torch.tensor([0.5, 0.5]).view(2, 1, 1)
    q = torch.tensor([0.9, 0.1]).view(2, 1, 1)
    kl = 0.5 * (0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1) + 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5))
    assert symmetric_kl(p, q) == pytest.approx(kl, rel=1e-5)
    rows = [{"case": "a", "entropy": 0.9, "disagreement": 0.0}, {"case": "b", "entropy": 0.5, "disagreement": 0.8},
            {"case": "c", "entropy": 0.7, "disagreement": 0.6}, {"case": "d", "entropy": 0.1, "disagreement": 0.1}]
    ranked = rank_rows(rows, ("entropy", "disagreement"))  # ranks a:(1,4) b:(3,1) c:(2,2) d:(4,3)
    assert [(r["case"], r["score"]) for r in ranked] == [("b", 2.0), ("c", 2.0), ("a", 2.5), ("d", 3.5)]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert [r["case"] for r in rank_rows(rows, ("disagreement",))] == ["b", "c", "d", "a"]


def _run(tmp_path: Path) -> tuple[Path, Path]:
    from uncol.config import Config, DataConfig, ModelConfig, TeacherConfig, to_dict
    from uncol.data.splits import Split
    from uncol.engine.checkpoint import save_checkpoint
    from uncol.models import build_model

    (tmp_path / "ds" / "im").mkdir(parents=True)
    training = []
    for i in range(4):  # c3 is the labelled one
        img = np.full((48, 64), 20, np.uint8)
        img[10 + 3 * i:34, 12:40 + 4 * i] = 200  # a bright block the teacher can segment
        Image.fromarray(img).save(tmp_path / "ds" / "im" / f"c{i}.png")
        Image.fromarray((img > 100).astype(np.uint8)).save(tmp_path / "ds" / "im" / f"c{i}_m.png")
        training.append({"image": f"im/c{i}.png", "label": f"im/c{i}_m.png"})
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": training}))
    torch.manual_seed(0)
    cfg = Config(data=DataConfig(root=str(tmp_path / "ds"), size=(32, 32)),
                 model=ModelConfig(name="unet", params={"feature_chns": [4, 8, 8, 8, 8]}),
                 teacher=TeacherConfig(name="litemedsam"))
    model = build_model(cfg.model, spatial_dims=2, num_classes=2)
    run = tmp_path / "run"
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "spatial_dims": 2, "num_classes": 2},
                    run / "best.pt")
    Split(train=["c0", "c1", "c2", "c3"], val=[], test=[], labeled=["c3"], unlabeled=["c0", "c1", "c2"]).save(
        run / "split.json")
    return run / "best.pt", tmp_path / "ds"


def _csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_suggest_without_teacher_ranks_by_entropy(tmp_path: Path) -> None:
    from uncol.cli import main

    ckpt, ds = _run(tmp_path)
    out = tmp_path / "sug"
    assert main(["suggest", "--checkpoint", str(ckpt), "--data", str(ds), "--teacher", "none", "--out", str(out),
                 "--device", "cpu", "--top", "2"]) == 0
    rows = _csv(out / "suggest.csv")
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and sorted(r["case"] for r in rows) == ["c0", "c1", "c2"]
    ent = [float(r["entropy"]) for r in rows]
    assert ent == sorted(ent, reverse=True) and rows[0]["disagreement"] == "nan"
    thumbs = sorted(p.name for p in (out / "thumbnails").iterdir())
    assert thumbs == [f"01_{rows[0]['case']}.png", f"02_{rows[1]['case']}.png"]
    assert (out / "thumbnails" / thumbs[0]).read_bytes()[:4] == b"\x89PNG" and "01_" in (out / "suggest.md").read_text()


@pytest.mark.slow
def test_suggest_with_the_litemedsam_teacher(tmp_path: Path) -> None:
    from uncol.eval.suggest import suggest

    ckpt, ds = _run(tmp_path)
    rows = suggest(ckpt, ds, tmp_path / "sug", device="cpu", progress=False)  # teacher from the checkpoint
    assert len(rows) == 3
    for r in rows:
        assert 0.0 <= r["disagreement"] <= 1.0 and r["sym_kl"] >= 0.0 and 0.0 <= r["entropy"] <= 1.0
    assert {r["rank"] for r in rows} == {1, 2, 3}
    assert rows[0]["score"] <= rows[1]["score"] <= rows[2]["score"]


def test_report_shows_which_case_to_label_next(tmp_path: Path) -> None:
    """``uncol suggest`` without --out writes RUN/suggest/; ``uncol report RUN`` then shows the ranking and thumbnails."""
    from uncol.cli import main

    ckpt, ds = _run(tmp_path)
    run = ckpt.parent
    (run / "summary.json").write_text(json.dumps({"method": "supervised"}))
    assert main(["suggest", "--checkpoint", str(ckpt), "--data", str(ds), "--teacher", "none", "--device", "cpu",
                 "--top", "2"]) == 0
    rows = _csv(run / "suggest" / "suggest.csv")
    assert main(["report", str(run), "--no-overlays"]) == 0
    page = (run / "report" / "report.html").read_text()
    assert "Which case to label next" in page and "no teacher" in page
    section = page[page.index("Which case to label next"):]
    assert section.index(f"<td>{rows[0]['case']}</td>") < section.index(f"<td>{rows[2]['case']}</td>")
    assert section.count("data:image/png;base64,") == 2 and f"#1 {rows[0]['case']}" in section
