"""Multi-Sample annealed importance sampling on the packed unconstrained latent space.

Path (geometric): ``f_t(u) = pi_0(u)^(1 - beta_t) * p(x, u)^beta_t``, written as
``log f_t = base + beta_t * tilt`` with ``base = log pi_0(u)`` and
``tilt = log p(x, z(u)) + log|dz/du| - log pi_0(u)`` (for the prior start, ``tilt = log p(x | z)``).

* **forward chains** start at ``u_0 ~ pi_0``; at t = 1..T add ``(beta_t - beta_{t-1}) tilt(u)`` to the
  log-weight at the current point, then move with the HMC kernel that leaves ``f_t`` invariant
  (the last move is skipped). ``E[w] = p(x)``.
* the **backward chain** starts at the true ``u*`` (an exact posterior sample) and runs the same
  loop in reverse: at t = T..1 add the level-t increment at the current point, then move with the
  kernel of level t - 1. ``E[1 / w] = 1 / p(x)``.

Forward and backward chains run together in one ``(C, N, D)`` tensor: chain c at loop iteration i
sits at level i (forward) or T + 1 - i (backward), so step sizes, masses and betas are gathered per
chain from frozen per-level tables. Kernels are fixed before the run (tuned by :func:`pilot_run` on
independent chains and shared by forward and backward chains), which keeps both bounds valid. Each
transition draws its step size uniformly from ``[(1 - j) eps, eps]`` independently of the state
(``step_jitter`` j): a fixed mixture of reversible kernels, itself reversible, so it is its own
reversal as the backward chain needs.

Step sizes are capped at a fraction of the leapfrog stability limit ``2 / sqrt(lambda_max)``
(``lambda_max``: the largest curvature of ``-log f_t`` in mass-scaled coordinates), measured in the
pilot (:func:`curvature_probe`, and the curvature along the pilot trajectories): acceptance-rate
targeting alone settles near that limit in few dimensions, and its noise carried a share of the
levels past it, where every trajectory diverges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import pyro
import torch

from ..adapter import ModelAdapter
from ..errors import DensityError
from ..proposals.base import PriorProposal, Proposal
from .hmc import DensityTerms, Rider, TemperedState, drive, hmc_step, tempered_state

__all__ = ["AnnealingPath", "KernelTables", "AISResult", "pilot_run", "interpolate_tables", "run_ais",
           "curvature_probe", "max_curvature", "STABILITY_FRACTION", "STEP_JITTER"]


class AnnealingPath:
    """The geometric path from ``pi_0`` (prior or a proposal q(z|x)) to the posterior, for N samples."""

    def __init__(
        self,
        adapter: ModelAdapter,
        observed: dict[str, torch.Tensor],
        start: Proposal | None = None,
    ) -> None:
        self.adapter = adapter
        self.observed = observed
        self.start = start if start is not None else PriorProposal()
        self.num_samples = next(iter(observed.values())).shape[0]
        self._prior = isinstance(self.start, PriorProposal)
        # NaN watch (device tensors, no host synchronisation in the annealing loop): per batch
        # shape (pilot and final chains differ), a () flag and the last points that had a NaN
        self._nan_watch: dict[torch.Size, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._box: tuple[torch.Tensor, torch.Tensor] | None = None

    def _watch_nan(self, u: torch.Tensor, terms: DensityTerms, saturated: torch.Tensor | None = None) -> None:
        """Remember whether ``base + tilt`` was NaN at a plausible point, and where.

        A NaN in any site's log density (or in a proposal's log q) makes the sum NaN. Plausible
        points lie in the box spanned by the first batch evaluated (the start draws), widened by
        ten times its width on each side, coordinate by coordinate. A diverging leapfrog
        trajectory that flies off to |u| ~ 1e3..1e7, where float arithmetic itself gives NaN
        (``exp(u) = inf`` for a log-normal latent, ``(z + 1) - (z - 1) = 0``), is a rejected move,
        not a NaN of the model (HMC rejects every non-finite energy); non-finite positions are
        never plausible. Nor is a point where some ``z = T(u)`` is not representable
        (``saturated``: non-finite, or rounded onto its support's boundary, ``exp(-100) = 0`` in
        float32, where a log-normal density is NaN): the density there is the float artefact of a
        far ``u``, and the move is rejected as a divergence.
        """
        ud = u.detach()
        if self._box is None:
            flat = ud.reshape(-1, ud.shape[-1])
            ok = torch.isfinite(flat).all(-1)
            flat = flat[ok] if bool(ok.any()) else torch.zeros_like(flat[:1])
            lo, hi = flat.min(0).values, flat.max(0).values
            pad = 10.0 * (hi - lo) + 1.0
            self._box = (lo - pad, hi + pad)
        inside = ((ud >= self._box[0]) & (ud <= self._box[1])).all(-1)
        hit = torch.isnan(terms.base.detach() + terms.tilt.detach()) & inside
        if saturated is not None:
            hit = hit & ~saturated
        seen = hit.any()
        prev = self._nan_watch.get(u.shape)
        if prev is None:
            self._nan_watch[u.shape] = (seen, u.detach(), hit)
        else:
            self._nan_watch[u.shape] = (prev[0] | seen, torch.where(seen, u.detach(), prev[1]),
                                        torch.where(seen, hit, prev[2]))

    def check_nan(self) -> None:
        """Raise :class:`DensityError` naming the site(s) whose log density was NaN at a point the
        chains visited or proposed (HMC rejects such moves, but a NaN density means the model is
        undefined there, so no bound computed on it can be trusted)."""
        bad: list[str] = []
        for seen, u, at in self._nan_watch.values():
            if not bool(seen):
                continue
            with torch.no_grad(), pyro.validation_enabled(False):
                ev = self.adapter.log_density_unconstrained(u, self.observed)
            bad += [f"site '{name}'" for name, lp in (ev.site_log_probs or {}).items()
                    if bool((torch.isnan(lp) & at).any()) and f"site '{name}'" not in bad]
            if not bad:
                bad = ["the proposal's log q(z|x)" if not self._prior else "the model"]
        if bad:
            raise DensityError(
                f"the log density of {' and '.join(bad)} was NaN at latent values the annealing "
                "chains reached (the model is undefined on part of the latent space, e.g. a "
                "location computed as NaN, sqrt or log of a negative number). Make the site's "
                "parameters finite for every value the latents can take."
            )

    def density_terms(self, u: torch.Tensor) -> DensityTerms:
        """``(base, tilt)`` at packed unconstrained points ``u`` of shape ``(C, N, D)``."""
        ev = self.adapter.log_density_unconstrained(u, self.observed)
        log_prior_u = ev.log_prior + ev.log_abs_det_jacobian
        if self._prior:
            terms = DensityTerms(log_prior_u, ev.log_likelihood)
        else:
            log_q_u = self.start.log_prob_unconstrained(self.adapter, u, self.observed, ev)
            terms = DensityTerms(log_q_u, log_prior_u + ev.log_likelihood - log_q_u)
        self._watch_nan(u, terms, ev.saturated)
        return terms

    def sample_start(self, num_chains: int) -> torch.Tensor:
        """``u_0 ~ pi_0``, shape ``(num_chains, N, D)``."""
        return self.start.sample_unconstrained(self.adapter, self.observed, num_chains).detach()


class KernelTables(NamedTuple):
    """Frozen per-level HMC settings: ``step_size (L, N)``, ``inv_mass (L, N, D)`` at ``betas (L,)``."""

    betas: torch.Tensor
    step_size: torch.Tensor
    inv_mass: torch.Tensor


class PilotResult(NamedTuple):
    tables: KernelTables  # on the pilot grid
    tilt_std: torch.Tensor  # (G,) spread of the tilt across chains, mean over samples
    acceptance: torch.Tensor  # (G, N)
    stability_limit: torch.Tensor | None = None  # (G, N) 2 / sqrt(curvature); None without a cap


#: default fraction of the leapfrog stability limit ``2 / sqrt(lambda_max)`` that caps the step size
STABILITY_FRACTION = 0.8
#: default step-size jitter of the HMC transitions (pilot and final run): each transition's step size
#: is drawn uniformly from ``[(1 - STEP_JITTER) eps, eps]`` (see :func:`~pyromi.samplers.hmc.hmc_step`)
STEP_JITTER = 0.6


def curvature_probe(
    state: TemperedState,
    beta: torch.Tensor,
    inv_mass: torch.Tensor,
    start: torch.Tensor,
    step: torch.Tensor,
    iterations: int = 2,
) -> Rider:
    """Largest curvature of ``-log f_beta`` in mass-scaled coordinates, per chain, by Lanczos.

    In the coordinates ``x = u / sqrt(inv_mass)``, in which the leapfrog integrator runs with unit
    mass, the Hessian of ``-log f_beta`` is ``H_x = S H S``, ``S = diag(sqrt(inv_mass))``; a leapfrog
    trajectory is stable only if ``step_size < 2 / sqrt(lambda_max(H_x))`` (for a Gaussian target
    exactly so, and beyond it the energy error grows geometrically with the number of steps).

    ``iterations`` Lanczos steps from ``start`` (``(C, N, D)``, x-units) build a Krylov space per
    chain at the positions of ``state``; each Hessian-vector product is a finite difference of the
    gradients at ``u`` and ``u + step * S v`` (``step`` broadcasts against ``(C, N)``), so it needs
    one model pass and no second-order autograd. A generator (:data:`~pyromi.samplers.hmc.Rider`):
    it yields the points it needs and, at the end, returns ``(lambda, ritz)``: the largest Ritz value
    ``(C, N)`` (a lower estimate of ``lambda_max``, exact once the Krylov space holds its
    eigenvector; 0 where a product was not finite) and its Ritz vector ``(C, N, D)``, the warm start
    of the next level. Run it with :func:`~pyromi.samplers.hmc.drive`, or as the ``rider`` of an
    :func:`~pyromi.samplers.hmc.hmc_step`, whose leapfrog passes then carry its probes.
    """
    s = inv_mass.sqrt()
    h = torch.as_tensor(step, dtype=state.u.dtype, device=state.u.device)
    h = h.unsqueeze(-1) if h.dim() > 0 else h
    g0 = state.grad_log_density(beta)
    dim = state.u.shape[-1]

    def unit(v):
        return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)

    v = unit(start)
    basis, alphas, offdiag = [], [], []
    ok = torch.ones_like(state.base, dtype=torch.bool)
    steps = max(1, min(iterations, dim))
    for j in range(steps):
        probe = yield state.u + h * s * v
        w = -s * (probe.grad_log_density(beta) - g0) / h  # H_x v
        ok = ok & torch.isfinite(w).all(-1)
        w = torch.where(ok.unsqueeze(-1), w, torch.zeros_like(w))
        alphas.append((w * v).sum(-1))
        basis.append(v)
        if j + 1 < steps:
            for q in basis:  # full re-orthogonalisation (a handful of vectors)
                w = w - (w * q).sum(-1, keepdim=True) * q
            b = w.norm(dim=-1)
            # breakdown (the Krylov space is invariant): go on from a random orthogonal vector with
            # a zero coupling, so that the Ritz values stay those of the space found so far
            tiny = b <= 1e-6 * alphas[0].abs().clamp_min(1e-30)
            r = torch.randn_like(w)
            for q in basis:
                r = r - (r * q).sum(-1, keepdim=True) * q
            v = torch.where(tiny.unsqueeze(-1), unit(r), unit(w))
            offdiag.append(torch.where(tiny, torch.zeros_like(b), b))
    if len(basis) == 1:
        lam, ritz = alphas[0], basis[0]
    elif len(basis) == 2:  # closed form of the 2 x 2 tridiagonal (a b; b c): no batched eigh
        a, c, b = alphas[0], alphas[1], offdiag[0]
        half = 0.5 * (a - c)
        lam = 0.5 * (a + c) + torch.sqrt(half * half + b * b)
        # eigenvector (b, lam - a), or (lam - c, b): the better conditioned of the two
        first = half >= 0
        y0 = torch.where(first, lam - c, b)
        y1 = torch.where(first, b, lam - a)
        ritz = y0.unsqueeze(-1) * basis[0] + y1.unsqueeze(-1) * basis[1]
    else:
        tri = torch.diag_embed(torch.stack(alphas, -1).double())
        off = torch.stack(offdiag, -1).double()
        tri = tri + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        evals, evecs = torch.linalg.eigh(tri)  # ascending
        lam = evals[..., -1].to(state.u.dtype)
        y = evecs[..., -1].to(state.u.dtype)  # (C, N, k)
        ritz = sum(y[..., i:i + 1] * basis[i] for i in range(len(basis)))
    lam = torch.where(ok & torch.isfinite(lam), lam.clamp_min(0.0), torch.zeros_like(lam))
    ritz = torch.where(ok.unsqueeze(-1) & torch.isfinite(ritz).all(-1, keepdim=True), ritz, basis[0])
    return lam, ritz


def max_curvature(
    state: TemperedState,
    density_fn,
    beta: torch.Tensor,
    inv_mass: torch.Tensor,
    start: torch.Tensor,
    step: torch.Tensor,
    iterations: int = 2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`curvature_probe` run on its own: ``(lambda (C, N), ritz (C, N, D))``."""
    return drive(curvature_probe(state, beta, inv_mass, start, step, iterations), density_fn)


