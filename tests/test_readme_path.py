"""README.md, "Use it on your own data": every ``uncol`` command of its bash block runs, in order, in a
scratch folder holding a few HC18 images, through ``uncol.cli.main``.

What the test changes, and nothing else:

- **data**: the README's relative folders are made in the scratch folder: ``images/`` and ``masks/``
  with 9 HC18 images of 9 patients (6 train, 1 of them labelled at the README's 10 %), ``new_scans/``
  and ``labels/`` with 2 more (masks named as their images); ``configs/`` links to the repository's.
  The commands' paths are used as written.
- **compute** (:data:`SHRINK`, appended arguments): ``train`` runs 2 iterations per stage at 64×64 (the
  README's config trains 2 × 15,000 at 256×256), ``zero-shot`` gets ``--limit 2``, ``uncertainty`` 2
  MC-dropout passes instead of 10, and ``suggest`` ranks by the student's uncertainty only (``--teacher
  none``: the foundation teacher costs seconds per image on a CPU).
- commands that cannot run offline in a test are not run (:data:`NOT_RUN`, each with its reason).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SECTION = "## Use it on your own data"

#: Commands not run, matched by tokens they contain: (tokens, reason).
NOT_RUN: list[tuple[tuple[str, ...], str]] = [
    (("weights", "fetch"), "downloads the official weights from the internet"),
    (("train", "--nproc"), "starts several processes through torch.distributed.run (tests/engine covers DDP)"),
    (("data", "prepare"), "needs the paper's raw datasets, downloaded by the user"),
    (("bench",), "a grid of full trainings, hours on a CPU (tests/bench runs a tiny grid)"),
]
#: Extra arguments per command, to keep the test short: (tokens, arguments appended).
SHRINK: list[tuple[tuple[str, ...], list[str]]] = [
    (("train",), ["--set", "method.params.stage1_iterations=2", "--set", "method.params.stage2_iterations=2",
                  "--set", "data.size=[64,64]"]),
    (("zero-shot",), ["--limit", "2"]),
    # G's disagreement score costs one LiteMedSAM encoding per case (~8 s on a busy 2-core CPU);
    # tests/eval/test_suggest.py runs it with the teacher
    (("suggest",), ["--teacher", "none"]),
    (("uncertainty",), ["--mc-passes", "2"]),  # the last value of a repeated option wins
]


def readme_commands() -> list[list[str]]:
    """The arguments after ``uncol`` of every command in the section's bash blocks, in order."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args and args[0] == "uncol":
                commands.append(args[1:])
    return commands


def _match(args: list[str], table: list[tuple[tuple[str, ...], Any]]) -> Any:
    """The value of the first entry of ``table`` whose tokens all occur in ``args`` (None if none)."""
    return next((v for tokens, v in table if set(tokens) <= set(args)), None)


def _run(args: list[str]) -> tuple[int, str]:
    """``uncol args`` in-process; (exit status, stderr without progress bars)."""
    from uncol.cli import main

    extra = [] if "--resume" in args else (_match(args, SHRINK) or [])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main([*args, *extra])
    lines = [ln for ln in re.split(r"[\r\n]+", err.getvalue()) if ln.strip() and "%|" not in ln]
    return rc, "\n".join(lines[-5:])


def _scratch(base: Path, hc18: Path) -> None:
    """The README's input folders, from HC18 images of distinct patients."""
    by_patient: dict[str, str] = {}
    for p in sorted((hc18 / "images").glob("*.png")):
        by_patient.setdefault(p.name.split("_")[0], p.stem)
    stems = list(by_patient.values())[:11]
    for folder in ("images", "masks", "new_scans", "labels"):
        (base / folder).mkdir(parents=True)
    for i, stem in enumerate(stems):
        img, mask = hc18 / "images" / f"{stem}.png", hc18 / "masks" / f"{stem}_mask.png"
        if i < 9:
            shutil.copy(img, base / "images" / img.name)
            shutil.copy(mask, base / "masks" / mask.name)
        else:
            shutil.copy(img, base / "new_scans" / img.name)
            shutil.copy(mask, base / "labels" / img.name)
    (base / "configs").symlink_to(ROOT / "configs", target_is_directory=True)


@pytest.fixture(scope="module")
def readme_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every README command but :data:`NOT_RUN` in order (``--resume`` on the finished run); their results."""
    base = tmp_path_factory.mktemp("readme")
    _scratch(base, shared_data / "hc18_fetal_head_us")
    results: dict[str, tuple[int, str]] = {}
    seconds: dict[str, float] = {}
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNCOL_CACHE", str(base / ".cache"))
        os.chdir(base)
        try:
            for args in readme_commands():
                if _match(args, NOT_RUN) is None:
                    t0 = time.perf_counter()
                    results[shlex.join(args)] = _run(args)
                    seconds[args[0]] = seconds.get(args[0], 0.0) + time.perf_counter() - t0
        finally:
            os.chdir(cwd)
    print("README commands, seconds:", {k: round(v, 1) for k, v in seconds.items()})
    return {"base": base, "results": results}


def test_the_lists_name_readme_commands() -> None:
    """Every NOT_RUN entry still matches a README command, so none goes stale silently."""
    commands = readme_commands()
    assert len(commands) >= 12
    for tokens, _ in NOT_RUN:
        assert any(set(tokens) <= set(c) for c in commands), tokens


@pytest.mark.slow
def test_readme_commands_run_as_written(readme_run: dict[str, Any]) -> None:
    failed = {cmd: err for cmd, (rc, err) in readme_run["results"].items() if rc != 0}
    assert not failed, "\n".join(f"uncol {cmd}\n    {err}" for cmd, err in failed.items())
    base = readme_run["base"]
    assert len(readme_run["results"]) >= 10
    assert sorted(p.name for p in (base / "preds" / "uncertainty").iterdir()) == [
        f"{p.stem}_entropy.nii.gz" for p in sorted((base / "new_scans").iterdir())]
    page = (base / "runs" / "mine" / "report" / "report.html").read_text(encoding="utf-8")
    for section in ("Metrics", "Training curves", "Uncertainty and calibration", "Which case to label next"):
        assert section in page, section
    assert (base / "metrics.json").is_file() and (base / "profile.json").is_file()
