"""``uncol report FOLDER``: one self-contained HTML page (figures inlined as base64 PNG) plus the PNGs.

For a **run folder** (what ``uncol train`` writes): the run's summary, the metrics table (a
``metrics.json`` in the folder or one level below, e.g. ``eval/metrics.json``; without one the
checkpoint is evaluated on the split and ``OUT/metrics.json`` written), training curves from
``log.jsonl``, qualitative overlays (image / ground truth / prediction / entropy) of the best, median
and worst case by mean Dice (3D: the slice along the first axis with the most ground-truth
foreground), and — when an ``uncertainty.json`` of ``uncol uncertainty`` sits in the folder or one
level below — its measures, reliability diagram and risk–coverage curves.

For a **bench folder** (``uncol bench``: ``results.md`` / ``results.json`` / ``results.csv`` and one
subfolder per cell holding run folders): the results table (``results.md``, else ``results.json``),
the bench's own PNGs, the validation curves of every run, a table of the runs, and the report sections
above for the run with the best validation score.

A run folder with a ``suggest/`` folder of ``uncol suggest`` gets a section "Which case to label next"
(:mod:`uncol.eval.report_suggest`). The page itself: :mod:`uncol.eval.html_page`. The report is written
all or nothing (:func:`uncol.runtime.staged_output_dir`); JSON files that do not parse are a one-line
DataError naming the file.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from uncol.errors import DataError
from uncol.eval.html_page import Page, markdown_html, table_html
from uncol.eval.report_suggest import suggest_section


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name``, else the first ``folder/*/name`` (sorted)."""
    p = folder / name
    if p.is_file():
        return p
    below = sorted(folder.glob(f"*/{name}"))
    return below[0] if below else None


def read_log(path: Path) -> list[dict[str, Any]]:
    """Records of a ``log.jsonl`` (unreadable lines are skipped: a run may be writing it)."""
    recs = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict):
            recs.append(r)
    return recs


def is_run_folder(folder: Path) -> bool:
    return (folder / "log.jsonl").is_file() or (folder / "summary.json").is_file()


def _checkpoint(folder: Path) -> Path | None:
    return next((folder / n for n in ("best.pt", "final.pt", "last.pt") if (folder / n).is_file()), None)


def read_json(path: Path, what: str, default: Any = None, obj: bool = True) -> Any:
    """The JSON in ``path`` (``default`` when the file is absent); a truncated or invalid file is a one-line
    DataError naming it (``obj``: it must hold a JSON object)."""
    from uncol.runtime import read_json_object

    if not path.is_file():
        return default
    if obj:
        return read_json_object(path, what, "", "the keys uncol writes; re-create it (delete it to skip it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: {what} is not valid JSON ({e}); re-create it (delete it to skip it)") from None


def build_report(folder: str | Path, out: str | Path | None = None, data: str | Path | None = None,
                 split: str = "test", device: str = "auto", overlays: bool = True) -> Path:
    """Write ``OUT/report.html`` (default ``OUT = FOLDER/report``) and its PNGs; returns the HTML path.

    ``OUT`` may lie inside ``FOLDER`` but must not be ``FOLDER``, contain it, or touch ``data``."""
    from uncol.eval.outputs import refuse_overlap
    from uncol.runtime import atomic_write_text, check_out_dir, staged_output_dir

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"report folder {str(folder)!r} not found; pass a run folder (uncol train --out) or a bench folder")
    outp = Path(out) if out else folder / "report"
    refuse_overlap(outp, "--out", [("FOLDER", folder)], allow_inside=True)
    refuse_overlap(outp, "--out", [("--data", data)])
    check_out_dir(outp)
    with staged_output_dir(outp) as stage:
        if is_run_folder(folder):
            page = Page(f"uncol run report: {folder.resolve().name}")
            _run_sections(page, folder, stage, "", data, split, device, overlays)
        else:
            page = Page(f"uncol bench report: {folder.resolve().name}")
            _bench_sections(page, folder, stage, data, split, device, overlays)
        atomic_write_text(stage / "report.html", page.render())
    return outp / "report.html"


