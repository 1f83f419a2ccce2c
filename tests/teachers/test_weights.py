"""``uncol weights``: checked, atomic downloads (from local ``file://`` copies: tests never touch the network)
and teachers finding the official file in the weights folder when ``teacher.checkpoint`` is null."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from uncol.cli import main
from uncol.data.prepare.download import download
from uncol.errors import CheckpointError, DataError
from uncol.teachers.weights import WEIGHTS, fetch_weights, resolve_checkpoint, weights_dir


@pytest.fixture(autouse=True)
def _weights_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "weights"
    monkeypatch.setenv("UNCOL_WEIGHTS", str(d))
    return d


def _blob(path: Path, payload: bytes = b"not really weights") -> tuple[Path, str]:
    path.write_bytes(payload)
    return path, hashlib.md5(payload).hexdigest()


def test_download_checks_the_md5_tries_mirrors_in_order_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    src, md5 = _blob(tmp_path / "src.bin")
    dest = tmp_path / "out" / "w.pth"
    got = download([(tmp_path / "absent.bin").as_uri(), src.as_uri()], dest, md5=md5)
    assert got == dest and dest.read_bytes() == src.read_bytes()
    with pytest.raises(DataError, match=r"expected 0{32}.*by hand to .*other\.pth"):
        download(src.as_uri(), tmp_path / "out" / "other.pth", md5="0" * 32)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["w.pth"]  # no .part, no other.pth
    with pytest.raises(DataError, match=r"could not download .*absent\.bin"):
        download((tmp_path / "absent.bin").as_uri(), tmp_path / "out" / "x.pth", md5=md5)


def test_an_existing_file_that_passes_the_check_is_kept(tmp_path: Path) -> None:
    dest, md5 = _blob(tmp_path / "dest.bin")
    before = dest.stat().st_mtime_ns
    assert download((tmp_path / "absent.bin").as_uri(), dest, md5=md5) == dest  # no download attempted
    assert dest.stat().st_mtime_ns == before


def test_fetch_medsam_refuses_a_file_with_another_md5(tmp_path: Path, _weights_home: Path, capsys) -> None:
    src, _ = _blob(tmp_path / "medsam_copy.pth")
    rc = main(["weights", "fetch", "medsam_vit_b", "--url", src.as_uri(), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and WEIGHTS.get("medsam_vit_b").md5 in last and "medsam_vit_b.pth" in last
    assert not _weights_home.exists() or not any(_weights_home.iterdir())


def test_sam_med3d_download_is_verified_by_loading(tmp_path: Path, _weights_home: Path) -> None:
    good = tmp_path / "turbo_copy.pth"
    state = {"image_encoder.w": torch.zeros(2), "prompt_encoder.w": torch.zeros(1), "mask_decoder.w": torch.ones(1)}
    torch.save({"model_state_dict": state, "epoch": 3}, good)
    path = fetch_weights("sam_med3d_turbo", url=good.as_uri(), progress=False)
    assert path == _weights_home / "sam_med3d_turbo.pth" and path.read_bytes() == good.read_bytes()
    assert resolve_checkpoint(None, "sam_med3d", "SAM-Med3D") == str(path)

    wrong = tmp_path / "other_model.pth"
    torch.save({"encoder.w": torch.zeros(1)}, wrong)
    with pytest.raises(CheckpointError, match=r"no 'image_encoder\.\*' weights.*other_model\.pth.*nothing was kept"):
        fetch_weights("sam_med3d_turbo", tmp_path / "elsewhere", url=wrong.as_uri(), progress=False)
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())


def test_a_null_checkpoint_names_the_fetch_command_and_the_folder() -> None:
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint(None, "medsam_vit_b", "MedSAM ViT-B")
    msg = str(e.value)
    assert "\n" not in msg and "`uncol weights fetch medsam_vit_b`" in msg and str(weights_dir()) in msg
    assert "teacher.checkpoint" in msg
    assert resolve_checkpoint("given.pth", "medsam_vit_b", "MedSAM ViT-B") == "given.pth"  # an explicit path wins


def test_weights_list_says_where_and_what_is_present(_weights_home: Path, capsys) -> None:
    _weights_home.mkdir(parents=True)
    (_weights_home / "medsam_vit_b.pth").write_bytes(b"x")
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(_weights_home) in out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert "present" in lines["medsam_vit_b"] and "not downloaded" in lines["sam_med3d_turbo"]
