"""Compatibility module: the model adapter lives in :mod:`pyromi.model`."""

from .model import (  # noqa: F401
    PARTICLE_PLATE,
    SAMPLE_PLATE,
    JointSamples,
    ModelAdapter,
    ModelEvaluation,
    SiteInfo,
    available_device,
    is_out_of_memory,
    out_of_memory_error,
    sum_trailing,
)
from .model.sites import fn_chain as _fn_chain  # noqa: F401

_is_out_of_memory = is_out_of_memory
_sum_trailing = sum_trailing

__all__ = ["ModelAdapter", "JointSamples", "ModelEvaluation", "SiteInfo"]
