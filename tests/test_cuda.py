"""CUDA: the same bounds on the GPU, results on the model's device (skipped without CUDA)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyromi import AmortizedNormal, DeviceError, ModelAdapter, fit_proposal, mutual_information
from pyromi._rng import seeded
from pyromi.models import LinearGaussian

from .conftest import assert_lower_bound, assert_upper_bound

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_iwae_on_cuda_contains_the_oracle():
    lg = LinearGaussian.toy(device="cuda", dtype=torch.float64)
    with seeded(0, torch.device("cuda")):
        joint = ModelAdapter(lg.model, "x").sample_joint(256)
    assert joint.observed["x"].device.type == "cuda"
    oracle = lg.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(lg.model, "x", guide=lg.posterior_guide(2.0), joint=joint,
                             num_particles=1000, seed=1)
    assert est.terms["lower"].device.type == "cuda"
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)
    exact = mutual_information(lg.model, "x", guide=lg.posterior_guide(), joint=joint,
                               num_particles=10, seed=1)
    torch.testing.assert_close(exact.terms["lower"], oracle, atol=1e-8, rtol=0)


def test_amortized_normal_on_cuda():
    lg = LinearGaussian.toy(device="cuda")
    q = AmortizedNormal(lg.model, observed="x", seed=0)
    fit_proposal(q, 200, optim=pyro.optim.Adam({"lr": 3e-3}), seed=0)
    est = mutual_information(lg.model, "x", guide=q, num_samples=64, num_particles=100, seed=0,
                             device="cuda")
    assert est.lower <= est.upper


def test_cpu_constant_in_a_cuda_model_names_the_site():
    W = torch.randn(4, 2)  # left on the CPU

    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2, device="cuda"), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ W.T, 1.0).to_event(1))

    with pytest.raises(DeviceError, match="after site 'z'"):
        ModelAdapter(model, "x")


def test_cpu_model_with_cuda_requested():
    lg = LinearGaussian.toy()
    with pytest.raises(DeviceError, match=r"site '[xz]' produced a tensor on cpu but device=cuda"):
        mutual_information(lg.model, "x", device="cuda", num_samples=4, num_particles=4)


def test_ais_on_cuda_contains_the_oracle():
    lg = LinearGaussian.toy(device="cuda")
    with seeded(0, torch.device("cuda")):
        joint = ModelAdapter(lg.model, "x").sample_joint(64)
    oracle = lg.oracle(joint.observed["x"], joint.latent["z"])
    est = mutual_information(lg.model, "x", bound="ais", joint=joint, num_particles=8,
                             num_steps=200, seed=1, progress=False)
    assert est.terms["lower"].device.type == "cuda"
    assert_lower_bound(est.terms["lower"], oracle)
    assert_upper_bound(est.terms["upper"], oracle)


def test_enumerated_mixture_on_cuda_is_exact():
    w = torch.tensor([0.3, 0.7], device="cuda")
    mu = torch.tensor([-2.0, 2.0], device="cuda")

    def gmm():
        k = pyro.sample("k", dist.Categorical(w), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(mu[k], 1.0))

    est = mutual_information(gmm, "x", bound="iwae", num_samples=256, seed=0)
    assert est.terms["lower"].device.type == "cuda"
    assert est.lower == est.upper and 0.0 < est.lower < math.log(2)


def test_data_plate_on_cuda_per_data_point():
    c = torch.tensor([0.5, 1.0, 2.0, 4.0], device="cuda")

    def model(c):
        with pyro.plate("data", c.shape[0]):
            z = pyro.sample("z", dist.Normal(c.new_zeros(()), 1.0))
            pyro.sample("y", dist.Normal(c * z, 1.0))

    est = mutual_information(model, "y", model_args=(c,), bound="ais", num_samples=64,
                             num_particles=8, num_steps=100, seed=0, progress=False)
    truth = float((0.5 * torch.log1p(c ** 2)).mean())
    assert est.settings["data_plate"] == "data"
    assert est.lower <= truth + 3 * est.lower_se and est.upper >= truth - 3 * est.upper_se


def test_sequential_fallback_on_cuda():
    x = torch.randn(6, 2, device="cuda")

    def model(x):  # x @ w: fine for one w, not for a batch of them
        w = pyro.sample("w", dist.Normal(torch.zeros(2, device="cuda"), 1.0).to_event(1))
        mean = x @ w
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Normal(mean, 1.0))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = mutual_information(model, "y", model_args=(x,), bound="iwae", num_samples=8,
                                 num_particles=64, seed=0)
    assert est.settings["evaluation"] == "sequential" and est.terms["lower"].device.type == "cuda"
    assert math.isfinite(est.lower) and est.lower <= est.upper + 1e-6
