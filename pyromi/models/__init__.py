"""Built-in models with closed-form mutual information, for demos, tests and benchmarks."""

from .linear_design import LinearDesign
from .linear_gaussian import LinearGaussian

__all__ = ["LinearDesign", "LinearGaussian"]
