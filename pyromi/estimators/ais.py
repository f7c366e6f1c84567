"""Multi-Sample AIS estimator of I(x; z): pilot-tuned, frozen HMC kernels; coupled lower bound.

For each block of samples: (1) a pilot run on independent forward chains tunes a step size and a
diagonal inverse mass per (level, sample) and, for ``schedule="adaptive"``, measures the spread of
the log-weight increments to place the betas; (2) the tables are frozen; (3) K fresh forward chains
and one backward chain from the true z* run with those kernels; (4) the IWAE formulas on the
extended space give the sandwich.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pyro
import torch
from pyro.ops.stats import fit_generalized_pareto

from ..adapter import JointSamples, ModelAdapter
from ..bounds.ais import ais_bound_terms
from ..proposals.base import Proposal
from ..result import MIEstimate
from .checks import WIDE_SANDWICH, check_finite_terms, divergence_advice, loose_bound_advice
from ..samplers.ais import (
    AISResult,
    AnnealingPath,
    KernelTables,
    default_pilot_grid,
    interpolate_tables,
    pilot_run,
    run_ais,
)
from ..samplers.pyro_kernel import run_ais_with_kernel
from ..samplers.schedules import SCHEDULES, anneal_schedule, equal_length_schedule

__all__ = ["ais_mi", "ais_block", "sample_blocks", "ais_on_path", "plan_kernels", "pareto_khat",
           "default_pilot_steps", "divergence_fraction", "ess_fraction", "PARETO_MIN_DRAWS"]


def default_pilot_steps(num_steps: int) -> int:
    """Pilot levels: ``min(200, max(50, T))``; at most a fifth of the final run's work for T >= 1000."""
    return min(200, max(50, num_steps))


def _check_args(num_particles, num_steps, num_leapfrog, schedule, target_accept):
    if not isinstance(num_particles, int) or isinstance(num_particles, bool) or num_particles < 1:
        raise ValueError(f"num_particles (K, the number of chains) must be an int >= 1, got {num_particles!r}")
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(
            f"num_steps (T, the number of annealing transitions) must be an int >= 1, got {num_steps!r}"
        )
    if not isinstance(num_leapfrog, int) or num_leapfrog < 1:
        raise ValueError(f"num_leapfrog must be an int >= 1, got {num_leapfrog!r}")
    if isinstance(schedule, str) and schedule not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {schedule!r}; choose one of {', '.join(map(repr, SCHEDULES))} or pass "
            "an increasing array of T + 1 betas from 0 to 1"
        )
    if not 0.0 < target_accept < 1.0:
        raise ValueError(f"target_accept must be in (0, 1), got {target_accept}")


def plan_kernels(
    path: AnnealingPath,
    num_steps: int,
    schedule,
    *,
    num_leapfrog: int,
    target_accept: float,
    pilot_steps: int,
    pilot_chains: int,
    sigmoid_rad: float = 4.0,
    beta_min: float = 1e-8,
    adapt_mass: bool = True,
) -> tuple[KernelTables, dict]:
    """Betas and frozen per-level kernels for one block of samples, from a pilot run."""
    T = num_steps
    if not isinstance(schedule, str) or schedule != "adaptive":
        betas = anneal_schedule(schedule, T, rad=sigmoid_rad, beta_min=beta_min)
    if T == 1:  # no transitions: plain importance sampling from pi_0
        n, d = path.num_samples, path.adapter.latent_dim
        dev, dt = path.adapter.device, path.adapter.dtype
        betas = torch.tensor([0.0, 1.0], dtype=torch.float64)
        return KernelTables(betas, torch.ones(2, n, device=dev, dtype=dt), torch.ones(2, n, d, device=dev, dtype=dt)), {}
    if isinstance(schedule, str) and schedule == "adaptive":
        grid = default_pilot_grid(path, pilot_steps, pilot_chains)
    else:
        idx = torch.linspace(0, T, min(T, pilot_steps - 1) + 1).round().long().unique()
        grid = betas[idx]
    pilot = pilot_run(path, grid, pilot_chains, num_leapfrog, target_accept, adapt_mass=adapt_mass)
    if isinstance(schedule, str) and schedule == "adaptive":
        betas = equal_length_schedule(grid, pilot.tilt_std, T)
    tables = interpolate_tables(pilot.tables, betas)
    info = {"pilot_betas": grid, "pilot_acceptance": pilot.acceptance, "pilot_tilt_std": pilot.tilt_std}
    return tables, info


