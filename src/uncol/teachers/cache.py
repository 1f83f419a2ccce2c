"""On-disk cache of a frozen teacher's ``encode`` outputs (the expensive, prompt-independent part).

The teacher never changes, so the features of a training image are computed once and reused across
epochs, runs and methods; only the cheap prompt encoder + mask decoder run during training.

Layout: ``<root>/<TeacherClass>-<hash(fingerprint)>/<ab>/<image-hash>.pt``, one file per image, fp16
tensors written atomically (``uncol.runtime``) and read with ``torch.load(weights_only=True)``.
The fingerprint (``Teacher.fingerprint()``) holds the teacher name, the checkpoint's SHA-256 and the
preprocessing, so new weights or preprocessing land in a new folder; the image hash is the SHA-256 of
the image tensor (shape, dtype and values) given to ``encode``. Every file also stores its full key;
an entry that cannot be read, lacks a tensor, or carries another key is *recomputed and overwritten*,
with a warning in the log, never used.

Outputs are rounded to fp16 on a miss too, so a hit and a miss return identical tensors.

Geometric augmentation (our choice): in ``cached`` mode the cache is keyed by the UN-augmented image,
and the trainer applies the same geometric transform to the cached feature maps as to the image,
with :func:`warp` / :func:`warp_embedding` (one affine ``theta`` in normalised coordinates, valid at
every resolution, so the image and every feature map move together; flips are ``theta`` with -1s).
This is exact for flips and close for rotations (features are not rotation-equivariant); it needs the
feature grid to cover exactly the image (square 2D inputs for LiteMedSAM's longest-side padding; any
input for MedSAM's stretch). ``teacher.mode: online`` instead runs the teacher on the augmented image
every step, as the paper does.
"""
from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from uncol.runtime import atomic_torch_save
from uncol.teachers.base import OUTPUTS, ClassPrompts, Teacher, TeacherEmbedding, TeacherOutput

log = logging.getLogger(__name__)


