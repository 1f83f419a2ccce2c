"""``uncol report``: the HTML page of a run folder and of a bench folder, checked in headless Chromium."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from uncol.config import Config, DataConfig, to_dict
from uncol.data.splits import Split
from uncol.engine.checkpoint import save_checkpoint
from uncol.eval.plots import pick_slice
from uncol.eval.report import build_report, markdown_html, pick_cases
from uncol.eval.uncertainty import Voxels, analyze
from uncol.models import build_model

PNG = b"\x89PNG\r\n\x1a\n"


def _dataset(root: Path, n: int = 4, side: int = 24) -> list[str]:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:side, :side]
    training = []
    for i in range(n):
        lab = ((yy - side / 2) ** 2 + (xx - side / 2 - i) ** 2 < (4 + i) ** 2).astype(np.uint8)
        img = (rng.normal(0, 0.3, (side, side)) + lab).astype(np.float32)
        nib.save(nib.Nifti1Image(img, np.eye(4)), str(root / "imagesTr" / f"c{i}.nii.gz"))
        nib.save(nib.Nifti1Image(lab, np.eye(4)), str(root / "labelsTr" / f"c{i}.nii.gz"))
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "disk"}, "training": training}))
    return [f"c{i}" for i in range(n)]


def make_run(run: Path, data: Path) -> None:
    """A run folder as ``uncol train`` leaves it (random U-Net), plus an uncertainty.json."""
    ids = _dataset(data)
    cfg = Config(data=DataConfig(root=str(data), spatial_dims=2, size=(32, 32)))
    torch.manual_seed(0)
    model = build_model(cfg.model, spatial_dims=2, num_classes=2)
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "spatial_dims": 2, "num_classes": 2},
                    run / "best.pt")
    Split(train=ids[:1], val=[], test=ids[1:], labeled=ids[:1], unlabeled=[]).save(run / "split.json")
    log = []
    for stage, its in (("stage1", range(10, 60, 10)), ("stage2", range(10, 40, 10))):
        for it in its:
            log.append({"kind": "train", "stage": stage, "iteration": it, "lr": 0.01, "loss": 1.0 / it, "ce": 0.5 / it})
            if it % 20 == 0:
                log.append({"kind": "val", "stage": stage, "iteration": it, "dice": it / 100, "jaccard": it / 120})
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n{truncated")
    (run / "summary.json").write_text(json.dumps({"method": "supervised", "best": {"metric": 0.5, "iteration": 20,
                                                  "stage": "stage2"}, "wall_time_s": 1.0, "config": to_dict(cfg)}))
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1, 2000)
    labels = (rng.uniform(size=2000) > p).astype(np.int64)  # calibrated: wrong with probability 1 - p
    probs = np.stack([p, 1 - p], 1).astype(np.float32)
    ent = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    vox = Voxels(probs, labels, {"entropy": ent, "energy": -np.log1p(p)}, None, 4000, 0)
    (run / "uncertainty").mkdir()
    (run / "uncertainty" / "uncertainty.json").write_text(json.dumps({**analyze(vox), "split": "test", "num_cases": 3}))


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("rep")
    make_run(base / "run", base / "data")
    return base / "run", build_report(base / "run", device="cpu")


def _imgs(page: str) -> list[str]:
    return re.findall(r"<img [^>]*src=\"([^\"]+)\"", page)


def test_run_report_has_every_section_and_png(run_report: tuple[Path, Path]) -> None:
    _, html_path = run_report
    out = html_path.parent
    page = html_path.read_text()
    for name in ("training_curves", "overlay_best", "overlay_median", "overlay_worst", "reliability", "risk_coverage"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG, name
    srcs = _imgs(page)
    assert len(srcs) == 6
    for s in srcs:
        assert s.startswith("data:image/png;base64,") and base64.b64decode(s.split(",", 1)[1])[:8] == PNG
    metrics = json.loads((out / "metrics.json").read_text())  # no metrics.json in the run: evaluated
    assert metrics["num_cases"] == 3 and "Dice %" in page
    for text in ("Training curves", "best:", "median:", "worst:", "ECE (15 bins)", "entropy: AUROC / AURC"):
        assert text in page, text
    assert "http://" not in page and "https://" not in page  # self-contained


def test_bench_report_and_cli(tmp_path: Path, run_report: tuple[Path, Path]) -> None:
    from uncol.cli import main

    run, _ = run_report
    bench = tmp_path / "bench"
    for cell in ("supervised_10", "uncol_10"):
        shutil.copytree(run, bench / cell / "seed0", ignore=shutil.ignore_patterns("report"))
    (bench / "results.md").write_text("# HC18\n\n| method | Dice % |\n|---|---:|\n| supervised | 50.0 ± 1.0 |\n")
    assert main(["report", str(bench), "--no-overlays", "--device", "cpu"]) == 0
    page = (bench / "report" / "report.html").read_text()
    assert "<td>supervised</td><td>50.0 ± 1.0</td>" in page
    assert "supervised_10/seed0" in page and "Best run" in page and len(_imgs(page)) >= 4
    assert main(["report", str(tmp_path / "absent")]) == 2


def test_helpers_known_answers() -> None:
    gt = np.zeros((5, 4, 4), np.int64)
    gt[1, :2, :2] = 1
    gt[3, :2, :] = 1  # 8 voxels: the most foreground
    assert pick_slice(gt, 0) == 3 and pick_slice(np.zeros((5, 2, 2)), 0) == 2  # empty: the middle
    metrics = {"per_case": [{"case": c, "mean": {"dice": d}} for c, d in [("a", 0.9), ("b", 0.2), ("c", 0.5), ("d", 0.7)]]}
    assert pick_cases(metrics) == [("best", "a", 0.9), ("median", "d", 0.7), ("worst", "b", 0.2)]
    assert markdown_html("| a | b |\n|---|---|\n| 1 | <x> |").endswith("<td>1</td><td>&lt;x&gt;</td></tr></tbody></table>")


def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (Debian: apt-get install -y chromium)")
def test_report_loads_in_headless_chromium(run_report: tuple[Path, Path], tmp_path: Path) -> None:
    _, html_path = run_report
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--virtual-time-budget=5000"]
    url = html_path.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120,
                         check=False).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body is not None, dom[:500]
    srcs = _imgs(dom)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert 'data-loaded="ok"' in body.group(1), body.group(1)  # every image decoded with naturalWidth > 0
    assert f'data-images="{len(srcs)}"' in body.group(1)
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        gray = np.asarray(im.convert("L"), dtype=np.float64)
    assert gray.std() > 20 and (gray < 128).mean() > 0.02  # text and figures drawn, not a blank page


def test_report_refusals_leave_the_run_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture, digest) -> None:
    """A truncated summary.json or uncertainty.json: one line naming it, exit 2, no report folder; --out the run: refused."""
    from uncol.cli import main

    run = tmp_path / "run"
    make_run(run, tmp_path / "data")
    assert main(["report", str(run), "--out", str(run), "--no-overlays"]) == 2
    assert main(["report", str(run), "--out", str(tmp_path), "--no-overlays"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "is the same path as FOLDER" in err[0] and "contains FOLDER" in err[1]
    for name in ("summary.json", "uncertainty/uncertainty.json"):
        good = (run / name).read_text()
        (run / name).write_text(good[: len(good) // 2])
        before = digest(run)
        assert main(["report", str(run), "--no-overlays"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(run / name) in err[0] and "not valid JSON" in err[0], err
        assert digest(run) == before and not (run / "report").exists()
        (run / name).write_text(good)
