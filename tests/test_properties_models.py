"""Property-based checks (Hypothesis) of the model layer's three ways of running a model: batched,
sequential (one pair at a time) and under a data plate, and of enumeration against marginalising by
hand. Each compares log densities pair by pair with an independent computation."""

import pyro
import pyro.distributions as dist
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyromi import ModelAdapter
from pyromi._rng import seeded

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
floats = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)
scales = st.floats(min_value=0.2, max_value=2.0, allow_nan=False)


@SETTINGS
@given(weights=st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=2, max_size=4),
       locs=st.lists(floats, min_size=4, max_size=4), s=st.lists(scales, min_size=4, max_size=4),
       sx=scales, seed=st.integers(0, 2**16))
def test_enumerated_mixture_equals_the_marginalised_model(weights, locs, s, sx, seed):
    k_num = len(weights)
    w = torch.tensor(weights) / sum(weights)
    mu, sd = torch.tensor(locs[:k_num]), torch.tensor(s[:k_num])

    def enumerated():
        k = pyro.sample("k", dist.Categorical(w), infer={"enumerate": "parallel"})
        z = pyro.sample("z", dist.Normal(mu[k], sd[k]))
        pyro.sample("x", dist.Normal(z, sx))

    def marginalised():
        z = pyro.sample("z", dist.MixtureSameFamily(dist.Categorical(w), dist.Normal(mu, sd)))
        pyro.sample("x", dist.Normal(z, sx))

    a, b = ModelAdapter(enumerated, "x"), ModelAdapter(marginalised, "x")
    assert a.discrete_names == ["k"] and a.latent_names == ["z"]
    with seeded(seed):
        joint = b.sample_joint(5)
        z = 4 * torch.randn(3, 5)
    ea, eb = a.log_density({"z": z}, joint.observed), b.log_density({"z": z}, joint.observed)
    assert torch.allclose(ea.log_prior, eb.log_prior, atol=1e-4)
    assert torch.allclose(ea.log_likelihood, eb.log_likelihood, atol=1e-4)
    # the joint draws keep the true k*: log p(x | k*, z*) and log p(z*) with k summed out
    with seeded(seed):
        ja = a.sample_joint(6)
    zs = ja.latent["z"]
    assert torch.allclose(ja.log_prior, b.log_density({"z": zs[None]}, ja.observed).log_prior[0], atol=1e-4)
    assert torch.allclose(ja.log_likelihood, dist.Normal(zs, sx).log_prob(ja.observed["x"]), atol=1e-4)


@SETTINGS
@given(d=st.integers(1, 3), n=st.integers(1, 4), sx=scales, seed=st.integers(0, 2**16))
def test_sequential_equals_batched(d, n, sx, seed):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, d, generator=g)

    def model(c):
        w = pyro.sample("w", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        s = pyro.sample("s", dist.LogNormal(0.0, 0.5))
        with pyro.plate("rows", c.shape[0]):
            pyro.sample("y", dist.Normal((w * c).sum(-1), s * sx))

    batched = ModelAdapter(model, "y", model_args=(c,), data_plate=False)
    seq = ModelAdapter(model, "y", model_args=(c,), data_plate=False, vectorize=False)
    assert seq.sequential and not batched.sequential
    with seeded(seed):
        joint = batched.sample_joint(4)
        u = torch.randn(3, 4, batched.latent_dim)
    for ad in (batched, seq):
        uu = u.clone().requires_grad_()
        ev = ad.log_density_unconstrained(uu, joint.observed)
        total = ev.log_prior + ev.log_likelihood + ev.log_abs_det_jacobian
        (grad,) = torch.autograd.grad(total.sum(), uu)
        if ad is batched:
            ref, ref_grad = total.detach(), grad
        else:
            assert torch.allclose(total.detach(), ref, atol=1e-4, rtol=1e-5)
            assert torch.allclose(grad, ref_grad, atol=1e-3, rtol=1e-4)


@SETTINGS
@given(c=st.lists(st.floats(min_value=-3, max_value=3, allow_nan=False), min_size=1, max_size=5),
       seed=st.integers(0, 2**16))
def test_data_plate_pairs_are_the_plate_elements(c, seed):
    c = torch.tensor(c)

    def model(c):
        with pyro.plate("data", c.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(c * z, 1.0))

    ad = ModelAdapter(model, "y", model_args=(c,))
    assert ad.data_plate is not None and ad.data_plate.name == "data"
    n = 2 * len(c) + 1
    with seeded(seed):
        joint = ad.sample_joint(n)
        z = torch.randn(3, n)
    rows = c[torch.arange(n) % len(c)]
    assert torch.equal(joint.observed["_pm_arg:0"], rows)
    ev = ad.log_density({"z": z}, joint.observed)
    assert torch.allclose(ev.log_prior, dist.Normal(0.0, 1.0).log_prob(z), atol=1e-5)
    assert torch.allclose(ev.log_likelihood, dist.Normal(rows * z, 1.0).log_prob(joint.observed["y"]), atol=1e-5)
    # the joint draws are the model's: y_i | z_i ~ N(c_i z_i, 1)
    assert torch.allclose(joint.log_likelihood,
                          dist.Normal(rows * joint.latent["z"], 1.0).log_prob(joint.observed["y"]), atol=1e-5)
