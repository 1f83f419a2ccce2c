"""Distances in mm from per-case pixel sizes (spacing CSV), labelled px without them; HC18 against a hand reference."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial import cKDTree

from uncol.config import Config, DataConfig, ModelConfig, to_dict
from uncol.data.dataset import DatasetSpec, import_folder
from uncol.engine.checkpoint import save_checkpoint
from uncol.errors import DataError

HC18_CASES = ("000_HC", "001_HC", "004_HC")  # pixel sizes 0.0691, 0.0897, 0.0612 mm


def _border_mm(mask: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Border pixels (a foreground pixel with a 4-neighbour outside the mask or the image), in mm."""
    m = np.pad(mask, 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return np.argwhere(mask & ~inner) * pixel_mm


def _hand_hd95_asd(pred: np.ndarray, gt: np.ndarray, pixel_mm: float) -> tuple[float, float]:
    bp, bg = _border_mm(pred, pixel_mm), _border_mm(gt, pixel_mm)
    d_pg, d_gp = cKDTree(bg).query(bp)[0], cKDTree(bp).query(bg)[0]
    return max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)), float(np.concatenate([d_pg, d_gp]).mean())


def _hc18_dataset(tmp_path: Path, src: Path, with_csv: bool) -> DatasetSpec:
    (tmp_path / "im").mkdir(exist_ok=True)
    (tmp_path / "ms").mkdir(exist_ok=True)
    for name in HC18_CASES:
        shutil.copy(src / "images" / f"{name}.png", tmp_path / "im")
        shutil.copy(src / "masks" / f"{name}_mask.png", tmp_path / "ms")
    csv_path = src / "training_set_pixel_size_and_HC.csv" if with_csv else None
    return import_folder(tmp_path / "im", tmp_path / "ms", tmp_path / ("ds" if with_csv else "ds_px"),
                         label_suffix="_mask", spacing_csv=csv_path)


def _random_unet_checkpoint(path: Path, root: Path) -> None:
    torch.manual_seed(0)  # a fixed, untrained U-Net: non-empty, imperfect masks (Dice ~0.1)
    from uncol.models import build_model

    cfg = Config(data=DataConfig(root=str(root), size=(64, 64), resize="pad"),
                 model=ModelConfig(name="unet", params={"feature_chns": [4, 8, 8, 8, 8]}))
    model = build_model(cfg.model, spatial_dims=2, num_classes=2)
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "spatial_dims": 2, "num_classes": 2}, path)


def test_hc18_evaluate_reports_mm_matching_a_hand_reference(tmp_path: Path, shared_data: Path) -> None:
    from uncol.cli import main

    src = shared_data / "hc18_fetal_head_us"
    spec = _hc18_dataset(tmp_path, src, with_csv=True)
    with open(src / "training_set_pixel_size_and_HC.csv") as f:
        pixel = {r["filename"][:-4]: float(r["pixel size(mm)"]) for r in csv.DictReader(f)}
    assert spec.case("001_HC").spacing == (pixel["001_HC"],) * 2
    ckpt = tmp_path / "run" / "best.pt"
    _random_unet_checkpoint(ckpt, spec.root)
    out = tmp_path / "ev"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(spec.root), "--split", "all", "--out", str(out),
                 "--save-predictions", "--device", "cpu"]) == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["units"] == "mm"
    for case in res["per_case"]:
        cid = case["case"]
        pred = np.array(Image.open(out / "predictions" / f"{cid}.png")) > 0
        gt = np.array(Image.open(src / "masks" / f"{cid}_mask.png")) > 0
        assert 0 < pred.sum() < pred.size and case["mean"]["dice"] < 0.9
        hd95, asd = _hand_hd95_asd(pred, gt, pixel[cid])
        assert case["mean"]["hd95"] == pytest.approx(hd95, rel=0.01), cid
        assert case["mean"]["asd"] == pytest.approx(asd, rel=0.01), cid
    # the same data imported without the CSV: the numbers are pixels, and say so
    spec_px = _hc18_dataset(tmp_path, src, with_csv=False)
    out_px = tmp_path / "ev_px"
    assert main(["evaluate", "--checkpoint", str(ckpt), "--data", str(spec_px.root), "--split", "all",
                 "--out", str(out_px), "--device", "cpu"]) == 0
    res_px = json.loads((out_px / "metrics.json").read_text())
    assert res_px["units"] == "px"
    for a, b in zip(res["per_case"], res_px["per_case"]):
        assert a["mean"]["hd95"] == pytest.approx(b["mean"]["hd95"] * pixel[a["case"]], rel=1e-6)
        assert a["mean"]["dice"] == b["mean"]["dice"]


def _pngs(tmp_path: Path) -> tuple[Path, Path]:
    im, ms = tmp_path / "im", tmp_path / "ms"
    im.mkdir()
    ms.mkdir()
    for i in range(2):
        Image.fromarray(np.full((8, 12), 10 * i, np.uint8)).save(im / f"c{i}.png")
        m = np.zeros((8, 12), np.uint8)
        m[2:5, 3:9] = 1
        Image.fromarray(m).save(ms / f"c{i}.png")
    return im, ms


def test_spacing_csv_forms_and_errors(tmp_path: Path) -> None:
    im, ms = _pngs(tmp_path)
    (tmp_path / "a.csv").write_text("image,spacing_y,spacing_x\nc0.png,0.5,0.25\nc1,0.1,0.2\n")
    spec = import_folder(im, ms, tmp_path / "ds", spacing_csv=tmp_path / "a.csv")
    assert [c.spacing for c in spec.cases] == [(0.5, 0.25), (0.1, 0.2)]
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["training"][0]["spacing"] == [0.5, 0.25]
    for text, words in [("file,spacing\nc0.png,0.5\n", "no row for image 'c1'"),
                        ("file,spacing\nc0.png,-1\nc1.png,1\n", "positive"),
                        ("file,size\nc0.png,1\n", "found 0 spacing columns"),
                        ("file,spacing\nc0.png,abc\n", "not a number")]:
        (tmp_path / "b.csv").write_text(text)
        with pytest.raises(DataError, match=words):
            import_folder(im, ms, tmp_path / "ds2", spacing_csv=tmp_path / "b.csv")
    assert not (tmp_path / "ds2").exists()


def test_evaluate_masks_spacing_csv_and_px_label(tmp_path: Path) -> None:
    from uncol.eval.evaluate_masks import evaluate_masks

    im, ms = _pngs(tmp_path)
    pred = np.zeros((8, 12), np.uint8)
    pred[2:5, 3:7] = 1
    for i in range(2):
        Image.fromarray(pred).save(im / f"c{i}.png")
    (tmp_path / "a.csv").write_text("file,pixel size(mm)\nc0.png,0.5\nc1.png,2.0\n")
    px = evaluate_masks(im, ms)
    mm = evaluate_masks(im, ms, spacing_csv=tmp_path / "a.csv")
    assert px["units"] == "px" and mm["units"] == "mm"
    d = [c["mean"]["hd95"] for c in px["per_case"]]
    assert [c["mean"]["hd95"] for c in mm["per_case"]] == pytest.approx([d[0] * 0.5, d[1] * 2.0])


def test_mixing_mm_and_px_cases_is_refused() -> None:
    from uncol.eval.metrics import MetricAccumulator

    acc = MetricAccumulator(2)
    m = np.zeros((6, 6), np.uint8)
    m[1:4, 1:4] = 1
    acc.update("a", m, m, (1.0, 1.0))
    with pytest.raises(DataError, match="'b'.*px.*mm"):
        acc.update("b", m, m, None)
