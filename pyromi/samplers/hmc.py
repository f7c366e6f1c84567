"""Vectorised Hamiltonian Monte Carlo on tempered targets ``log f_beta(u) = base(u) + beta * tilt(u)``.

A BlackJAX-style kernel: :func:`hmc_step` is a pure function of a :class:`TemperedState` that
returns a new state and an :class:`HMCInfo`. The state holds C x N independent chains (chains x
samples) on a packed unconstrained space of dimension D; every chain accepts or rejects on its own
with ``torch.where``, there is no Python loop over chains or samples and no host synchronisation.

Keeping ``base`` and ``tilt`` (and their gradients) separately makes the target at *any* inverse
temperature available without another model pass: ``grad log f_beta = grad base + beta grad tilt``.
For annealed importance sampling from pi_0 to the posterior, ``base = log pi_0`` and
``tilt = log p(x, z) - log pi_0`` (both in the unconstrained space, Jacobian included).

The leapfrog integrator is the standard velocity Verlet scheme (as ``pyro.ops.integrator``:
half kick, drift through the diagonal inverse mass, half kick), written on tensors so that step
sizes are per chain.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import torch

__all__ = ["TemperedState", "HMCInfo", "tempered_state", "hmc_step", "DensityTerms", "Rider", "drive"]


class DensityTerms(NamedTuple):
    """``base`` and ``tilt`` log densities, each ``(C, N)``, at packed points ``u`` ``(C, N, D)``."""

    base: torch.Tensor
    tilt: torch.Tensor


#: u (C, N, D) -> DensityTerms; must be differentiable in u and chain-independent.
DensityFn = Callable[[torch.Tensor], DensityTerms]


class TemperedState(NamedTuple):
    """Positions and the two density terms with their gradients, for C x N chains."""

    u: torch.Tensor  # (C, N, D)
    base: torch.Tensor  # (C, N)
    tilt: torch.Tensor  # (C, N)
    grad_base: torch.Tensor  # (C, N, D)
    grad_tilt: torch.Tensor  # (C, N, D)

    def log_density(self, beta: torch.Tensor) -> torch.Tensor:
        """``base + beta * tilt``; ``beta`` broadcasts against ``(C, N)``."""
        return self.base + beta * self.tilt

    def grad_log_density(self, beta: torch.Tensor) -> torch.Tensor:
        """``grad base + beta * grad tilt``; ``beta`` broadcasts against ``(C, N)``.

        Computed in the dtype of the positions (the density terms may be float64, e.g. a guide's
        log q, but the state must keep the model's dtype)."""
        beta = torch.as_tensor(beta, device=self.u.device).to(self.grad_tilt.dtype)
        return self.grad_base + beta.unsqueeze(-1) * self.grad_tilt


class HMCInfo(NamedTuple):
    """Per-chain record of one transition, each ``(C, N)``."""

    accept_prob: torch.Tensor
    accepted: torch.Tensor  # bool
    diverging: torch.Tensor  # bool: non-finite energy or energy error above the threshold
    #: with ``track_curvature=True``: the largest secant curvature met along the trajectory, in
    #: mass-scaled coordinates (0 for a divergent trajectory); else None
    curvature: torch.Tensor | None = None
    #: the return value of the ``rider`` generator, if one was given
    rider_result: Any = None


#: A computation that needs the density terms at points of its choosing: a generator that yields
#: points ``(C', N, D)``, receives a :class:`TemperedState` at each, and returns a result.
Rider = Generator[torch.Tensor, TemperedState, Any]


def _slice(st: TemperedState, a: int | None, b: int | None) -> TemperedState:
    return TemperedState(*(t[a:b] for t in st))


def drive(rider: Rider, density_fn: DensityFn) -> Any:
    """Run a :data:`Rider` on its own (one model pass per point it asks for); return its result."""
    try:
        pts = next(rider)
        while True:
            pts = rider.send(tempered_state(pts, density_fn))
    except StopIteration as stop:
        return stop.value


def tempered_state(u: torch.Tensor, density_fn: DensityFn) -> TemperedState:
    """Evaluate both terms and their gradients at ``u`` (one model pass, two backward sweeps)."""
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        terms = density_fn(u)
        grad_base = grad_tilt = None
        if terms.base.requires_grad:
            grad_base = torch.autograd.grad(
                terms.base.sum(), u, retain_graph=terms.tilt.requires_grad, allow_unused=True
            )[0]
        if terms.tilt.requires_grad:
            grad_tilt = torch.autograd.grad(terms.tilt.sum(), u, allow_unused=True)[0]
    zeros = torch.zeros_like(u)
    grad_base = zeros if grad_base is None else grad_base
    grad_tilt = zeros if grad_tilt is None else grad_tilt
    return TemperedState(
        u.detach(), terms.base.detach(), terms.tilt.detach(), grad_base.detach(), grad_tilt.detach()
    )


def _where(mask: torch.Tensor, a: TemperedState, b: TemperedState) -> TemperedState:
    m1 = mask.unsqueeze(-1)
    return TemperedState(
        torch.where(m1, a.u, b.u),
        torch.where(mask, a.base, b.base),
        torch.where(mask, a.tilt, b.tilt),
        torch.where(m1, a.grad_base, b.grad_base),
        torch.where(m1, a.grad_tilt, b.grad_tilt),
    )


def hmc_step(
    state: TemperedState,
    density_fn: DensityFn,
    beta: torch.Tensor,
    step_size: torch.Tensor,
    inv_mass: torch.Tensor,
    num_leapfrog: int,
    *,
    max_energy_error: float = 1000.0,
    step_jitter: float = 0.0,
    track_curvature: bool = False,
    rider: Rider | None = None,
) -> tuple[TemperedState, HMCInfo]:
    """One HMC transition leaving ``f_beta(u) = exp(base + beta * tilt)`` invariant, per chain.

    Args:
        state: current positions and density terms.
        density_fn: ``u -> DensityTerms``.
        beta: inverse temperature, broadcastable to ``(C, N)``.
        step_size: leapfrog step size, broadcastable to ``(C, N)``.
        inv_mass: diagonal inverse mass, broadcastable to ``(C, N, D)``.
        num_leapfrog: leapfrog steps L.
        max_energy_error: an energy error ``H_L - H_0`` above this counts as a divergence.
        step_jitter: each chain's step size is drawn uniformly from ``[(1 - step_jitter) eps, eps]``
            for this transition, independently of its state (0: exactly ``eps``). A mixture of
            reversible kernels that each leave ``f_beta`` invariant, with weights that do not depend
            on the state, is itself reversible and ``f_beta``-invariant, so the kernel stays a
            valid (and self-reversing) AIS transition. The jitter breaks the resonances of a fixed
            trajectory length ``L eps``: on a near-Gaussian target in mass-scaled coordinates,
            a leapfrog trajectory whose phase advance is close to a multiple of 2 pi returns to its
            start and the chain barely moves.
        track_curvature: also return ``info.curvature``: per chain, the largest secant curvature
            ``|S (g_(k+1) - g_k)| / |(u_(k+1) - u_k) / S|`` (``S = sqrt(inv_mass)``, ``g`` the gradient
            of ``log f_beta``) over the leapfrog steps of the trajectory, i.e. the curvature of the
            target along the path the integrator actually travelled, in the coordinates in which
            it runs with unit mass; 0 for a divergent trajectory (whose far-flung points say
            nothing about the region the chains sample). Used by the pilot run to keep step sizes
            below the leapfrog stability limit ``2 / sqrt(curvature)``.
        rider: a generator that asks for density terms at points of its own (e.g. Hessian-vector
            probes at the current positions): each point it yields is evaluated in the same model
            pass as the next leapfrog position (concatenated along the chain dimension, which the
            chain-independent ``density_fn`` allows), so it costs no extra model call while the
            trajectory lasts; any it asks for after the last leapfrog step get passes of their own.
            Its return value is ``info.rider_result``. It does not affect the transition.

    Momentum ``r ~ N(0, M)``; Hamiltonian ``H = -log f_beta(u) + r^T M^{-1} r / 2``; accept with
    probability ``min(1, exp(H_0 - H_L))``. A proposal where the target is zero (``H_L = +inf``), a
    non-finite position or a NaN energy counts as divergent and is rejected; a finite proposal from a
    point of zero density is accepted.
    """
    beta = torch.as_tensor(beta, dtype=state.base.dtype, device=state.u.device)
    eps = torch.as_tensor(step_size, dtype=state.u.dtype, device=state.u.device)
    if step_jitter > 0.0:
        eps = eps * (1.0 - step_jitter * torch.rand_like(state.base, dtype=state.u.dtype))
    eps_u = eps.unsqueeze(-1) if eps.dim() > 0 else eps
    r = torch.randn_like(state.u) * inv_mass.rsqrt()
    kinetic0 = 0.5 * (r * r * inv_mass).sum(-1)
    h0 = -state.log_density(beta) + kinetic0

    new = state
    grad = new.grad_log_density(beta)
    r = r + 0.5 * eps_u * grad
    curv = torch.zeros_like(state.base) if track_curvature else None
    pending: torch.Tensor | None = None
    rider_result = None
    if rider is not None:
        try:
            pending = next(rider)
        except StopIteration as stop:
            rider_result = stop.value

    def feed(terms: TemperedState) -> None:
        nonlocal pending, rider_result
        try:
            pending = rider.send(terms)
        except StopIteration as stop:
            pending, rider_result = None, stop.value

    for step in range(num_leapfrog):
        u = new.u + eps_u * inv_mass * r
        prev_u, prev_grad = new.u, grad
        if pending is None:
            new = tempered_state(u, density_fn)
        else:
            both = tempered_state(torch.cat([u, pending.to(u)], 0), density_fn)
            c = u.shape[0]
            new = _slice(both, None, c)
            feed(_slice(both, c, None))
        grad = new.grad_log_density(beta)
        if track_curvature:  # squared secant curvature; fmax skips the 0 / 0 of a step that stood still
            dg2 = (inv_mass * (grad - prev_grad).square()).sum(-1)
            curv = torch.fmax(curv, dg2 / ((new.u - prev_u).square() / inv_mass).sum(-1))
        if step < num_leapfrog - 1:
            r = r + eps_u * grad
    r = r + 0.5 * eps_u * grad
    while pending is not None:
        feed(tempered_state(pending, density_fn))
    h1 = -new.log_density(beta) + 0.5 * (r * r * inv_mass).sum(-1)

    delta = h0 - h1  # log acceptance ratio
    # a finite proposal from a point of zero density (h0 = +inf, h1 finite) has delta = +inf and is
    # accepted (MH ratio f(u') / 0); a proposal to zero density (h1 = +inf), to a non-finite
    # position, or with a NaN energy is rejected
    escape = (delta == float("inf")) & torch.isfinite(h1)
    finite = (torch.isfinite(delta) | escape) & torch.isfinite(new.u).all(-1)
    diverging = ~finite | (delta < -max_energy_error)
    log_accept = torch.where(finite, delta.clamp(max=0.0), torch.full_like(delta, -float("inf")))
    accept_prob = log_accept.exp()
    accepted = torch.rand_like(accept_prob).log() < log_accept
    out = _where(accepted, new, state)
    if track_curvature:
        curv = torch.where(diverging | ~torch.isfinite(curv), torch.zeros_like(curv), curv.sqrt())
    return out, HMCInfo(accept_prob, accepted, diverging, curv, rider_result)
