"""End-to-end known answers for models with enumerated discrete latents (issue 13, section 3).

The models are written the way Pyro's tutorials write them (``@config_enumerate`` or
``infer={"enumerate": "parallel"}``, ``pyro.markov``); pyromi sums the discrete latents out in every
density pass, so the reported quantity is I(x; {k, z}). Each test computes an exact reference:

* Gaussian mixture, only a discrete latent: I(x; k) = h(x) - h(x | k) by 1-D quadrature. With no
  continuous latent every importance weight is p(x) itself, so both bounds equal the per-sample
  oracle ``log p(x_i | k_i*) - log p(x_i)`` exactly.
* k -> z -> x: I(x; {k, z}) = I(x; z) (x is independent of k given z) = h(x) - h(x | z), with x a
  Gaussian mixture marginally (quadrature) and h(x | z) = 1/2 log(2 pi e sigma_x^2).
* HMM with ``pyro.markov``: I(y; s) = E[log p(y | s) - log p(y)], log p(y) by the forward
  algorithm; the expectation by Monte Carlo (standard error reported) and, on pyromi's own joint
  draws, per sample exactly.

The bound checks are paired with the per-sample oracle on the same joint draws (``joint=``), as in
``conftest.py``; the unpaired checks compare with the exact MI within the reported standard errors.
The references themselves are checked now (not xfail) against brute force.
"""

from __future__ import annotations

import itertools
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import config_enumerate

from pyromi import ModelAdapter, SiteError, mutual_information
from pyromi._rng import seeded

from .conftest import assert_lower_bound, assert_upper_bound

Z = 4.0  # unpaired checks: |estimate - truth| within Z combined standard errors


def _joint(model, observed, n, seed):
    with seeded(seed):
        return ModelAdapter(model, observed).sample_joint(n)


def _mixture_entropy(w, mu, sd, lo=-30.0, hi=30.0, num=60001) -> float:
    """h(x) of x ~ sum_k w_k N(mu_k, sd_k^2), by the trapezoid rule on a fine grid (float64)."""
    x = torch.linspace(lo, hi, num, dtype=torch.float64)
    log_p = (w.double().log() + dist.Normal(mu.double(), sd.double()).log_prob(x[:, None])).logsumexp(-1)
    return float(-torch.trapezoid(log_p.exp() * log_p, x))


def _mixture_log_density(x, w, mu, sd):
    return (w.double().log() + dist.Normal(mu.double(), sd.double()).log_prob(x.double()[..., None])).logsumexp(-1)


def _within(est_value, est_se, truth, truth_se=0.0):
    return abs(est_value - truth) <= Z * math.sqrt(est_se**2 + truth_se**2) + 1e-6


# ============================================================================ Gaussian mixture
GMM_W = torch.tensor([0.3, 0.5, 0.2])
GMM_MU = torch.tensor([-3.0, 0.0, 2.5])
GMM_SIGMA = 1.0


@config_enumerate
def gmm():
    k = pyro.sample("k", dist.Categorical(GMM_W))
    pyro.sample("x", dist.Normal(GMM_MU[k], GMM_SIGMA))


def gmm_truth() -> float:
    h_x = _mixture_entropy(GMM_W, GMM_MU, torch.full((3,), GMM_SIGMA))
    return h_x - 0.5 * math.log(2 * math.pi * math.e * GMM_SIGMA**2)


def gmm_oracle(x, k):
    """log p(x_i | k_i*) - log p(x_i)."""
    x = x.double()
    ll = dist.Normal(GMM_MU.double()[k], GMM_SIGMA).log_prob(x)
    return ll - _mixture_log_density(x, GMM_W, GMM_MU, torch.full((3,), GMM_SIGMA))


def test_gmm_reference_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    k = torch.multinomial(GMM_W, 200_000, replacement=True, generator=g)
    x = GMM_MU[k] + GMM_SIGMA * torch.randn(k.shape, generator=g)
    d = gmm_oracle(x, k)
    se = float(d.std() / math.sqrt(d.numel()))
    assert _within(float(d.mean()), se, gmm_truth())
    h_k = float(-(GMM_W * GMM_W.log()).sum())
    assert 0.3 < gmm_truth() < h_k  # components overlap: strictly between 0 and H(k)


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_gmm_only_discrete_latent_is_exact_up_to_monte_carlo_over_x(bound):
    """Only a discrete latent: the sandwich collapses to the oracle on every draw."""
    extra = {"num_steps": 10} if bound == "ais" else {}
    joint = _joint(gmm, "x", 1000, seed=0)
    est = mutual_information(gmm, observed="x", bound=bound, joint=joint, num_particles=4, seed=1,
                             progress=False, **extra)
    x = joint.observed["x"]
    k = joint.discrete["k"]
    oracle = gmm_oracle(x, k)
    torch.testing.assert_close(est.terms["lower"].double(), oracle, atol=1e-4, rtol=0)
    torch.testing.assert_close(est.terms["upper"].double(), oracle, atol=1e-4, rtol=0)
    assert abs(est.upper - est.lower) < 1e-4


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_gmm_sandwich_contains_the_quadrature_truth(bound):
    extra = {"num_steps": 10} if bound == "ais" else {}
    est = mutual_information(gmm, observed="x", bound=bound, num_samples=2000, num_particles=4,
                             seed=0, progress=False, **extra)
    truth = gmm_truth()
    assert est.lower <= truth + Z * est.lower_se
    assert est.upper >= truth - Z * est.upper_se
    assert _within(est.lower, est.lower_se, truth)  # and close: exact up to MC over x
    assert _within(est.upper, est.upper_se, truth)
    assert est.lower_se < 0.05


