"""Segmentation networks: U-Net, V-Net, SimpleViT, the knowledge adapter and the UnCoL student.

``import uncol.models`` fills :data:`MODELS` (``unet``, ``unet_urpc``, ``vnet``, ``uncol_student``);
:func:`build_model` builds one from a :class:`~uncol.config.ModelConfig`.
"""

from uncol.models import (  # noqa: F401  (register the builders)
    student,
    unet,
    urpc,
    vnet,
)
from uncol.models.base import MODELS, build_model
from uncol.models.student import StudentOutput, UncolStudent

__all__ = ["MODELS", "StudentOutput", "UncolStudent", "build_model"]
