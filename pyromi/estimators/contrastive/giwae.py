"""GIWAE, InfoNCE and Barber-Agakov: a critic and a proposal q(z|x) trained jointly."""

from __future__ import annotations

import math
import time

import pyro
import torch
from torch import nn

from ..._state import entry_point
from ...adapter import JointSamples
from ...bounds.contrastive import giwae_terms
from ...distributed import sharded
from ...errors import PyromiError
from ...proposals.amortized import AmortizedNormal
from ...proposals.base import Proposal
from ...proposals.guide import GuideProposal
from ...result import MIEstimate
from .training import _CriticTrainer

__all__ = ["GIWAE"]


class GIWAE(_CriticTrainer):
    """GIWAE lower bound with a critic T and a proposal q(z|x) trained jointly.

    ``I_GIWAE = E[log q(z*|x) - log p(z*) + T(x, z*) - LME(T(x, z*), T(x, z_2), ..., T(x, z_K))]``
    with z_2..z_K ~ q(z|x) (Brekelmans et al. 2022, "Improving Mutual Information Estimation with
    Annealed and Energy-Based Bounds", ICLR).

    Args:
        proposal: ``"amortized"`` (default) trains a fresh :class:`AmortizedNormal`; ``"prior"``
            gives InfoNCE (negatives from p(z), no BA term); an :class:`AmortizedNormal` is trained
            jointly; an amortised Pyro guide ``guide(x)`` (see :class:`GuideProposal`) is trained
            jointly when it is an ``nn.Module`` (e.g. a ``PyroModule``) and held fixed otherwise.
            Its draws must be reparameterised for q to learn from the contrastive term.
        critic: an ``nn.Module`` ``T(x, z)``; None builds a default concatenation critic;
            ``False`` fixes T = 0, which gives Barber-Agakov.
        num_particles: K (1 positive + K - 1 negatives) used in training.
    """

    bound = "giwae"

    def __init__(self, model, observed, latent=None, *, critic=None, proposal="amortized",
                 num_particles: int = 64, **kw) -> None:
        self._no_critic = critic is False
        super().__init__(model, observed, latent, critic=None if critic is False else critic, **kw)
        if self._no_critic:
            self.critic = _ZeroCritic()
        self._trainable_proposal: nn.Module | None = None
        if isinstance(proposal, str):
            if proposal == "prior":
                self.proposal = None
                self.bound = "infonce"
            elif proposal == "amortized":
                self.proposal = AmortizedNormal(self.adapter, seed=0)
                self._trainable_proposal = self.proposal
            else:
                raise ValueError(
                    f"proposal must be 'amortized', 'prior', an AmortizedNormal or an amortised "
                    f"guide, got {proposal!r}"
                )
        elif isinstance(proposal, AmortizedNormal):
            self.proposal = proposal.bind(self.adapter)
            self._trainable_proposal = self.proposal
        elif isinstance(proposal, Proposal):
            if not proposal.has_density:
                raise PyromiError(f"GIWAE needs a proposal with a density q(z|x); {proposal!r} has none")
            self.proposal = proposal.bind(self.adapter)
            guide = getattr(proposal, "guide", None)
            self._trainable_proposal = guide if isinstance(guide, nn.Module) else None
        elif callable(proposal) and not isinstance(proposal, type):
            self.proposal = GuideProposal(proposal).bind(self.adapter)
            self._trainable_proposal = proposal if isinstance(proposal, nn.Module) else None
        else:
            raise PyromiError(
                f"GIWAE needs a proposal with a density q(z|x): 'amortized', 'prior', an "
                f"AmortizedNormal or an amortised guide callable guide(x); got {type(proposal).__name__}"
            )
        if self._no_critic:
            self.bound = "ba"
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be an int >= 1, got {num_particles!r}")
        self.num_particles = num_particles

    def parameters(self):
        params = super().parameters()
        if self._trainable_proposal is not None:
            params += [p for p in self._trainable_proposal.parameters() if p.requires_grad]
        return params

    def _negatives(self, observed, k: int):
        """K - 1 negatives per x: reparameterised draws of q (or prior draws), ``(k, N) + shape``."""
        if k == 0:
            return None
        if self.proposal is None:
            return self.adapter.sample_prior(k, observed, score_prior=False).latent
        return self.proposal.sample(self.adapter, observed, k).evaluation.latent

    def terms(self, joint: JointSamples, num_particles: int) -> torch.Tensor:
        """Per-sample GIWAE terms on ``joint`` with K = ``num_particles`` (differentiable)."""
        obs = joint.observed
        z_star = {k: v.unsqueeze(0) for k, v in joint.latent.items()}
        if self.proposal is None:
            log_q_star = joint.log_prior
        else:
            log_q_star = self.proposal.log_prob(self.adapter, z_star, obs)[0]
        pos = self.score(obs, z_star)[0]
        neg_latent = self._negatives(obs, num_particles - 1)
        neg = pos.new_zeros((0, pos.shape[0])) if neg_latent is None else self.score(obs, neg_latent)
        return giwae_terms(log_q_star, joint.log_prior, pos, neg)

    def objective(self, joint):
        return self.terms(joint, self.num_particles).mean()

    @entry_point
    @sharded()
    def evaluate(self, num_samples: int = 1000, num_particles: int | None = None, *,
                 seed: int | None = None, joint: JointSamples | None = None) -> MIEstimate:
        """The bound on ``num_samples`` fresh joint pairs (not used in training), or on ``joint``."""
        k = num_particles or self.num_particles
        t0 = time.perf_counter()
        with self._evaluation_rng(seed, joint), torch.no_grad(), \
                pyro.validation_enabled(False):
            if joint is None:
                joint = self.adapter.sample_joint(num_samples)
            lower = self.terms(joint, k)
        return self._estimate(lower, joint, k, {"proposal": self.bound},
                              {"seconds": time.perf_counter() - t0, "log_K": math.log(k)})


class _ZeroCritic(nn.Module):
    def forward(self, x, z):
        return z.new_zeros(z.shape[:-1])
