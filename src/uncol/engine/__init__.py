"""The shared training loop, checkpoints, logging and distributed set-up."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from uncol.config import Config
from uncol.errors import STATUS_DIR_ENV

#: What each rank of ``uncol train --nproc N`` runs: ``python -m torch.distributed.run ... RANK_COMMAND
#: <uncol arguments>``. A program that registers its own models or methods before calling
#: :func:`uncol.cli.main` sets it to ``[its_script_path]`` so that every rank registers them too.
RANK_COMMAND: list[str] = ["-m", "uncol"]


def train_argv(config: str | None, out: str | Path, overrides: list[str], resume: bool = False,
               stages: list[str] | None = None, overwrite: bool = False, extend: bool = False) -> list[str]:
    """The ``uncol train ...`` arguments that reproduce a call (what ``--nproc`` hands to each rank)."""
    argv = ["train", *([str(config)] if config else []), "--out", str(out)]
    for item in overrides:
        argv += ["--set", item]
    for flag, on in (("--resume", resume), ("--overwrite", overwrite), ("--extend", extend)):
        if on:
            argv.append(flag)
    for s in stages or []:
        argv += ["--stage", s]
    return argv


def preflight(cfg: Config, out: Path, resume: bool, overwrite: bool = False, extend: bool = False) -> None:
    """Cheap checks before processes are launched: output folder, dataset description, split, names.

    Each rank re-checks everything (and reads the data) itself; this only turns the common mistakes
    into one ``error:`` line from the launcher instead of one per rank plus torchrun's report.
    """
    from uncol.data.dataset import DatasetSpec
    from uncol.engine.runfolder import check_resume_config, check_run_folder
    from uncol.engine.setup import check_config, load_split
    from uncol.errors import ConfigError
    from uncol.runtime import check_out_dir

    check_config(cfg)
    check_out_dir(out)
    check_run_folder(cfg, out, resume, overwrite)
    if resume:
        check_resume_config(cfg, out, extend)
    if not cfg.data.root:
        raise ConfigError("config key 'data.root' is empty: set it to a dataset folder with dataset.json")
    load_split(cfg, DatasetSpec.load(Path(cfg.data.root)), out, resume)


def train_entry(cfg: Config, out: Path, resume: bool = False, stages: list[str] | None = None,
                nproc: int = 1, argv: list[str] | None = None, overwrite: bool = False, extend: bool = False,
                origin: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Run training in this process, under ``torchrun`` (``WORLD_SIZE`` set), or launch ``nproc`` processes.

    ``uncol train --nproc N`` re-runs ``argv`` (the ``uncol`` arguments, ``--nproc`` excluded) through
    ``python -m torch.distributed.run --standalone --nproc_per_node N`` + :data:`RANK_COMMAND`; each rank then
    initialises the process group (gloo on CPU, nccl on GPU) and only rank 0 writes files. Returns the
    summary on rank 0 of the run, None on the other ranks and in the launcher.
    """
    from uncol.engine.distributed import cleanup, init_from_env
    from uncol.engine.loop import train
    from uncol.errors import ConfigError
    from uncol.runtime import resolve_device

    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        if argv is None:
            raise ConfigError("--nproc > 1 needs the command's arguments to relaunch it; call it through `uncol train`")
        preflight(cfg, Path(out), resume, overwrite, extend)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *RANK_COMMAND, *argv]
        with tempfile.TemporaryDirectory(prefix="uncol-ranks-") as status_dir:
            rc, user_error = _run_filtered(cmd, {**os.environ, STATUS_DIR_ENV: status_dir})
            statuses = {p.read_text().strip() for p in Path(status_dir).glob("rank*.status")}
        if rc != 0:  # a rank's failed run (TrainingError) is 1, as in one process; bad input 2
            raise SystemExit(1 if "1" in statuses else 2 if user_error or "2" in statuses else rc)
        return None
    dist = init_from_env(resolve_device(cfg.train.device).type)
    try:
        summary = train(cfg, out, resume=resume, stages=stages, dist=dist, overwrite=overwrite, extend=extend,
                        origin=origin)
    finally:
        cleanup(dist)
    return summary if dist.rank == 0 else None


def _run_filtered(cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, bool]:
    """Run the launcher, forwarding its stderr live (progress bars included) with two filters.

    torchrun's OMP_NUM_THREADS banner is dropped. Once a rank prints a user error (``error: ...``, exit
    status 2), that first line is shown and everything after it is dropped: the same line from the
    other ranks and torchrun's ChildFailedError report. Returns (exit status, whether a user error was seen).
    """
    import re

    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
    buf, user_error = b"", False
    while True:
        chunk = os.read(proc.stderr.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *segments, buf = re.split(rb"(?<=[\r\n])", buf)
        for seg in segments:
            if user_error or not seg.strip() or seg.startswith(b"*****") or b"Setting OMP_NUM_THREADS" in seg:
                continue
            user_error = seg.startswith(b"error: ")
            if out is not None:
                out.write(seg)
                out.flush()
            else:
                sys.stderr.write(seg.decode(errors="replace"))
    if buf and not user_error:
        (out.write(buf) if out is not None else sys.stderr.write(buf.decode(errors="replace")))
    return proc.wait(), user_error
