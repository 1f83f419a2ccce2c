"""uncol export: TorchScript and ONNX students equal the checkpoint's on a fixed input; predict runs them."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from uncol.config import Config, DataConfig, ModelConfig, to_dict
from uncol.engine.checkpoint import save_checkpoint
from uncol.errors import CheckpointError

LABELS = {"0": "background", "1": "head", "2": "rim"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from uncol.models import build_model

    torch.manual_seed(0)
    cfg = Config(data=DataConfig(size=(32, 32), resize="pad"), model=ModelConfig(name="uncol_student"))
    model = build_model(cfg.model, spatial_dims=2, num_classes=3)
    for m in model.modules():  # non-trivial BatchNorm statistics, so that eval mode matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("ck") / "best.pt"
    save_checkpoint({"config": to_dict(cfg), "model": model.state_dict(), "spatial_dims": 2, "num_classes": 3,
                     "labels": LABELS}, path)
    return path


@pytest.mark.parametrize("fmt, name, atol", [("torchscript", "model.ts", 0.0), ("onnx", "model.onnx", 1e-4)])
def test_exported_output_equals_the_checkpoint(tmp_path: Path, checkpoint: Path, fmt: str, name: str, atol: float) -> None:
    from uncol.cli import main
    from uncol.eval.evaluate import model_from_checkpoint
    from uncol.eval.export import example_input, load_exported

    out = tmp_path / name
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    ref, cfg, _ = model_from_checkpoint(checkpoint, torch.device("cpu"))
    exported, cfg2, meta = load_exported(out, torch.device("cpu"))
    assert cfg2 == cfg and meta["labels"] == LABELS and meta["num_classes"] == 3
    x = example_input(cfg, batch=3, seed=7)  # another batch size than the trace's
    with torch.no_grad():
        a, b = ref(x), exported(x)
    assert b.shape == (3, 3, 32, 32) and a.abs().max() > 0.1
    assert torch.allclose(a, b, atol=atol, rtol=0), float((a - b).abs().max())


def test_predict_runs_an_exported_file_like_the_checkpoint(tmp_path: Path, checkpoint: Path) -> None:
    from uncol.cli import main
    from uncol.eval.export import export_checkpoint

    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56), dtype=np.uint8)).save(inp / "a.png")
    ts = export_checkpoint(checkpoint, tmp_path / "m.ts", "torchscript")
    onnx = export_checkpoint(checkpoint, tmp_path / "m.onnx", "onnx")
    masks, probs = {}, {}
    for tag, model in (("ckpt", checkpoint), ("ts", ts), ("onnx", onnx)):
        assert main(["predict", "--checkpoint", str(model), "--input", str(inp), "--output", str(tmp_path / tag),
                     "--device", "cpu", "--png-values", "raw", "--probabilities"]) == 0
        masks[tag] = np.array(Image.open(tmp_path / tag / "a.png"))
        pdir = tmp_path / tag / "probabilities"
        probs[tag] = np.stack([np.asarray(nib.load(str(pdir / f"a_prob{k}.nii.gz")).dataobj) for k in range(3)])
        assert (tmp_path / tag / "labels.json").is_file()
    assert masks["ckpt"].shape == (40, 56) and probs["ckpt"].std(axis=(1, 2)).min() > 1e-4  # varies over the image
    assert np.array_equal(masks["ckpt"], masks["ts"]) and np.allclose(probs["ckpt"], probs["ts"], atol=1e-6)
    assert np.allclose(probs["ckpt"], probs["onnx"], atol=1e-4)


def test_a_file_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    from uncol.eval.export import load_exported

    (tmp_path / "x.onnx").write_bytes(b"not onnx")
    with pytest.raises(CheckpointError, match="x.onnx: not a model exported by `uncol export`"):
        load_exported(tmp_path / "x.onnx", torch.device("cpu"))
