"""Issue 12 regressions: no silent wrong or non-finite number, no leaked process state.

Each test names the item of the issue it guards. Truths are closed forms or 1-D quadratures; bounds
are compared with the same-batch oracle ``log p(x_i | z_i*) - log p(x_i)`` (see conftest).
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.poutine.runtime import _PYRO_STACK

from pyromi import (
    DensityError,
    GuideError,
    ModelAdapter,
    ModelError,
    ResourceError,
    SiteError,
    VectorizationError,
    log_marginal,
    mutual_information,
)
from pyromi._rng import seeded

from .conftest import assert_lower_bound, assert_upper_bound


def _joint(model, n, seed=0, observed="x"):
    adapter = ModelAdapter(model, observed)
    with seeded(seed), torch.no_grad():
        return adapter, adapter.sample_joint(n)


# ---------------------------------------------------------------- A1: conditioned latents
def test_latent_fixed_by_obs_is_a_constant_and_no_latent_is_an_error():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0), obs=torch.tensor(1.0))
        pyro.sample("x", dist.Normal(z, 0.5))

    with pytest.raises(SiteError, match=r"no latent sites.*'z'.*fixed in the model"):
        mutual_information(model, "x", num_samples=16, num_particles=10, seed=0)

    def plain():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5))

    conditioned = pyro.condition(plain, data={"z": torch.tensor(1.0)})
    with pytest.raises(SiteError, match="fixed in the model"):
        mutual_information(conditioned, "x", num_samples=16, num_particles=10, seed=0)
    with pytest.raises(SiteError, match="latent site 'z' is fixed in the model"):
        mutual_information(conditioned, "x", latent="z", num_samples=16, seed=0)
    assert _PYRO_STACK == []


def test_fixed_site_is_held_constant_in_joint_draws_and_densities():
    """x = c + w + noise with c fixed at 1: I(x; w) = 1/2 log(1 + 1/0.25) exactly, and the
    bounds sandwich it (before the fix c was re-simulated in the draws but fixed in the densities)."""

    def model():
        c = pyro.sample("c", dist.Normal(0.0, 3.0), obs=torch.tensor(1.0))
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(c + w, 0.5))

    adapter, joint = _joint(model, 256)
    assert adapter.latent_names == ["w"] and adapter.constant_names == ["c"]
    est = mutual_information(model, "x", joint=joint, num_particles=2000, seed=1)
    log_px = dist.Normal(1.0, math.sqrt(1.25)).log_prob(joint.observed["x"]).double()
    oracle = joint.log_likelihood.double() - log_px
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    truth = 0.5 * math.log(5.0)
    assert abs(est.lower - truth) < 4 * est.lower_se + 0.02


def test_fixed_site_whose_density_depends_on_a_latent_is_refused():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("c", dist.Normal(z, 1.0), obs=torch.tensor(1.0))
        pyro.sample("x", dist.Normal(z, 0.5))

    with pytest.raises(SiteError, match=r"site 'c' is fixed in the model .* but its density depends on the latent"):
        mutual_information(model, "x", num_samples=8, seed=0)


# ---------------------------------------------------------------- A2: unexplained batch dimensions
X_REG = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))


def _regression_with_singleton_dims():
    w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
    b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
    mean = (X_REG @ w.transpose(-1, -2)).squeeze(-1) + b
    with pyro.plate("data", 12):
        pyro.sample("y", dist.Normal(mean, 0.5))


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_unexplained_batch_dimension_is_an_error_naming_the_site(bound):
    kw = dict(num_steps=5) if bound == "ais" else {}
    with pytest.raises(VectorizationError, match=r"site 'y' has batch shape \(3, 3, 12\)"):
        mutual_information(_regression_with_singleton_dims, "y", bound=bound, num_samples=8,
                           seed=0, progress=False, vectorize=True, **kw)
    assert _PYRO_STACK == []


def test_correctly_written_regression_matches_closed_form():
    """The same regression written so that it broadcasts: the AIS sandwich holds the closed form."""

    def model():
        w = pyro.sample("w", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        mean = (X_REG * w).sum(-1) + b  # w: (..., 1, 3) under the data plate's nesting
        with pyro.plate("data", 12):
            pyro.sample("y", dist.Normal(mean, 0.5))

    A = torch.cat([X_REG, torch.ones(12, 1)], 1).double()
    truth = 0.5 * float(torch.logdet(torch.eye(4, dtype=torch.float64) + A.T @ A / 0.25))
    est = mutual_information(model, "y", bound="ais", num_samples=32, num_steps=200, seed=0,
                             progress=False)
    assert est.lower - 4 * est.lower_se <= truth <= est.upper + 4 * est.upper_se
    assert est.upper - est.lower < 0.1 * truth


# ---------------------------------------------------------------- A3: mixture priors
MIX_W = torch.tensor([0.3, 0.7])
MIX_MU = torch.tensor([-2.0, 1.5])
MIX_S = torch.tensor([0.5, 0.8])
MIX_SIGMA = 0.6


def _mixture_model():
    prior = dist.MixtureSameFamily(dist.Categorical(MIX_W), dist.Normal(MIX_MU, MIX_S))
    z = pyro.sample("z", prior)
    pyro.sample("x", dist.Normal(z, MIX_SIGMA))


def _mixture_log_px(x: torch.Tensor) -> torch.Tensor:
    """p(x) = sum_k w_k N(x; mu_k, s_k^2 + sigma^2), exactly."""
    comp = dist.Normal(MIX_MU.double(), (MIX_S.double() ** 2 + MIX_SIGMA**2).sqrt())
    return torch.logsumexp(comp.log_prob(x.double().unsqueeze(-1)) + MIX_W.double().log(), -1)


def _mixture_truth() -> float:
    """I = h(x) - h(x|z), h(x) by quadrature on a fine grid."""
    xs = torch.linspace(-12, 12, 400001, dtype=torch.float64)
    lp = _mixture_log_px(xs)
    h = -float((lp.exp() * lp).sum() * (xs[1] - xs[0]))
    return h - 0.5 * math.log(2 * math.pi * math.e * MIX_SIGMA**2)


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_mixture_prior_sandwich_holds_the_truth(bound):
    adapter, joint = _joint(_mixture_model, 256)
    oracle = joint.log_likelihood.double() - _mixture_log_px(joint.observed["x"])
    kw = dict(num_particles=1000) if bound == "iwae" else dict(num_particles=16, num_steps=100)
    est = mutual_information(_mixture_model, "x", bound=bound, joint=joint, seed=2,
                             progress=False, **kw)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    truth = _mixture_truth()
    assert 0.5 < truth < 2.0
    # tight at these settings: both sides within 0.05 nats of the oracle's mean
    assert abs(est.lower - float(oracle.mean())) < 0.05
    assert abs(est.upper - float(oracle.mean())) < 0.05


@pytest.mark.parametrize("bound", ["ba", "giwae", "infonce", "mine_dv", "mine_ais", "mist"])
def test_mixture_prior_runs_in_every_other_bound(bound):
    truth = _mixture_truth()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {} if bound == "mist" else dict(
            train_steps=60 if bound == "mine_ais" else 150, batch_size=64)
        if bound == "mine_ais":
            kw["num_steps"] = 20
        est = mutual_information(_mixture_model, "x", bound=bound, num_samples=256, seed=0,
                                 progress=False, **kw)
    vals = [v for v in (est.lower, est.upper, est.point) if v is not None]
    assert vals and all(math.isfinite(v) for v in vals)
    if bound != "mist":
        assert est.lower <= truth + 4 * est.lower_se + 1e-9
        assert est.lower > 0.2 * truth  # a trained bound that learned something


# ---------------------------------------------------------------- B4, B5: non-finite numbers
def _nan_tail_model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    loc = torch.where(z > 2.5, torch.full_like(z, float("nan")), z)
    pyro.sample("x", dist.Normal(loc, 0.5))


def test_ais_nan_likelihood_region_is_an_error_naming_the_site():
    with pytest.raises(DensityError, match="site 'x' was NaN"):
        mutual_information(_nan_tail_model, "x", bound="ais", num_samples=32, num_steps=50,
                           seed=1, progress=False)


def _uniform_model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Uniform(z - 1, z + 1))


def _uniform_log_px(x):
    n = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)
    x = x.double()
    return torch.log(0.5 * (n.cdf(x + 1) - n.cdf(x - 1)))


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_hard_support_likelihood_gives_valid_bounds_or_a_clear_error(bound):
    """x ~ Uniform(z - 1, z + 1): from a proposal that covers the support both bounds hold the
    oracle; from the prior with one particle some samples have every draw outside the support and
    the call raises (was [0.66, inf] for AIS)."""
    adapter, joint = _joint(_uniform_model, 128)
    oracle = joint.log_likelihood.double() - _uniform_log_px(joint.observed["x"])

    def guide(x):  # a hand-written proposal that covers the posterior's support [x - 1, x + 1]
        pyro.sample("z", dist.Normal(0.8 * x, 0.7))

    kw = dict(num_particles=500) if bound == "iwae" else dict(num_particles=16, num_steps=50)
    est = mutual_information(_uniform_model, "x", bound=bound, joint=joint, guide=guide, seed=0,
                             progress=False, **kw)
    assert all(math.isfinite(v) for v in (est.lower, est.upper, est.lower_se, est.upper_se))
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    kw = dict(num_steps=20) if bound == "ais" else {}
    with pytest.raises(DensityError, match="upper bound is infinite"):
        mutual_information(_uniform_model, "x", bound=bound, joint=joint, num_particles=1,
                           seed=0, progress=False, **kw)


def test_hmc_rejects_moves_to_zero_density_without_nan():
    from pyromi.samplers.hmc import DensityTerms, hmc_step, tempered_state

    def density(u):  # standard normal restricted to u > 0
        base = -0.5 * (u**2).sum(-1)
        tilt = torch.where(u[..., 0] > 0, torch.zeros_like(base), torch.full_like(base, -math.inf))
        return DensityTerms(base, tilt + 0 * u.sum(-1))

    torch.manual_seed(0)
    u = torch.rand(64, 1, 1) + 0.1
    state = tempered_state(u, density)
    accepted = 0
    for _ in range(50):
        state, info = hmc_step(state, density, torch.tensor(1.0), torch.tensor(1.5),
                               torch.ones(1), 3)
        accepted += int(info.accepted.sum())
        assert bool((state.u > 0).all()) and bool(torch.isfinite(state.base).all())
    assert 0 < accepted < 64 * 50  # some moves rejected at the support edge, many accepted


def test_log_marginal_and_audit_validate_data_at_the_door():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.5).to_event(1))

    bad = torch.zeros(4, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(DensityError, match=r"data= site 'x' has NaN or infinite values in 1 of 4 rows \(first rows \[2\]\)"):
        log_marginal(model, "x", bad, num_steps=5, progress=False)
    from pyromi.audit import audit

    with pytest.raises(DensityError, match="NaN or infinite"):
        audit(model, "x", data=bad, num_samples=4, num_steps=5)
    with pytest.raises(ValueError, match="holds no rows"):
        log_marginal(model, "x", torch.empty(0, 3), num_steps=5, progress=False)
    assert _PYRO_STACK == []


# ---------------------------------------------------------------- C6-8: process state
def _gauss():
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(z, 0.5).to_event(1))


def test_failed_call_leaves_no_handler_and_later_calls_work():
    with pytest.raises(ValueError):
        log_marginal(_gauss, "x", torch.empty(0, 2), num_steps=5, progress=False)
    assert _PYRO_STACK == []
    # a failure inside a model pass under pyromi's plates
    def breaks_under_plates():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.reshape(-1)[:2], 0.5).to_event(1))

    with pytest.raises(VectorizationError):
        mutual_information(breaks_under_plates, "x", num_samples=4, seed=0, vectorize=True)
    assert _PYRO_STACK == []
    # the user's own model still samples with its own shape, and pyromi still works
    assert pyro.poutine.trace(_gauss).get_trace().nodes["z"]["value"].shape == (2,)
    est = mutual_information(_gauss, "x", num_samples=8, num_particles=20, seed=0)
    assert math.isfinite(est.lower)


def test_concurrent_calls_equal_sequential_calls():
    seeds = [0, 1, 2, 3]
    kw = dict(num_samples=16, num_particles=50)
    sequential = [mutual_information(_gauss, "x", seed=s, **kw).lower for s in seeds]
    results, errors = {}, []

    def work(s):
        try:
            results[s] = mutual_information(_gauss, "x", seed=s, **kw).lower
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [results[s] for s in seeds] == sequential
    assert _PYRO_STACK == []


# ---------------------------------------------------------------- E13-16: arguments, memory, errors
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(seed=2**70), ValueError, r"seed= must be an int in \[0, 2\*\*63\)"),
        (dict(seed=-1), ValueError, "seed="),
        (dict(seed=1.5), TypeError, "seed="),
        (dict(max_batch=1.5), TypeError, "max_batch= must be an int"),
        (dict(max_batch=0), ValueError, "max_batch="),
        (dict(max_memory=-5), ValueError, "max_memory="),
        (dict(num_samples=0), ValueError, "num_samples="),
        (dict(num_particles=2.0), TypeError, "num_particles="),
        (dict(observed=123), TypeError, "observed= must be a site name"),
        (dict(device="gpu0"), ValueError, "device='gpu0' is not a device"),
        (dict(dtype="float31"), TypeError, "dtype= must be a floating torch dtype"),
        (dict(bound=None), ValueError, "unknown bound"),
    ],
)
def test_bad_arguments_raise_errors_naming_the_argument(kwargs, exc, match):
    call = dict(observed="x", num_samples=4, num_particles=8)
    call.update(kwargs)
    with pytest.raises(exc, match=match):
        mutual_information(_gauss, **call)
    assert _PYRO_STACK == []


def test_dtype_given_as_a_string():
    est = mutual_information(_gauss, "x", dtype="float32", num_samples=8, num_particles=20, seed=0)
    assert est.settings["dtype"] == "torch.float32"


def test_memory_budget_sizes_the_model_passes():
    W = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0)) / 100

    def wide():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, 1.0).to_event(1))

    adapter = ModelAdapter(wide, "x")
    per_pair = adapter.pair_bytes()
    assert per_pair >= 4 * 20000 * 4  # the x value and its location, per pair, times 4
    budget = 40 * per_pair
    est = mutual_information(wide, "x", num_samples=4, num_particles=64, max_memory=budget,
                             seed=0)
    assert est.settings["pairs_per_pass"] == 40
    same = mutual_information(wide, "x", num_samples=4, num_particles=64, max_batch=40, seed=0)
    assert est.lower == same.lower and est.upper == same.upper


def test_allocator_failure_becomes_a_resource_error():
    def hungry():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if z.numel() > 100:  # a model whose large passes exhaust memory
            torch.empty(2**62, dtype=torch.uint8)
        pyro.sample("x", dist.Normal(z, 1.0))

    with pytest.raises(ResourceError, match="Lower max_memory="):
        mutual_information(hungry, "x", num_samples=16, num_particles=100, seed=0)
    assert _PYRO_STACK == []
    est = mutual_information(hungry, "x", num_samples=16, num_particles=100, max_batch=64, seed=0)
    assert math.isfinite(est.upper)


def test_model_that_fails_on_its_own_is_reported_as_its_own_error():
    def broken():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0))
        raise KeyError("a bug in the model")

    with pytest.raises(ModelError, match="error of the model itself") as info:
        mutual_information(broken, "x", num_samples=4, seed=0)
    assert "vectorisable" not in str(info.value)


def test_loose_iwae_results_warn():
    def sharp():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1e-6))

    with pytest.warns(UserWarning, match="iwae sandwich is wide"):
        est = mutual_information(sharp, "x", num_samples=16, num_particles=100, seed=0)
    assert est.diagnostics["wide_sandwich"] and "advice" in est.diagnostics

    def guide(x):  # a badly placed encoder: q(z|x) far from p(z|x)
        pyro.sample("z", dist.Normal(x + 3.0, 0.05))

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.3))

    with pytest.warns(UserWarning, match="lower bound is negative"):
        est = mutual_information(model, "x", guide=guide, num_samples=32, num_particles=10, seed=0)
    assert est.lower < 0


def test_rng_and_param_store_unchanged_by_seeded_calls():
    pyro.param("user_param", torch.ones(2))
    state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    mutual_information(_gauss, "x", bound="ais", num_samples=4, num_steps=5, seed=3, progress=False)
    with pytest.raises(ValueError):
        mutual_information(_gauss, "x", num_samples=0, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert list(pyro.get_param_store().keys()) == ["user_param"]


def test_given_joint_drawn_with_the_same_seed_does_not_replay_its_latents():
    """A batch drawn under seed s and evaluated with seed=s: the proposal draws must be fresh, not
    z* again (that made the K = 1 upper bound equal the lower bound, 0, below the truth)."""
    adapter, joint = _joint(_gauss, 64, seed=0)
    est = mutual_information(_gauss, "x", joint=joint, num_particles=1, seed=0)
    assert float((est.terms["upper"] - est.terms["lower"]).abs().min()) > 0


@pytest.mark.parametrize(
    "bound, kwargs, names",
    [
        ("iwae", dict(num_leapfrog=3), "num_leapfrog="),
        ("iwae", dict(target_accept=0.8, critic=torch.nn.Linear(2, 1)), "target_accept=, critic="),
        ("infonce", dict(guide=lambda x: None), "guide="),
        ("mist", dict(train_steps=10), "train_steps="),
        ("ba", dict(level=0.5), "level="),
        ("giwae", dict(schedule="linear"), "schedule="),
    ],
)
def test_keywords_a_bound_would_ignore_are_refused(bound, kwargs, names):
    with pytest.raises(ValueError, match=f"bound={bound!r} does not use {names}"):
        mutual_information(_gauss, "x", bound=bound, num_samples=8, **kwargs)


# ---------------------------------------------------------------- found by a new-user review
def _sharp():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    pyro.sample("x", dist.Normal(z, 0.2))


def test_guide_with_a_site_outside_the_model_is_refused():
    def guide(x):
        pyro.sample("z", dist.Normal(x / 1.04, math.sqrt(0.04 / 1.04)))
        pyro.sample("aux", dist.Normal(0.0, 1.0))  # not a latent of the model

    with pytest.raises(GuideError, match=r"\['aux'\] that are not latent sites"):
        mutual_information(_sharp, "x", guide=guide, num_samples=16, num_particles=10, seed=0)


@pytest.mark.parametrize("where", ["x", "z", "poutine"])
def test_masked_sites_are_refused(where):
    def model():
        prior = dist.Normal(0.0, 1.0)
        z = pyro.sample("z", prior.mask(False) if where == "z" else prior)
        lik = dist.Normal(z, 0.5)
        if where == "poutine":
            with pyro.poutine.mask(mask=False):
                pyro.sample("x", lik)
        else:
            pyro.sample("x", lik.mask(False) if where == "x" else lik)

    with pytest.raises(SiteError, match="log density masked"):
        mutual_information(model, "x", num_samples=8, seed=0)


@pytest.mark.parametrize("bound", ["mist", "infonce", "ba", "mine_dv"])
def test_sample_mixing_is_caught_without_densities(bound):
    def mixing():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z.mean() + 0 * z, 0.5))

    kw = {} if bound == "mist" else dict(train_steps=5)
    with pytest.raises(VectorizationError, match="parameter 'loc'.*mixes values"):
        mutual_information(mixing, "x", bound=bound, num_samples=64, seed=0, vectorize=True, **kw)


def test_ais_overflow_of_a_constrained_latent_is_a_rejected_move_not_a_nan_error():
    """A log-normal latent: leapfrog steps that fly off to u ~ 1e3 give exp(u) = inf and a NaN
    density by float overflow; the sandwich must still come back and hold the oracle."""

    def model():
        z = pyro.sample("z", dist.LogNormal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z.log(), 0.2))

    adapter, joint = _joint(model, 64)
    log_px = dist.Normal(0.0, math.sqrt(1.04)).log_prob(joint.observed["x"]).double()
    oracle = joint.log_likelihood.double() - log_px
    for T in (10, 100):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = mutual_information(model, "x", bound="ais", joint=joint, num_particles=4,
                                     num_steps=T, seed=0, progress=False)
        assert_lower_bound(est.terms["lower"], oracle)
        assert_upper_bound(est.terms["upper"], oracle)


def test_pure_vectorisation_failure_is_not_blamed_on_the_model():
    def model():
        W = pyro.sample("W", dist.Normal(torch.zeros(2, 3), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(W.t() @ torch.ones(2), 0.5).to_event(1))

    model()  # runs on its own
    with pytest.raises(VectorizationError, match="not vectorisable"):
        mutual_information(model, "x", num_samples=8, num_particles=4, seed=0, vectorize=True)
    assert _PYRO_STACK == []


def test_failure_in_a_large_model_pass_is_translated():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if z.numel() > 2000:
            raise RuntimeError("fails on a big batch")
        pyro.sample("x", dist.Normal(z, 0.5))

    with pytest.raises(VectorizationError, match=r"model pass over 200 x 16 .*fails on a big batch"):
        mutual_information(model, "x", num_samples=16, num_particles=200, seed=0)
    assert _PYRO_STACK == []


def test_autoguide_instance_needs_the_batch_it_was_fitted_on():
    from pyro.infer.autoguide import AutoNormal

    adapter, joint = _joint(_sharp, 16)
    guide = AutoNormal(adapter.conditioned_model(joint))
    guide()
    with pytest.raises(GuideError, match="pass joint="):
        mutual_information(_sharp, "x", guide=guide, num_samples=16, num_particles=10, seed=0)
    est = mutual_information(_sharp, "x", guide=guide, joint=joint, num_particles=10, seed=0)
    assert math.isfinite(est.upper)


def test_mist_refuses_sizes_it_does_not_use():
    with pytest.raises(ValueError, match="does not use num_particles="):
        mutual_information(_sharp, "x", bound="mist", num_particles=999, num_samples=100)


def test_hard_support_likelihood_under_pyros_default_validation():
    """With Pyro's validation on (its default), the probe's cross-pairs (x_i scored under another
    sample's z, outside its support) are density 0, not a validation error."""

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Uniform(z - 0.5, z + 0.5))

    with pyro.validation_enabled(True):
        est = mutual_information(model, "x", num_samples=64, num_particles=2000, seed=0)
    assert math.isfinite(est.lower) and math.isfinite(est.upper)
