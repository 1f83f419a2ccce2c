"""How much does a prompt-free UnCoL student use its own knowledge? Test Dice of a checkpoint when the
adapter's key/value is (a) its own last-layer ViT tokens (normal inference), (b) zeros, (c) the tokens of
one fixed other test image for every image. Equal figures mean the adapter ignores what the ViT says.

    python benchmarks/adapter_knowledge_probe.py runs/bench/ablation_table4/cells/dpkd_none/10pct/s0/best.pt ... \
        --data data/hc18_120

Prints one line per checkpoint (mean Dice % on the checkpoint's test split, CPU).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import load_case, to_model_size
from uncol.eval.evaluate import evaluate_cases, model_from_checkpoint, split_case_ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    spec = DatasetSpec.load(Path(a.data))
    dev = torch.device("cpu")
    for ck in a.checkpoints:
        model, cfg, _ = model_from_checkpoint(ck, dev)
        ids = split_case_ids(spec, "test", Path(ck).parent / "split.json")
        own = model.own_knowledge
        first = to_model_size(load_case(spec, ids[0], cfg.data).image.unsqueeze(0), cfg.data)
        with torch.no_grad():
            tokens, grid = model.vit(first)
            fixed = own(tokens[-1], grid)
        res = {}
        for name, fn in (("own", own),
                         ("zeros", lambda t, g, own=own: torch.zeros_like(own(t, g))),
                         ("other image", lambda t, g, fixed=fixed: fixed.expand(t.shape[0], -1, -1))):
            model.own_knowledge = fn
            res[name] = 100 * evaluate_cases(model, spec, ids, cfg, dev, progress=False)["mean"]["dice"]
        model.own_knowledge = own
        print(f"{ck}: test Dice own {res['own']:.2f} | zeros {res['zeros']:.2f} | other image's {res['other image']:.2f}")


if __name__ == "__main__":
    main()
