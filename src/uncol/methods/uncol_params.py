"""``method.params`` of UnCoL, each default tagged by its source (paper / authors' code / ours; docs/fidelity.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class UncolParams:
    stage1_iterations: int = 0  # ours: 0 -> train.iterations (paper: 15,000 per stage)
    stage2_iterations: int = 0  # ours: 0 -> train.iterations (paper: 15,000 per stage)
    ema_momentum: float = 0.99  # paper
    freeze_ema_stage2: bool = False  # paper: S follows the student in stage 2; authors' code freezes it (True)
    lambda_max: float = 0.1  # ours and authors' code (paper's value lost)
    beta: float = 0.5  # paper (BCP): weight of the pseudo-labelled part, on 0.5 (CE + Dice)
    copy_paste_ratio: float = 0.6  # paper: 60 % of the grid
    copy_paste_grid: int = 4  # ours: 4x4 (2D) / 4x4x4 (3D)
    bcp_ratio: float = 2.0 / 3.0  # paper (BCP)
    # authors' code and BCP's: halves = X_in from the first halves of the labelled and unlabelled streams, X_out
    # from the second halves (the student sees labeled_bs mixed images); all = every pair both ways (2 x labeled_bs)
    stage2_pairs: Literal["halves", "all"] = "halves"
    visual_distill: bool = True  # paper: DPKD visual path (ablation switch)
    semantic_distill: bool = True  # paper: DPKD semantic path, stage 1 only (ablation switch)
    # authors' code: adapter = MSE(own key/value, G's projected tokens); teacher = SPEC eq. 2 (phi_sem projector)
    semantic_space: Literal["adapter", "teacher"] = "adapter"
    # authors' code: own = own ViT tokens with gradient; teacher_and_ema = G + S tokens (paper); ema = S's tokens
    stage2_knowledge: Literal["own", "teacher_and_ema", "ema"] = "own"
    pseudo_label: Literal["uapl", "s_only", "avg"] = "uapl"  # paper (Table 4): UAPL | S-Tch-PL | Avg-Tch-PL
    # ours: product = background prod(1 - fg), renormalised (SPEC §3); authors = softmax([1 - sum fg, fg])
    g_probs: Literal["product", "authors"] = "product"
    normalized_entropy: bool = False  # paper: nats; authors' code: True (U / ln C in thresholds and weights)
    use_generalized_teacher: bool = True  # paper: False = no G at all (the ablation baseline)
    layer_map: tuple[tuple[int, int], ...] = ((1, 0), (2, 1), (3, 2))  # ours: (student layer, teacher feature idx)
    largest_component: bool = False  # paper: off; authors' code keeps S's pseudo-label's largest component
    projector_hidden: int = 0  # ours: 0 -> max(d_s, d_t)
    stage2_box_jitter_px: float = 0.0  # ours: outward jitter (MedSAM 1024 frame) of G's stage-2 boxes
    prompt_points: int = 5  # authors' code (5 clicks): positive points per class for 3D teachers
    prompt_negative_points: int = 0  # ours: negative points per class near its bounding box
    recalibrate_bn: bool = True  # ours: prompt-free BatchNorm statistics before evaluation and at stage 2
    recalibrate_images: int = 64  # ours: training images used for the recalibration
    ema_own_bn: bool = False  # ours: S keeps BatchNorm statistics of its own (prompt-free pass per step)
    # ours (issue 15, an approximation): stage-1 G tokens decoded every step, or drawn from a bank of
    # jittered-box decodes per labelled image, moved and mixed like the features (teachers/bank.py)
    stage1_g_tokens: Literal["decode", "bank"] = "decode"
    g_token_bank_size: int = 8  # ours: decodes per labelled image in the bank
