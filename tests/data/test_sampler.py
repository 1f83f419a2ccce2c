"""uncol.data.sampler: infinite seeded streams, exact resume, rank sharding, collation."""
from __future__ import annotations

import pytest
import torch

from uncol.data.sampler import Batch, TwoStreamLoader
from uncol.errors import CheckpointError


class Toy:
    """n samples; ``get_seeded`` returns the seed so augmentation reproducibility is visible."""

    def __init__(self, n: int, tag: str = "l") -> None:
        self.n, self.tag = n, tag

    def __len__(self) -> int:
        return self.n

    def get_seeded(self, i: int, seed: int) -> dict:
        return {"image": torch.full((1, 2, 2), float(i)), "case": f"{self.tag}{i}", "index": i, "aug": seed % 1000}

    def __getitem__(self, i: int) -> dict:
        return self.get_seeded(i, 0)


def _key(b: Batch) -> tuple:
    u = None if b.unlabeled is None else (b.unlabeled["index"].tolist(), b.unlabeled["aug"].tolist())
    return (b.labeled["index"].tolist(), b.labeled["aug"].tolist(), u)


def test_collation_and_supervised_stream() -> None:
    b = next(TwoStreamLoader(Toy(5), None, 3, 2, seed=0))
    assert b.unlabeled is None and b.labeled["image"].shape == (3, 1, 2, 2)
    assert isinstance(b.labeled["case"], list) and b.labeled["case"][0].startswith("l")
    b2 = next(TwoStreamLoader(Toy(5), Toy(7, "u"), 3, 2, seed=0))
    assert b2.unlabeled is not None and b2.unlabeled["image"].shape == (2, 1, 2, 2)


def test_epochs_cover_everything_and_reshuffle() -> None:
    loader = TwoStreamLoader(Toy(6), Toy(4), 3, 2, seed=1)
    seen_l, seen_u = [], []
    for _ in range(6):  # 3 labelled epochs, 3 unlabelled epochs
        b = next(loader)
        seen_l += b.labeled["index"].tolist()
        seen_u += b.unlabeled["index"].tolist()
    epochs = [seen_l[i : i + 6] for i in range(0, 18, 6)]
    assert all(sorted(e) == list(range(6)) for e in epochs) and len({tuple(e) for e in epochs}) > 1
    assert all(sorted(seen_u[i : i + 4]) == list(range(4)) for i in range(0, 12, 4))
    assert loader.epoch == 3 and loader.state_dict()["streams"][1] == {"epoch": 3, "pos": 0, "n": 4, "bs": 2}


@pytest.mark.parametrize("stop", [0, 2, 3, 5])
def test_resume_gives_the_same_next_batches(stop: int) -> None:
    ref = TwoStreamLoader(Toy(5), Toy(7), 3, 4, seed=11)  # batches straddle epoch boundaries
    expected = [_key(next(ref)) for _ in range(9)]
    run = TwoStreamLoader(Toy(5), Toy(7), 3, 4, seed=11)
    for _ in range(stop):
        next(run)
    state = run.state_dict()
    resumed = TwoStreamLoader(Toy(5), Toy(7), 3, 4, seed=11)
    resumed.load_state_dict(state)
    assert [_key(next(resumed)) for _ in range(9 - stop)] == expected[stop:]


def test_seed_changes_order() -> None:
    a = [_key(next(TwoStreamLoader(Toy(20), None, 4, 0, seed=s))) for s in (0, 1)]
    assert a[0] != a[1]


def test_ranks_see_disjoint_samples() -> None:
    world = 3
    per_rank = [[] for _ in range(world)]
    for r in range(world):
        loader = TwoStreamLoader(Toy(12), None, 2, 0, seed=5, rank=r, world_size=world)
        for _ in range(2):  # one epoch: 12 / 3 = 4 samples per rank
            per_rank[r] += next(loader).labeled["index"].tolist()
    flat = [i for r in per_rank for i in r]
    assert sorted(flat) == list(range(12))


def test_load_state_mismatch_is_checkpoint_error() -> None:
    state = TwoStreamLoader(Toy(5), None, 2, 0, seed=0).state_dict()
    with pytest.raises(CheckpointError, match="saved for 5 samples"):
        TwoStreamLoader(Toy(6), None, 2, 0, seed=0).load_state_dict(state)
    with pytest.raises(CheckpointError, match="streams"):
        TwoStreamLoader(Toy(5), Toy(3), 2, 1, seed=0).load_state_dict(state)


def test_workers_give_the_same_batches() -> None:
    ref = TwoStreamLoader(Toy(5), Toy(3), 2, 2, seed=3)
    expected = [_key(next(ref)) for _ in range(4)]
    par = TwoStreamLoader(Toy(5), Toy(3), 2, 2, seed=3, num_workers=1)
    assert [_key(next(par)) for _ in range(4)] == expected
    state = par.state_dict()
    assert state["streams"][0]["epoch"] == 1 and state["streams"][0]["pos"] == 3
