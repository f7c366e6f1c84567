import warnings
"""Every bad input raises an error that names the site or argument and says what to do."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch.distributions import constraints

from pyromi import (
    DensityError,
    DeviceError,
    ModelAdapter,
    PriorProposal,
    SiteError,
    VectorizationError,
    mutual_information,
)


def gauss():
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(z, 1.0).to_event(1))


def test_unknown_observed_site_lists_the_sites():
    with pytest.raises(SiteError, match=r"observed site 'y' is not a sample site.*'z', 'x'"):
        ModelAdapter(gauss, "y")


def test_unknown_latent_site():
    with pytest.raises(SiteError, match="latent site 'w' is not a sample site"):
        ModelAdapter(gauss, "x", latent="w")


def test_empty_observed():
    with pytest.raises(SiteError, match="observed= must name"):
        ModelAdapter(gauss, [])


def test_site_in_both_lists():
    with pytest.raises(SiteError, match="'x' is listed in both"):
        ModelAdapter(gauss, "x", latent=["z", "x"])


def test_nuisance_site_must_be_named():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        u = pyro.sample("u", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + u, 1.0))

    with pytest.raises(SiteError, match=r"\['u'\] are neither observed nor latent"):
        ModelAdapter(model, "x", latent="z")


def test_no_latent_sites():
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(SiteError, match="no latent sites"):
        ModelAdapter(model, "x")


def test_discrete_latent_suggests_marginalising():
    def model():
        c = pyro.sample("c", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(3.0 * c, 1.0))

    with pytest.raises(SiteError, match=r"latent site 'c' is discrete.*MixtureSameFamily"):
        ModelAdapter(model, "x")


def test_obs_mask_is_rejected():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=torch.zeros(3),
                    obs_mask=torch.tensor(True))

    with pytest.raises(SiteError, match="site 'x' uses obs_mask="):
        ModelAdapter(model, "x")


def test_subsampled_plate_is_rejected():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 100, subsample_size=10):
            pyro.sample("x", dist.Normal(z, 1.0))

    with pytest.raises(SiteError, match="site 'x' is inside the subsampled plate 'data'"):
        ModelAdapter(model, "x")


def test_scaled_site_is_rejected():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with poutine.scale(scale=2.0):
            pyro.sample("x", dist.Normal(z, 1.0))

    with pytest.raises(SiteError, match="site 'x' has its log density scaled"):
        ModelAdapter(model, "x")


def test_factor_is_rejected():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.factor("penalty", -z**2)
        pyro.sample("x", dist.Normal(z, 1.0))

    with pytest.raises(SiteError, match="site 'penalty' is a pyro.factor"):
        ModelAdapter(model, "x")


def test_missing_to_event_outside_plates_is_read_as_event_dims():
    """Plain Pyro sums a site's log density over every dimension, so a model written without
    .to_event (no plates) is valid: pyromi reads those dims as event dims and stays batched."""
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(5), 1.0))  # no .to_event(1)
        pyro.sample("x", dist.Normal(z, 1.0))  # nor here

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter = ModelAdapter(model, "x")
    assert not adapter.sequential and adapter.sites["z"].local_shape == (5,)
    joint = adapter.sample_joint(4)
    lp = dist.Normal(0.0, 1.0).log_prob(joint.latent["z"]).sum(-1)
    assert torch.allclose(joint.log_prior, lp)
    ll = dist.Normal(joint.latent["z"], 1.0).log_prob(joint.observed["x"]).sum(-1)
    assert torch.allclose(joint.log_likelihood, ll)


def test_missing_to_event_with_vectorize_true_names_the_site():
    def model():
        with pyro.plate("p", 2, dim=-2):
            z = pyro.sample("z", dist.Normal(torch.zeros(2, 5), 1.0))  # dim -1 in no plate
        pyro.sample("x", dist.Normal(z, 1.0).to_event(2))

    with pytest.raises(VectorizationError, match=r"site 'z'.*"):
        ModelAdapter(model, "x", vectorize=True)


def test_model_mixing_samples_is_not_vectorisable():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(4), 1.0).to_event(1))
        # flip(0) reverses z's 4 entries on one sample, but the *samples* inside pyromi's batch
        pyro.sample("x", dist.Normal(z.flip(0), 0.1).to_event(1))

    with pytest.raises(VectorizationError, match=r"site 'x'.*mixes values across leading"):
        ModelAdapter(model, "x", vectorize=True)


def test_model_that_reshapes_is_not_vectorisable():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2, 2), 1.0).to_event(2))
        pyro.sample("x", dist.Normal(z.reshape(-1), 1.0).to_event(1))

    with pytest.raises(VectorizationError, match="not vectorisable|broadcast over leading"):
        ModelAdapter(model, "x", vectorize=True)


def test_latent_that_depends_on_x_is_rejected():
    def model():
        x = pyro.sample("x", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("z", dist.Normal(x, 1.0).to_event(1))

    with pytest.raises(SiteError, match="latent site 'z' depends on the observed"):
        ModelAdapter(model, "x")


def test_nonfinite_log_density_names_the_site():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z * float("inf"), 1.0).to_event(1))

    with pytest.raises(DensityError, match="site 'x' is NaN or infinite"):
        ModelAdapter(model, "x")


def test_device_mismatch_inside_the_model_names_the_site():
    """torch's own cross-device error, raised where a CPU constant meets CUDA latents, is turned
    into a DeviceError naming the last site reached (the real CUDA case is in test_cuda.py)."""

    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        raise RuntimeError(
            "Expected all tensors to be on the same device, but found at least two devices, "
            "cuda:0 and cpu!"
        )

    with pytest.raises(DeviceError, match=r"after site 'z' with a device mismatch.*W = W.to\(device\)"):
        ModelAdapter(model, "x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(DeviceError, match="device=cuda was requested but CUDA is not available"):
        ModelAdapter(gauss, "x", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_requested_device_differs_from_model():
    with pytest.raises(DeviceError, match=r"site 'z' produced a tensor on cpu but device=cuda"):
        ModelAdapter(gauss, "x", device="cuda")


def test_requested_dtype_differs_from_model():
    with pytest.raises(DeviceError, match=r"latent site 'z' has dtype torch.float32"):
        ModelAdapter(gauss, "x", dtype=torch.float64)


def test_samples_only_adapter_scores_nothing_and_still_checks_shapes():
    def simulator():  # no site has a density
        z = pyro.sample("z", _NoLogProb(torch.zeros(2)))
        pyro.sample("x", _NoLogProb(z))

    adapter = ModelAdapter(simulator, "x", densities=False)
    joint = adapter.sample_joint(5)
    assert joint.observed["x"].shape == (5, 2) and bool((joint.log_prior == 0).all())

    def mixes():
        z = pyro.sample("z", _NoLogProb(torch.zeros(2)))
        pyro.sample("x", _NoLogProb(z.reshape(-1)))  # folds the sample dimension into x

    with pytest.raises(VectorizationError, match="site 'x'"):
        ModelAdapter(mixes, "x", densities=False, vectorize=True)

    def discrete():
        z = pyro.sample("z", dist.Bernoulli(0.5))
        pyro.sample("x", dist.Normal(z, 1.0))

    with pytest.raises(SiteError, match="MIST is trained on continuous data"):
        ModelAdapter(discrete, "x", densities=False)


def test_unknown_bound_lists_choices():
    with pytest.raises(ValueError, match=r"unknown bound='iwea'.*'iwae'"):
        mutual_information(gauss, "x", bound="iwea")


@pytest.mark.parametrize("kw,match", [
    ({"num_particles": 0}, "num_particles"),
    ({"num_samples": 0}, "num_samples"),
    ({"num_particles": 2.5}, "num_particles"),
    ({"seed": "a"}, "seed"),
    ({"max_batch": 0}, "max_batch"),
])
def test_bad_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        mutual_information(gauss, "x", **kw)


def test_ba_with_the_prior_as_guide_warns_and_is_zero():
    with pytest.warns(UserWarning, match="identically 0"):
        est = mutual_information(gauss, "x", bound="ba", guide=PriorProposal(), num_samples=8, seed=0)
    assert est.lower == 0.0


def test_improper_prior_is_rejected():
    def model():
        z = pyro.sample("z", dist.ImproperUniform(constraints.real, (), (2,)))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1))

    with pytest.raises(SiteError, match=r"at site 'z'.*ImproperUniform.*proper prior"):
        ModelAdapter(model, "x")


class _NoLogProb(dist.TorchDistribution):
    """A samplable distribution without a density (an implicit simulator's noise)."""

    support = constraints.real_vector
    arg_constraints = {}

    def __init__(self, loc, noise=1.0):
        self.loc, self.noise = loc, noise
        super().__init__(loc.shape[:-1], loc.shape[-1:])

    def expand(self, batch_shape, _instance=None):
        return _NoLogProb(self.loc.expand(tuple(batch_shape) + self.loc.shape[-1:]), self.noise)

    def sample(self, sample_shape=torch.Size()):
        return self.loc + self.noise * torch.randn(sample_shape + self.loc.shape).exp()


def test_latent_without_a_density_names_the_site():
    def model():
        z = pyro.sample("z", _NoLogProb(torch.zeros(2)))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1))

    with pytest.raises(SiteError, match=r"latent site 'z' \(_NoLogProb\) has no log density.*mist"):
        mutual_information(model, "x", bound="infonce", train_steps=1)


def test_observed_site_without_a_density_needs_a_known_marginal_bound():
    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", _NoLogProb(z))

    with pytest.raises(SiteError, match=r"observed site 'x'.*no log density.*giwae"):
        mutual_information(model, "x", bound="iwae")
    # the known-marginal bounds never score x, so the same model is fine for them. With noise
    # 0.1 e^eps, I(x; z) ~ 3.1 nats >> log 4: a critic trained 20 steps gets InfoNCE near its cap
    # (measured 0.995, s.e. 0.07; cap log 4 = 1.386), which an estimate of 0 would not
    def sharper():
        z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", _NoLogProb(z, 0.1))

    est = mutual_information(sharper, "x", bound="infonce", train_steps=20, num_samples=64,
                             num_particles=4, batch_size=64, optim=pyro.optim.Adam({"lr": 1e-2}),
                             seed=0)
    assert 0.6 < est.lower <= math.log(4) + 1e-9
