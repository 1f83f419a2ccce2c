"""Data layer: file I/O, dataset descriptions, splits, transforms, datasets and the two-stream sampler.

``uncol.data.mixing`` (copy-paste masks) and ``uncol.data.prepare`` are imported on their own.
"""
from uncol.data.dataset import CaseRef, DatasetSpec, import_folder
from uncol.data.datasets import (
    EvalCase,
    SegmentationDataset,
    from_model_size,
    load_case,
    slices_to_volume,
    to_model_size,
    volume_to_slices,
)
from uncol.data.io import Volume, check_pair, read_image, read_label, write_like
from uncol.data.sampler import Batch, TwoStreamLoader
from uncol.data.splits import Split, make_split

__all__ = [
    "Batch",
    "CaseRef",
    "DatasetSpec",
    "EvalCase",
    "SegmentationDataset",
    "Split",
    "TwoStreamLoader",
    "Volume",
    "check_pair",
    "from_model_size",
    "import_folder",
    "load_case",
    "make_split",
    "read_image",
    "read_label",
    "slices_to_volume",
    "to_model_size",
    "volume_to_slices",
    "write_like",
]
