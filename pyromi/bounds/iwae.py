"""IWAE sandwich and Barber-Agakov bounds on I(x; z), per joint sample.

References: the K-sample bound on log p(x) and its monotonicity in K (Burda, Grosse &
Salakhutdinov 2016, "Importance Weighted Autoencoders", ICLR, Theorem 1); the upper bound on
log p(x) from one exact posterior sample among K (Sobolev & Vetrov 2019, "Importance Weighted
Hierarchical Variational Inference", NeurIPS); the Barber-Agakov bound (Barber & Agakov 2003, "The
IM algorithm", NeurIPS).

With importance weights ``w(x, z) = p(x, z) / q(z | x)`` and ``ll* = log p(x | z*)``:

* upper bound, K proposal draws z_1..z_K ~ q(z|x):
  ``I_IWAE_U = E[ ll* - LME_{k=1..K} log w(x, z_k) ] >= I``  (``LME`` is a lower bound on log p(x));
* lower bound, the true z* plus K - 1 draws:
  ``I_IWAE_L = E[ ll* - LME(log w(x, z*), log w(x, z_2), ..., log w(x, z_K)) ] <= I``
  (the multi-sample IWHVI form, an upper bound on log p(x); not a harmonic mean);
* Barber-Agakov: ``I_BA = E[ log q(z* | x) - log p(z*) ] <= I`` (= I_IWAE_L at K = 1).

Everything is accumulated in float64 with a streaming log-sum-exp so that K is unbounded in memory.
"""

from __future__ import annotations

import torch

from ..ops import StreamingLogSumExp

__all__ = ["IWAEAccumulator", "ba_terms"]


def ba_terms(log_q_star: torch.Tensor, log_prior_star: torch.Tensor) -> torch.Tensor:
    """Per-sample Barber-Agakov terms ``log q(z*|x) - log p(z*)`` (float64, nats)."""
    return log_q_star.double() - log_prior_star.double()


class IWAEAccumulator:
    """Streams chunks of proposal log-weights for one block of N samples into both IWAE bounds.

    Args:
        num_particles: K, the total number of proposal draws that will be folded in.
        log_likelihood_star: ``log p(x_i | z_i*)``, shape ``(N,)``.
        log_weight_star: ``log w(x_i, z_i*)``, shape ``(N,)``; None for an upper bound only.

    The lower-bound estimator uses z* and the first K - 1 draws; the upper bound all K draws.
    """

    def __init__(
        self,
        num_particles: int,
        log_likelihood_star: torch.Tensor,
        log_weight_star: torch.Tensor | None,
    ) -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles (K) must be >= 1, got {num_particles}")
        self.num_particles = num_particles
        self.ll_star = log_likelihood_star.double()
        self.upper = StreamingLogSumExp()
        self.lower: StreamingLogSumExp | None = None
        self.log_weight_star = None
        if log_weight_star is not None:
            self.log_weight_star = log_weight_star.double()
            self.lower = StreamingLogSumExp()
            self.lower.update(self.log_weight_star.unsqueeze(0))
        self.seen = 0

    def update(self, log_weights: torch.Tensor) -> None:
        """Fold a ``(k_chunk, N)`` chunk of proposal log-weights (draws seen in order)."""
        k = log_weights.shape[0]
        if self.seen + k > self.num_particles:
            raise ValueError("more proposal draws than num_particles were folded in")
        self.upper.update(log_weights)
        if self.lower is not None:
            take = min(k, self.num_particles - 1 - self.seen)
            if take > 0:
                self.lower.update(log_weights[:take])
        self.seen += k

    def upper_terms(self) -> torch.Tensor:
        """Per-sample ``ll* - LME_K log w_k``, shape ``(N,)``: upper-bound terms on I."""
        self._check_complete()
        return self.ll_star - self.upper.logmeanexp()

    def lower_terms(self) -> torch.Tensor:
        """Per-sample ``ll* - LME(log w*, log w_1..w_{K-1})``, shape ``(N,)``: lower-bound terms."""
        self._check_complete()
        if self.lower is None:
            raise ValueError("the lower bound needs log_weight_star (log w at the true z*)")
        return self.ll_star - self.lower.logmeanexp()

    def ess_fraction(self) -> torch.Tensor:
        """Importance-sampling ESS of the K proposal draws divided by K, per sample."""
        return self.upper.ess() / self.num_particles

    def posterior_sample_weight(self) -> torch.Tensor:
        """Normalised weight of z* within the lower-bound estimator, per sample.

        Close to 1 means the proposal rarely lands where the posterior is: the lower bound then
        sits near its cap ``BA + log K``.
        """
        if self.lower is None:
            raise ValueError("no lower-bound estimator")
        return torch.exp(self.log_weight_star - self.lower.lse)

    def _check_complete(self) -> None:
        if self.seen != self.num_particles:
            raise RuntimeError(
                f"only {self.seen} of {self.num_particles} proposal draws were folded in"
            )
