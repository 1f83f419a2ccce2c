"""SAM-Med3D (``vit_b_ori``) re-implemented in this project, parameter-for-parameter compatible
with the official checkpoints of https://github.com/uni-medical/SAM-Med3D (``model_state_dict``).

Modules: ``image_encoder3d`` (3D ViT-B with windowed/global attention and decomposed relative
positions), ``prompt_encoder3d`` (random-Fourier point encoding), ``mask_decoder3d`` (two-way
transformer + hypernetwork mask head) and ``model`` (the ``Sam3D`` container and its config).
"""
from __future__ import annotations

from uncol.teachers.sam3d.model import Sam3D, Sam3DConfig, build_sam3d, decode_prompts

__all__ = ["Sam3D", "Sam3DConfig", "build_sam3d", "decode_prompts"]