def _run_sections(page: Page, folder: Path, outp: Path, prefix: str, data: str | Path | None, split: str,
                  device: str, overlays: bool) -> None:
    from uncol.eval.metrics import format_table
    from uncol.eval.plots import plot_training_curves

    summary = read_json(folder / "summary.json", "run summary", {})
    cfg = summary.get("config") or {}
    info = [["folder", str(folder)], ["method", summary.get("method", cfg.get("method", {}).get("name", "?"))],
            ["model", cfg.get("model", {}).get("name", "?")], ["data", cfg.get("data", {}).get("root", "?")]]
    if "best" in summary:
        b = summary["best"]
        m = b.get("metric")
        val = f"{100 * m:.2f} % Dice" if isinstance(m, (int, float)) else str(m)
        info.append(["best validation", f"{val} at iteration {b.get('iteration')} (stage {b.get('stage')})"])
    if "wall_time_s" in summary:
        info.append(["training wall time", f"{summary['wall_time_s']} s"])
    page.h2(f"{prefix}Run")
    page.raw(table_html(["", ""], info, show_header=False))

    metrics_path = _find(folder, "metrics.json")
    metrics = read_json(metrics_path, "metrics file") if metrics_path else None
    model_bits = None
    ckpt = _checkpoint(folder)
    if metrics is None and overlays and ckpt is not None:
        model_bits = _load_for_overlays(ckpt, data, device)
        if model_bits is not None:
            metrics = _evaluate(model_bits, folder, split, outp)
            metrics_path = outp / "metrics.json"
    page.h2(f"{prefix}Metrics")
    if metrics is not None:
        page.p(f"from {metrics_path}; Dice/Jaccard in %, HD95/ASD in {metrics.get('units', 'mm')}, mean ± std over "
               f"{metrics.get('num_cases', '?')} cases", "note")
        page.raw(markdown_html(format_table({folder.name: metrics})))
    else:
        page.p("no metrics.json found (run uncol evaluate --out RUN/eval) and no checkpoint/data to evaluate", "note")

    log = folder / "log.jsonl"
    if log.is_file():
        page.h2(f"{prefix}Training curves")
        png = plot_training_curves(read_log(log), outp / "training_curves.png")
        page.raw(page.figure(png, "training losses and validation scores per iteration (log.jsonl)"))

    if overlays and metrics is not None and metrics.get("per_case") and ckpt is not None:
        model_bits = model_bits or _load_for_overlays(ckpt, data, device)
        page.h2(f"{prefix}Qualitative results: best, median and worst case by Dice")
        if model_bits is None:
            page.p("overlays skipped: the dataset folder of the run was not found (pass --data)", "note")
        else:
            figs = [page.figure(p, c) for p, c in _overlays(model_bits, metrics, outp)]
            page.raw("\n".join(figs))

    unc = _find(folder, "uncertainty.json")
    if unc is not None:
        _uncertainty_section(page, read_json(unc, "uncertainty file"), unc, outp, prefix)
    if (folder / "suggest" / "suggest.csv").is_file():
        suggest_section(page, folder / "suggest", prefix)


def _uncertainty_section(page: Page, res: dict[str, Any], src: Path, outp: Path, prefix: str) -> None:
    from uncol.eval.plots import plot_reliability, plot_risk_coverage
    from uncol.eval.uncertainty import summary_rows

    page.h2(f"{prefix}Uncertainty and calibration")
    page.p(f"from {src} ({res.get('split', '?')} split, {res.get('num_cases', '?')} cases, "
           f"{res.get('mc_passes', 0)} MC-dropout passes)", "note")
    page.raw(table_html(["measure", "value"], [list(r) for r in summary_rows(res)]))
    figs = [page.figure(plot_reliability(res["reliability"], outp / "reliability.png"),
                        "reliability diagram, 15 equal-width confidence bins"),
            page.figure(plot_risk_coverage(res, outp / "risk_coverage.png"),
                        "risk–coverage curves: the most certain voxels kept first")]
    page.raw(f"<div class=\"row\">{''.join(figs)}</div>")


def _load_for_overlays(ckpt: Path, data: str | Path | None, device: str) -> tuple | None:
    """(model, cfg, spec, device) for the checkpoint's dataset, or None when its data folder is absent."""
    from uncol.data.dataset import DatasetSpec
    from uncol.eval.evaluate import model_from_checkpoint
    from uncol.runtime import resolve_device

    dev = resolve_device(device)
    model, cfg, _ = model_from_checkpoint(ckpt, dev)
    root = Path(data) if data else Path(cfg.data.root)
    if not (root / "dataset.json").is_file():
        if data:
            raise DataError(f"--data {str(data)!r} has no dataset.json; pass the dataset folder the run trained on")
        return None
    return model, cfg, DatasetSpec.load(root), dev, ckpt


