"""Bad-input sweep: broken datasets, configs, paths and checkpoints thrown at the CLI.

Every case must end with exit status 2, exactly one line on stderr (``error: ...``) that names the
file or key, no traceback, and no partial output: the run/eval folder given as ``--out`` must not
exist afterwards (all checks run before the first write; see ``uncol.engine.setup.build_run``).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from uncol.cli import main

N_CASES = 6
SHAPE = (32, 32)


def _nii(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


def make_dataset(root: Path, n: int = N_CASES) -> Path:
    """``n`` valid 2D cases (32x32, binary) with dataset.json; returns ``root``."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        img = rng.normal(size=SHAPE).astype(np.float32)
        lab = np.zeros(SHAPE, np.uint8)
        lab[8:20, 10:22] = 1
        _nii(root / "imagesTr" / f"c{i}.nii.gz", img)
        _nii(root / "labelsTr" / f"c{i}.nii.gz", lab)
        entries.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "fg"}, "training": entries}))
    return root


def config(tmp: Path, root: Path, **sections: dict) -> Path:
    cfg = {"data": {"root": str(root), "spatial_dims": 2, "size": list(SHAPE),
                    "split": {"ratios": [0.5, 0.2, 0.3], "labeled": 2}},
           "model": {"name": "unet", "params": {"feature_chns": [2, 4, 4, 8, 8]}},
           "method": {"name": "supervised"},
           "train": {"iterations": 1, "batch_size": 1, "threads": 1, "device": "cpu"}}
    for key, val in sections.items():
        cfg.setdefault(key, {}).update(val)
    p = tmp / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


# Each case: (tmp, data) -> (argv, expected substring of the message). ``data`` is a valid dataset
# copy the case may break; ``tmp/out`` must not exist afterwards.
Case = Callable[[Path, Path], tuple[list[str], str]]


def _train(tmp: Path, root: Path, **sections: dict) -> list[str]:
    return ["train", str(config(tmp, root, **sections)), "--out", str(tmp / "out")]


def _every(data: Path, folder: str, arr: np.ndarray) -> None:
    """Replace the file in ``folder`` of every case (so the split cannot leave it unread)."""
    for i in range(N_CASES):
        _nii(data / folder / f"c{i}.nii.gz", arr)


def truncated_nifti(tmp, data):
    for p in (data / "imagesTr").iterdir():
        p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])
    return _train(tmp, data), "truncated"


def float_labels(tmp, data):
    _every(data, "labelsTr", np.full(SHAPE, 0.5, np.float32))
    return _train(tmp, data), "non-integer"


def label_out_of_range(tmp, data):
    _every(data, "labelsTr", np.full(SHAPE, 3, np.uint8))
    return _train(tmp, data), "outside the classes"


def nan_image(tmp, data):
    a = np.zeros(SHAPE, np.float32)
    a[3, 3] = np.nan
    _every(data, "imagesTr", a)
    return _train(tmp, data), "NaN"


def inf_image(tmp, data):
    a = np.zeros(SHAPE, np.float32)
    a[3, 3] = np.inf
    _every(data, "imagesTr", a)
    return _train(tmp, data), "Inf"


def shape_mismatch(tmp, data):
    _every(data, "labelsTr", np.zeros((16, 32), np.uint8))
    return _train(tmp, data), "label shape"


def zero_size_image(tmp, data):
    _every(data, "imagesTr", np.zeros((0, 32), np.float32))
    return _train(tmp, data), "zero size"


def image_4d(tmp, data):
    _every(data, "imagesTr", np.zeros((32, 32, 2, 3), np.float32))
    return _train(tmp, data), "4D"


def dataset_json_schema(tmp, data):
    (data / "dataset.json").write_text(json.dumps({"labels": ["background", "fg"], "training": {}}))
    return _train(tmp, data), "'labels'"


def dataset_json_syntax(tmp, data):
    (data / "dataset.json").write_text("{not json")
    return _train(tmp, data), "not valid JSON"


