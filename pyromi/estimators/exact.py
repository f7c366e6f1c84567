"""Exact I(x; k) for models whose latents are all discrete and summed out by enumeration.

With only enumerated latents k, ``log p(x) = log sum_k p(k) p(x | k)`` is exact, so each joint draw
gives ``I_i = log p(x_i | k_i*) - log p(x_i)`` and ``I(x; k) = E[I_i]``: the only error is the Monte
Carlo error over the N draws of x, and both sides of the sandwich are that one estimate.
"""

from __future__ import annotations

import time

from ..result import MIEstimate
from .checks import check_finite_terms

__all__ = ["exact_mi"]


def exact_mi(adapter, joint, bound: str) -> MIEstimate:
    """``mean_i [log p(x_i | k_i*) - log p(x_i)]`` with ``log p(x_i)`` by exact enumeration."""
    t0 = time.perf_counter()
    terms = joint.log_likelihood.double() - joint.log_density_star.double()
    check_finite_terms(bound, {"lower": terms, "upper": terms}, "")
    return MIEstimate.from_terms(
        bound, terms, terms.clone(), num_particles=None,
        settings={"exact": "every latent is discrete and summed out by enumeration",
                  "device": str(adapter.device), "dtype": str(adapter.dtype)},
        diagnostics={"seconds": time.perf_counter() - t0},
        observed=tuple(adapter.observed_names), latent=tuple(adapter.discrete_names),
    )