def pilot_run(
    path: AnnealingPath,
    grid: torch.Tensor,
    num_chains: int,
    num_leapfrog: int,
    target_accept: float = 0.65,
    init_step_size: float = 0.5,
    adapt_rate: float = 2.0,
    adapt_mass: bool = True,
    stability_fraction: float | None = STABILITY_FRACTION,
    lanczos_steps: int = 2,
    probe_chains: int = 4,
    step_jitter: float = STEP_JITTER,
) -> PilotResult:
    """Tune step sizes and diagonal masses per (level, sample) on independent forward chains.

    At each pilot level g the inverse mass is the spread of the chains across the C chains
    (``var_c u``, per sample and coordinate) and one HMC transition at ``beta_g`` is taken; the step
    size then moves by Robbins-Monro on its log, ``log eps += rate * (mean_c accept - target)``, and
    the updated value is recorded for level g. Also records the spread of the tilt across chains
    (used to place an adaptive schedule). The returned tables are frozen for the final run.

    **Stability cap** (``stability_fraction``, default 0.8; None: no cap, the tuning before the
    cap). Acceptance-rate targeting alone does not keep the step size below the leapfrog stability
    limit ``2 / sqrt(lambda_max)`` (``lambda_max``: the largest curvature of ``-log f_beta`` in
    mass-scaled coordinates): in few dimensions a trajectory just below the limit is still accepted
    at a high rate (in one dimension at any step size below it: the target acceptance is never
    reached), so the adaptation settles at or near the limit, and its noise (acceptance averaged
    over a few chains, masses re-estimated from a few chains at every level) carries a share of the
    levels past it, where every trajectory diverges. So at each level the curvature is measured with
    the level's own inverse mass, per chain:

    * at the chains' starting points by ``lanczos_steps`` Lanczos steps (:func:`curvature_probe`,
      on the first ``probe_chains`` chains; warm started from the previous level's Ritz vector plus
      fresh noise, since the masses change from level to level). Its Hessian-vector products ride
      along the transition's leapfrog passes (the ``rider`` of :func:`hmc_step`): no extra model
      call, ``probe_chains * lanczos_steps`` extra rows per level;
    * along the trajectories of the level's transition (secant curvature, ``track_curvature``).

    The step size recorded for the level (and the one the next pilot transition starts from) is at
    most ``stability_fraction * 2 / sqrt(max lambda)``, per sample; the final run gets the same
    (interpolated) tables, whose step sizes then stay below the limit at every level.

    ``step_jitter``: the pilot's transitions draw their step sizes as the final run's will (see
    :func:`run_ais`), so the acceptance it tunes on is the one the frozen kernel will have.
    0 with ``stability_fraction=None`` reproduces the tuning before the cap exactly.
    """
    adapter = path.adapter
    dtype = adapter.dtype
    grid = grid.to(dtype=torch.float64)
    G = grid.numel()
    n = path.num_samples
    u = path.sample_start(num_chains)
    state = tempered_state(u, path.density_terms)
    eps = torch.full((n,), init_step_size, dtype=dtype, device=u.device)
    eps_rows, mass_rows, tilt_std, acc_rows, lim_rows = [], [], [], [], []
    cap_on = stability_fraction is not None
    if cap_on and not 0.0 < stability_fraction <= 1.0:
        raise ValueError(f"stability_fraction must be in (0, 1] or None, got {stability_fraction}")
    probe_chains = max(1, min(probe_chains, num_chains))
    probing = cap_on and lanczos_steps > 0
    direction = torch.randn_like(u[:probe_chains]) if probing else None

    def spread(state):
        if adapt_mass and num_chains > 1:
            return state.u.var(0, unbiased=True).clamp_min(1e-20)
        return torch.ones_like(state.u[0])

    def probe(state, beta, inv_mass, direction, iterations):
        state = TemperedState(*(t[:probe_chains] for t in state))
        fd_step = (0.1 * eps).clamp(1e-4, 0.1)
        # warm start along the path, plus fresh noise so that the iteration cannot stay stuck on a
        # direction that stopped being the stiffest one (the masses are re-estimated every level)
        start = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        start = start + torch.randn_like(start) / math.sqrt(start.shape[-1])
        return curvature_probe(state, beta, inv_mass, start, fd_step, iterations)

    def limit(*lams):  # (C, N) curvatures -> (N,) stability limit; +inf where none was seen
        lam = torch.stack([x.max(0).values for x in lams]).max(0).values
        return 2.0 / lam.to(dtype).sqrt()

    inv_mass = spread(state)
    eps_rows.append(eps.clone())
    mass_rows.append(inv_mass)
    tilt_std.append(_finite_std(state.tilt))
    acc_rows.append(torch.ones_like(eps))
    lam = torch.zeros_like(state.base[:probe_chains])
    if probing:
        beta0 = grid[0].to(dtype)
        lam, direction = drive(probe(state, beta0, inv_mass, direction, max(lanczos_steps, 5)),
                               path.density_terms)
    if cap_on:
        lim_rows.append(limit(lam))
        eps = torch.minimum(eps, stability_fraction * lim_rows[-1])
    for g in range(1, G):
        beta = grid[g].to(dtype)
        inv_mass = spread(state)
        # the probes at the level's starting points ride along the transition's leapfrog passes;
        # the step size of this pilot transition is capped by the previous level's limit
        rider = probe(state, beta, inv_mass, direction, lanczos_steps) if probing else None
        state, info = hmc_step(state, path.density_terms, beta, eps, inv_mass, num_leapfrog,
                               step_jitter=step_jitter, track_curvature=cap_on, rider=rider)
        acc = info.accept_prob.mean(0)
        eps = eps * torch.exp(adapt_rate * (acc - target_accept))
        if cap_on:
            if rider is not None:
                lam, direction = info.rider_result
            # the curvature at the chains' starting points and along the trajectories they took
            lim = limit(lam, info.curvature) if rider is not None else limit(info.curvature)
            lim_rows.append(lim)
            eps = torch.minimum(eps, stability_fraction * lim)
        eps_rows.append(eps.clone())
        mass_rows.append(inv_mass)
        tilt_std.append(_finite_std(state.tilt))
        acc_rows.append(acc)
    tables = KernelTables(grid, torch.stack(eps_rows), torch.stack(mass_rows))
    return PilotResult(tables, torch.stack(tilt_std).double().mean(-1), torch.stack(acc_rows),
                       torch.stack(lim_rows) if cap_on else None)


