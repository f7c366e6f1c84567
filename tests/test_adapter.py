"""Model adapter: joint draws, per-(particle, sample) log densities, unconstrained packing."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import stats

from pyromi import ModelAdapter
from pyromi._rng import seeded


def constrained_model():
    """Several sites of different shapes and supports, one with a latent-dependent support."""
    a = pyro.sample("a", dist.Normal(torch.tensor(0.0), 1.0))
    s = pyro.sample("s", dist.LogNormal(torch.zeros(2), 0.5).to_event(1))
    w = pyro.sample("w", dist.Dirichlet(torch.ones(3)))
    b = pyro.sample("b", dist.Uniform(a, a + 1.0))
    with pyro.plate("items", 4, dim=-1):
        c = pyro.sample("c", dist.HalfNormal(torch.ones(())))
        loc = b * c + s.sum(-1) + w[..., 0]
        pyro.sample("x", dist.Normal(loc, 0.5))


def test_joint_draws_are_one_vectorised_pass(hier):
    calls = []

    def counted():
        calls.append(1)
        return hier.model()

    adapter = ModelAdapter(counted, "x")
    before = len(calls)
    with seeded(0):
        joint = adapter.sample_joint(2000)
    assert len(calls) - before == 1
    assert joint.observed["x"].shape == (2000, 3)
    # mu ~ N(0, 1) and x_1 ~ N(0, 2 + s^2): KS tests on the joint draws
    assert stats.kstest(joint.latent["mu"].flatten().numpy(), "norm").pvalue > 1e-3
    sd = math.sqrt(2 + hier.s**2)
    assert stats.kstest(joint.observed["x"][:, 0].numpy() / sd, "norm").pvalue > 1e-3


def test_log_density_per_particle_and_sample_matches_hand_written(hier):
    adapter = ModelAdapter(hier.model, "x")
    assert adapter.max_plate_nesting == 1
    assert adapter.latent_names == ["mu", "z"]
    with seeded(1):
        joint = adapter.sample_joint(6)
        ev = adapter.sample_prior(4, joint.observed)
    mu, z, x = ev.latent["mu"], ev.latent["z"], joint.observed["x"]
    assert mu.shape == (4, 6, 1) and z.shape == (4, 6, 3)
    lp = dist.Normal(0.0, 1.0).log_prob(mu[..., 0]) + dist.Normal(mu, 1.0).log_prob(z).sum(-1)
    ll = dist.Normal(z, hier.s).log_prob(x).sum(-1)
    torch.testing.assert_close(ev.log_prior, lp)
    torch.testing.assert_close(ev.log_likelihood, ll)
    ev2 = adapter.log_density(ev.latent, joint.observed)
    torch.testing.assert_close(ev2.log_prior, lp)
    torch.testing.assert_close(ev2.log_likelihood, ll)
    # joint draws: log p(z*) and log p(x|z*)
    torch.testing.assert_close(
        joint.log_likelihood, dist.Normal(joint.latent["z"], hier.s).log_prob(x).sum(-1)
    )


def test_amortized_normal_per_site_log_q_sums_to_its_density():
    """AmortizedNormal.sample_sites: per-site log q (with each site's log|J|) adds up to log_prob of
    the same draws, on a model with constrained, simplex and plated sites."""
    from pyromi import AmortizedNormal

    adapter = ModelAdapter(constrained_model, "x")
    q = AmortizedNormal(adapter, seed=0, hidden=(16,))
    with seeded(4):
        joint = adapter.sample_joint(6)
        ev, site_log_q = q.sample_sites(adapter, joint.observed, 3)
    assert sorted(site_log_q) == sorted(adapter.latent_names)
    assert all(v.shape == (3, 6) and v.dtype == torch.float64 for v in site_log_q.values())
    with torch.no_grad():
        total = q.log_prob(adapter, ev.latent, joint.observed)
    torch.testing.assert_close(sum(site_log_q.values()), total.double(), atol=1e-4, rtol=1e-4)


def test_pack_unpack_and_unconstrained_roundtrip():
    adapter = ModelAdapter(constrained_model, "x")
    assert adapter.latent_names == ["a", "s", "w", "b", "c"]
    # a: 1, s: 2, w: simplex of 3 -> 2 unconstrained, b: 1, c: 4 in the plate
    assert adapter.latent_dim == 1 + 2 + 2 + 1 + 4
    assert adapter.sites["w"].unconstrained_shape == (1, 2)
    with seeded(2):
        joint = adapter.sample_joint(5)
        ev = adapter.sample_prior(3, joint.observed)
    u, ev_c = adapter.unconstrain(ev.latent, joint.observed)
    assert u.shape == (3, 5, adapter.latent_dim)
    parts = adapter.unpack(u)
    torch.testing.assert_close(adapter.pack(parts), u)
    ev_u = adapter.log_density_unconstrained(u, joint.observed)
    for name in adapter.latent_names:
        torch.testing.assert_close(ev_u.latent[name], ev.latent[name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ev_u.log_prior, ev.log_prior, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ev_u.log_abs_det_jacobian, ev_c.log_abs_det_jacobian, atol=1e-4, rtol=1e-5)
    # the Jacobian by hand: s and c are exp-transformed, b = a + sigmoid(u_b)
    t_s = parts["s"].sum((-1, -2))
    t_c = parts["c"].sum(-1)
    ub = parts["b"][..., 0]
    t_b = torch.nn.functional.logsigmoid(ub) + torch.nn.functional.logsigmoid(-ub)
    t_w = dist.transforms.biject_to(dist.constraints.simplex).log_abs_det_jacobian(
        parts["w"], ev.latent["w"]
    ).sum(-1)
    torch.testing.assert_close(ev_u.log_abs_det_jacobian, t_s + t_c + t_b + t_w, atol=1e-4, rtol=1e-5)


def test_latent_dependent_support_is_respected_for_any_u():
    adapter = ModelAdapter(constrained_model, "x")
    with seeded(3):
        joint = adapter.sample_joint(7)
        u = 3.0 * torch.randn(11, 7, adapter.latent_dim)
    ev = adapter.log_density_unconstrained(u, joint.observed)
    a, b = ev.latent["a"][..., 0], ev.latent["b"][..., 0]
    assert bool(((b > a) & (b < a + 1)).all())
    assert bool(torch.isfinite(ev.log_prior).all())


def test_unconstrained_density_of_a_gamma_latent(gamma_exp):
    adapter = ModelAdapter(gamma_exp.model, "x")
    with seeded(4):
        joint = adapter.sample_joint(3)
    u = torch.linspace(-3, 3, 13, dtype=torch.float64).reshape(13, 1, 1).expand(13, 3, 1)
    ev = adapter.log_density_unconstrained(u, joint.observed)
    lam = u[..., 0].exp()
    expected = dist.Gamma(gamma_exp.a, gamma_exp.b).log_prob(lam) + u[..., 0]
    torch.testing.assert_close(ev.log_prior + ev.log_abs_det_jacobian, expected, rtol=1e-6, atol=1e-9)


def test_model_args_and_observed_in_model_are_handled():
    def model(n, scale=1.0, data=None):
        z = pyro.sample("z", dist.Normal(torch.zeros(n), 1.0).to_event(1))
        return pyro.sample("x", dist.Normal(z, scale).to_event(1), obs=data)

    adapter = ModelAdapter(model, "x", model_args=(3,), model_kwargs={"scale": 0.5,
                                                                      "data": torch.zeros(3)})
    with seeded(5):
        joint = adapter.sample_joint(400)
    x = joint.observed["x"]
    assert x.shape == (400, 3)
    assert float(x.abs().max()) > 0  # drawn generatively, not the fixed obs=
    assert float(x.var(0).mean()) == pytest.approx(1.25, rel=0.2)


def test_deterministic_sites_and_params_are_allowed():
    def model():
        scale = pyro.param("scale", torch.tensor(0.5), constraint=dist.constraints.positive)
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.deterministic("z_norm", z.norm(dim=-1))
        pyro.sample("x", dist.Normal(z, scale).to_event(1))

    adapter = ModelAdapter(model, "x")
    assert adapter.latent_names == ["z"]
    with seeded(6):
        joint = adapter.sample_joint(10)
    assert set(joint.latent) == {"z"}