#: fewest draws per sample for a Pareto k-hat (the tail fit uses the largest max(5, ...) of them)
PARETO_MIN_DRAWS = 10


def pareto_khat(log_weights: torch.Tensor) -> torch.Tensor:
    """Pareto shape k-hat of the largest importance weights, per sample (PSIS diagnostic).

    ``log_weights`` is ``(K, N)``: K draws for each of N samples. Fits a generalised Pareto
    distribution (``pyro.ops.stats.fit_generalized_pareto``, Zhang & Stephens as in PSIS) to the
    exceedances of the ``M = max(5, min(K/5, 3 sqrt(K)))`` largest weights over the next one.
    k-hat is invariant to the scale of the weights, so the exceedances are formed as
    ``expm1(log w - log w_threshold)``: a tail spanning hundreds of nats does not underflow.
    ``k > 0.7`` means the log-mean of the weights is unreliable.

    Returns a float64 ``(N,)`` tensor, never NaN. Per sample:

    * a finite k-hat from the fit, when at least 5 of the M exceedances are positive and finite;
    * ``+inf`` (unreliable; arviz's convention) when no tail can be fitted: K < ``PARETO_MIN_DRAWS``
      (10) draws; a log-weight that is NaN or ``+inf``; fewer than 5 positive exceedances (the
      top weights are tied with the threshold, or the finite weights are fewer than 6, the rest
      zero); or exceedances beyond float64 range (the tail spans more than ~700 nats: a few draws
      carry all the weight);
    * ``-inf`` (no tail at all: the log-mean is exact) when the M + 1 largest weights are all equal.
    """
    K, N = log_weights.shape
    inf = float("inf")
    out = torch.full((N,), inf, dtype=torch.float64)
    if K < PARETO_MIN_DRAWS:
        return out
    M = max(5, int(min(K / 5, 3 * math.sqrt(K))))
    lw = log_weights.double().cpu()
    top, _ = lw.topk(M + 1, dim=0)  # descending; NaN sorts first
    for i in range(N):  # post-processing, outside any sampling loop
        col = top[:, i]
        if bool(torch.isnan(col).any()) or bool((col == inf).any()):
            continue  # a NaN or infinite weight: unreliable
        thr = col[-1]
        if bool((col == thr).all()):
            out[i] = -inf  # the largest weights are equal: no tail
            continue
        if thr == -inf:  # fewer than M + 1 non-zero weights: exceedances are the weights themselves
            exceed = (col[:-1] - col[0]).exp()
        else:
            exceed = torch.expm1(col[:-1] - thr)
        exceed = exceed.flip(0)
        ok = (exceed > 0) & torch.isfinite(exceed)
        if int(ok.sum()) < 5 or not bool(torch.isfinite(exceed).all()):
            continue
        try:
            k, _ = fit_generalized_pareto(exceed[ok])
        except (ZeroDivisionError, ValueError, RuntimeError):  # degenerate tail
            continue
        if math.isfinite(k):
            out[i] = float(k)
    return out


def pareto_note(khat: torch.Tensor, num_draws: int) -> str:
    """What the infinite entries of a :func:`pareto_khat` result mean, for ``diagnostics``."""
    if num_draws < PARETO_MIN_DRAWS:
        return (f"pareto_k is +inf for every sample: a tail fit needs K >= {PARETO_MIN_DRAWS} "
                f"chains (K = {num_draws}); judge the weights by ess_fraction and bdmc_gap instead")
    n_pos, n_neg = int((khat == float("inf")).sum()), int((khat == -float("inf")).sum())
    parts = []
    if n_pos:
        parts.append(f"+inf for {n_pos} sample(s): no tail could be fitted because a few chains "
                     "carry all the weight (unreliable, like k > 0.7)")
    if n_neg:
        parts.append(f"-inf for {n_neg} sample(s): the largest weights are all equal (no tail)")
    return "pareto_k is " + "; ".join(parts)


