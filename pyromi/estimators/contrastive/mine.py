"""MINE lower bounds (Donsker-Varadhan and NWJ / MINE-F) with a trained critic."""

from __future__ import annotations

import math
import time

import pyro
import torch

from ..._state import warn as _warn
from ..._state import entry_point
from ...adapter import JointSamples
from ...bounds.contrastive import giwae_terms, mine_dv, mine_f
from ...distributed import sharded
from ...result import MIEstimate
from ..ais import pareto_khat
from .training import _CriticTrainer

__all__ = ["MINE"]


class MINE(_CriticTrainer):
    """MINE lower bounds: ``variant="dv"`` (Donsker-Varadhan) or ``"f"`` (NWJ / MINE-F).

    Product pairs pair each x with fresh prior draws z' ~ p(z). ``ema_rate`` (DV only) uses MINE's
    moving-average correction of the gradient of the log-partition term.
    """

    def __init__(self, model, observed, latent=None, *, variant: str = "dv",
                 ema_rate: float | None = None, num_particles: int = 1, **kw) -> None:
        super().__init__(model, observed, latent, **kw)
        if variant not in ("dv", "f"):
            raise ValueError(f"variant must be 'dv' or 'f', got {variant!r}")
        self.variant = variant
        self.bound = "mine_dv" if variant == "dv" else "mine_f"
        self.ema_rate = ema_rate
        self._ema = None
        self.num_particles = num_particles

    def scores(self, joint: JointSamples, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        obs = joint.observed
        pos = self.score(obs, {n: v.unsqueeze(0) for n, v in joint.latent.items()})[0]
        prior = self.adapter.sample_prior(k, obs, score_prior=False).latent
        return pos, self.score(obs, prior)

    def objective(self, joint):
        pos, neg = self.scores(joint, self.num_particles)
        if self.variant == "f":
            return mine_f(pos, neg)
        if self.ema_rate is None:
            return mine_dv(pos, neg)
        mean_exp = torch.exp(neg.double()).mean()
        self._ema = mean_exp.detach() if self._ema is None else (
            (1 - self.ema_rate) * self._ema + self.ema_rate * mean_exp.detach()
        )
        # gradient of log E e^T estimated with the moving average in the denominator (MINE)
        surrogate = pos.double().mean() - mean_exp / self._ema
        value = mine_dv(pos, neg).detach()
        return surrogate - surrogate.detach() + value

    @entry_point
    @sharded()
    def evaluate(self, num_samples: int = 1000, num_particles: int = 16, *,
                 seed: int | None = None, joint: JointSamples | None = None,
                 max_khat: float = 0.7) -> MIEstimate:
        """A valid lower bound on fresh pairs: N joint pairs (or ``joint``), each x with K fresh
        prior draws z' for the product of marginals.

        * MINE-F: per sample ``T(x_i, z_i*) - mean_k e^{T(x_i, z'_ik) - 1}``, unbiased for I_F(T).
        * MINE-DV: the log-partition ``log E_{p(x)p(z)} e^T`` is estimated on an *independent* set
          of N x K product pairs, giving the shift ``c = 1 - log Z``; then per sample
          ``T(x_i, z_i*) + c - mean_k e^{T(x_i, z'_ik) + c - 1}``, an unbiased estimate of the NWJ
          bound of the shifted critic ``T + c``, which is <= I_DV(T) <= I (equal to I_DV(T) at the
          exact c). The classic plug-in ``mean T(joint) - log mean e^T(product)`` is biased upward
          (it can exceed the truth), so it is only reported, as ``diagnostics["dv_plugin"]``.

        **Reliability check.** Both estimates hinge on a mean of ``e^T`` over product pairs, which
        is dominated by pairs of probability ~ e^-I: with M product pairs it is reliable only when
        the weights are not heavy-tailed and the value is below ~log M (McAllester & Stratos 2020:
        no sample-based lower bound certifies much more than log M). When the Pareto k-hat of the
        pooled product weights exceeds ``max_khat`` (PSIS's 0.7) or the value exceeds log M, a
        typical realisation can land far *above* the truth, so the DV/F number is not reported:
        ``lower`` is then the contrastive (InfoNCE) bound of the same critic with the same K
        negatives per x, ``T(x_i, z_i*) - LME(T(x_i, z_i*), T(x_i, z'_i1..K))`` (valid for any
        critic, at most log(K + 1)), with a warning; the DV/F estimate, k-hat and log M are in
        ``diagnostics`` (``"mine_value"``, ``"partition_khat"``, ``"log_product_pairs"``,
        ``"reported"``).
        """
        t0 = time.perf_counter()
        with self._evaluation_rng(seed, joint), torch.no_grad(), \
                pyro.validation_enabled(False):
            if joint is None:
                joint = self.adapter.sample_joint(num_samples)
            pos, neg = self.scores(joint, num_particles)
            if self.variant == "dv":
                other = self.adapter.sample_joint(joint.num_samples)
                _, neg_other = self.scores(other, num_particles)
        pos, neg = pos.double(), neg.double()
        diagnostics = {"seconds": 0.0}
        if self.variant == "f":
            lower = pos - torch.exp(neg - 1.0).mean(0)
        else:
            flat = neg_other.double().flatten()
            log_z = torch.logsumexp(flat, 0) - math.log(flat.numel())
            shift = 1.0 - log_z
            lower = pos + shift - torch.exp(neg + shift - 1.0).mean(0)
            diagnostics["dv_plugin"] = float(mine_dv(pos, neg))
            diagnostics["log_partition"] = float(log_z)
        # reliability of the product-pair means that the value hinges on (see the docstring)
        product_sets = [neg] if self.variant == "f" else [neg, neg_other.double()]
        khat = max(float(pareto_khat(t.flatten().unsqueeze(1))[0]) for t in product_sets)
        log_m = math.log(min(t.numel() for t in product_sets))
        value = float(lower.mean())
        diagnostics.update(mine_value=value, partition_khat=khat, log_product_pairs=log_m)
        heavy_tail = not khat <= max_khat
        unreliable = heavy_tail or value > log_m
        if unreliable:
            lower = giwae_terms(torch.zeros_like(pos), torch.zeros_like(pos), pos, neg)
        diagnostics["reported"] = "infonce_fallback" if unreliable else self.bound
        diagnostics["seconds"] = time.perf_counter() - t0
        est = self._estimate(lower, joint, num_particles, {"variant": self.variant}, diagnostics)
        msg = None
        if unreliable:
            why = (f"the Pareto k-hat of the product weights e^T is {khat:.2f} > {max_khat}" if heavy_tail else
                   f"it exceeds log M = {log_m:.2f}, the most that M = {math.exp(log_m):.0f} product pairs can certify")
            msg = (
                f"{self.bound}: the estimate {value:.4g} nats is unreliable ({why}): its mean of e^T over "
                "product pairs is dominated by rare pairs and can land far above the truth. Reporting "
                f"instead the contrastive (InfoNCE) bound of the same critic with K = {num_particles} "
                f"negatives, {est.lower:.4g} nats (valid, at most log(K + 1) = {math.log(num_particles + 1):.2f}). "
                "For a tight bound at high MI use bound='mine_ais' (a log-partition per x by annealed "
                "importance sampling) or bound='giwae'."
            )
        elif not est.lower_se < max(1.0, 0.5 * abs(est.lower)):
            msg = (
                f"the {self.bound} estimate {est.lower:.4g} nats has a standard error of "
                f"{est.lower_se:.3g}: a few product pairs (x, z') with a large e^T dominate it. The "
                "critic's log-partition log E_{p(x)p(z)} e^T needs about e^I samples to estimate, "
                "so at high MI this bound is unusable (though still valid). Use bound='mine_ais', "
                "which estimates a log-partition per x by annealed importance sampling."
            )
        if msg is not None:
            est.diagnostics["advice"] = msg
            _warn(msg)
        return est
