"""AIS kernel tuning keeps the leapfrog integrator stable: on easy Gaussian models essentially no
transition diverges, and the sandwich still holds the closed-form MI.

Cause of the divergences this guards against: the pilot's acceptance-rate targeting alone let step
sizes reach the leapfrog stability limit ``2 / sqrt(lambda_max)`` (mass-scaled curvature). In few
dimensions a trajectory just below the limit is still accepted at a high rate, so the adaptation
settled near it, and its noise pushed 5-15% of the (level, sample) step sizes past it, where every
trajectory diverges. The pilot now caps each level's step size at 0.8 of a measured limit
(Lanczos on finite-difference Hessian-vector products at the chains' positions, and the secant
curvature along their trajectories), and jitters the step size per transition.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from pyromi import ModelAdapter, mutual_information
from pyromi._rng import seeded
from pyromi.models import LinearGaussian
from pyromi.samplers.ais import (
    STABILITY_FRACTION,
    AnnealingPath,
    curvature_probe,
    default_pilot_grid,
    max_curvature,
    pilot_run,
)
from pyromi.samplers.hmc import DensityTerms, drive, hmc_step, tempered_state

from .conftest import Z_SCORE, assert_lower_bound, assert_upper_bound

AIS = dict(bound="ais", progress=False)
C_LR = torch.tensor([0.5, 1.0, 2.0, 4.0])


def local_regression(c):
    """The issue's example: one scalar latent per data point (posterior sd 1 / sqrt(1 + c^2))."""
    with pyro.plate("data", c.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(c * z, 1.0))


def _models() -> dict[str, LinearGaussian]:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(10, generator=g)
    a = torch.randn(12, generator=g) / math.sqrt(12)
    stiff = 30.0 * torch.outer(a, v / v.norm()) + 0.3 * torch.randn(12, 10, generator=g)
    return {
        # the README demo's toy: z in R^5, x in R^20, sigma = 0.1, I = 14.275
        "toy": LinearGaussian.toy(),
        # axis-aligned posterior scales from ~1 to 0.01 (I = 7.26)
        "anisotropic": LinearGaussian(torch.diag(torch.tensor([0.1, 1.0, 10.0, 100.0])), 1.0),
        # one stiff direction that no diagonal mass can undo (I = 9.84)
        "stiff_rotated": LinearGaussian(stiff, 0.5),
        # a narrow posterior: one latent, I = 5 nats exactly (posterior sd e^-5)
        "narrow": LinearGaussian(torch.ones(1, 1), 1.0 / math.sqrt(math.expm1(10.0))),
    }


MODELS = _models()


@pytest.mark.parametrize("name", list(MODELS))
def test_easy_gaussians_do_not_diverge_and_the_sandwich_holds_the_truth(name):
    lg = MODELS[name]
    with seeded(100):
        joint = ModelAdapter(lg.model, "x").sample_joint(64)
    oracle = lg.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(lg.model, "x", joint=joint, num_particles=8, num_steps=100, seed=1, **AIS)
    d = est.diagnostics
    assert d["divergence_fraction"] < 0.01, d["divergence_fraction"]  # measured: 0 for each
    assert not d["heavy_divergence"]
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    truth = lg.mutual_information()
    assert est.lower - Z_SCORE * est.lower_se <= truth <= est.upper + Z_SCORE * est.upper_se
    if name == "narrow":
        assert truth == pytest.approx(5.0, abs=1e-9)


def test_local_regression_of_the_issue_does_not_diverge():
    """The issue's model (measured before the fix: 11.6% divergent; after: 0)."""
    n = 64  # a multiple of the plate size: sample i uses row i mod 4
    est = mutual_information(local_regression, "y", model_args=(C_LR,), num_samples=n,
                             num_particles=8, num_steps=100, seed=0, **AIS)
    d = est.diagnostics
    assert d["divergence_fraction"] < 0.01, d["divergence_fraction"]
    truth = float(0.5 * torch.log1p(C_LR.double() ** 2).mean())  # per data point, 0.670 nats
    assert est.lower - Z_SCORE * est.lower_se <= truth <= est.upper + Z_SCORE * est.upper_se
    assert est.upper - est.lower < 0.05


