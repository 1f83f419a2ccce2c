"""BatchNorm-statistics check of a trained UnCoL run: validation Dice in eval mode, with batch statistics,
and after recomputing BN statistics prompt-free on the training images.

Usage: python benchmarks/bn_recalibration_check.py RUN_DIR"""
import json
import sys
from pathlib import Path

import torch

from uncol.data.dataset import DatasetSpec
from uncol.data.datasets import SegmentationDataset
from uncol.eval.evaluate import model_from_checkpoint

torch.set_num_threads(2)
model, cfg, ck = model_from_checkpoint(f"{sys.argv[1]}/final.pt", torch.device("cpu"))
spec = DatasetSpec.load(cfg.data.root)
split = json.loads(Path(sys.argv[1], "split.json").read_text())
ds = SegmentationDataset(spec, split["val"], cfg.data, train=False, labeled=True)
x = torch.stack([ds[i]["image"] for i in range(len(ds))]); y = torch.stack([ds[i]["label"] for i in range(len(ds))])
def dice(p): return (2*((p==1)&(y==1)).sum()/((p==1).sum()+(y==1).sum()+1e-9)).item()
with torch.no_grad():
    model.eval(); pe = model(x).argmax(1)
    model.train(); pt = model(x).argmax(1)
print("eval-mode dice", round(dice(pe), 3), "fg", (pe == 1).float().mean().item(),
      "| train-mode (batch stats) dice", round(dice(pt), 3), "fg", (pt == 1).float().mean().item(),
      "| gt fg", (y == 1).float().mean().item())
from torch import nn

tr = SegmentationDataset(spec, split["labeled"] + split["unlabeled"], cfg.data, train=False, labeled=False)
bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
for m in bns: m.reset_running_stats(); m.momentum = None
model.eval()
for m in bns: m.train()
with torch.no_grad():
    xs = torch.stack([tr[i]["image"] for i in range(len(tr))])
    for i in range(0, len(xs), 4): model(xs[i:i+4])
model.eval()
with torch.no_grad(): pr = model(x).argmax(1)
print("after BN recalibration (own tokens, training images): eval-mode dice", round(dice(pr),3))
