"""Issue 17 on the training side: nothing lost, nothing overwritten, no garbage run called a success.

Each refusal: exit status 2, one ``error:`` line naming the key or file, and the inputs and any earlier
run's files byte-identical afterwards (docs/reliability.md).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from uncol.cli import main

N_CASES = 6  # as tests/test_bad_input.py (test modules are imported in importlib mode: no sharing)


def _nii(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


def make_dataset(root: Path) -> Path:
    """Six valid 2D cases (32x32 noise, a binary box) with dataset.json."""
    rng = np.random.default_rng(0)
    for i in range(N_CASES):
        lab = np.zeros((32, 32), np.uint8)
        lab[8:20, 10:22] = 1
        _nii(root / "imagesTr" / f"c{i}.nii.gz", rng.normal(size=(32, 32)).astype(np.float32))
        _nii(root / "labelsTr" / f"c{i}.nii.gz", lab)
    entries = [{"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"} for i in range(N_CASES)]
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "fg"}, "training": entries}))
    return root


def config(tmp: Path, root: Path, **sections: dict) -> Path:
    cfg = {"data": {"root": str(root), "spatial_dims": 2, "size": [32, 32],
                    "split": {"ratios": [0.5, 0.2, 0.3], "labeled": 2}},
           "model": {"name": "unet", "params": {"feature_chns": [2, 4, 4, 8, 8]}},
           "method": {"name": "supervised"},
           "train": {"iterations": 1, "batch_size": 1, "threads": 1, "device": "cpu", "log_every": 1}}
    for key, val in sections.items():
        cfg.setdefault(key, {}).update(val)
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def snapshot(*folders: Path) -> dict[str, bytes]:
    """Every file under ``folders`` (path -> bytes): what must not change."""
    return {str(p): p.read_bytes() for f in folders if f.exists() for p in sorted(f.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> str:
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert expected in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("good") / "ds")


@pytest.fixture(scope="module")
def finished_run(good_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config file, run folder) of a finished 2-iteration run, trained once for the module."""
    tmp = tmp_path_factory.mktemp("run")
    cfg = config(tmp, good_dataset, train={"iterations": 2, "save_every": 1, "val_every": 1})
    threads = torch.get_num_threads()
    assert main(["train", str(cfg), "--out", str(tmp / "run")]) == 0
    torch.set_num_threads(threads)
    return cfg, tmp / "run"


