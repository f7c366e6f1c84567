"""Importance-sampling MI estimators: the IWAE sandwich (Burda et al. 2016, Theorem 1; Sobolev &
Vetrov 2019) and Barber-Agakov (Barber & Agakov 2003); the formulas are in :mod:`pyromi.bounds.iwae`.

The loop is vectorised over samples and particles: each model pass evaluates a block of
``k_chunk x n_chunk`` (particle, sample) pairs with ``k_chunk * n_chunk <= max_batch``, so memory
is bounded for any K (K = 1e5 and beyond) while per-sample work stays independent (samples can be
sharded across processes without changing the result's meaning).
"""

from __future__ import annotations

import time

import pyro
import torch

from .._progress import ProgressBar, check_progress
from ..adapter import JointSamples, ModelAdapter, ModelEvaluation
from ..bounds.iwae import IWAEAccumulator, ba_terms
from ..errors import DensityError
from ..proposals.base import Proposal
from ..result import MIEstimate
from .checks import check_finite_terms, loose_bound_advice

__all__ = ["importance_mi"]


def _block(observed: dict[str, torch.Tensor], a: int, b: int) -> dict[str, torch.Tensor]:
    return {k: v[a:b] for k, v in observed.items()}


def log_q_at_posterior_samples(
    adapter: ModelAdapter, proposal: Proposal, joint: JointSamples
) -> torch.Tensor:
    """``log q(z_i* | x_i)`` for the N joint draws, shape ``(N,)`` (float64)."""
    latent = {k: v.unsqueeze(0) for k, v in joint.latent.items()}
    ev = ModelEvaluation(
        latent,
        joint.log_prior.unsqueeze(0),
        joint.log_likelihood.unsqueeze(0),
        torch.zeros_like(joint.log_prior).unsqueeze(0),
    )
    with torch.no_grad():
        return proposal.log_prob(adapter, latent, joint.observed, ev)[0].double()


def importance_mi(
    adapter: ModelAdapter,
    proposal: Proposal,
    joint: JointSamples,
    *,
    bound: str = "iwae",
    num_particles: int = 1000,
    max_batch: int = 2**18,
    progress: bool | None = None,
) -> MIEstimate:
    """IWAE sandwich (``bound="iwae"``) or Barber-Agakov lower bound (``bound="ba"``) on I(x; z).

    Args:
        adapter: the validated model.
        proposal: q(z | x), already bound to ``adapter``.
        joint: the N evaluation pairs (x_i, z_i*) ~ p(x, z).
        num_particles: K proposal draws per sample (IWAE only).
        max_batch: most (particle, sample) pairs evaluated in one model pass.
        progress: a bar over the model passes on stderr (``None``, default: once the run has
            taken a few seconds, e.g. at large K; ``True``: from the start; ``False``: never).
    """
    if bound not in ("iwae", "ba"):
        raise ValueError(f"importance_mi computes bound='iwae' or 'ba', got {bound!r}")
    if not isinstance(num_particles, int) or num_particles < 1:
        raise ValueError(f"num_particles (K) must be a positive int, got {num_particles!r}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    check_progress(progress)
    t0 = time.perf_counter()
    n = joint.num_samples
    ll_star = joint.log_likelihood.double()
    log_q_star = log_q_at_posterior_samples(adapter, proposal, joint)
    lw_star = joint.log_density_star.double() - log_q_star
    settings = {"proposal": repr(proposal), "device": str(adapter.device), "dtype": str(adapter.dtype)}
    names = dict(observed=tuple(adapter.observed_names), latent=tuple(adapter.latent_names))

    if bound == "ba":
        terms = ba_terms(log_q_star, joint.log_prior)
        check_finite_terms("ba", {"lower": terms}, "")
        diagnostics = {"seconds": time.perf_counter() - t0}
        loose_bound_advice("ba", float(terms.mean()), None, diagnostics)
        return MIEstimate.from_terms(
            "ba", terms, None, num_particles=None,
            settings=settings, diagnostics=diagnostics, **names,
        )

    n_chunk = min(n, max_batch)
    k_chunk = max(1, min(num_particles, max_batch // n_chunk))
    blocks = [(a, min(a + n_chunk, n)) for a in range(0, n, n_chunk)]
    passes = len(blocks) * -(-num_particles // k_chunk)
    upper_terms, lower_terms, ess, zstar_w = [], [], [], []
    bad = torch.zeros((), dtype=torch.bool, device=ll_star.device)
    with torch.no_grad(), pyro.validation_enabled(False), \
            ProgressBar(passes, f"iwae K={num_particles}", progress) as bar:
        for a, b in blocks:
            obs = _block(joint.observed, a, b)
            acc = IWAEAccumulator(num_particles, ll_star[a:b], lw_star[a:b])
            done = 0
            while done < num_particles:
                k = min(k_chunk, num_particles - done)
                lw = proposal.sample(adapter, obs, k).log_weights
                bad |= torch.isnan(lw).any() | (lw == float("inf")).any()
                acc.update(lw)
                done += k
                bar.update(1)
            upper_terms.append(acc.upper_terms())
            lower_terms.append(acc.lower_terms())
            ess.append(acc.ess_fraction())
            zstar_w.append(acc.posterior_sample_weight())
    if bool(bad):
        raise DensityError(
            "a proposal draw gave a NaN or +inf log importance weight (log p(x, z) - log q(z|x)). "
            "Check that the proposal's support matches the latent sites' supports and that the "
            "model's log density is finite wherever q puts mass."
        )
    upper = torch.cat(upper_terms)
    lower = torch.cat(lower_terms)
    ess = torch.cat(ess)
    zstar_w = torch.cat(zstar_w)
    diagnostics = {
        "ess_fraction_mean": float(ess.mean()),
        "ess_fraction_min": float(ess.min()),
        "ess_fraction": ess,
        "posterior_sample_weight_mean": float(zstar_w.mean()),
        "ba_lower": float(ba_terms(log_q_star, joint.log_prior).mean()),
        "model_passes": passes,
        "seconds": time.perf_counter() - t0,
    }
    settings.update(max_batch=max_batch, particle_chunk=k_chunk, sample_chunk=n_chunk)
    check_finite_terms(
        "iwae", {"lower": lower, "upper": upper},
        "Use more particles (num_particles=) or a proposal q(z|x) that covers the posterior "
        "(guide=AmortizedNormal(...) trained with fit_proposal), or bound='ais'.",
    )
    loose_bound_advice("iwae", float(lower.mean()), float(upper.mean()), diagnostics)
    return MIEstimate.from_terms(
        "iwae", lower, upper, num_particles=num_particles, settings=settings,
        diagnostics=diagnostics, **names,
    )
