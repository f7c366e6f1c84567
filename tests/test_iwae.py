"""IWAE sandwich and Barber-Agakov bounds against closed-form truths (bounds.md sections 2, 7, 8)."""

import math

import pyro
import pytest
import torch

from pyromi import AmortizedNormal, ModelAdapter, fit_proposal, mutual_information
from pyromi._rng import seeded

from .conftest import assert_lower_bound, assert_upper_bound, paired_se


def _joint(model, n, seed, observed="x"):
    with seeded(seed):
        return ModelAdapter(model, observed).sample_joint(n)


def test_exact_posterior_gives_oracle_per_sample(toy):
    """q = p(z|x): BA, IWAE_L and IWAE_U equal log p(x|z*) - log p(x) for every sample and K."""
    joint = _joint(toy.model, 200, seed=1)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    guide = toy.posterior_guide()
    ba = mutual_information(toy.model, "x", bound="ba", guide=guide, joint=joint, seed=2)
    torch.testing.assert_close(ba.terms["lower"], oracle, atol=1e-8, rtol=0)
    for K in (1, 7, 100):
        est = mutual_information(toy.model, "x", guide=guide, joint=joint, num_particles=K, seed=3)
        torch.testing.assert_close(est.terms["lower"], oracle, atol=1e-8, rtol=0)
        torch.testing.assert_close(est.terms["upper"], oracle, atol=1e-8, rtol=0)
    assert est.diagnostics["ess_fraction_min"] == pytest.approx(1.0, abs=1e-9)


def test_k1_lower_bound_is_barber_agakov(toy):
    joint = _joint(toy.model, 100, seed=4)
    guide = toy.posterior_guide(2.0)
    ba = mutual_information(toy.model, "x", bound="ba", guide=guide, joint=joint, seed=5)
    iw = mutual_information(toy.model, "x", guide=guide, joint=joint, num_particles=1, seed=5)
    torch.testing.assert_close(iw.terms["lower"], ba.terms["lower"], atol=1e-10, rtol=0)
    assert iw.diagnostics["ba_lower"] == pytest.approx(ba.lower, abs=1e-10)


def test_ba_with_wider_posterior_matches_closed_form(toy):
    """BA(q) = I - E KL(p(z|x) || q): for q = N(m, 2 Sigma) the KL is (d/2)(1/2 - 1 + log 2)."""
    joint = _joint(toy.model, 400, seed=6)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    ba = mutual_information(toy.model, "x", bound="ba", guide=toy.posterior_guide(2.0), joint=joint)
    kl = 0.5 * toy.dz * (0.5 - 1.0 + math.log(2.0))
    d = ba.terms["lower"] - (oracle - kl)
    assert abs(float(d.mean())) <= 3 * paired_se(d)
    assert_lower_bound(ba.terms["lower"], oracle)


def test_sandwich_contains_oracle_and_tightens_in_k(toy):
    """2x-covariance posterior proposal: lower <= oracle <= upper, lower rises and upper falls in K."""
    joint = _joint(toy.model, 400, seed=7)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    guide = toy.posterior_guide(2.0)
    prev = None
    for K in (1, 10, 100, 1000):
        est = mutual_information(toy.model, "x", guide=guide, joint=joint, num_particles=K, seed=8)
        assert_lower_bound(est.terms["lower"], oracle)
        assert_upper_bound(est.terms["upper"], oracle)
        if prev is not None:  # monotone in expectation: paired differences, 3 s.e.
            dl = est.terms["lower"] - prev.terms["lower"]
            du = est.terms["upper"] - prev.terms["upper"]
            assert float(dl.mean()) >= -3 * paired_se(dl)
            assert float(du.mean()) <= 3 * paired_se(du)
        prev = est
    # bounds.md table: within ~0.01 nat of the oracle by K = 1000
    assert est.upper - est.lower < 0.05
    assert abs(est.value - float(oracle.mean())) < 0.03