def _finite_std(x: torch.Tensor) -> torch.Tensor:
    """Spread across chains (dim 0) per sample, ignoring non-finite entries."""
    x = x.double()
    ok = torch.isfinite(x)
    cnt = ok.sum(0).clamp_min(2)
    x0 = torch.where(ok, x, torch.zeros_like(x))
    mean = x0.sum(0) / cnt
    var = torch.where(ok, (x0 - mean) ** 2, torch.zeros_like(x)).sum(0) / (cnt - 1)
    return var.sqrt()


def interpolate_tables(tables: KernelTables, betas: torch.Tensor) -> KernelTables:
    """Step sizes and inverse masses at ``betas``, interpolated linearly in log beta (log values).

    Levels below the first positive pilot beta take its values; beta = 0 takes the pilot's level 0.
    """
    grid = tables.betas.double().cpu()
    betas = betas.double().cpu()
    lg = torch.log(grid.clamp_min(1e-300))
    lb = torch.log(betas.clamp_min(1e-300))
    idx = torch.searchsorted(lg[1:].contiguous(), lb).clamp(0, len(grid) - 2) + 1  # upper index >= 1
    lo = (idx - 1).clamp_min(1)
    hi = idx
    denom = (lg[hi] - lg[lo]).clamp_min(1e-300)
    frac = ((lb - lg[lo]) / denom).clamp(0.0, 1.0)
    frac = torch.where(hi == lo, torch.zeros_like(frac), frac)
    dev = tables.step_size.device

    def interp(table):
        log_t = table.double().log()
        f = frac.to(dev).reshape((-1,) + (1,) * (table.dim() - 1))
        out = torch.exp(log_t[lo.to(dev)] * (1 - f) + log_t[hi.to(dev)] * f)
        zero = (betas == 0).to(dev)
        out[zero] = table.double()[0]
        return out.to(table.dtype)

    return KernelTables(betas, interp(tables.step_size), interp(tables.inv_mass))


