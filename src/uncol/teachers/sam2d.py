"""The 2D SAM family (MedSAM ViT-B, LiteMedSAM): MedSAM preprocessing and per-class box decoding.

Subclasses provide the three SAM parts as ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``
(so the teacher's state dict has the official key layout) and ``_encode_input`` (features of the
preprocessed ``(B, 3, img_size, img_size)`` input).

Preprocessing (MedSAM): each image is reduced to one gray channel (mean over channels unless it
has 3) and min-max scaled to [0, 1], repeated to 3 channels, then resized either with its longest
side to ``img_size`` and zero padding at the bottom/right (``resize="longest"``, LiteMedSAM) or
straight to ``img_size``² (``resize="stretch"``, MedSAM's inference script). Boxes/points follow the
same map; the decoder's low-resolution logits are upsampled to ``img_size``², the padding cropped
off, then resized to ``out_size`` before the sigmoid.
"""
from __future__ import annotations

import functools
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from uncol.teachers.base import OUTPUTS, ClassPrompts, Teacher, TeacherEmbedding, TeacherOutput, combine_class_probs

# image resampling to the model input (ours); "bicubic" (no antialiasing) keeps thin bright structures
# such as the fetal skull. LiteMedSAM, HC18, tight boxes, mean Dice: 20 raw images bicubic 0.914, area
# (cv2 INTER_AREA, MedSAM-Lite's) 0.905; 6 images bicubic 0.906, bilinear 0.899, bilinear+antialias 0.868
RESAMPLE: dict[str, dict] = {
    "bicubic": {"mode": "bicubic", "align_corners": False},
    "bilinear": {"mode": "bilinear", "align_corners": False},
    "bilinear_aa": {"mode": "bilinear", "align_corners": False, "antialias": True},
    "area": {"mode": "area"},
}


# Memory format of the maps given to SAM's two-way transformer. Channels-last: its flatten(2).permute(0, 2, 1) then
# gives contiguous (N, h*w, C) tokens, so its token-wise adds run on contiguous memory (same values bit for bit,
# ~30 % less transformer time on one CPU thread; issue 15). tests/methods/test_uncol_step_cost.py sets it back.
TRANSFORMER_INPUT_FORMAT = torch.channels_last


