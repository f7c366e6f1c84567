"""Multi-Sample AIS bounds on I(x; z) (Brekelmans et al. 2022, "Improving Mutual Information
Estimation with Annealed and Energy-Based Bounds", ICLR; AIS: Neal 2001; the K = 1 sandwich is BDMC,
Grosse, Ghahramani & Adams 2015, arXiv:1511.02543).

They are the IWAE bounds of :mod:`pyromi.bounds.iwae` on the extended space of annealing paths:

* upper bound on MI from K forward chains: ``ll* - LME_k log w_k`` (LME is a stochastic lower bound
  on log p(x));
* lower bound on MI, coupled form: one backward chain started at the true z* plus K - 1 forward
  chains, ``ll* - LME(log w_bwd, log w_1, ..., log w_{K-1})``. At T = 1 this is the IWAE lower bound;
  at K = 1 it is the BDMC (reverse AIS) bound.
"""

from __future__ import annotations

import torch

from .iwae import IWAEAccumulator

__all__ = ["ais_bound_terms"]


def ais_bound_terms(
    log_likelihood_star: torch.Tensor,
    log_weights: torch.Tensor,
    log_weight_backward: torch.Tensor | None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Per-sample ``(lower, upper)`` MI terms from forward log-weights ``(K, N)`` and the backward
    chain's ``(N,)`` (float64, nats). ``lower`` is None without a backward chain."""
    acc = IWAEAccumulator(log_weights.shape[0], log_likelihood_star, log_weight_backward)
    acc.update(log_weights)
    lower = acc.lower_terms() if log_weight_backward is not None else None
    return lower, acc.upper_terms()
