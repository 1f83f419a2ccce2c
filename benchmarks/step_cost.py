"""Cost of one training step of UnCoL and its baselines, measured in ONE process run (issue 15).

    python benchmarks/step_cost.py                               # all settings, writes benchmarks/results/step_cost.{md,json}
    python benchmarks/step_cost.py --settings 2d128 --steps 10   # one setting
    python benchmarks/step_cost.py --data2d data/hc18 --data3d ../shared/data/msd_task04_hippocampus

All rows of a setting are built first, then step in turn (round robin: warm-up rounds, then ``--steps``
timed rounds), so that the load of a shared machine reaches every row alike. Every row is a real training
step of the shared loop (``engine.loop.Trainer.train_iteration``: batch from
the loader, method step, backward, optimiser step, EMA update), on the same data and batch shape
(2 labelled + 2 unlabelled; stage 1 of UnCoL and the supervised U-Net take the 4 labelled images
their configs take; in stage 2 the student of BCP and of UnCoL (``stage2_pairs: halves``, the authors' code)
sees 2 mixed images, UnCoL with ``stage2_pairs: all`` 4), after ``--warmup`` untimed steps; the figure is the
median of ``--steps``.
Settings: 2D HC18 at 128² and 256² (LiteMedSAM, cached features), 3D hippocampus at the 3D suite's size
(LiteMedSAM slice by slice, cached). The teacher cache is filled before timing (it is filled once per
dataset, not per step) into a temporary folder unless ``--cache`` names one.

Shares: timers wrapped around the teacher's parts (cache read and warp = "G encode (cache)", the prompt
encoder, the mask decoder's two-way transformer, the rest of the decoder = mask upscaling, logits to
probabilities), S (the EMA student's forward), the student's forward, the backward pass; "losses and
rest" is the step minus those (losses, mixing, prompts, optimiser, EMA update, loader). Timers call
``torch`` synchronously on the CPU; on CUDA they synchronise.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from efficiency import cpu_name  # benchmarks/efficiency.py (this folder is on sys.path when run as a script)

import uncol.methods  # noqa: F401  (fills the registries)
from uncol.config import load_config
from uncol.engine.distributed import DistInfo
from uncol.engine.loop import Trainer

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "src" / "uncol" / "assets" / "demo"
PARTS = ("G encode (cache)", "G prompt encoder", "G decoder transformer", "G decoder rest", "S (EMA) forward",
         "student forward", "backward")


class Timers:
    """Seconds per part for the current step; a timer inside another subtracts its time from the outer one."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.now, self.stack = device, defaultdict(float), []

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        self.sync()
        t = time.perf_counter()
        self.stack.append([0.0])
        try:
            yield
        finally:
            self.sync()
            dt = time.perf_counter() - t
            self.now[name] += dt - self.stack.pop()[0]
            if self.stack:
                self.stack[-1][0] += dt

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        fn: Callable = getattr(obj, attr)

        def timed(*a: Any, **k: Any) -> Any:
            with self.time(name):
                return fn(*a, **k)

        setattr(obj, attr, timed)


def _instrument(trainer: Trainer, timers: Timers) -> None:
    method = trainer.method
    student = method.student
    timers.wrap(student, "forward_features" if hasattr(student, "forward_features") else "forward", "student forward")
    if hasattr(student, "forward_features"):
        timers.wrap(student, "forward", "student forward")
    ema = getattr(method, "ema", None)
    if ema is not None:
        for attr in ("forward_features", "forward"):
            if hasattr(ema.module, attr):
                timers.wrap(ema.module, attr, "S (EMA) forward")
    t = method.teacher
    if t is None:
        return
    for attr in ("encode_part", "encode_mixed"):
        timers.wrap(t, attr, "G encode (cache)")
    base = t
    while hasattr(base, "teacher") or hasattr(base, "base"):
        base = getattr(base, "teacher", None) or base.base
    timers.wrap(base.prompt_encoder, "forward", "G prompt encoder")
    timers.wrap(base.mask_decoder.transformer, "forward", "G decoder transformer")
    timers.wrap(base, "decode", "G decoder rest")  # whatever decode spends outside the timers above