def _evaluate(bits: tuple, folder: Path, split: str, outp: Path) -> dict[str, Any]:
    from uncol.eval.evaluate import evaluate_cases, split_case_ids
    from uncol.runtime import atomic_write_json

    model, cfg, spec, dev, ckpt = bits
    ids = split_case_ids(spec, split, folder / "split.json")
    res = evaluate_cases(model, spec, ids, cfg, dev, progress=False)
    res.update(checkpoint=str(ckpt), split=split)
    atomic_write_json(outp / "metrics.json", res)
    return res


def pick_cases(metrics: dict[str, Any]) -> list[tuple[str, str, float]]:
    """``[(role, case, dice)]`` for the best, median and worst case by mean Dice (fewer if fewer cases)."""
    cases = sorted(((float(c["mean"]["dice"]), c["case"]) for c in metrics["per_case"]), key=lambda t: (-t[0], t[1]))
    picks = {"best": cases[0], "median": cases[(len(cases) - 1) // 2], "worst": cases[-1]}
    out, seen = [], set()
    for role, (d, cid) in picks.items():
        if cid not in seen:
            seen.add(cid)
            out.append((role, cid, d))
    return out


def _overlays(bits: tuple, metrics: dict[str, Any], outp: Path) -> list[tuple[Path, str]]:
    from uncol.data.datasets import load_case
    from uncol.eval.inference import predict_probs
    from uncol.eval.plots import pick_slice, plot_overlay
    from uncol.pseudo.uncertainty import entropy, hard_label

    model, cfg, spec, dev, _ = bits
    done = []
    for role, cid, dice in pick_cases(metrics):
        case = load_case(spec, cid, cfg.data)
        probs = predict_probs(model, case.image, cfg, dev)
        pred = hard_label(probs, dim=0).numpy()
        ent = entropy(probs.unsqueeze(0), dim=1)[0].numpy()
        img = case.image[0].numpy()
        gt = np.asarray(case.label) if case.label is not None else np.zeros_like(pred)
        where = ""
        if img.ndim == 3:
            z = pick_slice(gt, 0)
            img, gt, pred, ent = img[z], gt[z], pred[z], ent[z]
            where = f", slice {z} of axis 0 (most foreground)"
        title = f"{role}: {cid}, Dice {100 * dice:.2f} %{where}"
        png = plot_overlay(img, gt, pred, ent, outp / f"overlay_{role}.png", title, max_unc=float(np.log(probs.shape[0])))
        done.append((png, title))
    return done


def _bench_sections(page: Page, folder: Path, outp: Path, data: str | Path | None, split: str, device: str,
                    overlays: bool) -> None:
    from uncol.eval.metrics import format_table
    from uncol.eval.plots import plot_val_comparison

    page.h2("Results")
    md, js = folder / "results.md", folder / "results.json"
    if md.is_file():
        page.raw(markdown_html(md.read_text()))
    elif js.is_file():
        res = read_json(js, "bench results", obj=False)
        if isinstance(res, dict) and res and all(isinstance(v, dict) and "mean" in v for v in res.values()):
            page.raw(markdown_html(format_table(res)))
        else:
            page.raw(f"<pre>{html.escape(json.dumps(res, indent=1)[:20000])}</pre>")
    else:
        page.p("no results.md / results.json in this folder (is the bench finished?)", "note")
    pngs = sorted(p for p in folder.glob("*.png"))
    if pngs:
        page.raw("\n".join(page.figure(p, p.stem.replace("_", " ")) for p in pngs))

    runs = sorted({p.parent for p in folder.rglob("log.jsonl") if outp not in p.parents})
    if not runs:
        page.p("no run folders (with log.jsonl) below this folder", "note")
        return
    names = {r: str(r.relative_to(folder)) for r in runs}
    page.h2("Training curves of every run")
    png = plot_val_comparison({names[r]: read_log(r / "log.jsonl") for r in runs}, outp / "val_curves.png")
    page.raw(page.figure(png, "validation Dice vs iteration"))
    rows, best = [], None
    for r in runs:
        s = read_json(r / "summary.json", "run summary", {})
        b = (s.get("best") or {}).get("metric")
        rows.append([names[r], s.get("method", "?"), "–" if b is None else f"{100 * b:.2f}", s.get("wall_time_s", "–")])
        if b is not None and (best is None or b > best[0]):
            best = (b, r)
    page.raw(table_html(["run", "method", "best val Dice %", "wall time (s)"], rows))
    if best is not None:
        sub = outp / "best_run"
        sub.mkdir(exist_ok=True)
        _run_sections(page, best[1], sub, f"Best run ({names[best[1]]}): ", data, split, device, overlays)
