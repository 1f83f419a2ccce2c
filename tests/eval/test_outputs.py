"""uncol.eval.outputs and uncol.eval.loading: known answers of the output rules and checkpoint checks
(``check_finite_state`` lives in uncol.runtime; evaluate/predict call it through eval.loading)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uncol.config import Config, DataConfig
from uncol.errors import CheckpointError, DataError
from uncol.eval.loading import input_ndims
from uncol.eval.outputs import planned_outputs, refuse_collisions, refuse_overlap
from uncol.runtime import check_finite_state


def test_planned_outputs_put_maps_in_sub_folders() -> None:
    assert [str(p) for p in planned_outputs(Path("a/x.png"), True, 2)] == [
        "x.png", "uncertainty/x_entropy.nii.gz", "probabilities/x_prob0.nii.gz", "probabilities/x_prob1.nii.gz"]
    assert [str(p) for p in planned_outputs(Path("x.nii.gz"), True, 0)] == ["x.nii.gz", "uncertainty/x_entropy.nii.gz"]
    assert [str(p) for p in planned_outputs(Path("x.dcm"), False, 0)] == ["x.nii.gz"]


def test_overlap_rules(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    ok = [(tmp_path / "out", "in"), (tmp_path / "in2", "in")]  # a sibling whose name starts alike is fine
    for out, name in ok:
        refuse_overlap(out, "--out", [("--input", tmp_path / name), ("--labels", None)])
    refuse_overlap(tmp_path / "in" / "report", "--out", [("FOLDER", tmp_path / "in")], allow_inside=True)
    for out, why in ((tmp_path / "in", "is the same path as"), (tmp_path, "contains"), (tmp_path / "in" / "x", "is inside")):
        with pytest.raises(DataError, match=why):
            refuse_overlap(out, "--out", [("--input", tmp_path / "in")])
    with pytest.raises(DataError, match="same case name 'scan'"):
        refuse_collisions([Path("d/scan.png"), Path("d/scan.nii.gz")])
    refuse_collisions([Path("d/scan.png"), Path("d/scan2.png")])


def test_finite_state_and_input_ndims() -> None:
    check_finite_state({"w": torch.ones(2), "n": torch.tensor(3)}, "ok.pt")
    with pytest.raises(CheckpointError, match=r"'bad.pt' holds non-finite weights \(1 tensors, e.g. w\)"):
        check_finite_state({"w": torch.tensor([1.0, float("inf")]), "v": torch.ones(1)}, "bad.pt")
    assert input_ndims(Config(data=DataConfig(mode="whole")), 2) == (2,)
    assert input_ndims(Config(data=DataConfig(mode="slices")), 2) == (2, 3)
    assert input_ndims(Config(data=DataConfig(spatial_dims=3, mode="patch", size=(8, 8, 8))), 3) == (3,)