@pytest.fixture
def run_copy(finished_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    cfg, run = finished_run
    shutil.copytree(run, tmp_path / "run")
    shutil.copyfile(cfg, tmp_path / "cfg.yaml")
    return tmp_path / "cfg.yaml", tmp_path / "run"


# ------------------------------------------------------------------------- rule 2: run folders
def test_train_into_a_run_folder_is_refused_and_changes_nothing(run_copy, good_dataset, capsys) -> None:
    cfg, run = run_copy
    before = snapshot(run, good_dataset)
    line = refused(["train", str(cfg), "--out", str(run)], capsys, "already holds a run")
    assert "--resume" in line and "--overwrite" in line
    refused(["train", str(cfg), "--out", str(run), "--resume", "--overwrite"], capsys, "exclude each other")
    assert snapshot(run, good_dataset) == before


def test_overwrite_clears_the_old_run_first(run_copy, capsys) -> None:
    cfg, run = run_copy
    (run / "best_stage1.pt").write_bytes(b"an old stage's best")
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text("{}")  # not training's: kept
    assert main(["train", str(cfg), "--out", str(run), "--overwrite"]) == 0
    assert not (run / "best_stage1.pt").exists() and (run / "eval" / "metrics.json").is_file()
    history = json.loads((run / "run.json").read_text())["history"]
    assert [h["event"] for h in history] == ["start"]  # one run, not two appended
    its = [json.loads(x)["iteration"] for x in (run / "log.jsonl").read_text().splitlines()
           if json.loads(x)["kind"] == "train"]
    assert its == [1, 2]


def test_resume_with_a_changed_config_lists_the_keys_and_changes_nothing(run_copy, good_dataset, capsys) -> None:
    cfg, run = run_copy
    before = snapshot(run, good_dataset)
    line = refused(["train", str(cfg), "--out", str(run), "--resume", "--set", "train.lr=0.5",
                    "--set", "data.size=[16,16]"], capsys, "differs from the run's own")
    assert "train.lr" in line and "data.size" in line
    line = refused(["train", "--out", str(run), "--resume", "--set", "train.iterations=4"], capsys, "--extend")
    refused(["train", "--out", str(run), "--resume", "--extend", "--set", "train.iterations=4", "--set",
             "train.lr=0.5"], capsys, "train.lr")  # --extend changes the schedule only
    assert snapshot(run, good_dataset) == before


def test_resume_of_a_finished_run_rewrites_nothing(run_copy, capsys) -> None:
    cfg, run = run_copy
    before = snapshot(run)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume"]) == 0  # the run's own config, no CONFIG
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 0  # the same config file: the same config
    assert "is complete" in capsys.readouterr().err
    assert snapshot(run) == before


def test_resume_extend_trains_on_and_is_recorded(run_copy, capsys) -> None:
    _, run = run_copy
    assert main(["train", "--out", str(run), "--resume", "--extend", "--set", "train.iterations=4"]) == 0
    its = [json.loads(x)["iteration"] for x in (run / "log.jsonl").read_text().splitlines()
           if json.loads(x)["kind"] == "train"]
    assert its == [1, 2, 3, 4]
    history = json.loads((run / "run.json").read_text())["history"]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["changes"] == {"train.iterations": [2, 4]}
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["iterations"] == 4
    assert torch.load(run / "final.pt", weights_only=True)["config"]["train"]["iterations"] == 4


def test_resume_reapplies_the_recorded_set_list(good_dataset, tmp_path, capsys) -> None:
    cfg = config(tmp_path, good_dataset)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--set", "train.iterations=2", "--set", "train.lr=0.02"]) == 0
    assert json.loads((run / "run.json").read_text())["set"] == ["train.iterations=2", "train.lr=0.02"]
    before = snapshot(run)
    assert main(["train", str(cfg), "--out", str(run), "--resume"]) == 0  # the original command + --resume
    assert snapshot(run) == before


def test_resume_needs_a_run_or_a_config(tmp_path, capsys) -> None:
    refused(["train", "--out", str(tmp_path / "none"), "--resume"], capsys, "no config.yaml")
    refused(["train", "--out", str(tmp_path / "none")], capsys, "needs a CONFIG")
    refused(["train", "--out", str(tmp_path / "none"), "--extend"], capsys, "--resume")
    assert not (tmp_path / "none").exists()


def test_resume_refuses_a_checkpoint_with_non_finite_weights(run_copy, capsys) -> None:
    _, run = run_copy
    ck = torch.load(run / "last.pt", weights_only=True)
    key = next(iter(ck["method"]))
    ck["method"][key] = torch.full_like(ck["method"][key], float("nan"))
    torch.save(ck, run / "last.pt")
    before = snapshot(run)
    refused(["train", "--out", str(run), "--resume"], capsys, "non-finite weights")
    assert snapshot(run) == before


def test_check_finite_state_names_the_file(tmp_path) -> None:
    from uncol.engine.checkpoint import check_finite_state
    from uncol.errors import CheckpointError

    check_finite_state({"a": torch.ones(2), "n": torch.tensor([1, 2]), "meta": {"b": torch.zeros(1)}}, "ok.pt")
    with pytest.raises(CheckpointError, match=r"bad\.pt.*meta\.b"):
        check_finite_state({"a": torch.ones(2), "meta": {"b": torch.tensor([float("inf")])}}, "bad.pt")


def test_out_inside_the_dataset_is_refused(good_dataset, tmp_path, capsys) -> None:
    data = shutil.copytree(good_dataset, tmp_path / "ds")
    before = snapshot(data)
    cfg = config(tmp_path, data)
    for out in (data, data / "runs" / "a"):
        refused(["train", str(cfg), "--out", str(out)], capsys, "inside the dataset folder")
    assert snapshot(data) == before


# ------------------------------------------------------------------------- rule 3 (#3): the schedule
def test_set_iterations_reaches_two_stage_methods(good_dataset, tmp_path, capsys) -> None:
    cfg = config(tmp_path, good_dataset, method={"name": "bcp", "params": {"pretrain_iterations": 1000,
                                                                             "selftrain_iterations": 3000}},
                 train={"iterations": 4000, "batch_size": 1, "labeled_bs": 1, "unlabeled_bs": 1})
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", str(cfg), "--out", str(run), "--set", "train.iterations=4"]) == 0
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if "stage lengths" in ln]
    assert len(notes) == 1 and "pretrain_iterations 1000 -> 1" in notes[0] and "selftrain_iterations 3000 -> 3" in notes[0]
    params = yaml.safe_load((run / "config.yaml").read_text())["method"]["params"]
    assert (params["pretrain_iterations"], params["selftrain_iterations"]) == (1, 3)  # recorded in the run
    its = [(r["stage"], r["iteration"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
           if r["kind"] == "train"]
    assert its == [("pretrain", 1), ("selftrain", 1), ("selftrain", 2), ("selftrain", 3)]
    assert json.loads((run / "run.json").read_text())["notes"] == [notes[0].removeprefix("note: ")]


def test_scale_rule() -> None:
    from uncol.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    notes: list[str] = []
    cfg = load_config(root / "hc18_2d_uncol.yaml", ["train.iterations=100"], notes)
    assert (cfg.method.params["stage1_iterations"], cfg.method.params["stage2_iterations"]) == (50, 50)
    assert len(notes) == 1
    cfg = load_config(root / "hc18_2d_uncol.yaml", ["train.iterations=100", "method.params.stage1_iterations=10"])
    assert (cfg.method.params["stage1_iterations"], cfg.method.params["stage2_iterations"]) == (10, 90)
    notes = []
    cfg = load_config(root / "hc18_2d_uncol.yaml", ["train.iterations=1"], notes)  # at least 1 each
    assert (cfg.method.params["stage1_iterations"], cfg.method.params["stage2_iterations"]) == (1, 1)
    notes = []
    cfg = load_config(root / "hc18_2d_uncol.yaml", [], notes)  # no override: the file's schedule
    assert cfg.method.params["stage1_iterations"] == 15000 and notes == []


@pytest.mark.parametrize("name", ["uncol", "bcp", "supervised", "mean_teacher"])
def test_stage_lengths_are_the_params_iterations_fields(name: str) -> None:
    """The convention the scale rule and --extend rely on: ``<stage>_iterations`` fields set the stages."""
    from uncol.config import Config, from_dict
    from uncol.methods import METHODS
    from uncol.methods.base import plan_stages, stage_iteration_keys

    cls = METHODS.get(name)
    keys = stage_iteration_keys(cls.Params)
    params = {k: 3 + 2 * i for i, k in enumerate(keys)}
    cfg = from_dict(Config, {"method": {"name": name, "params": params}, "train": {"iterations": 7}})
    plan = plan_stages(cls, cfg, from_dict(cls.Params, params))
    assert [s.iterations for s in plan] == (list(params.values()) if keys else [7] * len(plan))


# ------------------------------------------------------------------------- rule 4: nothing learnable
def test_a_diverging_run_stops_with_exit_1_and_saves_no_nan(good_dataset, tmp_path, capsys) -> None:
    cfg = config(tmp_path, good_dataset, train={"iterations": 6, "lr": 1e30, "save_every": 1, "val_every": 1})
    run = tmp_path / "run"
    capsys.readouterr()
    rc = main(["train", str(cfg), "--out", str(run)])
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = [ln for ln in err.splitlines() if "error" in ln or "Traceback" in ln]  # (and the progress bar)
    assert len(lines) == 1 and "training stopped at stage 'main' iteration" in lines[0] and "train.lr" in lines[0], err
    assert lines[0].startswith("error: ")
    assert not (run / "final.pt").exists() and not (run / "summary.json").exists()
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            ck = torch.load(run / name, weights_only=True)
            assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point()), name


@pytest.mark.slow
def test_a_diverging_run_under_nproc_2_exits_1_too(good_dataset, tmp_path) -> None:
    """torchrun exits 1 for any failed rank: the launcher must still tell a failed run (1) from bad input (2)."""
    import os
    import subprocess
    import sys

    cfg = config(tmp_path, good_dataset, train={"iterations": 6, "lr": 1e30, "save_every": 1, "val_every": 1,
                                                "batch_size": 2})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-m", "uncol", "train", str(cfg), "--out", str(tmp_path / "run"),
                        "--nproc", "2"], capture_output=True, text=True, env=env, timeout=240, check=False)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "training stopped at stage 'main' iteration" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "run" / "final.pt").exists()


