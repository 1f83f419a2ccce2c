"""Issue 17, output side: commands never write into their inputs, check everything before the first
write, refuse diverged checkpoints and 2D/3D mismatches, and leave nothing behind when they fail.

Every refusal: exit status 2, one line on stderr, the inputs (and earlier outputs) byte-identical.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from uncol.cli import main


def refused(argv: list[str], capsys: pytest.CaptureFixture, digest, *keep: Path, says: tuple[str, ...] = ()) -> str:
    """Run ``uncol argv``: exit 2, one ``error:`` line containing ``says``, every folder in ``keep`` unchanged."""
    before = {p: digest(p) for p in keep}
    capsys.readouterr()
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    lines = [ln for ln in re.split(r"[\r\n]+", stderr) if ln.strip() and "%|" not in ln]  # tqdm progress bars aside
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    err = lines[0]
    for s in says:
        assert s in err, (s, err)
    for p in keep:
        assert digest(p) == before[p], p
    return err


def no_stage_left(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if ".tmp-" in p.name]


def test_predict_never_writes_into_its_input(tmp_path: Path, tiny_run, digest, capsys) -> None:
    ckpt, data = tiny_run(tmp_path)
    scans = tmp_path / "scans"
    shutil.copytree(data / "im", scans, ignore=shutil.ignore_patterns("*_m.png"))
    base = ["predict", "--checkpoint", str(ckpt), "--device", "cpu", "--uncertainty"]
    refused([*base, "--input", str(scans), "--output", str(scans)], capsys, digest, scans,
            says=(str(scans), "is the same path as --input"))
    refused([*base, "--input", str(scans / "c0.png"), "--output", str(scans)], capsys, digest, scans,
            says=(f"--output {str(scans)!r} contains --input {str(scans / 'c0.png')!r}",))
    refused([*base, "--input", str(scans), "--output", str(scans / "preds")], capsys, digest, scans, says=("is inside",))
    refused([*base, "--input", str(scans), "--output", str(tmp_path)], capsys, digest, scans, says=("contains",))
    (tmp_path / "link").symlink_to(scans)
    refused([*base, "--input", str(scans), "--output", str(tmp_path / "link")], capsys, digest, scans)
    assert not (scans / "preds").exists()


def test_predict_refuses_two_inputs_with_one_case_name(tmp_path: Path, tiny_run, digest, capsys) -> None:
    ckpt, data = tiny_run(tmp_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(data / "im" / "c0.png", scans / "scan.png")
    arr = np.asarray(Image.open(data / "im" / "c1.png"), np.float32)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(scans / "scan.nii.gz"))  # a 2D NIfTI: would pass the checks
    out = tmp_path / "out"
    refused(["predict", "--checkpoint", str(ckpt), "--input", str(scans), "--output", str(out), "--uncertainty"],
            capsys, digest, scans, says=("scan.nii.gz", "scan.png", "same case name"))
    assert not out.exists()


def test_predict_checks_every_input_before_the_first_mask(tmp_path: Path, tiny_run, digest, capsys) -> None:
    ckpt, data = tiny_run(tmp_path)
    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(data / "im" / "c0.png", scans / "a.png")
    nib.save(nib.Nifti1Image(np.zeros((6, 7, 8), np.float32), np.eye(4)), str(scans / "b.nii.gz"))  # 3D, sorted last
    out = tmp_path / "out"
    refused(["predict", "--checkpoint", str(ckpt), "--input", str(scans), "--output", str(out)], capsys, digest, scans,
            says=("b.nii.gz: is 3D", "2D model"))
    assert not out.exists()
    no_stage_left(tmp_path)


def test_failed_predict_leaves_earlier_outputs_identical(tmp_path: Path, tiny_run, digest, capsys, monkeypatch) -> None:
    import uncol.eval.predict as predict_mod
    from uncol.errors import DataError

    ckpt, data = tiny_run(tmp_path)
    scans = tmp_path / "scans"
    shutil.copytree(data / "im", scans, ignore=shutil.ignore_patterns("*_m.png"))
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt), "--input", str(scans), "--output", str(out), "--device", "cpu",
            "--uncertainty", "--probabilities"]
    assert main(argv) == 0
    assert sorted(p.name for p in (out / "uncertainty").iterdir()) == ["c0_entropy.nii.gz", "c1_entropy.nii.gz",
                                                                         "c2_entropy.nii.gz"]
    assert (out / "probabilities" / "c2_prob1.nii.gz").is_file() and (out / "c2.png").is_file()
    (out / "notes.txt").write_text("mine")
    real, calls = predict_mod.predict_probs, []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise DataError("simulated failure on the second image")
        return real(*args, **kw)

    monkeypatch.setattr(predict_mod, "predict_probs", flaky)
    refused(argv, capsys, digest, out, scans, says=("simulated",))
    no_stage_left(tmp_path)
    shutil.rmtree(out)
    calls.clear()
    refused(argv, capsys, digest, scans)
    assert not out.exists()
    no_stage_left(tmp_path)


def test_predict_maps_do_not_disturb_evaluate_masks(tmp_path: Path, tiny_run) -> None:
    ckpt, data = tiny_run(tmp_path)
    scans, gt = tmp_path / "scans", tmp_path / "gt"
    shutil.copytree(data / "im", scans, ignore=shutil.ignore_patterns("*_m.png"))
    gt.mkdir()
    for i in range(3):
        shutil.copy(data / "im" / f"c{i}_m.png", gt / f"c{i}.png")
    out = tmp_path / "preds"
    assert main(["predict", "--checkpoint", str(ckpt), "--input", str(scans), "--output", str(out), "--device", "cpu",
                 "--uncertainty", "--probabilities"]) == 0
    assert main(["evaluate-masks", "--pred", str(out), "--gt", str(gt), "--out", str(tmp_path / "m.json")]) == 0


@pytest.mark.parametrize("command", ["evaluate", "uncertainty", "suggest", "zero-shot"])
def test_dataset_commands_keep_out_of_the_dataset(command: str, tmp_path: Path, tiny_run, digest, capsys) -> None:
    ckpt, data = tiny_run(tmp_path)
    argv = ([command, "--teacher", "litemedsam", "--data", str(data)] if command == "zero-shot" else
            [command, "--checkpoint", str(ckpt), "--data", str(data), "--device", "cpu"])
    refused([*argv, "--out", str(data / "eval")], capsys, digest, data, says=("is inside --data",))
    refused([*argv, "--out", str(data)], capsys, digest, data, says=("is the same path as --data",))


def test_evaluate_masks_out_checks(tmp_path: Path, digest, capsys) -> None:
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for d in (pred, gt):
        d.mkdir()
        Image.fromarray(np.eye(8, dtype=np.uint8)).save(d / "a.png")
    base = ["evaluate-masks", "--pred", str(pred), "--gt", str(gt)]
    refused([*base, "--out", str(tmp_path)], capsys, digest, pred, gt, says=("is a folder", "metrics.json"))
    refused([*base, "--out", str(pred / "metrics.json")], capsys, digest, pred, gt, says=("is inside --pred",))
    assert main([*base, "--out", str(tmp_path / "m.json")]) == 0


@pytest.mark.parametrize("command", ["evaluate", "uncertainty", "predict"])
def test_non_finite_weights_are_refused(command: str, tmp_path: Path, tiny_run, digest, capsys) -> None:
    ckpt, data = tiny_run(tmp_path, nan=True)
    out = tmp_path / "out"
    argv = ([command, "--checkpoint", str(ckpt), "--input", str(data / "im" / "c0.png"), "--output", str(out)]
            if command == "predict" else [command, "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)])
    refused([*argv, "--device", "cpu"], capsys, digest, data, says=("holds non-finite weights", "diverged", "best.pt"))
    assert not out.exists()


@pytest.mark.parametrize(("ckpt_dims", "data_dims", "command"), [(2, 3, "evaluate"), (2, 3, "uncertainty"),
                                                                 (3, 2, "evaluate"), (3, 2, "predict"), (2, 3, "predict")])
def test_2d_checkpoint_on_3d_data_and_the_reverse(ckpt_dims: int, data_dims: int, command: str, tmp_path: Path,
                                                  tiny_run, tiny_dataset, digest, capsys) -> None:
    ckpt, _ = tiny_run(tmp_path / "a", ndim=ckpt_dims)
    data = tmp_path / "b"
    tiny_dataset(data, data_dims)
    out = tmp_path / "out"
    if command == "predict":
        argv = ["predict", "--checkpoint", str(ckpt), "--input", str(data / "im"), "--output", str(out)]
    else:
        argv = [command, "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out), "--split", "all"]
    refused([*argv, "--device", "cpu"], capsys, digest, data, says=(f"is {data_dims}D", f"{ckpt_dims}D model"))
    assert not out.exists()


@pytest.mark.parametrize("command", ["evaluate", "uncertainty", "suggest"])
def test_failed_run_leaves_nothing_behind(command: str, tmp_path: Path, tiny_run, digest, capsys, monkeypatch) -> None:
    """A case that fails after the first was processed: a new OUT is not created, an old one stays identical."""
    import uncol.eval.evaluate as evaluate_mod
    from uncol.eval import inference

    ckpt, data = tiny_run(tmp_path)
    real, calls = inference.predict_probs, []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            from uncol.errors import DataError

            raise DataError("simulated failure on the second case")
        return real(*args, **kw)

    monkeypatch.setattr(inference, "predict_probs", flaky)
    monkeypatch.setattr(evaluate_mod, "predict_probs", flaky)
    run = ckpt.parent
    out = run / ("suggest" if command == "suggest" else "out")
    argv = [command, "--checkpoint", str(ckpt), "--data", str(data), "--device", "cpu", "--split", "all"]
    argv += ["--teacher", "none"] if command == "suggest" else ["--out", str(out)]
    refused(argv, capsys, digest, data, run, says=("simulated",))
    assert not out.exists()
    out.mkdir()
    (out / "metrics.json").write_text("earlier")
    calls.clear()
    refused(argv, capsys, digest, data, run, says=("simulated",))
    no_stage_left(run)
