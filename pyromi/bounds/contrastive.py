"""Known-marginal lower bounds on I(x; z) from a critic T(x, z).

References: InfoNCE (van den Oord, Li & Vinyals 2018, arXiv:1807.03748; as a multi-sample MI
bound, Poole et al. 2019, "On Variational Bounds of Mutual Information", ICML); GIWAE and MINE-AIS
(Brekelmans et al. 2022, "Improving Mutual Information Estimation with Annealed and Energy-Based
Bounds", ICLR); MINE-DV (Belghazi et al. 2018, "Mutual Information Neural Estimation", ICML);
MINE-F, the f-divergence bound (Nguyen, Wainwright & Jordan 2010, IEEE Trans. Inf. Theory).

Only p(z), a proposal density and joint samples are needed; log p(x | z) never appears.

* GIWAE, positive z* plus K - 1 negatives z_k ~ q(z | x):
  ``log q(z*|x) - log p(z*) + T(x, z*) - LME(T(x, z*), T(x, z_2), ..., T(x, z_K))``;
  T = const gives BA(q), q = p(z) gives InfoNCE, T = log p(x, z)/q(z|x) gives the IWAE lower bound.
* InfoNCE: GIWAE with q = p(z): ``T(x, z*) - LME_k T(x, z_k)`` <= log K.
* MINE-DV: ``E_joint T - log E_{p(x)p(z)} e^T``; MINE-F (NWJ): ``E_joint T - E_{p(x)p(z)} e^{T - 1}``.
* MINE-AIS: ``T(x, z*) - LME(log w_bwd, log w_1..w_{K-1})`` with AIS on p(z) -> p(z) e^{T(x, z)}.
"""

from __future__ import annotations

import math

import torch

__all__ = ["giwae_terms", "mine_dv", "mine_f"]


def giwae_terms(
    log_q_star: torch.Tensor,
    log_prior_star: torch.Tensor,
    critic_pos: torch.Tensor,
    critic_neg: torch.Tensor,
) -> torch.Tensor:
    """Per-sample GIWAE terms ``(N,)``; ``critic_pos (N,)``, ``critic_neg (K - 1, N)``."""
    scores = torch.cat([critic_pos.unsqueeze(0), critic_neg], 0).double()
    lme = torch.logsumexp(scores, 0) - math.log(scores.shape[0])
    return log_q_star.double() - log_prior_star.double() + critic_pos.double() - lme


def mine_dv(critic_joint: torch.Tensor, critic_marginal: torch.Tensor) -> torch.Tensor:
    """``mean T(joint) - log mean exp T(product)`` (a scalar, float64)."""
    m = critic_marginal.double().flatten()
    return critic_joint.double().mean() - (torch.logsumexp(m, 0) - math.log(m.numel()))


def mine_f(critic_joint: torch.Tensor, critic_marginal: torch.Tensor) -> torch.Tensor:
    """``mean T(joint) - mean exp(T(product) - 1)`` (a scalar, float64)."""
    return critic_joint.double().mean() - torch.exp(critic_marginal.double() - 1.0).mean()
