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
            except Exception:  # noqa: BLE001  tensorboard is optional
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

    def truncate_after(self, stage_order: list[str], stage_index: int, iteration: int) -> None:
        """Drop records a killed run logged after its last checkpoint (``--resume`` logs them again).

        A record is kept when its stage comes before ``stage_order[stage_index]``, or is that stage
        with ``iteration`` at most ``iteration``.
        """
        if not self.enabled or not self.path.is_file():
            return
        from uncol.runtime import atomic_write_text

        rank = {name: i for i, name in enumerate(stage_order)}
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
                si = rank.get(rec.get("stage"), -1)
                if si < stage_index or (si == stage_index and int(rec.get("iteration", 0)) <= iteration):
                    keep.append(line)
            except (ValueError, TypeError):
                continue  # a line cut by the kill
        atomic_write_text(self.path, "".join(k + "\n" for k in keep))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