def _constant_images(tmp: Path, data: Path) -> tuple[list[str], str]:
    for i in range(N_CASES):
        _nii(data / "imagesTr" / f"c{i}.nii.gz", np.full((32, 32), 7.0, np.float32))
    return ["train", str(config(tmp, data)), "--out", str(tmp / "out")], "constant after normalisation"


def _no_foreground(tmp: Path, data: Path) -> tuple[list[str], str]:
    for i in range(N_CASES):
        _nii(data / "labelsTr" / f"c{i}.nii.gz", np.zeros((32, 32), np.uint8))
    return ["train", str(config(tmp, data)), "--out", str(tmp / "out")], "foreground"


def _cfg_case(expected: str, **sections: dict) -> Callable[[Path, Path], tuple[list[str], str]]:
    def case(tmp: Path, data: Path) -> tuple[list[str], str]:
        return ["train", str(config(tmp, data, **sections)), "--out", str(tmp / "out")], expected
    return case


def _split_seed_null(tmp: Path, data: Path) -> tuple[list[str], str]:
    sf = tmp / "split.json"
    sf.write_text(json.dumps({"train": ["c0", "c1", "c2"], "val": ["c3"], "test": ["c4"], "seed": None}))
    return ["train", str(config(tmp, data, data={"split": {"file": str(sf), "labeled": 2}})), "--out",
            str(tmp / "out")], "'seed'"