# ============================================================================ k -> z -> x
MIX_W = torch.tensor([0.3, 0.4, 0.3])
MIX_MU = torch.tensor([-2.0, 1.0, 4.0])
MIX_S = torch.tensor([0.5, 1.0, 0.7])
MIX_SIGMA_X = 0.5


@config_enumerate
def mixed():
    k = pyro.sample("k", dist.Categorical(MIX_W))
    z = pyro.sample("z", dist.Normal(MIX_MU[k], MIX_S[k]))
    pyro.sample("x", dist.Normal(z, MIX_SIGMA_X))


def _mixed_marginal_sd():
    return (MIX_S**2 + MIX_SIGMA_X**2).sqrt()


def mixed_truth() -> float:
    """I(x; {k, z}) = I(x; z) = h(x) - h(x | z)."""
    return _mixture_entropy(MIX_W, MIX_MU, _mixed_marginal_sd()) - 0.5 * math.log(
        2 * math.pi * math.e * MIX_SIGMA_X**2
    )


def mixed_oracle(x, z):
    """log p(x_i | k_i*, z_i*) - log p(x_i) = log N(x_i; z_i*, sigma_x) - log p(x_i)."""
    x, z = x.double(), z.double()
    return dist.Normal(z, MIX_SIGMA_X).log_prob(x) - _mixture_log_density(x, MIX_W, MIX_MU, _mixed_marginal_sd())


def test_mixed_reference_matches_monte_carlo():
    g = torch.Generator().manual_seed(1)
    k = torch.multinomial(MIX_W, 200_000, replacement=True, generator=g)
    z = MIX_MU[k] + MIX_S[k] * torch.randn(k.shape, generator=g)
    x = z + MIX_SIGMA_X * torch.randn(k.shape, generator=g)
    d = mixed_oracle(x, z)
    se = float(d.std() / math.sqrt(d.numel()))
    assert _within(float(d.mean()), se, mixed_truth())


@pytest.mark.parametrize(
    "bound, kw, width",
    [("iwae", dict(num_particles=1000), 0.1),
     ("ais", dict(num_particles=8, num_steps=100, num_leapfrog=5), 0.5)],
)
def test_mixed_sandwich_contains_the_oracle_on_shared_draws(bound, kw, width):
    """HMC moves only z (k summed out); the bounds are on I(x; {k, z}) = I(x; z)."""
    joint = _joint(mixed, "x", 64, seed=2)
    assert set(joint.latent) == {"z"} and set(joint.discrete) == {"k"}
    oracle = mixed_oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(mixed, observed="x", bound=bound, joint=joint, seed=3, progress=False, **kw)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    # 1-D z at ~1.5 nats: the prior proposal with K = 1000 is tight; AIS limits not measured yet
    assert est.upper - est.lower < width


def test_mixed_iwae_contains_the_quadrature_truth():
    est = mutual_information(mixed, observed="x", bound="iwae", num_samples=1000, num_particles=500,
                             seed=4, progress=False)
    truth = mixed_truth()
    assert est.lower <= truth + Z * est.lower_se
    assert est.upper >= truth - Z * est.upper_se
    assert est.lower >= truth - 0.1 - Z * est.lower_se  # not trivially loose either


# ============================================================================ HMM with pyro.markov
HMM_T = 5
HMM_INIT = torch.tensor([0.6, 0.3, 0.1])
HMM_TRANS = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
HMM_LOCS = torch.tensor([-2.0, 0.0, 2.0])
HMM_SCALE = 0.7
HMM_OBS = [f"y_{t}" for t in range(HMM_T)]


