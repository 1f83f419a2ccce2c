"""Scalar logs: JSON lines (always) and TensorBoard (when installed)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class ScalarLogger:
    """Appends ``{"iteration", "stage", **scalars}`` to ``log.jsonl``; mirrors to TensorBoard if available."""

    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "log.jsonl"
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except Exception:  # tensorboard is optional
                self._tb = None

    def log(self, iteration: int, stage: str, scalars: dict[str, Any], kind: str = "train") -> None:
        if not self.enabled:
            return
        rec = {"kind": kind, "stage": stage, "iteration": iteration, **scalars}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{kind}/{stage}/{k}", v, iteration)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