class Row:
    """One row's trainer, built and advanced to the timed stage; :meth:`step` times one training step."""

    def __init__(self, cfg_path: Path, sets: list[str], stage: int, out: Path) -> None:
        cfg = load_config(cfg_path, sets)
        torch.manual_seed(0)
        self.trainer = Trainer(cfg, out, resume=False, stages=None, progress=False, dist=DistInfo(), stop_after=None)
        self.trainer.restore()
        plan = self.trainer.plan
        if stage >= len(plan):
            raise SystemExit(f"{cfg.method.name} has {len(plan)} stages, asked for stage index {stage}")
        # the stages before the timed one run their begin hooks only (e.g. UnCoL's cache fill in stage 1)
        for pi in range(stage + 1):
            self.trainer.start_stage(pi, plan[pi])
        self.total = plan[stage].iterations
        self.timers = Timers(self.trainer.run_ctx.device)
        _instrument(self.trainer, self.timers)
        timers = self.timers

        def timed_backward(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
            with timers.time("backward"):
                loss.backward()
            opt.step()

        self.trainer.run_ctx.backward = timed_backward  # type: ignore[method-assign]
        self.i, self.times, self.parts = 0, [], defaultdict(list)

    def step(self, record: bool) -> None:
        self.timers.now = defaultdict(float)
        self.timers.sync()
        t0 = time.perf_counter()
        self.trainer.train_iteration(min(self.i, self.total - 1), self.total)
        self.timers.sync()
        dt = time.perf_counter() - t0
        self.i += 1
        if record:
            self.times.append(dt)
            for k in PARTS:
                self.parts[k].append(self.timers.now.get(k, 0.0))
            self.parts["losses and rest"].append(dt - sum(self.timers.now.values()))

    def result(self) -> dict[str, Any]:
        return {"ms": 1000 * statistics.median(self.times), "ms_all": [round(1000 * t, 1) for t in self.times],
                "parts_ms": {k: round(1000 * statistics.median(v), 1) for k, v in self.parts.items()}}


def measure_rows(rows: dict[str, Row], warmup: int, steps: int) -> dict[str, dict[str, Any]]:
    """Warm-up, then ``steps`` rounds in which every row makes one timed step in turn (round robin), so that
    a change of the machine's load during the run reaches every row alike."""
    for _ in range(warmup):
        for r in rows.values():
            r.step(record=False)
    for _ in range(steps):
        for r in rows.values():
            r.step(record=True)
    return {name: r.result() for name, r in rows.items()}


def settings(a: argparse.Namespace) -> dict[str, dict[str, Any]]:
    common = [f"train.threads={a.threads}", f"train.device={a.device}", "train.batch_size=4",
              "train.labeled_bs=2", "train.unlabeled_bs=2", "train.val_every=100000", "train.save_every=100000",
              "data.split.labeled=0.5", "method.params.stage1_iterations=1000", "method.params.stage2_iterations=1000",
              "method.params.recalibrate_images=8"]
    d2 = ["data.root=" + str(a.data2d), "data.augment={enabled: true, flip: true, rotate_deg: 20.0}"]
    # 3D: 30 % of the volumes for training, so that the slice-wise cache fill stays short (the step does not
    # depend on how many volumes there are)
    d3 = ["data.root=" + str(a.data3d), "data.size=" + a.size3d, "data.split.ratios=[0.3, 0.2, 0.5]"]
    return {
        "2d128": {"base2d": ROOT / "configs/hc18_2d_uncol.yaml", "sets": common + d2 + ["data.size=[128, 128]"],
                  "net": "unet", "bank": 8, "title": "2D HC18 128² (LiteMedSAM, cached)"},
        "2d256": {"base2d": ROOT / "configs/hc18_2d_uncol.yaml", "sets": common + d2 + ["data.size=[256, 256]"],
                  "net": "unet", "bank": 8, "title": "2D HC18 256² (LiteMedSAM, cached)"},
        "3d": {"base2d": ROOT / "configs/hippocampus_3d_uncol.yaml", "sets": common + d3, "net": "vnet", "bank": 2,
               "title": f"3D hippocampus {a.size3d} (LiteMedSAM slice-wise, cached)"},
    }


def rows_for(s: dict[str, Any], cache: str) -> list[tuple[str, list[str], int]]:
    net = s["net"]
    baseline = [f"model.name={net}", "teacher.name=none", "method.params={}"]
    teacher = [f"teacher.cache_dir={cache}"]
    return [
        ("supervised", ["method.name=supervised", *baseline], 0),
        ("supervised (UnCoL student)", ["method.name=supervised", "teacher.name=none", "method.params={}"], 0),
        ("bcp (self-training)", ["method.name=bcp", *baseline], 1),
        ("uncol stage 1", teacher, 0),
        ("uncol stage 1, G token bank", [*teacher, "method.params.stage1_g_tokens=bank",
                                         f"method.params.g_token_bank_size={s['bank']}"], 0),
        ("uncol stage 2", teacher, 1),
        ("uncol stage 2, all pairs", [*teacher, "method.params.stage2_pairs=all"], 1),  # the pre-halves default
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=["2d128", "2d256", "3d"], choices=["2d128", "2d256", "3d"])
    ap.add_argument("--data2d", default=str(DEMO / "hc18"), help="2D dataset folder (default: the embedded HC18 demo)")
    ap.add_argument("--data3d", default=str(DEMO / "hippocampus"),
                    help="3D dataset folder (default: the embedded hippocampus demo)")
    ap.add_argument("--size3d", default="[48, 64, 48]", help="3D input size (default: the 3D suite's)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps; the median is reported (default 10)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache", default=None, help="teacher cache folder (default: a temporary one)")
    ap.add_argument("--rows", nargs="*", default=None,
                    help="only these rows (names as printed, e.g. 'uncol stage 2'); default all. The 3D G token bank "
                         "row holds every labelled volume's decodes in memory (the first 3D run was OOM-killed at "
                         "13.2 GiB while filling it)")
    ap.add_argument("--cache-memory-mb", type=float, default=None,
                    help="teacher.cache_memory_mb of the UnCoL rows (default: the config's, 2048 MB per row)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "step_cost"),
                    help="writes OUT.md and OUT.json (default benchmarks/results/step_cost)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = a.cache or str(Path(tmp) / "cache")
        for key in a.settings:
            s = settings(a)[key]
            built = {}
            for n, (name, extra, stage) in enumerate(rows_for(s, cache)):
                if a.rows and name not in a.rows:
                    continue
                if a.cache_memory_mb is not None:
                    extra = [*extra, f"teacher.cache_memory_mb={a.cache_memory_mb}"]
                print(f"{s['title']}: building {name}", flush=True)
                built[name] = Row(s["base2d"], s["sets"] + extra, stage, Path(tmp) / f"{key}-row{n}")
            results[key] = {"title": s["title"], "net": s["net"], "rows": measure_rows(built, a.warmup, a.steps)}
            del built
            for name, r in results[key]["rows"].items():
                print(f"{s['title']:45s} {name:30s} {r['ms']:9.1f} ms/step  {r['parts_ms']}", flush=True)
    wall = time.perf_counter() - t_start
    write(results, a, wall)


def write(results: dict[str, Any], a: argparse.Namespace, wall: float) -> None:
    lines = ["# Step cost: UnCoL vs its baselines (issue 15)", "",
             (f"One process run: `python benchmarks/step_cost.py {' '.join(_argv())}`; torch {torch.__version__}, "
              f"{a.threads} thread(s), device {a.device} ({cpu_name()}); batch 2 labelled + 2 unlabelled "
              f"(stage 1 and supervised: 4 labelled); {a.warmup} warm-up steps, median of {a.steps}; "
              f"wall time {wall:.0f} s."), ""]
    for res in results.values():
        rows = res["rows"]
        lines += [f"## {res['title']}", "", "| step | ms/step | " + " | ".join(PARTS) + " | losses and rest |",
                  "|---|---|" + "---|" * (len(PARTS) + 1)]
        for name, r in rows.items():
            p = r["parts_ms"]
            lines.append(f"| {name} | {r['ms']:.0f} | " + " | ".join(f"{p.get(k, 0):.0f}" for k in PARTS)
                         + f" | {p.get('losses and rest', 0):.0f} |")
        ms = {k: r["ms"] for k, r in rows.items()}
        bcp, sup, s1 = ms.get("bcp (self-training)"), ms.get("supervised"), ms.get("uncol stage 1")
        extra = ms["supervised (UnCoL student)"] - sup if sup and "supervised (UnCoL student)" in ms else None
        ratios = {"uncol stage 2 / bcp": (ms.get("uncol stage 2"), bcp),
                  "uncol stage 2 (all pairs) / bcp": (ms.get("uncol stage 2, all pairs"), bcp),
                  "uncol stage 1 / bcp": (s1, bcp), "uncol stage 1 / supervised": (s1, sup),
                  "uncol stage 1 / (supervised + student's extra)": (s1, sup + extra if sup and extra is not None else None),
                  "(uncol stage 1 - student's extra) / supervised":
                      (s1 - extra if s1 and extra is not None else None, sup)}
        res["ratios"] = {k: n / d for k, (n, d) in ratios.items() if n and d}  # rows left out give no ratio
        lines += [""] + [f"- {k}: **{v:.2f}×**" for k, v in res["ratios"].items()]
        if extra is not None:
            lines += [f"- the student's own extra cost (supervised step, UnCoL student minus {res['net']}): {extra:.0f} ms"]
        lines += [""]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(a), "wall_s": wall, "results": results}, indent=1))
    print("\n".join(lines))


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