def _true_limits(lg: LinearGaussian, grid: torch.Tensor, inv_mass: torch.Tensor) -> torch.Tensor:
    """2 / sqrt(lambda_max(S H_beta S)) per (level, sample) for a linear-Gaussian prior start."""
    W = lg.W.double()
    P = W.T @ W / lg.sigma**2
    eye = torch.eye(lg.dz, dtype=torch.float64)
    out = []
    for g, beta in enumerate(grid.tolist()):
        s = inv_mass[g].double().sqrt()  # (N, D)
        hx = s[:, :, None] * (eye + beta * P)[None] * s[:, None, :]
        out.append(2.0 / torch.linalg.eigvalsh(hx)[:, -1].sqrt())
    return torch.stack(out)


@pytest.mark.parametrize("name", ["toy", "stiff_rotated"])
def test_pilot_step_sizes_stay_below_the_stability_limit(name):
    """Every recorded step size is at most ~0.8 of the exact limit for the level's own mass; the
    old tuning (no cap, no jitter) put a good share of them past it (the cause of the issue)."""
    lg = MODELS[name]
    with seeded(0):
        joint = ModelAdapter(lg.model, "x").sample_joint(16)
    path = AnnealingPath(ModelAdapter(lg.model, "x"), joint.observed)
    with pyro.validation_enabled(False), seeded(1):
        grid = default_pilot_grid(path, 60, 16)
        new = pilot_run(path, grid, 16, 10)
    with pyro.validation_enabled(False), seeded(1):
        old = pilot_run(path, grid, 16, 10, stability_fraction=None, step_jitter=0.0)
    ratio = new.tables.step_size[1:].double() / _true_limits(lg, grid, new.tables.inv_mass)[1:]
    assert float(ratio.max()) <= STABILITY_FRACTION * 1.1, float(ratio.max())
    est_vs_true = new.stability_limit[1:].double() / _true_limits(lg, grid, new.tables.inv_mass)[1:]
    assert float(est_vs_true.max()) < 1.1  # the measured limit is not optimistic
    old_ratio = old.tables.step_size[1:].double() / _true_limits(lg, grid, old.tables.inv_mass)[1:]
    assert float((old_ratio > 1).float().mean()) > 0.01  # measured 2-10%
    assert old.stability_limit is None


def test_curvature_probe_finds_the_largest_eigenvalue_of_a_gaussian():
    """Lanczos on finite differences: exact on a quadratic once the Krylov space is full, and never
    above lambda_max (a lower estimate) with fewer steps."""
    torch.manual_seed(0)
    D = 6
    q, _ = torch.linalg.qr(torch.randn(D, D, dtype=torch.float64))
    evals = torch.tensor([0.3, 0.5, 1.0, 2.0, 7.0, 40.0], dtype=torch.float64)
    prec = q @ torch.diag(evals) @ q.T

    def density(u):
        quad = -0.5 * torch.einsum("...i,ij,...j->...", u, prec, u)
        return DensityTerms(torch.zeros_like(quad) + 0 * u.sum(-1), quad)

    u = torch.randn(5, 3, D, dtype=torch.float64)
    state = tempered_state(u, density)
    inv_mass = torch.rand(3, D, dtype=torch.float64) + 0.5
    beta = torch.tensor(0.7, dtype=torch.float64)
    s = inv_mass.sqrt()
    true = torch.linalg.eigvalsh(s[:, :, None] * (beta * prec)[None] * s[:, None, :])[:, -1]
    start = torch.randn(5, 3, D, dtype=torch.float64)
    full, ritz = max_curvature(state, density, beta, inv_mass, start, torch.tensor(0.05), D)
    torch.testing.assert_close(full, true.expand(5, 3), rtol=1e-6, atol=1e-8)
    assert ritz.shape == u.shape
    two, _ = drive(curvature_probe(state, beta, inv_mass, start, torch.tensor(0.05), 2), density)
    assert bool((two <= true + 1e-8).all()) and bool((two > 0).all())
    # warm-started from the Ritz vector, two steps are already exact
    warm, _ = max_curvature(state, density, beta, inv_mass, ritz, torch.tensor(0.05), 2)
    torch.testing.assert_close(warm, true.expand(5, 3), rtol=1e-6, atol=1e-8)


def _gaussian_1d(sd: float):
    def density(u):
        return DensityTerms(torch.zeros_like(u[..., 0]), -0.5 * (u[..., 0] / sd) ** 2 + 0 * u.sum(-1))
    return density