def empty_dataset(tmp, data):
    (data / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": []}))
    return _train(tmp, data), "empty"


def duplicate_case_ids(tmp, data):
    meta = json.loads((data / "dataset.json").read_text())
    meta["training"].append(dict(meta["training"][0]))
    (data / "dataset.json").write_text(json.dumps(meta))
    return _train(tmp, data), "duplicate case id"


def missing_label_file(tmp, data):
    (data / "labelsTr" / "c2.nii.gz").unlink()
    return _train(tmp, data), "does not exist"


def missing_data_root(tmp, data):
    return _train(tmp, tmp / "nowhere"), "dataset.json not found"


def zero_labelled(tmp, data):
    return _train(tmp, data, data={"split": {"ratios": [0.5, 0.2, 0.3], "labeled": 0.01}}), "data.split.labeled"


def split_file_unknown_case(tmp, data):
    sf = tmp / "split.json"
    sf.write_text(json.dumps({"train": ["c0", "zz"], "val": [], "test": [], "labeled": ["c0"]}))
    return _train(tmp, data, data={"split": {"file": str(sf)}}), "'zz'"


def unknown_method(tmp, data):
    return _train(tmp, data, method={"name": "nope"}), "unknown method"


def unknown_method_param(tmp, data):
    return _train(tmp, data, method={"params": {"alpha": 1}}), "method.params.alpha"


def unknown_teacher(tmp, data):
    return _train(tmp, data, teacher={"name": "nope"}), "nope"


def unknown_model(tmp, data):
    return _train(tmp, data, model={"name": "nope", "params": {}}), "model.name"


def negative_iterations(tmp, data):
    return _train(tmp, data, train={"iterations": -5}), "train.iterations"


def wrong_config_type(tmp, data):
    return _train(tmp, data, train={"lr": "fast"}), "train.lr"


def size_not_divisible_by_stride(tmp, data):
    return _train(tmp, data, data={"size": [30, 32]}), "divisible by 16"


def student_size_not_divisible(tmp, data):
    return _train(tmp, data, data={"size": [24, 24]}, model={"name": "uncol_student", "params": {}}), "data.size"


def unknown_choice(tmp, data):
    return _train(tmp, data, data={"mode": "tiles"}), "expected one of 'whole', 'patch', 'slices', got 'tiles'"


def bad_device(tmp, data):
    return _train(tmp, data, train={"device": "gpu"}), "train.device"


def unknown_teacher_param(tmp, data):
    return _train(tmp, data, teacher={"name": "litemedsam", "params": {"stagez": [1]}}), "teacher.params.stagez"


def bad_model_param(tmp, data):
    return _train(tmp, data, model={"name": "unet", "params": {"feature_chnz": [2]}}), "model.params.feature_chnz"


def unknown_config_key(tmp, data):
    return _train(tmp, data, train={"iterationz": 3}), "train.iterationz"


def bad_override(tmp, data):
    return _train(tmp, data) + ["--set", "train.iterations"], "key=value"


def yaml_syntax(tmp, data):
    p = tmp / "bad.yaml"
    p.write_text("train: {iterations: 3\nmodel: [")
    return ["train", str(p), "--out", str(tmp / "out")], "not valid YAML"


def missing_config(tmp, data):
    return ["train", str(tmp / "absent.yaml"), "--out", str(tmp / "out")], "absent.yaml"


def out_is_a_file(tmp, data):
    f = tmp / "afile"
    f.write_text("x")
    return ["train", str(config(tmp, data)), "--out", str(f / "out")], "cannot be created"


def out_not_writable(tmp, data):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ["train", str(config(tmp, data)), "--out", str(ro / "out")], "not a writable folder"


def bad_nproc(tmp, data):
    return _train(tmp, data) + ["--nproc", "0"], "--nproc"


def missing_checkpoint(tmp, data):
    return ["evaluate", "--checkpoint", str(tmp / "none.pt"), "--data", str(data), "--out", str(tmp / "out")], "none.pt"


def corrupt_checkpoint(tmp, data):
    p = tmp / "bad.pt"
    p.write_bytes(random.Random(0).randbytes(2000))  # fixed garbage; tests/engine covers 300 more
    return ["evaluate", "--checkpoint", str(p), "--data", str(data), "--out", str(tmp / "out")], "bad.pt"


def truncated_checkpoint(tmp, data):
    import torch

    p = tmp / "cut.pt"
    torch.save({"format_version": 1, "w": torch.zeros(1000)}, p)
    p.write_bytes(p.read_bytes()[:1500])
    return ["predict", "--checkpoint", str(p), "--input", str(data / "imagesTr"), "--output", str(tmp / "out")], "cut.pt"


def not_an_uncol_checkpoint(tmp, data):
    import torch

    p = tmp / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, p)
    return ["evaluate", "--checkpoint", str(p), "--data", str(data), "--out", str(tmp / "out")], "format_version"