def test_prior_proposal_lower_bound_capped_at_log_k(toy):
    joint = _joint(toy.model, 200, seed=9)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    for K in (1, 10, 100):
        est = mutual_information(toy.model, "x", joint=joint, num_particles=K, seed=10)
        # exact, per sample: LME includes p(x|z*)/K, so ll* - LME <= log K
        assert float(est.terms["lower"].max()) <= math.log(K) + 1e-9
        # MI = 14.3 >> log K, so the cap is nearly reached (bounds.md: 2.303 at K = 10)
        assert est.lower > math.log(K) - 0.05
        assert_upper_bound(est.terms["upper"], oracle)
        assert est.upper > 40  # prior proposals need K ~ e^I for a tight upper bound
    assert est.diagnostics["posterior_sample_weight_mean"] > 0.9


def test_large_k_is_chunked_in_bounded_memory(toy32):
    """K = 1e5 with max_batch = 2^14 pairs per pass: many passes, same guarantees."""
    joint = _joint(toy32.model, 8, seed=11)
    oracle = toy32.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(
        toy32.model, "x", guide=toy32.posterior_guide(2.0), joint=joint, num_particles=100_000,
        max_batch=2**14, seed=11,
    )
    assert est.settings["particle_chunk"] * est.settings["sample_chunk"] <= 2**14
    assert est.diagnostics["model_passes"] == math.ceil(100_000 / est.settings["particle_chunk"])
    assert est.lower <= est.upper
    assert est.upper - est.lower < 0.01
    # float32 model, 1e5 particles: the estimate sits on the batch oracle (measured 0.0004 nat away)
    assert abs(est.value - float(oracle.mean())) < 0.01


def test_sample_chunking_matches_bounds(toy):
    """Blocks over samples (N > max_batch) give per-sample terms of the same guarantees."""
    joint = _joint(toy.model, 64, seed=12)
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(toy.model, "x", guide=toy.posterior_guide(), joint=joint,
                             num_particles=5, max_batch=16, seed=13)
    assert est.settings["sample_chunk"] == 16
    torch.testing.assert_close(est.terms["lower"], oracle, atol=1e-8, rtol=0)


def test_same_seed_same_numbers(toy32):
    a = mutual_information(toy32.model, "x", num_samples=32, num_particles=50, seed=3)
    b = mutual_information(toy32.model, "x", num_samples=32, num_particles=50, seed=3)
    c = mutual_information(toy32.model, "x", num_samples=32, num_particles=50, seed=4)
    assert (a.lower, a.upper) == (b.lower, b.upper)
    assert (a.lower, a.upper) != (c.lower, c.upper)


def test_seed_does_not_touch_global_rng(toy32):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    mutual_information(toy32.model, "x", num_samples=4, num_particles=4, seed=0)
    torch.testing.assert_close(torch.rand(3), expected)


def test_amortized_normal_trained_closes_the_sandwich(toy32):
    q = AmortizedNormal(toy32.model, observed="x", seed=0)
    fit_proposal(q, 600, optim=pyro.optim.Adam({"lr": 3e-3}), seed=0)
    with seeded(14):
        joint = ModelAdapter(toy32.model, "x").sample_joint(256)
    oracle = toy32.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(toy32.model, "x", guide=q, joint=joint, num_particles=200, seed=15)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    assert est.upper - est.lower < 0.3
    ba = mutual_information(toy32.model, "x", bound="ba", guide=q, joint=joint)
    assert_lower_bound(ba.terms["lower"], oracle)
    assert ba.lower > 12.0  # a trained q is far above the prior's 0


def test_float32_model_float64_accumulation(toy32):
    est = mutual_information(toy32.model, "x", num_samples=8, num_particles=10, seed=0)
    assert est.terms["lower"].dtype == torch.float64
    assert est.terms["upper"].dtype == torch.float64
