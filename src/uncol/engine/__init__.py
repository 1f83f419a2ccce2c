"""The shared training loop, checkpoints, logging and distributed set-up."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from uncol.config import Config


def train_entry(cfg: Config, out: Path, resume: bool = False, stages: list[str] | None = None,
                nproc: int = 1) -> dict[str, Any] | None:
    """Run training in this process, under ``torchrun`` (``WORLD_SIZE`` set), or launch ``nproc`` processes.

    ``uncol train --nproc N`` re-runs the same command through ``torch.distributed.run``; each rank
    then initialises the process group (gloo on CPU, nccl on GPU) and only rank 0 writes files.
    """
    from uncol.engine.distributed import cleanup, init_from_env
    from uncol.engine.loop import train
    from uncol.engine.setup import resolve_device

    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        argv = [a for a in sys.argv[1:]]
        if "--nproc" in argv:
            i = argv.index("--nproc")
            del argv[i:i + 2]
        argv = [a for a in argv if not a.startswith("--nproc=")]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "uncol", *argv]
        rc = subprocess.call(cmd)
        if rc != 0:
            raise SystemExit(rc)
        return None
    dist = init_from_env(resolve_device(cfg.train.device).type)
    try:
        return train(cfg, out, resume=resume, stages=stages, dist=dist)
    finally:
        cleanup(dist)
