"""Two-stream batches: a labelled and an optional unlabelled stream, infinite, seeded, resumable.

Each stream walks through seeded per-epoch permutations of its dataset (reshuffled every epoch,
independently of the other stream); a batch may straddle an epoch boundary, so every batch is
full. With ``world_size > 1`` each epoch's permutation is padded to a multiple of ``world_size``
(repeating its head) and rank ``r`` takes every ``world_size``-th index from ``r``, exactly as
``torch.utils.data.DistributedSampler``. Datasets with ``get_seeded(index, seed)`` (see
:class:`~uncol.data.datasets.SegmentationDataset`) get a per-sample seed derived from
(seed, stream, epoch, position in the global permutation), so a resumed run reproduces the
augmentation too.

Global batch = the same samples whatever the world size: with per-rank batch ``b`` and ``world_size``
``W``, step ``k`` of rank ``r`` takes global positions ``(k*b + j)*W + r`` (``j < b``), so the ranks
together take positions ``k*b*W ... (k+1)*b*W - 1``: exactly the batch of one process with batch
``b*W`` (same samples, same augmentation seeds, only their order within the batch differs), as long
as ``W`` divides the stream's length (otherwise the padded tail repeats a few samples each epoch).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from uncol.errors import CheckpointError, DataError


@dataclass
class Batch:
    """Collated sample dicts: ``image (B, C, *S)``, ``label (B, *S)``, ``case list[str]``,
    ``spacing (B, ndim)``, ``index (B,)``. ``unlabeled`` is None for supervised training. The engine
    moves a batch to the device (``RunContext.to_device``)."""

    labeled: dict
    unlabeled: dict | None = None


def _mix(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class _Stream:
    """Index/seed plans of one stream for one rank; ``(epoch, pos)`` is the next sample's place."""

    def __init__(self, n: int, bs: int, seed: int, sid: int, rank: int, world_size: int) -> None:
        self.n, self.bs, self.seed, self.sid, self.rank, self.world = n, bs, seed, sid, rank, world_size
        self.per_rank = -(-n // world_size)
        self.epoch, self.pos = 0, 0

    def perm(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(_mix(self.seed, self.sid, epoch))
        p = torch.randperm(self.n, generator=g).tolist()
        total = self.per_rank * self.world
        while len(p) < total:
            p += p[: total - len(p)]
        return p[self.rank : total : self.world]

    def plans(self, epoch: int, pos: int) -> Iterator[list[tuple[int, int]]]:
        """Infinite batches of (dataset index, sample seed) starting at (epoch, pos)."""
        perm = self.perm(epoch)
        while True:
            out = []
            while len(out) < self.bs:
                if pos >= self.per_rank:
                    epoch, pos = epoch + 1, 0
                    perm = self.perm(epoch)
                # seed from the place in the *global* (padded) permutation: the same sample gets the same
                # augmentation whatever the world size (world 1: gpos = pos, as before)
                gpos = pos * self.world + self.rank
                out.append((perm[pos], _mix(self.seed, self.sid, epoch, gpos, 0)))
                pos += 1
            yield out

    def advance(self) -> None:
        self.pos += self.bs
        while self.pos >= self.per_rank:
            self.pos -= self.per_rank
            self.epoch += 1


class _Fetch(Dataset):
    """Maps a plan (list of (index, seed)) to a collated batch dict."""

    def __init__(self, ds: Any) -> None:
        self.ds = ds
        self.seeded = callable(getattr(ds, "get_seeded", None))

    def __len__(self) -> int:  # not used: plans come from the sampler
        return len(self.ds)

    def __getitem__(self, plan: list[tuple[int, int]]) -> dict:
        return default_collate([self.ds.get_seeded(i, s) if self.seeded else self.ds[i] for i, s in plan])


class TwoStreamLoader:
    """Infinite iterator of :class:`Batch` (``labeled_bs`` labelled + ``unlabeled_bs`` unlabelled samples).

    ``unlabeled_ds`` None (or ``unlabeled_bs`` 0) gives ``Batch.unlabeled`` None. ``num_workers`` > 0
    loads each stream in that many worker processes. ``state_dict()`` records each stream's epoch
    and position; ``load_state_dict()`` makes the next batches equal those of the saved run.
    """

    def __init__(
        self,
        labeled_ds: Any,
        unlabeled_ds: Any | None,
        labeled_bs: int,
        unlabeled_bs: int,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must lie in [0, world_size={world_size})")
        if labeled_bs < 1:
            raise ValueError(f"labeled_bs must be >= 1, got {labeled_bs}")
        self.seed, self.num_workers, self.rank, self.world_size = int(seed), int(num_workers), rank, world_size
        self.datasets = [labeled_ds] + ([unlabeled_ds] if unlabeled_ds is not None and unlabeled_bs > 0 else [])
        for name, ds in zip(("labelled", "unlabelled"), self.datasets):
            if len(ds) == 0:
                raise DataError(f"the {name} dataset is empty; check the split (data.split.labeled, ratios)")
        bss = [labeled_bs, unlabeled_bs]
        self.streams = [_Stream(len(ds), bss[i], self.seed, i, rank, world_size) for i, ds in enumerate(self.datasets)]
        self._iters: list[Iterator[dict] | None] = [None] * len(self.streams)

    def _iterator(self, i: int) -> Iterator[dict]:
        st, fetch = self.streams[i], _Fetch(self.datasets[i])
        plans = st.plans(st.epoch, st.pos)
        if self.num_workers <= 0:
            return (fetch[p] for p in plans)
        loader = DataLoader(fetch, batch_size=None, sampler=plans, num_workers=self.num_workers, persistent_workers=False)
        return iter(loader)

    def __iter__(self) -> TwoStreamLoader:
        return self

    def __next__(self) -> Batch:
        out = []
        for i, st in enumerate(self.streams):
            if self._iters[i] is None:
                self._iters[i] = self._iterator(i)
            out.append(next(self._iters[i]))  # type: ignore[arg-type]
            st.advance()
        return Batch(out[0], out[1] if len(out) > 1 else None)

    @property
    def epoch(self) -> int:
        """Epochs completed by the labelled stream."""
        return self.streams[0].epoch

    def state_dict(self) -> dict:
        """``{"seed", "rank", "world_size", "streams": [{"epoch", "pos", "n", "bs"}, ...]}``."""
        return {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "streams": [{"epoch": s.epoch, "pos": s.pos, "n": s.n, "bs": s.bs} for s in self.streams],
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume at the saved place; a changed dataset size, batch size or world size is a CheckpointError."""
        saved = state.get("streams", [])
        if len(saved) != len(self.streams) or state.get("world_size") != self.world_size:
            raise CheckpointError(
                f"loader state has {len(saved)} streams / world_size {state.get('world_size')}, this run "
                f"{len(self.streams)} / {self.world_size}; resume with the same method and number of processes"
            )
        for st, s in zip(self.streams, saved):
            if (s["n"], s["bs"]) != (st.n, st.bs):
                raise CheckpointError(
                    f"loader state was saved for {s['n']} samples in batches of {s['bs']}, this run has "
                    f"{st.n} / {st.bs}; resume with the run's saved split and config"
                )
            st.epoch, st.pos = int(s["epoch"]), int(s["pos"])
        self.seed = int(state.get("seed", self.seed))
        for st in self.streams:
            st.seed = self.seed
        self._iters = [None] * len(self.streams)
