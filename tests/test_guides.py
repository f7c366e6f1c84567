"""Pyro guides as proposals: site-wise AutoNormal, amortised guides, and rejected guides."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal

from pyromi import (
    AmortizedNormal,
    DensityError,
    GuideError,
    ModelAdapter,
    fit_autoguide,
    mutual_information,
)
from pyromi._rng import seeded

from .conftest import assert_lower_bound, assert_upper_bound


def test_autonormal_built_on_the_conditioned_model(toy):
    adapter = ModelAdapter(toy.model, "x")
    with seeded(0):
        joint = adapter.sample_joint(64)
    guide = AutoNormal(adapter.conditioned_model(joint))
    fit_autoguide(adapter, joint, guide, num_steps=400, seed=1)
    assert guide.locs.z.shape == (64, 5)  # one local q per observation
    oracle = toy.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(toy.model, "x", guide=guide, joint=joint, num_particles=100, seed=2)
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    assert est.upper - est.lower < 0.5


def test_autonormal_on_the_raw_model_is_rejected(toy):
    guide = AutoNormal(toy.model)
    guide()  # initialise on the model without pyromi's sample plate
    with pytest.raises(GuideError, match="does not depend on x"):
        mutual_information(toy.model, "x", guide=guide, num_samples=8, num_particles=4)


def test_autonormal_for_another_batch_is_rejected(toy):
    adapter = ModelAdapter(toy.model, "x")
    with seeded(0):
        joint = adapter.sample_joint(16)
    guide = AutoNormal(adapter.conditioned_model(joint))
    guide()
    with pytest.raises(GuideError, match="built for 16 observations but 8"):
        mutual_information(toy.model, "x", guide=guide, num_samples=8, num_particles=4)


def test_untrained_autonormal_needs_a_first_run(toy):
    adapter = ModelAdapter(toy.model, "x")
    with seeded(0):
        joint = adapter.sample_joint(8)
    guide = AutoNormal(adapter.conditioned_model(joint))
    with pytest.raises(GuideError, match="has not been run yet"):
        mutual_information(toy.model, "x", guide=guide, joint=joint, num_particles=4)


@pytest.mark.parametrize("cls,match", [(AutoDiagonalNormal, "packs the latents"),
                                       (AutoDelta, "not supported as a proposal")])
def test_packed_and_point_guides_are_rejected(toy, cls, match):
    with pytest.raises(GuideError, match=match):
        mutual_information(toy.model, "x", guide=cls(toy.model), num_samples=8, num_particles=4)


def test_guide_missing_a_site(hier):
    def guide(x):
        pyro.sample("mu", dist.Normal(x.mean(-1, keepdim=True), 1.0))

    with pytest.raises(GuideError, match="does not sample latent site 'z'"):
        mutual_information(hier.model, "x", guide=guide, num_samples=8, num_particles=4)


def test_guide_with_wrong_event_shape(toy):
    def guide(x):
        pyro.sample("z", dist.Normal(torch.zeros(x.shape[:-1] + (3,), dtype=x.dtype), 1.0).to_event(1))

    with pytest.raises(GuideError, match=r"site 'z'.*'z': \(C, N\) \+ \(5,\)"):
        mutual_information(toy.model, "x", guide=guide, num_samples=8, num_particles=4)


def test_guide_that_cannot_score_z_star(toy):
    def guide(x):
        u = pyro.sample("u", dist.Normal(torch.zeros(x.shape[:-1] + (5,), dtype=x.dtype), 1.0).to_event(1))
        pyro.sample("z", dist.Delta(u, event_dim=1))

    with pytest.raises(GuideError, match="cannot|-inf|not latent sites"):
        mutual_information(toy.model, "x", guide=guide, num_samples=8, num_particles=4)


def test_guide_outside_the_support_is_caught(gamma_exp):
    def guide(x):  # Normal proposal for a positive latent: some draws are negative
        pyro.sample("lam", dist.Normal(torch.zeros(x.shape[:-1], dtype=x.dtype), 1.0))

    with pytest.raises(DensityError, match="NaN or \\+inf log importance weight"):
        mutual_information(gamma_exp.model, "x", guide=guide, num_samples=8, num_particles=50,
                           seed=0)


def test_amortized_normal_for_other_sites_is_rejected(toy, hier):
    q = AmortizedNormal(hier.model, observed="x")
    with pytest.raises(GuideError, match="built for latent sites"):
        mutual_information(toy.model, "x", guide=q, num_samples=8, num_particles=4)


def test_amortized_guide_receives_a_dict_for_several_observed_sites():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x1", dist.Normal(z, 0.5).to_event(1))
        pyro.sample("x2", dist.Normal(-z, 0.5).to_event(1))

    seen = {}

    def guide(x):
        seen.update(x)
        pyro.sample("z", dist.Normal(0.8 * (x["x1"] - x["x2"]) / 2, 0.5).to_event(1))

    est = mutual_information(model, ["x1", "x2"], guide=guide, num_samples=32, num_particles=50, seed=0)
    assert set(seen) == {"x1", "x2"}
    assert est.observed == ("x1", "x2")
    assert est.lower <= est.upper
