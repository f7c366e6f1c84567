"""Multi-Sample AIS: reductions (T = 1, K = 1), sandwiches around the oracle, HMC invariance,
schedules, guide start, constrained and multi-site models, faults (bounds.md 2.6-2.7, 8)."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from pyromi import AmortizedNormal, ModelAdapter, fit_proposal, log_marginal, mutual_information
from pyromi._rng import seeded
from pyromi.samplers.ais import AnnealingPath, KernelTables, run_ais
from pyromi.samplers.hmc import DensityTerms, hmc_step, tempered_state
from pyromi.samplers.schedules import anneal_schedule, equal_length_schedule

from .conftest import assert_lower_bound, assert_upper_bound, paired_se

AIS = dict(bound="ais", progress=False)


def _joint(model, n, seed):
    with seeded(seed):
        return ModelAdapter(model, "x").sample_joint(n)


def test_t1_is_iwae_with_the_prior_on_shared_draws(toy):
    joint = _joint(toy.model, 64, seed=0)
    ais = mutual_information(toy.model, "x", joint=joint, num_particles=10, num_steps=1, seed=1, **AIS)
    iw = mutual_information(toy.model, "x", joint=joint, num_particles=10, seed=1)
    torch.testing.assert_close(ais.terms["lower"], iw.terms["lower"], atol=1e-8, rtol=0)
    torch.testing.assert_close(ais.terms["upper"], iw.terms["upper"], atol=1e-8, rtol=0)


def test_t1_is_iwae_with_a_guide_start(toy):
    q = AmortizedNormal(toy.model, observed="x", seed=0, hidden=(32,))
    fit_proposal(q, 100, optim=pyro.optim.Adam({"lr": 3e-3}), seed=0)
    joint = _joint(toy.model, 32, seed=2)
    ais = mutual_information(toy.model, "x", joint=joint, start=q, num_particles=8, num_steps=1, seed=3, **AIS)
    iw = mutual_information(toy.model, "x", joint=joint, guide=q, num_particles=8, seed=3)
    torch.testing.assert_close(ais.terms["lower"], iw.terms["lower"], atol=1e-6, rtol=0)
    torch.testing.assert_close(ais.terms["upper"], iw.terms["upper"], atol=1e-6, rtol=0)


def test_guide_start_keeps_a_float32_model_in_float32(toy32):
    """A user guide's log q is float64; the annealed state must stay in the model's dtype."""
    guide = toy32.posterior_guide(2.0)

    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(toy32.dz), 1.0).to_event(1))
        assert z.dtype == torch.float32, z.dtype
        pyro.sample("x", dist.Normal(z @ toy32.W.T, toy32.sigma).to_event(1))

    joint = _joint(model, 16, seed=0)
    oracle = toy32.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(model, "x", start=guide, bound="ais", joint=joint,
                             num_particles=4, num_steps=20, seed=0, progress=False)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    assert est.upper - est.lower < 0.5  # a good start: measured 0.08 wide


def test_k1_is_bdmc(toy):
    joint = _joint(toy.model, 32, seed=4)
    est = mutual_information(toy.model, "x", joint=joint, num_particles=1, num_steps=20, seed=5, **AIS)
    ll = joint.log_likelihood.double()
    d = est.diagnostics
    # K = 1: the coupled lower bound is the single backward chain (= the harmonic-mean form)
    torch.testing.assert_close(est.terms["lower"], ll - d["log_weight_backward"], atol=1e-10, rtol=0)
    torch.testing.assert_close(est.terms["upper"], ll - d["log_weights"][0], atol=1e-10, rtol=0)


@pytest.fixture(scope="module")
def toy_sandwiches(toy):
    joint = _joint(toy.model, 32, seed=6)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    out = {}
    for T in (10, 100, 1000):
        out[T] = mutual_information(toy.model, "x", joint=joint, num_particles=8, num_steps=T,
                                    seed=7, **AIS)
    return oracle, out


def test_sandwich_contains_the_oracle_and_shrinks_with_t(toy_sandwiches):
    oracle, ests = toy_sandwiches
    for T, est in ests.items():
        assert_lower_bound(est.terms["lower"], oracle)
        assert_upper_bound(est.terms["upper"], oracle)
        assert not any(math.isnan(v) for v in (est.lower, est.upper))
    widths = [ests[T].terms["upper"] - ests[T].terms["lower"] for T in (10, 100, 1000)]
    for w_hi, w_lo in zip(widths, widths[1:]):
        d = w_lo - w_hi
        assert float(d.mean()) < -3 * paired_se(d)  # strictly narrower, beyond MC error
    # bounds.md reference (T = 1000, K = 10, sigmoid, fixed eps): width 0.47 nats; ours must not be worse
    assert ests[1000].upper - ests[1000].lower < 0.47
    assert ests[1000].diagnostics["wide_sandwich"] is False


def test_diagnostics_and_inference_data(toy_sandwiches):
    _, ests = toy_sandwiches
    est = ests[100]
    d = est.diagnostics
    assert d["acceptance"].shape == (99, 32)
    assert d["step_size"].shape == (101, 32)
    assert d["betas"].shape == (101,)
    assert bool((d["betas"].diff() > 0).all()) and float(d["betas"][0]) == 0 and float(d["betas"][-1]) == 1
    assert 0.3 < d["acceptance_mean"] < 0.95
    assert d["ess_fraction"].shape == (32,)
    assert d["bdmc_gap"].shape == (32,)
    idata = est.to_inference_data()
    assert idata.sample_stats["log_weight"].shape == (1, 8, 32)  # (chain, draw K, sample N)
    assert "acceptance" in idata.constant_data


def test_same_seed_same_numbers(toy32):
    a = mutual_information(toy32.model, "x", num_samples=8, num_particles=4, num_steps=20, seed=1, **AIS)
    b = mutual_information(toy32.model, "x", num_samples=8, num_particles=4, num_steps=20, seed=1, **AIS)
    assert (a.lower, a.upper) == (b.lower, b.upper)


def test_hmc_leaves_a_gaussian_invariant():
    """Exact draws stay exactly distributed after 20 transitions (moments and KS per coordinate)."""
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sd = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)

    def density(u):
        base = dist.Normal(mu, sd).log_prob(u).sum(-1)
        return DensityTerms(base, torch.zeros_like(base))

    with seeded(0):
        u = mu + sd * torch.randn(4000, 1, 3, dtype=torch.float64)
        state = tempered_state(u, density)
        accepts = []
        for _ in range(20):
            state, info = hmc_step(state, density, torch.tensor(0.0, dtype=torch.float64),
                                   torch.full((4000, 1), 0.9, dtype=torch.float64),
                                   torch.ones(3, dtype=torch.float64), num_leapfrog=5)
            accepts.append(info.accept_prob.mean())
    x = state.u[:, 0]
    assert 0.2 < float(torch.stack(accepts).mean()) < 0.99
    for j in range(3):
        z = ((x[:, j] - mu[j]) / sd[j]).numpy()
        assert stats.kstest(z, "norm").pvalue > 1e-3
        assert abs(z.mean()) < 4 / math.sqrt(4000) * 3  # chains are correlated with their start
        assert abs(z.var() - 1) < 0.15


def test_guide_start_is_tighter_than_prior_start(toy32):
    q = AmortizedNormal(toy32.model, observed="x", seed=0)
    fit_proposal(q, 500, optim=pyro.optim.Adam({"lr": 3e-3}), seed=0)
    joint = _joint(toy32.model, 32, seed=8)
    oracle = toy32.oracle(joint.observed["x"], joint.latent["z"])
    prior = mutual_information(toy32.model, "x", joint=joint, num_particles=8, num_steps=50, seed=9, **AIS)
    guided = mutual_information(toy32.model, "x", joint=joint, start=q, num_particles=8, num_steps=50,
                                seed=9, **AIS)
    for est in (prior, guided):
        assert_lower_bound(est.terms["lower"], oracle)
        assert_upper_bound(est.terms["upper"], oracle)
    assert guided.upper - guided.lower < prior.upper - prior.lower
    assert guided.upper - guided.lower < 0.1


def test_constrained_latent(gamma_exp):
    joint = _joint(gamma_exp.model, 64, seed=10)
    oracle = gamma_exp.oracle(joint.observed["x"], joint.latent["lam"])
    est = mutual_information(gamma_exp.model, "x", joint=joint, num_particles=8, num_steps=100,
                             seed=11, **AIS)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    assert est.upper - est.lower < 0.05


def test_multi_site_plated_model(hier):
    joint = _joint(hier.model, 48, seed=12)
    oracle = hier.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(hier.model, "x", joint=joint, num_particles=8, num_steps=100,
                             seed=13, **AIS)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    assert est.upper - est.lower < 0.2


def test_divergent_trajectories_are_rejected_and_counted():
    """A centred funnel (z's scale is exp(v / 2)): no fixed step size fits both its ends, so some
    trajectories' energy error explodes. They are rejected and counted, and the bounds stay
    finite. (A Gaussian path no longer diverges: step sizes are capped below the measured leapfrog
    stability limit, tests/test_ais_divergence.py.)"""
    def model():
        v = pyro.sample("v", dist.Normal(torch.tensor(0.0), 3.0))
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0), torch.exp(v / 2)))
        pyro.sample("x", dist.Normal(z, 0.5))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = mutual_information(model, "x", num_samples=16, num_particles=8, num_steps=30,
                                 seed=3, **AIS)
    assert math.isfinite(est.lower) and math.isfinite(est.upper)
    assert not bool(torch.isnan(est.terms["lower"]).any())
    assert est.diagnostics["divergences"] > 0  # measured 107 at seed 3
    assert est.lower <= est.upper + 3 * est.upper_se


@pytest.mark.parametrize("eps,expected", [(10.0, "all"), (1e-3, 0)])
def test_divergence_count_with_fixed_step_sizes(toy, eps, expected):
    """Frozen tables with a huge step size (100x the posterior scale) make every leapfrog
    trajectory blow up: each of the C x (T - 1) transitions per sample is counted and rejected,
    and the weights stay finite. A tiny step size gives none."""
    joint = _joint(toy.model, 8, seed=40)
    adapter = ModelAdapter(toy.model, "x")
    u_star, _ = adapter.unconstrain({k: v.unsqueeze(0) for k, v in joint.latent.items()}, joint.observed)
    T, K = 10, 4
    betas = torch.linspace(0, 1, T + 1, dtype=torch.float64)
    tables = KernelTables(betas, torch.full((T + 1, 8), eps, dtype=torch.float64),
                          torch.ones(T + 1, 8, toy.dz, dtype=torch.float64))
    with seeded(41):
        res = run_ais(AnnealingPath(adapter, joint.observed), tables, K, 5, u_star[0])
    assert bool(torch.isfinite(res.log_weights).all())
    assert bool(torch.isfinite(res.log_weight_backward).all())
    if expected == "all":
        assert res.divergences.tolist() == [(K + 1) * (T - 1)] * 8
        assert float(res.acceptance.max()) == 0.0
    else:
        assert res.divergences.tolist() == [0] * 8
        assert float(res.acceptance.mean()) > 0.99


def test_log_marginal_brackets_the_exact_value(toy):
    joint = _joint(toy.model, 16, seed=14)
    exact = toy.log_marginal(joint.observed["x"])
    r = log_marginal(toy.model, "x", joint.observed["x"], latent_values=joint.latent["z"],
                     num_particles=8, num_steps=300, seed=15, progress=False)
    assert_lower_bound(r.lower, exact)  # E LME <= log p(x)
    assert_upper_bound(r.upper, exact)
    assert float((r.upper - r.lower).mean()) < 1.0  # measured 0.34 nats (T = 300, K = 8)
    only = log_marginal(toy.model, "x", joint.observed["x"][0], num_particles=8, num_steps=50,
                        seed=16, progress=False)
    assert only.upper is None and only.lower.shape == (1,)


@pytest.mark.parametrize("schedule", ["linear", "sigmoid", "geometric"])
def test_named_schedules(schedule):
    b = anneal_schedule(schedule, 50)
    assert b.shape == (51,) and float(b[0]) == 0.0 and float(b[-1]) == 1.0
    assert bool((b.diff() > 0).all())


def test_equal_length_schedule_equalises_increments():
    grid = torch.cat([torch.zeros(1), torch.logspace(-8, 0, 400)]).double()
    s = 1.0 / grid.clamp_min(1e-8)  # spread ~ 1/beta above 1e-8: length is uniform in log beta
    b = equal_length_schedule(grid, s, 40)
    assert bool((b.diff() > 0).all())
    # below 1e-8 the spread is constant (length 1 of ~19.4 in total): linear spacing there
    assert float(b[1]) == pytest.approx(1e-8 * 19.42 / 40 / 1.0, rel=0.05)
    ratios = (b[4:] / b[3:-1]).log()  # above it: geometric spacing, equal ratios
    assert float(ratios.std() / ratios.mean()) < 0.01


@pytest.mark.parametrize("kw,match", [
    ({"num_steps": 0}, r"num_steps\b.* must be an int >= 1, got 0"),
    ({"num_particles": 0}, r"num_particles\b.* must be a.* int.*, got 0"),
    ({"schedule": "cosine"}, r"unknown schedule 'cosine'; choose one of"),
    ({"schedule": [0.0, 0.6, 0.4, 1.0], "num_steps": 3}, "a schedule array must be strictly increasing"),
    ({"schedule": [0.0, 0.5, 1.0], "num_steps": 3},
     r"must hold T \+ 1 = 4 betas \(from 0 to 1\) for num_steps=3"),
    ({"kernel": object()}, r"kernel= must be a pyro.infer.mcmc.HMC or NUTS object .*got object"),
])
def test_bad_ais_arguments(toy32, kw, match):
    with pytest.raises(ValueError, match=match):
        mutual_information(toy32.model, "x", num_samples=4, seed=0, **{**AIS, **kw})


def test_ais_only_arguments_are_rejected_for_other_bounds(toy32):
    with pytest.raises(ValueError, match=r"bound='iwae' does not use num_steps=: num_steps= is used by bound='ais'"):
        mutual_information(toy32.model, "x", num_samples=4, num_steps=10)


def test_pyro_kernel_path_agrees_with_the_vectorised_path():
    """Pyro's HMC kernel driven chain by chain, with the same frozen tables, estimates the same
    bounds: per-sample differences average to 0 within Monte Carlo error."""
    from pyro.infer.mcmc import HMC

    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 0.3).to_event(1))

    joint = _joint(model, 12, seed=20)
    kw = dict(joint=joint, num_particles=4, num_steps=15, num_leapfrog=5, seed=21, **AIS)
    fast = mutual_information(model, "x", **kw)
    slow = mutual_information(model, "x", kernel=HMC(potential_fn=lambda p: 0.0, num_steps=5), **kw)
    assert slow.settings["kernel"] == "Pyro HMC, per chain"
    for side in ("lower", "upper"):
        d = fast.terms[side] - slow.terms[side]
        assert abs(float(d.mean())) <= 3 * paired_se(d)
    assert slow.diagnostics["acceptance_mean"] > 0.3


def test_hook_is_called_per_temperature_with_tensors(toy32):
    seen = []
    mutual_information(toy32.model, "x", num_samples=4, num_particles=3, num_steps=12, seed=0,
                       hook=lambda t, info: seen.append((t, type(info["log_weights"]))), **AIS)
    assert [t for t, _ in seen] == list(range(1, 12))
    assert all(kind is torch.Tensor for _, kind in seen)


def test_iwae_estimates_export_to_inference_data(toy32):
    est = mutual_information(toy32.model, "x", num_samples=8, num_particles=10, seed=0)
    idata = est.to_inference_data()
    assert idata.constant_data["mi_lower_term"].shape == (8,)


def test_samples_are_processed_in_blocks_of_bounded_size(toy):
    joint = _joint(toy.model, 10, seed=30)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(toy.model, "x", joint=joint, num_particles=3, num_steps=50,
                             max_batch=8, seed=31, **AIS)
    assert est.settings["sample_chunk"] == 2  # 8 // (K + 1) samples per block
    assert est.diagnostics["betas"].shape == (5, 51)  # one adaptive schedule per block
    assert est.terms["lower"].shape == (10,)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    # T = 50, K = 3 on 14.2 nats: measured [12.37, 18.30]; bounds.md T = 100, K = 10: [12.65, 16.62]
    assert est.lower > 10.0 and est.upper < 22.0