def test_jittered_kernel_leaves_the_target_invariant():
    """Step sizes drawn in [(1 - j) eps, eps] independently of the state: a mixture of reversible
    kernels, still exact. Exact draws stay exact after 20 transitions (KS test), at a step size
    near the stability limit (eps = 1.9 sd)."""
    sd = 0.3
    density = _gaussian_1d(sd)
    with seeded(5):
        u = torch.randn(4000, 1, 1, dtype=torch.float64) * sd
        state = tempered_state(u, density)
        for _ in range(20):
            state, info = hmc_step(state, density, torch.tensor(1.0, dtype=torch.float64),
                                   torch.tensor(1.9 * sd), torch.ones(1, dtype=torch.float64), 10,
                                   step_jitter=0.6)
            assert not bool(info.diverging.any())
    assert stats.kstest(state.u[:, 0, 0].numpy() / sd, "norm").pvalue > 1e-3
    assert float(info.accept_prob.mean()) > 0.5


def test_trajectory_curvature_and_riders():
    """``track_curvature`` reports the curvature the trajectory met (exact for a 1-D Gaussian,
    in mass-scaled units); a rider's points are evaluated in the leapfrog passes without changing
    the transition, and points it asks for after the last step still get evaluated."""
    sd = 0.2
    density = _gaussian_1d(sd)
    inv_mass = torch.full((2, 1), 0.5, dtype=torch.float64)
    u = torch.randn(3, 2, 1, dtype=torch.float64) * sd
    state = tempered_state(u, density)
    beta = torch.tensor(1.0, dtype=torch.float64)
    eps = torch.tensor(0.3, dtype=torch.float64)

    seen = []

    def rider(count):
        for k in range(count):
            pts = state.u + 0.01 * (k + 1)
            got = yield pts
            seen.append((pts, got))
        return "done"

    with seeded(3):
        plain, info0 = hmc_step(state, density, beta, eps, inv_mass, 4, track_curvature=True)
    for count in (2, 7):  # within the trajectory, and beyond its 4 leapfrog passes
        seen.clear()
        with seeded(3):
            ridden, info = hmc_step(state, density, beta, eps, inv_mass, 4, track_curvature=True,
                                    rider=rider(count))
        assert info.rider_result == "done" and len(seen) == count
        for a, b in zip(plain, ridden):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for pts, got in seen:
            ref = tempered_state(pts, density)
            for a, b in zip(ref, got):
                torch.testing.assert_close(a, b)
    # H_x = inv_mass / sd^2 for a 1-D Gaussian
    torch.testing.assert_close(info0.curvature, torch.full((3, 2), 0.5 / sd**2, dtype=torch.float64))
    assert info0.rider_result is None


def test_old_tuning_is_still_selectable_and_diverges_on_the_issue_model():
    """``stability_fraction=None, step_jitter=0`` is the tuning before the fix: kept so benchmarks
    can compare side by side; on the issue's model its step sizes cross the limit."""
    adapter = ModelAdapter(local_regression, "y", model_args=(C_LR,))
    with seeded(0):
        joint = adapter.sample_joint(16)
    path = AnnealingPath(adapter, joint.observed)
    c = C_LR.double()[torch.arange(16) % 4]
    with pyro.validation_enabled(False), seeded(1):
        grid = default_pilot_grid(path, 60, 16)
        res = {k: pilot_run(path, grid, 16, 10, **kw) for k, kw in
               (("new", {}), ("old", dict(stability_fraction=None, step_jitter=0.0)))}
    for key, pr in res.items():
        limit = 2.0 / (1.0 + grid[:, None] * c**2).sqrt() / pr.tables.inv_mass[..., 0].double().sqrt()
        over = float((pr.tables.step_size[1:].double() > limit[1:]).float().mean())
        if key == "new":
            assert over == 0.0
        else:
            assert over > 0.03, over  # measured ~13%


def test_float_saturation_of_a_far_leapfrog_move_is_not_a_model_nan():
    """Pyro's GMM tutorial prior scale ~ LogNormal(0, 2): a diverging trajectory reaches |u| ~ 100,
    where exp(u) rounds to 0 (float32) and LogNormal.log_prob(0) is NaN. That is a rejected move
    (z = T(u) left its support by rounding), not a NaN of the model: no DensityError."""
    import warnings

    def model(data):
        scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
        with pyro.plate("data", len(data)):
            pyro.sample("obs", dist.Normal(0.0, scale), obs=data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = mutual_information(model, "obs", model_args=(torch.zeros(5),), bound="ais",
                                 num_particles=8, num_steps=100, num_samples=64, seed=0,
                                 progress=False)
    assert math.isfinite(est.lower) and math.isfinite(est.upper) and est.lower > 0.5