REFUSALS = {
    "in_channels_3_on_grey": _cfg_case("model.in_channels", model={"in_channels": 3}),
    "constant_images": _constant_images,
    "no_foreground_in_labelled_cases": _no_foreground,
    "iterations_0": _cfg_case("train.iterations", train={"iterations": 0}),
    "negative_stage_iterations": _cfg_case("method.params.pretrain_iterations",
                                           method={"name": "bcp", "params": {"pretrain_iterations": -5}}),
    "labeled_nan": _cfg_case("data.split.labeled", data={"split": {"labeled": float("nan")}}),
    "labeled_1_5": _cfg_case("data.split.labeled", data={"split": {"labeled": 1.5}}),
    "labeled_0": _cfg_case("data.split.labeled", data={"split": {"labeled": 0}}),
    "device_gpu": _cfg_case("train.device", train={"device": "gpu"}),
    "threads_negative": _cfg_case("train.threads", train={"threads": -1}),
    "lr_nan": _cfg_case("train.lr", train={"lr": float("nan")}),
    "lr_inf": _cfg_case("train.lr", train={"lr": float("inf")}),
    "split_seed_null": _split_seed_null,
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
def test_values_are_checked_before_anything_is_written(case, good_dataset, tmp_path, capsys) -> None:
    data = shutil.copytree(good_dataset, tmp_path / "ds")
    argv, expected = case(tmp_path, data)
    before = snapshot(data)
    refused(argv, capsys, expected)
    assert not (tmp_path / "out").exists()
    assert snapshot(data) == before


def test_extend_moves_the_checkpoint_only_where_the_schedule_allows() -> None:
    from uncol.config import Config, from_dict
    from uncol.engine.runfolder import extend_schedule
    from uncol.errors import ConfigError

    def cfg(pre: int, self_: int) -> Config:
        return from_dict(Config, {"method": {"name": "bcp", "params": {"pretrain_iterations": pre,
                                                                         "selftrain_iterations": self_}}})

    ck = {"stage_index": 2, "iteration": 0}  # a finished run: the last stage reopens at its old end
    extend_schedule(ck, cfg(3, 4), cfg(3, 9), Path("last.pt"))
    assert ck == {"stage_index": 1, "iteration": 4}
    ck = {"stage_index": 1, "iteration": 0}  # at the boundary: stage 1 just ended, may still grow
    extend_schedule(ck, cfg(3, 4), cfg(5, 4), Path("last.pt"))
    assert ck == {"stage_index": 0, "iteration": 3}
    ck = {"stage_index": 1, "iteration": 2}  # inside stage 2: stage 2 may grow, stage 1 is finished
    extend_schedule(ck, cfg(3, 4), cfg(3, 8), Path("last.pt"))
    assert ck == {"stage_index": 1, "iteration": 2}
    with pytest.raises(ConfigError, match="'pretrain' .* has finished"):
        extend_schedule(dict(ck), cfg(3, 4), cfg(6, 4), Path("last.pt"))
    with pytest.raises(ConfigError, match="already run 2"):
        extend_schedule(dict(ck), cfg(3, 4), cfg(3, 2), Path("last.pt"))


def test_resume_without_last_pt_starts_the_run_again_in_place(run_copy, capsys) -> None:
    _, run = run_copy  # as if killed before its first checkpoint
    for name in ("last.pt", "best.pt", "final.pt", "summary.json"):
        (run / name).unlink()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    its = [json.loads(x)["iteration"] for x in (run / "log.jsonl").read_text().splitlines()
           if json.loads(x)["kind"] == "train"]
    assert its == [1, 2]  # the first attempt's records were dropped, not doubled
    assert [h["event"] for h in json.loads((run / "run.json").read_text())["history"]] == ["start", "resume"]


def test_simpleitk_global_warnings_are_off() -> None:
    sitk = pytest.importorskip("SimpleITK")
    from uncol.data.io_sitk import _sitk

    assert _sitk() is sitk and not sitk.ProcessObject.GetGlobalWarningDisplay()
