"""Estimators: sampling loops that feed bounds and return :class:`~pyromi.MIEstimate` objects."""

from .importance import importance_mi

__all__ = ["importance_mi"]
