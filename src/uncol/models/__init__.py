"""Segmentation networks: U-Net, V-Net, SimpleViT, the knowledge adapter and the UnCoL student.

``import uncol.models`` fills :data:`MODELS` (``unet``, ``unet_urpc``, ``vnet``, ``uncol_student``);
:func:`build_model` builds one from a :class:`~uncol.config.ModelConfig`.
"""

from uncol.models import student, unet, vnet  # noqa: F401  (register the builders)
from uncol.models import urpc  # noqa: F401  (registers unet_urpc)
from uncol.models.base import MODELS, build_model
from uncol.models.student import StudentOutput, UncolStudent

__all__ = ["MODELS", "StudentOutput", "UncolStudent", "build_model"]
