"""Export the prompt-free student (the checkpoint's inference network) as TorchScript or ONNX, and load it back.

The exported network maps a normalised image batch ``(B, C, *data.size)`` float32 to logits
``(B, K, *data.size)``; the batch size is free, the spatial size is the training ``data.size`` (what
``whole``/``slices`` inference feeds after resizing and ``patch`` inference feeds as windows).
Everything ``uncol predict`` needs besides the weights travels inside the file as JSON
(``config``, ``labels``, ``num_classes``, ``spatial_dims``): in a TorchScript archive as the extra
file ``uncol.json``, in ONNX as the metadata property ``uncol``. So ``uncol predict --checkpoint
model.onnx`` (or ``model.ts``) runs the exported file exactly like the checkpoint.

TorchScript is ``torch.jit.trace`` of the student (exact: same kernels); ONNX uses the TorchScript-based
exporter (``dynamo=False``, opset 17) and runs with onnxruntime's CPU provider (outputs agree to ~1e-6).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uncol.config import Config, from_dict
from uncol.errors import CheckpointError

FORMATS = ("torchscript", "onnx")
META_KEY = "uncol"


def _meta(cfg: Config, ckpt: dict) -> dict[str, Any]:
    from uncol.config import to_dict

    return {"config": to_dict(cfg), "labels": ckpt.get("labels"), "num_classes": int(ckpt["num_classes"]),
            "spatial_dims": int(ckpt["spatial_dims"]), "format_version": 1}


def example_input(cfg: Config, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A fixed normalised input ``(batch, C, *data.size)`` (standard normal from ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg.model.in_channels, *cfg.data.size, generator=g)


def export_checkpoint(checkpoint: str | Path, out: str | Path, fmt: str = "torchscript") -> Path:
    """Write the student of ``checkpoint`` to ``out`` as ``fmt`` (``torchscript`` | ``onnx``), atomically."""
    from uncol.models import build_model
    from uncol.runtime import atomic_write, load_checkpoint, load_state_strict

    if fmt not in FORMATS:
        raise CheckpointError(f"export format {fmt!r} unknown; use one of {', '.join(FORMATS)}")
    ckpt = load_checkpoint(checkpoint)  # as uncol.eval.evaluate.model_from_checkpoint (which imports this module)
    cfg = from_dict(Config, ckpt["config"])
    model = build_model(cfg.model, spatial_dims=ckpt["spatial_dims"], num_classes=ckpt["num_classes"])
    load_state_strict(model, ckpt["model"], f"checkpoint {str(checkpoint)!r}")
    model.eval()
    x = example_input(cfg, batch=2)
    meta = json.dumps(_meta(cfg, ckpt))
    out = Path(out)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(model, x, check_trace=False)
        atomic_write(out, lambda p: torch.jit.save(traced, str(p), _extra_files={"uncol.json": meta}))
    else:
        atomic_write(out, lambda p: _save_onnx(model, x, meta, p), suffix=".onnx")
    return out


def _save_onnx(model: nn.Module, x: torch.Tensor, meta: str, path: Path) -> None:
    import warnings

    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on shape checks that are constant for this size
        torch.onnx.export(model, (x,), str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, meta
    onnx.save(proto, str(path))


class OnnxModule(nn.Module):
    """An onnxruntime session behind ``forward(x (B, C, *S)) -> logits (B, K, *S)`` (CPU provider)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {"image": np.ascontiguousarray(x.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(out).to(x.device)


def is_exported(path: str | Path) -> bool:
    """True for an ``.onnx`` file or a TorchScript archive (a zip with a ``code/`` folder)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return True
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n for n in z.namelist())


def load_exported(path: str | Path, device: torch.device) -> tuple[nn.Module, Config, dict[str, Any]]:
    """``(network, config, meta)`` of an exported file; ``meta`` holds ``labels``, ``num_classes``, ``spatial_dims``.

    ONNX runs on the CPU whatever ``device`` is; TorchScript is moved to ``device``.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".onnx":
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            model: nn.Module = OnnxModule(path)
            raw = props[META_KEY]
        else:
            extra = {"uncol.json": ""}
            model = torch.jit.load(str(path), map_location=device, _extra_files=extra)
            raw = extra["uncol.json"]
        meta = json.loads(raw)
    except Exception as e:  # noqa: BLE001  onnx/protobuf/onnxruntime/TorchScript raise many types for a bad file
        raise CheckpointError(f"{path}: not a model exported by `uncol export` ({type(e).__name__}); "
                              "export it again with `uncol export --checkpoint best.pt --out model.onnx`") from None
    return model.eval(), from_dict(Config, meta["config"]), meta
