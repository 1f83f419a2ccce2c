"""``python ddp_worker.py train CFG --out D [--nproc N]``: ``uncol train`` plus a tiny
BatchNorm-free model (``tiny_conv``) and a cross-entropy-only method (``ce_only``), registered here.

Why: with BatchNorm (per-rank statistics) or the batch-pooled Dice loss, a 2-rank run is not the
same computation as a 1-process run of the global batch. A pixel-mean CE over equal per-rank
batches is: the mean of the rank means equals the global mean, and DDP averages the gradients.
Not collected by pytest (no ``test_`` prefix).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from torch import nn


def register() -> None:
    from uncol.losses.segmentation import ce_loss
    from uncol.methods.base import METHODS, Method, StepOutput
    from uncol.models.base import MODELS

    @MODELS.register("tiny_conv")
    def build_tiny(*, spatial_dims: int, in_channels: int, num_classes: int, params: dict) -> nn.Module:
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        return nn.Sequential(conv(in_channels, 4, 3, padding=1), nn.ReLU(), conv(4, num_classes, 1))

    @dataclass(frozen=True)
    class _P:
        pass

    @METHODS.register("ce_only")
    class CEOnly(Method):
        Params = _P

        def train_step(self, batch, it, total):
            loss = ce_loss(self.student(batch.labeled["image"]), batch.labeled["label"])
            return StepOutput(loss, {"loss": loss.item()})


if __name__ == "__main__":
    register()
    import uncol.engine
    from uncol.cli import main

    uncol.engine.RANK_COMMAND = [__file__]  # `--nproc 2` relaunches this script, so ranks register too

    sys.exit(main(sys.argv[1:]))