def divergence_fraction(divergences: int, num_chains: int, num_samples: int, num_steps: int) -> float:
    """Divergent HMC transitions over all transitions: ``num_chains`` chains for each of
    ``num_samples`` samples make ``num_steps - 1`` transitions each (0.0 when there are none)."""
    moves = num_chains * num_samples * max(num_steps - 1, 0)
    return divergences / moves if moves > 0 else 0.0


def ess_fraction(log_weights: torch.Tensor) -> torch.Tensor:
    """Importance-weight ESS over K, per sample: ``exp(2 LSE(lw) - LSE(2 lw)) / K`` (never NaN: 0
    for a sample whose weights are all zero, all ``-inf``, or not finite)."""
    K = log_weights.shape[0]
    lw = log_weights.double()
    finite = torch.isfinite(lw) | (lw == -float("inf"))
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / K
    bad = ~finite.all(0) | torch.isnan(ess)
    return torch.where(bad, torch.zeros_like(ess), ess)


def ais_block(
    adapter: ModelAdapter,
    observed: dict[str, torch.Tensor],
    latent_star: dict[str, torch.Tensor] | None,
    start: Proposal | None,
    num_steps: int,
    schedule,
    *,
    num_particles: int,
    num_leapfrog: int,
    target_accept: float,
    pilot_steps: int,
    pilot_chains: int,
    sigmoid_rad: float = 4.0,
    beta_min: float = 1e-8,
    progress: bool = False,
    hook=None,
    adapt_mass: bool = True,
    kernel=None,
) -> tuple[AISResult, KernelTables]:
    """Pilot, freeze, and run AIS for one block of samples.

    ``latent_star`` (exact posterior samples z*, ``(n,) + local_shape`` per site) adds the backward
    chain; None runs forward chains only.
    """
    path = AnnealingPath(adapter, observed, start)
    return ais_on_path(
        path, latent_star, num_steps, schedule, num_particles=num_particles,
        num_leapfrog=num_leapfrog, target_accept=target_accept, pilot_steps=pilot_steps,
        pilot_chains=pilot_chains, sigmoid_rad=sigmoid_rad, beta_min=beta_min, progress=progress,
        hook=hook, adapt_mass=adapt_mass, kernel=kernel,
    )


def ais_on_path(
    path: AnnealingPath,
    latent_star: dict[str, torch.Tensor] | None,
    num_steps: int,
    schedule,
    *,
    num_particles: int,
    num_leapfrog: int,
    target_accept: float,
    pilot_steps: int,
    pilot_chains: int,
    sigmoid_rad: float = 4.0,
    beta_min: float = 1e-8,
    progress: bool = False,
    hook=None,
    adapt_mass: bool = True,
    kernel=None,
) -> tuple[AISResult, KernelTables]:
    """Pilot, freeze and run AIS on any annealing path (the model's, or an energy-based one)."""
    adapter, observed = path.adapter, path.observed
    with pyro.validation_enabled(False):
        tables, _ = plan_kernels(
            path, num_steps, schedule, num_leapfrog=num_leapfrog, target_accept=target_accept,
            pilot_steps=pilot_steps, pilot_chains=pilot_chains, sigmoid_rad=sigmoid_rad,
            beta_min=beta_min, adapt_mass=adapt_mass,
        )
        u_star = None
        if latent_star is not None:
            with torch.no_grad():
                u_star, _ = adapter.unconstrain(
                    {k: v.unsqueeze(0) for k, v in latent_star.items()}, observed
                )
            u_star = u_star[0]
        if kernel is None:
            res = run_ais(path, tables, num_particles, num_leapfrog, u_star, progress=progress, hook=hook)
        else:
            res = run_ais_with_kernel(path, tables, num_particles, kernel, u_star)
    check_nan = getattr(path, "check_nan", None)
    if check_nan is not None:
        check_nan()
    return res, tables