def image_hash(image: Tensor) -> str:
    """SHA-256 of one image ``(C, *S)``: shape, dtype and the float32 values."""
    x = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(f"{tuple(x.shape)}|float32|".encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Files of one teacher configuration under ``root``; ``hits``/``misses``/``recomputed`` counters.

    The entries read or written last stay in memory (least recently used first out) up to ``memory_mb``
    megabytes (0: none), so a training step reads its images' features from disk only once per run while
    they fit; an entry in memory is the same fp16 tensors the file holds."""

    def __init__(self, root: str | Path, name: str, fingerprint: str, memory_mb: float = 0.0) -> None:
        self.fingerprint = fingerprint
        self.dir = Path(root) / f"{name}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}"
        self.hits = self.misses = self.recomputed = self.memory_hits = 0
        self.memory_bytes = int(memory_mb * 2**20)
        self._memory: OrderedDict[str, tuple[TeacherEmbedding, int]] = OrderedDict()
        self._held = 0

    def _remember(self, key: str, emb: TeacherEmbedding) -> None:
        size = sum(t.numel() * t.element_size() for t in [*emb.visual, emb.embedding])
        if size > self.memory_bytes:
            return
        old = self._memory.pop(key, None)
        self._held += size - (old[1] if old else 0)
        self._memory[key] = (emb, size)
        while self._held > self.memory_bytes:
            self._held -= self._memory.popitem(last=False)[1][1]

    def path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.pt"

    def has(self, key: str) -> bool:
        """Whether an entry for ``key`` is held in memory or written on disk (not read, not checked)."""
        return key in self._memory or self.path(key).is_file()

    def load(self, key: str, num_visual: int) -> TeacherEmbedding | None:
        """The entry for image hash ``key`` (batch of 1, fp16), or None (absent, corrupt or stale)."""
        held = self._memory.get(key)
        if held is not None:
            self._memory.move_to_end(key)
            self.memory_hits += 1
            return held[0]
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            ok = (isinstance(obj, dict) and obj.get("fingerprint") == self.fingerprint and obj.get("image") == key
                  and len(obj["visual"]) == num_visual
                  and all(isinstance(t, Tensor) for t in [*obj["visual"], obj["embedding"]]))
            reason = "stale key (written for another teacher/image)"
        except Exception as e:  # noqa: BLE001 - unreadable entry: recompute it
            ok, reason = False, f"unreadable ({type(e).__name__})"
        if not ok:
            self.recomputed += 1
            log.warning("teacher cache entry %s is %s; recomputing it", p, reason)
            return None
        emb = TeacherEmbedding(list(obj["visual"]), obj["embedding"], tuple(int(s) for s in obj["image_size"]))
        self._remember(key, emb)
        return emb

    def save(self, key: str, emb: TeacherEmbedding) -> None:
        """Write one image's embedding (batch of 1) as fp16, atomically."""
        obj = {"fingerprint": self.fingerprint, "image": key, "image_size": list(emb.image_size),
               "visual": [v.detach().to("cpu", torch.float16).contiguous() for v in emb.visual],
               "embedding": emb.embedding.detach().to("cpu", torch.float16).contiguous()}
        atomic_torch_save(obj, self.path(key))
        self._remember(key, TeacherEmbedding(obj["visual"], obj["embedding"], emb.image_size))


class CachedTeacher(Teacher):
    """A teacher whose ``encode`` consults a :class:`FeatureCache`; ``decode`` is the wrapped teacher's."""

    def __init__(self, teacher: Teacher, cache_dir: str | Path, memory_mb: float = 0.0) -> None:
        super().__init__()
        self.teacher = teacher
        self.cache = FeatureCache(cache_dir, type(teacher).__name__, teacher.fingerprint(), memory_mb)
        self.spatial_dims = teacher.spatial_dims
        self.embed_dim = teacher.embed_dim
        self.visual_dims = list(teacher.visual_dims)
        self.prompt_kind = teacher.prompt_kind
        self.freeze()

    def fingerprint(self) -> str:
        return self.teacher.fingerprint()

    def encode(self, images: Tensor) -> TeacherEmbedding:
        """Like the teacher's ``encode`` (fp16-rounded values, float32 on the images' device)."""
        keys = [image_hash(im) for im in images]
        found = [self.cache.load(k, len(self.visual_dims)) for k in keys]
        miss = [i for i, e in enumerate(found) if e is None]
        self.cache.hits += len(keys) - len(miss)
        self.cache.misses += len(miss)
        if miss:
            fresh = self.teacher.encode(images[miss])
            for j, i in enumerate(miss):
                one = fresh.select(slice(j, j + 1)).to("cpu", torch.float16)
                self.cache.save(keys[i], one)
                found[i] = one
        return TeacherEmbedding.cat(found).to(images.device, torch.float32)  # type: ignore[arg-type]

    def decode(
        self, emb: TeacherEmbedding, prompts: list[ClassPrompts], num_classes: int, out_size: tuple[int, ...],
        outputs: Collection[str] = OUTPUTS,
    ) -> TeacherOutput:
        return self.teacher.decode(emb, prompts, num_classes, out_size, outputs)

    def encode_mixed(self, part: dict, mixed: Tensor, mix_fn: Any) -> TeacherEmbedding:
        if "base_image" not in part:
            return self.teacher.encode(mixed)
        return self.encode_part(part).map(mix_fn)

    def encode_part(self, part: dict) -> TeacherEmbedding:
        """A batch part's embedding: the cached features of its un-augmented images (``base_image``)
        moved by its augmentation (``aug_theta``, exact for flips, close for rotations; see the module
        docstring). A part without them (random patches, never the same twice) is encoded online by
        the wrapped teacher, without writing to the cache."""
        if "base_image" not in part or "aug_theta" not in part:
            return self.teacher.encode(part["image"])
        emb = self.encode(part["base_image"])
        theta = part["aug_theta"]
        identity = torch.eye(theta.shape[1], theta.shape[2], device=theta.device)
        return emb if torch.equal(theta, identity.expand_as(theta)) else warp_embedding(emb, theta)

    def serve(self, datasets: list[Any]) -> None:
        """Make ``datasets`` add ``base_image``/``aug_theta`` to their samples (whole/slices modes)."""
        for ds in datasets:
            ds.keep_base = True

    def fill_from(self, datasets: list[Any], device: torch.device | str, progress: bool = True) -> None:
        """Encode every un-augmented training image of ``datasets`` once (:meth:`fill`), so that every
        later :meth:`encode_part` hits the cache; datasets serving random patches are skipped (warning)."""
        for ds in datasets:
            first = ds.get_seeded(0, 0) if len(ds) else {}
            if "base_image" not in first:
                log.warning("teacher cache: %s serves random patches; the teacher encodes them online",
                            type(ds).__name__)
                continue
            self.fill((ds.get_seeded(i, 0)["base_image"].to(device) for i in range(len(ds))), total=len(ds),
                      progress=progress)

    def fill(self, images: Iterable[Tensor], total: int | None = None, progress: bool = True) -> None:
        """Encode every image ``(C, *S)`` of ``images`` that is not cached yet, with a tqdm bar. An image whose
        entry is in memory or on disk is not read here (reading a filled cache cost minutes per run start in
        3D, ~470 MB per hippocampus volume); a corrupt or stale file is still found and recomputed when a step
        first reads it."""
        from tqdm.auto import tqdm

        with torch.no_grad():
            for im in tqdm(images, total=total, desc=f"teacher cache {self.cache.dir.name}", disable=not progress):
                if self.cache.has(image_hash(im)):
                    continue
                self.encode(im.unsqueeze(0))


def warp(x: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    """Apply the affine ``theta`` ``(B, n, n+1)`` (normalised coordinates, ``F.affine_grid``) to ``x (B, C, *S)``."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def warp_embedding(emb: TeacherEmbedding, theta: Tensor) -> TeacherEmbedding:
    """The same geometric transform as ``warp(image, theta)`` applied to every cached feature map."""
    return emb.map(lambda t: warp(t, theta))