class AISResult(NamedTuple):
    """Outputs of :func:`run_ais` (float64 log-weights, nats)."""

    log_weights: torch.Tensor  # (K, N) forward chains
    log_weight_backward: torch.Tensor | None  # (N,) backward chain from u*
    acceptance: torch.Tensor  # (T - 1, N) mean acceptance of the forward chains per level
    acceptance_backward: torch.Tensor | None  # (T - 1, N) per level (indexed by kernel level)
    divergences: torch.Tensor  # (N,) divergent transitions, all chains
    log_weight_increment_var: torch.Tensor  # (T, N) variance across forward chains of each increment


def run_ais(
    path: AnnealingPath,
    tables: KernelTables,
    num_chains: int,
    num_leapfrog: int,
    u_star: torch.Tensor | None = None,
    *,
    progress: bool = False,
    hook: Callable[[int, dict], None] | None = None,
    step_jitter: float = STEP_JITTER,
) -> AISResult:
    """Run K forward chains (and one backward chain from ``u_star`` ``(N, D)``) over ``tables.betas``.

    No Python loop over chains or samples and no host synchronisation inside the temperature loop:
    per-level settings are gathered on the device, diagnostics are kept as tensors.

    ``step_jitter`` (default :data:`STEP_JITTER`): each transition of each chain uses a step size
    drawn uniformly from ``[(1 - step_jitter) eps, eps]``, ``eps`` the frozen table entry, drawn
    independently of the state (a fixed mixture kernel, the same for forward and backward chains).
    It breaks the resonance of a fixed trajectory length ``L eps`` on near-Gaussian targets (a
    trajectory that turns a whole number of times returns to its start). 0: exactly ``eps``.
    """
    betas = tables.betas.double()
    T = betas.numel() - 1
    K = num_chains
    dev = path.adapter.device
    dtype = path.adapter.dtype
    dbeta = betas.diff().to(dev)  # (T,): dbeta[t-1] = beta_t - beta_{t-1}
    betas_dev = betas.to(device=dev, dtype=dtype)
    eps_table = tables.step_size.to(dev)
    mass_table = tables.inv_mass.to(dev)
    backward = u_star is not None
    u0 = path.sample_start(K)
    if backward:
        u0 = torch.cat([u0, u_star.unsqueeze(0).to(u0)], 0)
    C = u0.shape[0]
    state: TemperedState = tempered_state(u0, path.density_terms)
    n = u0.shape[1]
    log_w = torch.zeros((C, n), dtype=torch.float64, device=dev)
    div = torch.zeros((C, n), dtype=torch.int64, device=dev)
    acc_f, acc_b, inc_var = [], [], []
    is_bwd = torch.zeros(C, dtype=torch.bool, device=dev)
    if backward:
        is_bwd[-1] = True
    steps = range(1, T + 1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"AIS T={T}", leave=False)
    with pyro.validation_enabled(False):
        for i in steps:
            inc_level = torch.where(is_bwd, T + 1 - i, i)  # (C,) level whose increment is added
            inc = dbeta[inc_level - 1].unsqueeze(-1) * state.tilt.double()
            log_w = log_w + inc
            inc_var.append(inc[:K].var(0) if K > 1 else torch.zeros_like(inc[0]))
            if i < T:
                level = torch.where(is_bwd, T - i, i)  # (C,) kernel level
                beta = betas_dev[level].unsqueeze(-1)  # (C, 1)
                eps = eps_table[level]  # (C, N)
                inv_mass = mass_table[level]  # (C, N, D)
                state, info = hmc_step(state, path.density_terms, beta, eps, inv_mass, num_leapfrog,
                                       step_jitter=step_jitter)
                div = div + info.diverging.long()
                acc_f.append(info.accept_prob[:K].mean(0))
                if backward:
                    acc_b.append(info.accept_prob[-1])
                if hook is not None:
                    hook(i, {"beta": betas[i], "accept_prob": info.accept_prob, "log_weights": log_w})
    empty = torch.zeros((0, n), dtype=dtype, device=dev)
    acceptance = torch.stack(acc_f) if acc_f else empty
    acceptance_b = (torch.stack(acc_b).flip(0) if acc_b else empty) if backward else None
    return AISResult(
        log_weights=log_w[:K],
        log_weight_backward=log_w[-1] if backward else None,
        acceptance=acceptance,
        acceptance_backward=acceptance_b,
        divergences=div.sum(0),
        log_weight_increment_var=torch.stack(inc_var),
    )


def default_pilot_grid(path: AnnealingPath, num_points: int, num_chains: int) -> torch.Tensor:
    """Geometric pilot grid ``[0, beta_lo, ..., 1]`` with ``beta_lo * std(tilt at pi_0) = 1e-2``."""
    with torch.no_grad(), pyro.validation_enabled(False):
        u = path.sample_start(max(num_chains, 2))
        terms = path.density_terms(u)
    s0 = float(_finite_std(terms.tilt).median())
    beta_lo = min(1e-2, 1e-2 / max(s0, 1e-12))
    beta_lo = max(beta_lo, 1e-300)
    if num_points < 3:
        raise ValueError(f"the pilot needs at least 3 levels, got {num_points}")
    logs = torch.linspace(math.log(beta_lo), 0.0, num_points - 1, dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), logs.exp()])
