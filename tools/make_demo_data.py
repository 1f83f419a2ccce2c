"""Re-create the embedded demo data (src/uncol/assets/demo) from ../shared/data. Run once by the maintainers.

- hc18: 60 HC18 images, the first frame of the first 60 subjects (sorted by id), downsampled 2.5x
  (800x540 -> 320x216; image bilinear, mask nearest) and stored as 2D NIfTI carrying the true pixel
  size x 2.5 in mm, so that distances are in mm. CC BY 4.0, adapted (see LICENSE/ATTRIBUTION).
- hippocampus: 24 MSD Task04 volumes (the first 24 by id), copied byte for byte. CC BY-SA 4.0.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
OUT = Path(__file__).resolve().parents[1] / "src" / "uncol" / "assets" / "demo"
FACTOR = 2.5


def hc18() -> None:
    src = SHARED / "hc18_fetal_head_us"
    out = OUT / "hc18"
    shutil.rmtree(out, ignore_errors=True)
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir(parents=True)
    with open(src / "cases.csv") as f:
        rows = list(csv.DictReader(f))
    first = {}
    for r in sorted(rows, key=lambda r: (int(r["subject_id"]), int(r["frame"]))):
        first.setdefault(int(r["subject_id"]), r)
    chosen = [first[s] for s in sorted(first)[:60]]
    training = []
    for r in chosen:
        img = Image.open(src / "images" / r["filename"]).convert("L")
        msk = Image.open(src / "masks" / r["mask"])
        w, h = img.size
        size = (round(w / FACTOR), round(h / FACTOR))
        a = np.asarray(img.resize(size, Image.BILINEAR), dtype=np.uint8)
        m = np.asarray(msk.resize(size, Image.NEAREST), dtype=np.uint8)
        sp = float(r["pixel_size_mm"]) * w / size[0]
        cid = r["filename"].removesuffix(".png")
        for arr, folder in ((a, "imagesTr"), (m, "labelsTr")):
            # NIfTI axis order (x, y) = (W, H): transpose the (H, W) array.
            img_nii = nib.Nifti1Image(arr.T.copy(), np.diag([sp, sp, 1.0, 1.0]))
            img_nii.header.set_zooms((sp, sp))
            nib.save(img_nii, out / folder / f"{cid}.nii.gz")
        training.append({"image": f"./imagesTr/{cid}.nii.gz", "label": f"./labelsTr/{cid}.nii.gz"})
    meta = {"name": "HC18-demo",
            "description": "60 HC18 fetal head ultrasound images (first frame of subjects 000-0xx), downsampled 2.5x, "
                           "pixel size in the NIfTI header",
            "reference": "van den Heuvel et al., PLoS ONE 13(8): e0200412 (2018); doi:10.5281/zenodo.1327317",
            "licence": "CC BY 4.0 (adapted: downsampled, outlines filled)", "tensorImageSize": "2D",
            "modality": {"0": "US"}, "labels": {"0": "background", "1": "head"},
            "numTraining": len(training), "training": training, "test": []}
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copy(src / "LICENSE-CC-BY-4.0.txt", out / "LICENSE-CC-BY-4.0.txt")


def hippocampus() -> None:
    src = SHARED / "msd_task04_hippocampus"
    out = OUT / "hippocampus"
    shutil.rmtree(out, ignore_errors=True)
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir(parents=True)
    meta = json.loads((src / "dataset.json").read_text())
    chosen = sorted(meta["training"], key=lambda t: t["image"])[:24]
    for t in chosen:
        for k in ("image", "label"):
            shutil.copy(src / t[k], out / t[k])
    meta.update(numTraining=len(chosen), training=chosen,
                _note="24 of the MSD Task04_Hippocampus training cases (first by id), byte-for-byte copies; CC BY-SA 4.0")
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    shutil.copy(src / "LICENSE-CC-BY-SA-4.0.txt", out / "LICENSE-CC-BY-SA-4.0.txt")


if __name__ == "__main__":
    hc18()
    hippocampus()
    print(f"wrote {OUT}")
