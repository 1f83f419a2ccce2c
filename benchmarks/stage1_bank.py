"""How far the stage-1 G token bank (``method.params.stage1_g_tokens: bank``, issue 15) is from decoding.

    python benchmarks/stage1_bank.py                       # the embedded HC18 demo, 128², 40 pairs
    python benchmarks/stage1_bank.py --data data/hc18 --pairs 100 --out benchmarks/results/stage1_bank

For random pairs of labelled images, a copy-paste mixed image as UnCoL's stage 1 builds it (60 % of a 4×4
grid from the other image). What the student receives is G's prompt-fused tokens pooled to its token grid
(8×8 at 128²). Three versions of them:
- ``decode``: the cached teacher's step (sources' cached features mixed, decoder run with jittered boxes
  of the mixed label): what training does by default;
- ``decode, other jitter``: the same with another jitter draw — the spread the method has anyway;
- ``bank``: each source's banked decode (its own jittered boxes, un-mixed image), mixed with the mask.
Reported: relative L2 distance and mean token cosine similarity of ``bank`` and of ``decode, other jitter``
to ``decode``. No augmentation (the warp is the same for both). Prints a table, writes OUT.md/OUT.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from uncol.config import DataConfig, from_dict
from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import SegmentationDataset
from uncol.data.mixing import grid_copy_paste_mask, mix
from uncol.losses.distill import resample_tokens
from uncol.teachers.bank import FusedTokenBank
from uncol.teachers.litemedsam import LiteMedSAMTeacher
from uncol.teachers.prompts import prompts_from_masks

ROOT = Path(__file__).resolve().parents[1]


def _pooled(fused: torch.Tensor, src: tuple[int, ...], grid: tuple[int, ...]) -> torch.Tensor:
    return resample_tokens(fused, grid, src_grid=src)


def _compare(a: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    rel = float((a - ref).norm() / ref.norm())
    cos = float(F.cosine_similarity(a, ref, dim=-1).mean())
    return rel, cos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / "src/uncol/assets/demo/hc18"))
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--images", type=int, default=20, help="labelled images drawn from (default 20)")
    ap.add_argument("--bank-size", type=int, default=8)
    ap.add_argument("--jitter", type=float, default=20.0, help="box jitter, px in the teacher's frame (default 20)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/stage1_bank"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    spec = DatasetSpec.load(Path(a.data))
    cfg = from_dict(DataConfig, {"root": a.data, "spatial_dims": 2, "size": [a.size, a.size], "augment": {"enabled": False}})
    ids = [c.id for c in spec.cases if c.label is not None][: a.images]
    ds = SegmentationDataset(spec, ids, cfg, train=False, labeled=True)
    items = [ds.get_seeded(i, 0) for i in range(len(ds))]
    teacher = LiteMedSAMTeacher()
    k = spec.num_classes
    with torch.no_grad():
        embs = [teacher.encode(s["image"][None]) for s in items]
        bank = FusedTokenBank(a.bank_size)
        bank.fill(teacher, ((s["image"], s["label"]) for s in items), k, torch.Generator().manual_seed(1), jitter_px=a.jitter)
        g = torch.Generator().manual_seed(0)
        grid = (a.size // 16, a.size // 16)
        rows = {"bank": [], "decode, other jitter": []}
        for _ in range(a.pairs):
            i, j = torch.randperm(len(items), generator=g)[:2].tolist()
            m = grid_copy_paste_mask((a.size, a.size), 4, 0.6, g)
            y = mix(items[j]["label"][None], items[i]["label"][None], m, spatial_dims=2)
            emb = type(embs[i])([mix(vj, vi, F.interpolate(m.float()[None, None], size=vi.shape[2:])[0, 0] > 0.5, 2)
                                 for vi, vj in zip(embs[i].visual, embs[j].visual)],
                                mix(embs[j].embedding, embs[i].embedding,
                                    F.interpolate(m.float()[None, None], size=embs[i].embedding.shape[2:])[0, 0] > 0.5, 2),
                                embs[i].image_size)
            ref, other = (teacher.decode(emb, prompts_from_masks(y, k, kind="box", jitter_px=a.jitter, generator=g), k,
                                         (a.size, a.size), outputs=("fused",)) for _ in range(2))
            src = ref.fused_grid
            ref_t, other_t = _pooled(ref.fused, src, grid), _pooled(other.fused, src, grid)
            maps = torch.stack([bank.maps[_key(items[t]["image"])][int(torch.randint(a.bank_size, (1,), generator=g))]
                                for t in (j, i)]).float()
            mk = F.interpolate(m.float()[None, None], size=maps.shape[2:])[0, 0] > 0.5
            banked = resample_tokens(mix(maps[:1], maps[1:], mk, 2), grid)
            rows["bank"].append(_compare(banked, ref_t))
            rows["decode, other jitter"].append(_compare(other_t, ref_t))
    wall = time.perf_counter() - t0
    _write(a, rows, wall)


def _key(image: torch.Tensor) -> str:
    from uncol.teachers.cache import image_hash

    return image_hash(image)


def _write(a: argparse.Namespace, rows: dict, wall: float) -> None:
    lines = ["# Stage-1 G token bank vs decoding (issue 15)", "",
             (f"`python benchmarks/stage1_bank.py --data {a.data} --size {a.size} --pairs {a.pairs} --images {a.images} "
              f"--bank-size {a.bank_size}`; LiteMedSAM, {a.threads} thread(s), wall {wall:.0f} s. Distance to the "
              f"default step's tokens (pooled to the student's {a.size // 16}×{a.size // 16} grid), mean [min, max] "
              "over pairs:"), "",
             "| tokens | relative L2 distance | mean cosine similarity |", "|---|---|---|"]
    summary = {}
    for name, vals in rows.items():
        rel, cos = [v[0] for v in vals], [v[1] for v in vals]
        summary[name] = {"rel_l2_mean": statistics.mean(rel), "cos_mean": statistics.mean(cos),
                         "rel_l2": rel, "cos": cos}
        lines.append(f"| {name} | {statistics.mean(rel):.3f} [{min(rel):.3f}, {max(rel):.3f}] | "
                     f"{statistics.mean(cos):.4f} [{min(cos):.4f}, {max(cos):.4f}] |")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"args": vars(a), "wall_s": wall, "rows": summary}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