def pickled_code_checkpoint(tmp, data):
    import pickle

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (tmp / "pwned", "x"))

    p = tmp / "model.pkl"
    p.write_bytes(pickle.dumps({"format_version": 1, "model": Evil()}, protocol=4))
    return ["evaluate", "--checkpoint", str(p), "--data", str(data), "--out", str(tmp / "out")], "weights_only"


def masks_shape_mismatch(tmp, data):
    _nii(tmp / "pred" / "a.nii.gz", np.zeros((16, 16), np.uint8))
    _nii(tmp / "gt" / "a.nii.gz", np.zeros((32, 32), np.uint8))
    return ["evaluate-masks", "--pred", str(tmp / "pred"), "--gt", str(tmp / "gt"),
            "--out", str(tmp / "out" / "metrics.json")], "prediction shape"


def masks_unpaired(tmp, data):
    _nii(tmp / "pred" / "a.nii.gz", np.zeros(SHAPE, np.uint8))
    _nii(tmp / "gt" / "b.nii.gz", np.zeros(SHAPE, np.uint8))
    return ["evaluate-masks", "--pred", str(tmp / "pred"), "--gt", str(tmp / "gt"),
            "--out", str(tmp / "out" / "metrics.json")], "no prediction"


def import_unpaired(tmp, data):
    _nii(tmp / "imgs" / "a.nii.gz", np.zeros(SHAPE, np.float32))
    _nii(tmp / "imgs" / "b.nii.gz", np.zeros(SHAPE, np.float32))
    _nii(tmp / "labs" / "a.nii.gz", np.zeros(SHAPE, np.uint8))
    return ["data", "import-folder", str(tmp / "imgs"), str(tmp / "labs"), str(tmp / "out")], "b.nii.gz"


def predict_missing_input(tmp, data):
    return ["predict", "--checkpoint", str(tmp / "x.pt"), "--input", str(tmp / "absent"),
            "--output", str(tmp / "out")], "absent"


CASES: list[Case] = [
    truncated_nifti, float_labels, label_out_of_range, nan_image, inf_image, shape_mismatch, zero_size_image,
    image_4d, dataset_json_schema, dataset_json_syntax, empty_dataset, duplicate_case_ids, missing_label_file,
    missing_data_root, zero_labelled, split_file_unknown_case, unknown_method, unknown_method_param,
    unknown_teacher, unknown_model, negative_iterations, wrong_config_type, unknown_config_key, bad_override,
    yaml_syntax, missing_config, out_is_a_file, out_not_writable, bad_nproc, missing_checkpoint,
    corrupt_checkpoint, truncated_checkpoint, not_an_uncol_checkpoint, pickled_code_checkpoint, masks_shape_mismatch,
    masks_unpaired,
    import_unpaired, predict_missing_input, size_not_divisible_by_stride, student_size_not_divisible,
    unknown_choice, bad_device, unknown_teacher_param, bad_model_param,
]


@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("good") / "ds")


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_gives_one_line_exit_2_and_no_output(case: Case, good_dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = _copy(good_dataset, tmp_path / "ds")
    argv, expected = case(tmp_path, data)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists(), sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert not (tmp_path / "pwned").exists()


def test_the_sweep_is_a_catalogue_of_at_least_20_kinds() -> None:
    assert len(CASES) >= 20


def test_the_valid_dataset_trains(good_dataset: Path, tmp_path: Path) -> None:
    """The control: the same config on the unbroken data works (so each case above fails for its own reason)."""
    assert main(_train(tmp_path, good_dataset)) == 0
    assert (tmp_path / "out" / "final.pt").is_file()


@pytest.mark.parametrize("breaker", [yaml_syntax], ids=["config"])  # data: see the --nproc test below
def test_real_process_prints_one_line_without_traceback(breaker: Case, good_dataset: Path, tmp_path: Path) -> None:
    data = _copy(good_dataset, tmp_path / "ds")
    argv, expected = breaker(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-m", "uncol", *argv], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and expected in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_nproc_2_prints_the_ranks_error_once(good_dataset: Path, tmp_path: Path) -> None:
    """Under ``--nproc 2`` a data error found by the ranks is one line too (no torchrun report)."""
    data = _copy(good_dataset, tmp_path / "ds")
    argv, expected = nan_image(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    r = subprocess.run([sys.executable, "-m", "uncol", *argv, "--nproc", "2"], capture_output=True, text=True,
                       env=env, timeout=180, check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and expected in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