def sample_blocks(joint: JointSamples, num_particles: int, max_batch: int):
    """Blocks of the N samples of ``joint`` holding at most ``max_batch`` (chain, sample) pairs,
    K forward chains plus one backward chain per sample: returns the block size and a list of
    ``(start, stop, observed, latent)`` with the sites sliced to ``[start:stop]``."""
    n = joint.num_samples
    n_chunk = max(1, min(n, max_batch // (num_particles + 1)))
    blocks = [
        (a, min(a + n_chunk, n),
         {k: v[a:a + n_chunk] for k, v in joint.observed.items()},
         {k: v[a:a + n_chunk] for k, v in joint.latent.items()})
        for a in range(0, n, n_chunk)
    ]
    return n_chunk, blocks


def ais_mi(
    adapter: ModelAdapter,
    joint: JointSamples,
    *,
    start: Proposal | None = None,
    num_particles: int = 16,
    num_steps: int = 1000,
    schedule="adaptive",
    num_leapfrog: int = 10,
    target_accept: float = 0.65,
    pilot_steps: int | None = None,
    pilot_chains: int | None = None,
    sigmoid_rad: float = 4.0,
    beta_min: float = 1e-8,
    max_batch: int = 2**16,
    progress: bool = False,
    hook: Callable[[int, dict], None] | None = None,
    adapt_mass: bool = True,
    kernel=None,
) -> MIEstimate:
    """Multi-Sample AIS sandwich on I(x; z) (nats) for the N pairs of ``joint``.

    Args:
        start: pi_0: the prior (None) or a proposal q(z|x) (e.g. a trained AmortizedNormal).
        num_particles: K forward chains per sample; the lower bound uses 1 backward + K - 1.
        num_steps: T annealing transitions (T = 1 is importance sampling from pi_0).
        schedule: ``"adaptive"`` (default), ``"geometric"``, ``"sigmoid"``, ``"linear"`` or an
            array of T + 1 increasing betas from 0 to 1.
        num_leapfrog: leapfrog steps per HMC transition.
        target_accept: acceptance rate the pilot tunes step sizes toward.
        pilot_steps: levels of the pilot run (default ``min(200, max(50, T))``);
            pilot_chains: its chains (default max(K, 16)).
        max_batch: most (chain, sample) pairs per block of samples.
        kernel: a Pyro ``HMC``/``NUTS`` object: run the chains one by one with that kernel class
            (same frozen step sizes and masses) instead of the vectorised kernel. Slow.
    """
    _check_args(num_particles, num_steps, num_leapfrog, schedule, target_accept)
    t0 = time.perf_counter()
    K, T = num_particles, num_steps
    pilot_chains = pilot_chains or max(K, 16)
    pilot_steps = pilot_steps or default_pilot_steps(T)
    n_chunk, blocks = sample_blocks(joint, K, max_batch)
    lower_terms, upper_terms, ess, khat, gap = [], [], [], [], []
    acc, acc_b, eps_tables, betas_list, div, inc_var = [], [], [], [], [], []
    log_w_all, log_w_bwd = [], []
    for a, b, obs, z_star in blocks:
        res, tables = ais_block(adapter, obs, z_star, start, T, schedule, num_particles=K,
                                num_leapfrog=num_leapfrog, target_accept=target_accept,
                                pilot_steps=pilot_steps, pilot_chains=pilot_chains,
                                sigmoid_rad=sigmoid_rad, beta_min=beta_min, progress=progress,
                                hook=hook, adapt_mass=adapt_mass, kernel=kernel)
        ll_star = joint.log_likelihood[a:b].double()
        lo, up = ais_bound_terms(ll_star, res.log_weights, res.log_weight_backward)
        lower_terms.append(lo)
        upper_terms.append(up)
        lw = res.log_weights
        ess.append(ess_fraction(lw))
        khat.append(pareto_khat(lw))
        g = res.log_weight_backward - lw.mean(0)  # NaN only if both are -inf: no finite chain
        gap.append(torch.where(torch.isnan(g), torch.full_like(g, float("inf")), g))
        acc.append(res.acceptance)
        acc_b.append(res.acceptance_backward)
        eps_tables.append(tables.step_size)
        betas_list.append(tables.betas)
        div.append(res.divergences)
        inc_var.append(res.log_weight_increment_var)
        log_w_all.append(lw)
        log_w_bwd.append(res.log_weight_backward)
    lower = torch.cat(lower_terms)
    upper = torch.cat(upper_terms)
    check_finite_terms(
        "ais", {"lower": lower, "upper": upper},
        "Start the chains from a proposal that covers the posterior (start=AmortizedNormal(...)), "
        "or use more chains (num_particles=).",
    )
    est_lower, est_upper = float(lower.mean()), float(upper.mean())
    n_div = int(torch.cat(div).sum())
    width = est_upper - est_lower
    rel = width / max(abs(0.5 * (est_upper + est_lower)), 1e-12)
    wide = rel > WIDE_SANDWICH
    diagnostics = {
        "acceptance": torch.cat(acc, 1),  # (T - 1, N) forward chains, per level
        "acceptance_backward": None if acc_b[0] is None else torch.cat(acc_b, 1),
        # None at T = 1: importance sampling makes no HMC transition
        "acceptance_mean": float(torch.cat(acc, 1).mean()) if T > 1 else None,
        "step_size": torch.cat(eps_tables, 1),  # (T + 1, N)
        "betas": betas_list[0] if len(betas_list) == 1 else torch.stack(betas_list),
        "ess_fraction": torch.cat(ess),
        "ess_fraction_mean": float(torch.cat(ess).mean()),
        "pareto_k": torch.cat(khat),
        "bdmc_gap": torch.cat(gap),  # log w_bwd - mean log w_fwd: single-chain sandwich width
        "bdmc_gap_mean": float(torch.cat(gap).mean()),
        "divergences": n_div,
        # of the (K + 1) N (T - 1) transitions; heavy divergence comes with advice (checks.py)
        "divergence_fraction": divergence_fraction(n_div, K + 1, joint.num_samples, T),
        # (T, N): spread of each log-weight increment across forward chains; spikes mark levels
        # where the schedule is too coarse
        "log_weight_increment_var": torch.cat(inc_var, 1),
        "log_weights": torch.cat(log_w_all, 1),  # (K, N) forward chains
        "log_weight_backward": torch.cat(log_w_bwd),  # (N,) backward chain from z*
        "relative_width": rel,
        "wide_sandwich": wide,
        "seconds": time.perf_counter() - t0,
    }
    k_all = diagnostics["pareto_k"]
    if not bool(torch.isfinite(k_all).all()):
        diagnostics["pareto_k_note"] = pareto_note(k_all, K)
    # a wide sandwich and a negative lower bound each get their note (both when both hold)
    loose_bound_advice("ais", est_lower, est_upper, diagnostics, stacklevel=3)
    divergence_advice("ais", adapter, diagnostics)
    settings = {
        "num_steps": T,
        "schedule": schedule if isinstance(schedule, str) else "array",
        "start": repr(start) if start is not None else "prior",
        "num_leapfrog": num_leapfrog,
        "kernel": "vectorised HMC" if kernel is None else f"Pyro {type(kernel).__name__}, per chain",
        "target_accept": target_accept,
        "pilot_steps": pilot_steps,
        "pilot_chains": pilot_chains,
        "sample_chunk": n_chunk,
        "device": str(adapter.device),
        "dtype": str(adapter.dtype),
    }
    return MIEstimate.from_terms(
        "ais", lower, upper, num_particles=K, settings=settings, diagnostics=diagnostics,
        observed=tuple(adapter.observed_names), latent=tuple(adapter.latent_names),
    )