def hmm():
    """The tutorial's HMM, generative: states x_t enumerated, Normal emissions y_t."""
    x = 0
    for t in pyro.markov(range(HMM_T)):
        probs = HMM_INIT if t == 0 else HMM_TRANS[x]
        x = pyro.sample(f"x_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Normal(HMM_LOCS[x], HMM_SCALE))


def hmm_log_marginal(y):
    """log p(y_{0:T-1}) by the forward algorithm, y of shape (..., T), float64."""
    y = y.double()
    emit = dist.Normal(HMM_LOCS.double(), HMM_SCALE)
    alpha = HMM_INIT.double().log() + emit.log_prob(y[..., 0, None])
    for t in range(1, y.shape[-1]):
        alpha = (alpha[..., :, None] + HMM_TRANS.double().log()).logsumexp(-2) + emit.log_prob(y[..., t, None])
    return alpha.logsumexp(-1)


def hmm_oracle(y, s):
    """log p(y | s*) - log p(y) per sequence; y, s of shape (..., T)."""
    ll = dist.Normal(HMM_LOCS.double()[s], HMM_SCALE).log_prob(y.double()).sum(-1)
    return ll - hmm_log_marginal(y)


def hmm_sample(n, generator):
    s = torch.empty(n, HMM_T, dtype=torch.long)
    s[:, 0] = torch.multinomial(HMM_INIT, n, replacement=True, generator=generator)
    for t in range(1, HMM_T):
        s[:, t] = torch.multinomial(HMM_TRANS[s[:, t - 1]], 1, generator=generator).squeeze(-1)
    y = HMM_LOCS[s] + HMM_SCALE * torch.randn(n, HMM_T, generator=generator)
    return s, y


def hmm_truth(n=20_000, seed=5):
    """I(y; s) by Monte Carlo over (s, y): (mean, standard error)."""
    s, y = hmm_sample(n, torch.Generator().manual_seed(seed))
    d = hmm_oracle(y, s)
    return float(d.mean()), float(d.std() / math.sqrt(n))


def test_forward_algorithm_matches_brute_force_over_all_paths():
    y = torch.randn(4, HMM_T, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    paths = torch.tensor(list(itertools.product(range(3), repeat=HMM_T)))  # (3^T, T)
    log_prior = HMM_INIT.double().log()[paths[:, 0]] + sum(
        HMM_TRANS.double().log()[paths[:, t - 1], paths[:, t]] for t in range(1, HMM_T)
    )
    ll = dist.Normal(HMM_LOCS.double()[paths], HMM_SCALE).log_prob(y[:, None, :]).sum(-1)  # (4, 3^T)
    torch.testing.assert_close(hmm_log_marginal(y), (log_prior + ll).logsumexp(-1), atol=1e-10, rtol=0)
    mean, se = hmm_truth()
    assert se < 0.02 and 1.0 < mean < HMM_T * math.log(3)


def _hmm_y(joint):
    return torch.stack([joint.observed[n].reshape(-1) for n in HMM_OBS], -1)


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_hmm_bounds_equal_the_forward_algorithm_oracle_on_shared_draws(bound):
    extra = {"num_steps": 10} if bound == "ais" else {}
    joint = _joint(hmm, HMM_OBS, 500, seed=7)
    y = _hmm_y(joint)
    s = torch.stack([joint.discrete[f"x_{t}"].reshape(-1) for t in range(HMM_T)], -1)
    oracle = hmm_oracle(y, s)
    est = mutual_information(hmm, observed=HMM_OBS, bound=bound, joint=joint, num_particles=2, seed=8,
                             progress=False, **extra)
    torch.testing.assert_close(est.terms["lower"].double(), oracle, atol=1e-4, rtol=0)
    torch.testing.assert_close(est.terms["upper"].double(), oracle, atol=1e-4, rtol=0)


def test_hmm_estimate_agrees_with_monte_carlo_truth():
    est = mutual_information(hmm, observed=HMM_OBS, bound="iwae", num_samples=2000, num_particles=2,
                             seed=9, progress=False)
    truth, truth_se = hmm_truth()
    assert _within(est.lower, est.lower_se, truth, truth_se)
    assert _within(est.upper, est.upper_se, truth, truth_se)
    assert est.lower <= truth + Z * math.hypot(est.lower_se, truth_se)


# ============================================================================ errors
def _unmarked():
    k = pyro.sample("k", dist.Categorical(GMM_W))
    pyro.sample("x", dist.Normal(GMM_MU[k], GMM_SIGMA))


def test_unmarked_discrete_latent_is_an_error_that_says_how_to_mark_it():
    with pytest.raises(SiteError) as e:
        mutual_information(_unmarked, observed="x", bound="iwae", num_samples=8, num_particles=2, seed=0,
                           progress=False)
    msg = str(e.value)
    assert "'k'" in msg and "enumerate" in msg and "config_enumerate" in msg
