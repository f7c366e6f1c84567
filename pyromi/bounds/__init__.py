"""Bounds: formulas that turn log-weights into per-sample MI bound terms (nats, float64)."""

from .iwae import IWAEAccumulator, ba_terms

__all__ = ["IWAEAccumulator", "ba_terms"]
