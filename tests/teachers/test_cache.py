"""The feature cache: misses then hits, fp16 values, stale and corrupt entries recomputed (and logged), warps."""
from __future__ import annotations

import logging
import math

import pytest
import torch

from uncol.config import TeacherConfig
from uncol.errors import ConfigError
from uncol.teachers import build_teacher
from uncol.teachers.cache import CachedTeacher, image_hash, warp, warp_embedding


def _images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_miss_then_hit_with_identical_fp16_values(fake_teacher, tmp_path) -> None:
    t = CachedTeacher(fake_teacher, tmp_path)
    x = _images()
    first = t.encode(x)
    assert fake_teacher.encode_calls == 3 and t.cache.misses == 3
    second = t.encode(x)
    assert fake_teacher.encode_calls == 3 and t.cache.hits == 3  # nothing recomputed
    direct = fake_teacher.encode(x)
    for a, b, d in zip([*first.visual, first.embedding], [*second.visual, second.embedding],
                       [*direct.visual, direct.embedding]):
        assert a.dtype == torch.float32 and torch.equal(a, b)
        assert torch.equal(a, d.half().float())
    # a new run (new wrapper, same folder) reuses the files; a partly cached batch computes only the rest
    t2 = CachedTeacher(fake_teacher, tmp_path)
    t2.encode(torch.cat([x[:1], _images(1, seed=5)]))
    assert (t2.cache.hits, t2.cache.misses) == (1, 1)


def test_checkpoint_change_is_a_miss(fake_teacher_cls, tmp_path) -> None:
    x = _images(1)
    CachedTeacher(fake_teacher_cls("v1"), tmp_path).encode(x)
    other = fake_teacher_cls("v2")  # e.g. another checkpoint hash in the fingerprint
    t = CachedTeacher(other, tmp_path)
    t.encode(x)
    assert t.cache.misses == 1 and other.encode_calls == 1


def test_stale_entry_is_recomputed_and_logged(fake_teacher, tmp_path, caplog) -> None:
    t = CachedTeacher(fake_teacher, tmp_path)
    x = _images(1)
    t.encode(x)
    path = t.cache.path(image_hash(x[0]))
    obj = torch.load(path, weights_only=True)
    obj["fingerprint"] = "written by something else"
    torch.save(obj, path)
    with caplog.at_level(logging.WARNING, logger="uncol.teachers.cache"):
        t.encode(x)
    assert fake_teacher.encode_calls == 2 and t.cache.recomputed == 1
    assert "stale" in caplog.text and str(path) in caplog.text
    assert torch.load(path, weights_only=True)["fingerprint"] == fake_teacher.fingerprint()  # rewritten


def test_corrupt_entry_is_recomputed_and_logged(fake_teacher, tmp_path, caplog) -> None:
    t = CachedTeacher(fake_teacher, tmp_path)
    x = _images(1)
    want = t.encode(x)
    path = t.cache.path(image_hash(x[0]))
    path.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="uncol.teachers.cache"):
        got = t.encode(x)
    assert "unreadable" in caplog.text and t.cache.recomputed == 1
    assert torch.equal(got.embedding, want.embedding)


def test_fill_encodes_each_image_once(fake_teacher, tmp_path) -> None:
    t = CachedTeacher(fake_teacher, tmp_path)
    t.fill(list(_images(4)), progress=False)
    t.fill(list(_images(4)), progress=False)
    assert fake_teacher.encode_calls == 4


def test_warp_moves_features_like_the_image(fake_teacher) -> None:
    x = _images(2)
    flip = torch.tensor([[-1.0, 0, 0], [0, 1, 0]]).expand(2, 2, 3)  # horizontal flip
    warped = warp_embedding(fake_teacher.encode(x), flip)
    of_warped = fake_teacher.encode(warp(x, flip))
    for a, b in zip([*warped.visual, warped.embedding], [*of_warped.visual, of_warped.embedding]):
        assert torch.allclose(a, b, atol=1e-5)
    c, s = math.cos(0.3), math.sin(0.3)
    rot = torch.tensor([[c, -s, 0], [s, c, 0]]).expand(2, 2, 3)
    assert warp_embedding(fake_teacher.encode(x), rot).visual[0].shape == (2, 1, 8, 8)


def test_build_teacher_none_unknown_and_wrong_dims(tmp_path) -> None:
    assert build_teacher(TeacherConfig(name="none"), 2) is None
    with pytest.raises(ConfigError, match="teacher.name.*litemedsam"):
        build_teacher(TeacherConfig(name="litemedsamm"), 2)
    with pytest.raises(ConfigError, match="slicewise"):
        build_teacher(TeacherConfig(name="litemedsam"), 3)
    with pytest.raises(ConfigError, match="teacher.params.nope"):
        build_teacher(TeacherConfig(name="slicewise", params={"nope": 1}), 3)


def test_memory_holds_the_latest_entries_up_to_its_bound(fake_teacher, tmp_path) -> None:
    """Issue 15: read entries stay in memory (LRU, bounded), with the values the files hold."""
    x = _images(3)
    per_image = 416  # fp16 bytes of one fake entry: visual 1x8x8 + 1x4x4, embedding 8x4x4
    t = CachedTeacher(fake_teacher, tmp_path, memory_mb=2.5 * per_image / 2**20)  # room for two entries
    first = t.encode(x)  # three misses, written; images 1 and 2 held (image 0 pushed out)
    assert t.cache._held == 2 * per_image and list(t.cache._memory) == [image_hash(im) for im in x[1:]]
    for p in t.cache.dir.rglob("*.pt"):  # from now on only memory can answer for images 1 and 2
        if p.stem != image_hash(x[0]):
            p.unlink()
    again = t.encode(x[1:])
    assert (t.cache.memory_hits, t.cache.hits, fake_teacher.encode_calls) == (2, 2, 3)
    assert all(torch.equal(a[1:], b) for a, b in zip([*first.visual, first.embedding], [*again.visual, again.embedding]))
    t.encode(x[:1])  # image 0 from its file; image 1, the least recently used, leaves memory
    assert (t.cache.memory_hits, t.cache.hits) == (2, 3)
    assert list(t.cache._memory) == [image_hash(x[2]), image_hash(x[0])]
    off = CachedTeacher(fake_teacher, tmp_path)  # default 0 MB: nothing held
    off.encode(x[:1])
    assert off.cache._held == 0 and not off.cache._memory


def test_fill_encodes_only_missing_images_and_does_not_read_filled_entries(fake_teacher, tmp_path) -> None:
    x = _images(3)
    CachedTeacher(fake_teacher, tmp_path).fill(iter(x[:2]), progress=False)
    assert fake_teacher.encode_calls == 2
    t = CachedTeacher(fake_teacher, tmp_path)  # a new run over the same folder
    t.fill(iter(x), progress=False)
    assert fake_teacher.encode_calls == 3 and t.cache.misses == 1 and t.cache.hits == 0  # two files not read
    assert t.cache.has(image_hash(x[0])) and not t.cache.has(image_hash(_images(1, seed=9)[0]))
    emb = t.encode(x)  # a step reads them: the same values as the teacher's, fp16-rounded
    assert t.cache.hits == 3 and torch.equal(emb.embedding, fake_teacher.encode(x).embedding.half().float())
