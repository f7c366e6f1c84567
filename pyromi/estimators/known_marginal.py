"""The known-marginal trainers, now in :mod:`pyromi.estimators.contrastive` (one module per
algorithm); this name is kept for imports written against it."""

from .contrastive import GIWAE, MINE, MINEAIS, EnergyPath

__all__ = ["GIWAE", "MINE", "MINEAIS", "EnergyPath"]
