"""Training methods: each a small object with ``train_step``; all share ``uncol.engine``'s loop."""
from uncol.methods import bcp, finetune, mean_teacher, supervised, ua_mt, uncol, urpc  # noqa: F401  (registers)
from uncol.methods.base import METHODS, Method, MethodContext, StagePlan, StepOutput

__all__ = ["METHODS", "Method", "MethodContext", "StagePlan", "StepOutput"]