def run_mask_decoder(
    decoder: nn.Module, image_emb: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor, masks: bool = True
) -> tuple[Tensor | None, Tensor]:
    """SAM's ``MaskDecoder.predict_masks`` for one mask output, one image per prompt, keys exposed.

    image_emb ``(N, C, h, w)`` (already one row per prompt), image_pe ``(1, C, h, w)``,
    sparse ``(N, T, C)``, dense ``(N, C, h, w)``.
    Returns mask logits ``(N, 1, 4h, 4w)`` (None when ``masks`` is False: the mask upscaling and the
    hypernetwork are skipped) and the two-way transformer's image tokens ``(N, h*w, C)``.
    """
    n, c, h, w = image_emb.shape
    out_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([out_tokens.unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
    fmt = TRANSFORMER_INPUT_FORMAT
    hs, keys = decoder.transformer((image_emb + dense).contiguous(memory_format=fmt),
                                   image_pe.contiguous(memory_format=fmt).expand(n, -1, -1, -1), tokens)
    if not masks:
        return None, keys
    up = decoder.output_upscaling(keys.transpose(1, 2).reshape(n, c, h, w))
    hyper = decoder.output_hypernetworks_mlps[0](hs[:, 1, :])  # mask token 0 = single-mask output
    logits = (hyper.unsqueeze(1) @ up.flatten(2)).view(n, 1, *up.shape[2:])
    return logits, keys


@functools.lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_mid: int, n_keep: int, n_out: int, device: torch.device | str = "cpu") -> Tensor:
    """``(n_out, n_in)``: the linear map of one axis under bilinear resizing ``n_in -> n_mid``, cropping to
    the first ``n_keep``, then bilinear ``n_keep -> n_out`` (both ``align_corners=False``).

    PyTorch's bilinear interpolation is separable, so ``A_y @ X @ A_x.T`` equals the two
    ``F.interpolate`` calls on ``X (h, w)`` (to float rounding) without the ``n_mid``² intermediate. Cached per
    geometry (callers must not modify the returned tensor)."""
    eye = torch.eye(n_in, device=device).view(n_in, 1, n_in, 1)  # one unit impulse per row, width 1 = identity
    x = F.interpolate(eye, size=(n_mid, 1), mode="bilinear", align_corners=False)[:, :, :n_keep]
    x = F.interpolate(x, size=(n_out, 1), mode="bilinear", align_corners=False)
    return x.view(n_in, n_out).T.contiguous()


class SamTeacher2D(Teacher):
    """Shared encode/decode of 2D SAM-style teachers. ``img_size``: the model's square input side."""

    spatial_dims = 2
    embed_dim = 256
    prompt_kind = "box"

    def __init__(self, img_size: int, resize: str, resample: str, checkpoint_id: str) -> None:
        super().__init__()
        if resize not in ("longest", "stretch"):
            raise ValueError(f"resize must be 'longest' or 'stretch', got {resize!r}")
        if resample not in RESAMPLE:
            from uncol.errors import ConfigError

            raise ConfigError(f"config key 'teacher.params.resample' must be one of {sorted(RESAMPLE)}, got {resample!r}")
        self.img_size = img_size
        self.resize = resize
        self.resample = resample
        self.checkpoint_id = checkpoint_id

    # --- geometry -----------------------------------------------------------------------------
    def _scale(self, size: tuple[int, ...]) -> tuple[float, float, int, int]:
        """(sy, sx, new_h, new_w): image pixel -> model-input pixel scale and the unpadded extent."""
        h, w = size
        if self.resize == "stretch":
            return self.img_size / h, self.img_size / w, self.img_size, self.img_size
        s = self.img_size / max(h, w)
        return s, s, max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))

    def preprocess(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` any range -> ``(B, 3, img_size, img_size)`` in [0, 1] (MedSAM)."""
        x = images.float()
        x = x if x.shape[1] == 3 else x.mean(dim=1, keepdim=True)
        lo = x.flatten(1).min(dim=1).values.view(-1, 1, 1, 1)
        hi = x.flatten(1).max(dim=1).values.view(-1, 1, 1, 1)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
        _, _, nh, nw = self._scale(tuple(images.shape[2:]))
        if (nh, nw) != tuple(x.shape[2:]):
            x = F.interpolate(x, size=(nh, nw), **RESAMPLE[self.resample]).clamp(0.0, 1.0)
        x = F.pad(x, (0, self.img_size - nw, 0, self.img_size - nh))
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    def fingerprint(self) -> str:
        return (f"{type(self).__name__}|ckpt={self.checkpoint_id}|size={self.img_size}|resize={self.resize}"
                f"|resample={self.resample}|minmax01")

    # --- the two calls ------------------------------------------------------------------------
    def _encode_input(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        raise NotImplementedError

    def encode(self, images: Tensor) -> TeacherEmbedding:
        """images ``(B, C, H, W)`` -> visual list ``(B, C_j, h_j, w_j)``, embedding ``(B, 256, 64, 64)``."""
        if images.dim() != 4:
            raise ValueError(f"{type(self).__name__} takes 2D images (B, C, H, W), got shape {tuple(images.shape)}")
        visual, embedding = self._encode_input(self.preprocess(images))
        return TeacherEmbedding(visual, embedding, tuple(images.shape[2:]))

    def _prompt_embeddings(self, cp: ClassPrompts, cls: int, size: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Sparse ``(1, T, 256)`` and dense ``(1, 256, h, w)`` embeddings of one class's prompt (or none)."""
        sy, sx, _, _ = self._scale(size)
        dev = self.prompt_encoder.no_mask_embed.weight.device
        box = pts = None
        if cls in cp.boxes:
            x0, y0, x1, y1 = cp.boxes[cls]
            box = torch.tensor([[x0 * sx, y0 * sy, x1 * sx, y1 * sy]], dtype=torch.float32, device=dev)
        if cls in cp.points:
            p = cp.points[cls]
            yx = p.coords.to(dev, torch.float32)
            xy = torch.stack([yx[:, 1] * sx, yx[:, 0] * sy], dim=1)
            pts = (xy.unsqueeze(0), p.labels.to(dev).long().unsqueeze(0))
        return self.prompt_encoder(points=pts, boxes=box, masks=None)

    def decode(
        self, emb: TeacherEmbedding, prompts: list[ClassPrompts], num_classes: int, out_size: tuple[int, ...],
        outputs: Collection[str] = OUTPUTS,
    ) -> TeacherOutput:
        """Probabilities ``(B, K, *out_size)``, fused tokens ``(B, 4096, 256)`` (grid 64×64); ``outputs``
        says which of the two the caller uses (the other is None and not computed)."""
        b = emb.batch_size
        if len(prompts) != b:
            raise ValueError(f"decode got {len(prompts)} ClassPrompts for a batch of {b} images")
        want_probs, want_fused = "probs" in outputs, "fused" in outputs
        jobs: list[tuple[int, int]] = []  # (image, class); class 0 = unprompted run for `fused` only
        sparse, dense = [], []
        for i, cp in enumerate(prompts):
            classes = [c for c in cp.classes() if 0 < c < num_classes] or ([0] if want_fused else [])
            for c in classes:
                s, d = self._prompt_embeddings(cp, c, emb.image_size)
                jobs.append((i, c))
                sparse.append(s)
                dense.append(d)
        dev = self.prompt_encoder.no_mask_embed.weight.device
        image_pe = self.prompt_encoder.get_dense_pe()
        logits_all: list[Tensor | None] = [None] * len(jobs)
        keys_all: list[Tensor] = [torch.empty(0)] * len(jobs)
        for t in sorted({s.shape[1] for s in sparse}):  # batch the jobs with the same token count
            idx = [j for j, s in enumerate(sparse) if s.shape[1] == t]
            img_idx = torch.tensor([jobs[j][0] for j in idx], device=emb.embedding.device)
            with_masks = want_probs and any(jobs[j][1] > 0 for j in idx)
            logits, keys = run_mask_decoder(self.mask_decoder, emb.embedding[img_idx].to(image_pe.dtype), image_pe,
                                            torch.cat([sparse[j] for j in idx]), torch.cat([dense[j] for j in idx]),
                                            masks=with_masks)
            for k, j in enumerate(idx):
                logits_all[j], keys_all[j] = (None if logits is None else logits[k]), keys[k]
        prompted = torch.zeros(b, num_classes, dtype=torch.bool, device=dev)
        for i, c in jobs:
            prompted[i, c] = c > 0
        fused = fg = probs = None
        if want_fused:
            fused = torch.zeros(b, *keys_all[0].shape, device=dev)
            count = torch.zeros(b, device=dev)
            for (i, _), kv in zip(jobs, keys_all):
                fused[i] += kv
                count[i] += 1
            fused = fused / count.view(-1, 1, 1)
        if want_probs:
            fg = torch.zeros(b, num_classes - 1, *out_size, device=dev)
            pj = [j for j, (_, c) in enumerate(jobs) if c > 0]
            if pj:
                up = self._logits_to_image(torch.stack([logits_all[j] for j in pj]), emb.image_size, out_size)
                for k, j in enumerate(pj):
                    fg[jobs[j][0], jobs[j][1] - 1] = torch.sigmoid(up[k, 0])
            probs = combine_class_probs(fg, prompted[:, 1:])
        return TeacherOutput(probs, fused, tuple(emb.embedding.shape[2:]), prompted, fg)

    def _logits_to_image(self, logits: Tensor, size: tuple[int, ...], out_size: tuple[int, ...]) -> Tensor:
        """``(N, 1, h, w)`` low-res logits -> ``(N, 1, *out_size)``: bilinear up to the model input
        (``img_size``²), crop the padding, bilinear to ``out_size``, computed as one separable linear map
        (:func:`resize_matrix`) instead of materialising the ``img_size``² logits."""
        _, _, nh, nw = self._scale(size)
        h, w = logits.shape[-2:]
        # clone: a matrix cached while inference mode was on must not enter a graph that autograd tracks
        a_y = resize_matrix(h, self.img_size, nh, out_size[0], logits.device).to(logits.dtype).clone()
        a_x = resize_matrix(w, self.img_size, nw, out_size[1], logits.device).to(logits.dtype).clone()
        return (a_y @ logits @ a_x.T).contiguous()
