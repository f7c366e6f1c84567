"""Proposal distributions q(z | x) for importance-sampling bounds.

A proposal draws K latent particles for each of N observations and returns, in one vectorised
pass, ``log q(z | x)`` together with the model's ``log p(z)`` and ``log p(x | z)`` at the draws.
It can also score given latents (the true z*), which the multi-sample lower bounds need.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..adapter import ModelAdapter, ModelEvaluation

__all__ = ["Proposal", "PriorProposal", "ProposalDraw"]


class ProposalDraw(NamedTuple):
    """K particles for each of N samples, each field ``(K, N)``.

    ``log_weights = log p(z) + log p(x | z) - log q(z | x)`` in float64; ``log_q`` is None when it
    cancels (prior proposal); ``evaluation`` holds the latents and the model's log densities.
    """

    log_weights: torch.Tensor
    log_q: torch.Tensor | None
    evaluation: ModelEvaluation

    @classmethod
    def from_log_q(cls, log_q: torch.Tensor, evaluation: ModelEvaluation) -> "ProposalDraw":
        """Build the draw from ``log q`` and a full model evaluation."""
        log_w = (
            evaluation.log_prior.double() + evaluation.log_likelihood.double() - log_q.double()
        )
        return cls(log_w, log_q, evaluation)


class Proposal:
    """Interface of a proposal q(z | x) over the latent sites of a :class:`ModelAdapter`."""

    #: True when log q(z | x) can be evaluated at any z (needed by BA and the IWAE lower bound).
    has_density: bool = True
    name: str = "proposal"

    def bind(self, adapter: ModelAdapter) -> "Proposal":
        """Check compatibility with ``adapter`` and return the proposal to use (self by default)."""
        return self

    def sample(
        self, adapter: ModelAdapter, observed: dict[str, torch.Tensor], num_particles: int
    ) -> ProposalDraw:
        """Draw ``num_particles`` latents per sample, ``z_k ~ q(z | x_i)``, and score them."""
        raise NotImplementedError

    def log_prob(
        self,
        adapter: ModelAdapter,
        latent: dict[str, torch.Tensor],
        observed: dict[str, torch.Tensor],
        evaluation: ModelEvaluation | None = None,
    ) -> torch.Tensor:
        """``log q(z | x)`` at given latents ``(C, N) + local_shape``; returns ``(C, N)``."""
        raise NotImplementedError

    def sample_unconstrained(
        self, adapter: ModelAdapter, observed: dict[str, torch.Tensor], num_particles: int
    ) -> torch.Tensor:
        """Draws of q mapped to the packed unconstrained space, ``(K, N, D)`` (AIS start)."""
        draw = self.sample(adapter, observed, num_particles)
        u, _ = adapter.unconstrain(draw.evaluation.latent, observed)
        return u

    def log_prob_unconstrained(
        self,
        adapter: ModelAdapter,
        u: torch.Tensor,
        observed: dict[str, torch.Tensor],
        evaluation: ModelEvaluation,
    ) -> torch.Tensor:
        """Density of q in the unconstrained space, ``log q(T(u) | x) + log|dT/du|``, ``(C, N)``.

        ``evaluation`` is the model evaluated at ``u`` (its latents keep the graph to ``u``), so the
        result is differentiable in ``u`` whenever the guide's density is.
        """
        log_q = self.log_prob(adapter, evaluation.latent, observed, evaluation)
        return log_q + evaluation.log_abs_det_jacobian


class PriorProposal(Proposal):
    """q(z | x) = p(z): draws come from the model itself, so ``log w = log p(x | z)``.

    The IWAE lower bound with this proposal is InfoNCE with the optimal critic and cannot exceed
    log K; the upper bound needs K of order exp(I) to be tight.
    """

    name = "prior"

    def sample(self, adapter, observed, num_particles):
        ev = adapter.sample_prior(num_particles, observed, score_prior=False)
        return ProposalDraw(ev.log_likelihood.double(), None, ev)

    def log_prob(self, adapter, latent, observed, evaluation=None):
        if evaluation is None:
            evaluation = adapter.log_density(latent, observed)
        return evaluation.log_prior

    def __repr__(self) -> str:
        return "PriorProposal()"
