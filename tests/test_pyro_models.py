"""Pyro models as Pyro users write them (issue 13): a PyroModule regression that cannot be batched
(the sequential fallback), models that take data (data plates, the VAE example), each against an
exact or independently computed reference."""

import math
import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn as nn
from pyro.nn import PyroModule, PyroSample

from pyromi import ModelAdapter, SiteError, VectorizationError, mutual_information
from pyromi._rng import seeded
from pyromi.audit import audit
from pyromi.errors import DensityError
from pyromi.model.sequential import SlowPathWarning


# ---------------------------------------------------------------------------------------------
# Bayesian regression, written as in Pyro's tutorial (PyroModule[nn.Linear] with PyroSample priors)
class BayesianRegression(PyroModule):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](in_features, out_features)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([out_features, in_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 10.0).expand([out_features]).to_event(1))

    def forward(self, x, y=None):
        sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
        mean = self.linear(x).squeeze(-1)
        with pyro.plate("data", x.shape[0]):
            obs = pyro.sample("obs", dist.Normal(mean, sigma), obs=y)
        return mean


def vectorised_regression(x, y=None):
    """The same joint density, written to broadcast over leading dimensions."""
    w = pyro.sample("linear.weight", dist.Normal(0.0, 1.0).expand([1, x.shape[-1]]).to_event(2))
    b = pyro.sample("linear.bias", dist.Normal(0.0, 10.0).expand([1]).to_event(1))
    sigma = pyro.sample("sigma", dist.Uniform(0.0, 10.0))
    mean = (w[..., 0, :] * x).sum(-1) + b[..., 0]  # w[..., 0, :]: (..., p), the data dim broadcast
    with pyro.plate("data", x.shape[0]):
        pyro.sample("obs", dist.Normal(mean, sigma), obs=y)


def _regression_log_marginal(y: torch.Tensor, x: torch.Tensor, grid: int = 4000) -> torch.Tensor:
    """log p(y | x) by quadrature over sigma ~ U(0, 10), with w ~ N(0, I) and b ~ N(0, 100)
    integrated analytically: y | sigma ~ N(0, X X^T + 100 11^T + sigma^2 I). y: (N, n)."""
    x = x.double()
    y = y.double()
    n = x.shape[0]
    cov0 = x @ x.T + 100.0 * torch.ones(n, n, dtype=torch.float64)
    # midpoint rule on (0, 10), density 1/10
    s = (torch.arange(grid, dtype=torch.float64) + 0.5) * (10.0 / grid)
    cov = cov0 + s.reshape(-1, 1, 1) ** 2 * torch.eye(n, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n, dtype=torch.float64), cov)
    lp = mvn.log_prob(y.unsqueeze(1))  # (N, grid)
    return torch.logsumexp(lp, -1) + math.log(10.0 / grid) - math.log(10.0)


def _regression_data(n=6, p=2):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, p, generator=g)


def test_bayesian_regression_runs_as_written_on_the_slow_path_with_one_warning():
    x = _regression_data()
    model = BayesianRegression(2, 1)
    with pytest.warns(SlowPathWarning, match=r"one \(particle, sample\) pair at a time.*ms in a density pass"):
        adapter = ModelAdapter(model, "obs", model_args=(x,))
    assert adapter.sequential
    assert set(adapter.latent_names) == {"linear.weight", "linear.bias", "sigma"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlowPathWarning)  # one-time: not again for the same model
        ModelAdapter(model, "obs", model_args=(x,))
    with pytest.raises(VectorizationError):
        ModelAdapter(model, "obs", model_args=(x,), vectorize=True)


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_bayesian_regression_bounds_bracket_the_quadrature_reference(bound):
    x = _regression_data()
    model = BayesianRegression(2, 1)
    n = 24 if bound == "iwae" else 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowPathWarning)
        adapter = ModelAdapter(model, "obs", model_args=(x,))
        with seeded(5):
            joint = adapter.sample_joint(n)
        kw = dict(num_particles=300) if bound == "iwae" else dict(num_particles=4, num_steps=40,
                                                                   num_leapfrog=4, progress=False)
        est = mutual_information(model, "obs", model_args=(x,), bound=bound, joint=joint, seed=1, **kw)
    assert est.settings["evaluation"] == "sequential"
    ref = joint.log_likelihood.double() - _regression_log_marginal(joint.observed["obs"], x)
    lower, upper = est.terms["lower"], est.terms["upper"]
    se_lo = float((lower - ref).std() / math.sqrt(n))
    se_hi = float((upper - ref).std() / math.sqrt(n))
    assert float(lower.mean()) <= float(ref.mean()) + 3 * se_lo + 1e-6
    assert float(upper.mean()) >= float(ref.mean()) - 3 * se_hi - 1e-6
    # and not vacuous: within a few nats of the reference (I here is about 4 nats)
    assert float(lower.mean()) > float(ref.mean()) - 2.5
    assert float(upper.mean()) < float(ref.mean()) + 2.5


def test_fallback_matches_the_vectorised_model_on_the_same_draws():
    x = _regression_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowPathWarning)
        seq = ModelAdapter(BayesianRegression(2, 1), "obs", model_args=(x,))
    vec = ModelAdapter(vectorised_regression, "obs", model_args=(x,))
    assert not vec.sequential and seq.sequential
    with seeded(0):
        joint = vec.sample_joint(5)
    # the same latent values: identical log densities, pair by pair, and the same unconstrained map
    latent = {k: torch.stack([v, v.flip(0)]) for k, v in joint.latent.items()}
    a, b = seq.log_density(latent, joint.observed), vec.log_density(latent, joint.observed)
    assert torch.allclose(a.log_prior, b.log_prior, atol=1e-4)
    assert torch.allclose(a.log_likelihood, b.log_likelihood, atol=1e-4)
    u_a, ev_a = seq.unconstrain(latent, joint.observed)
    u_b, ev_b = vec.unconstrain(latent, joint.observed)

    def per_site(adapter, u):  # the packing order follows each model's site order
        return {k: v.reshape(v.shape[:2] + (-1,)) for k, v in adapter.unpack(u).items()}

    sa, sb = per_site(seq, u_a), per_site(vec, u_b)
    for name in sa:
        assert torch.allclose(sa[name], sb[name], atol=1e-5), name
    assert torch.allclose(ev_a.log_abs_det_jacobian, ev_b.log_abs_det_jacobian, atol=1e-4)
    grads = []
    for adapter, u0 in ((seq, u_a), (vec, u_b)):
        u = u0.detach().requires_grad_()
        ev = adapter.log_density_unconstrained(u, joint.observed)
        (ev.log_prior + ev.log_likelihood + ev.log_abs_det_jacobian).sum().backward()
        grads.append(per_site(adapter, u.grad))
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-3), name


@pytest.mark.parametrize("bound", ["infonce", "mist"])
def test_fallback_serves_the_likelihood_free_bounds(bound):
    x = _regression_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(num_samples=64) if bound == "mist" else dict(num_samples=32, train_steps=20,
                                                              num_particles=8, batch_size=16)
        est = mutual_information(BayesianRegression(2, 1), "obs", model_args=(x,), bound=bound,
                                 seed=0, **kw)
    assert est.settings["evaluation"] == "sequential"
    assert math.isfinite(est.lower)


# ---------------------------------------------------------------------------------------------
# Models that take data: a plate over data points
def local_regression(c):
    """z_i ~ N(0, 1), y_i | z_i ~ N(c_i z_i, 1): I(y_i; z_i | c_i) = 1/2 log(1 + c_i^2)."""
    with pyro.plate("data", c.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(c * z, 1.0))


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_data_plate_with_covariates_gives_per_data_point_mi(bound):
    c = torch.tensor([0.5, 1.0, 2.0, 4.0])
    n = 64  # a multiple of the 4 data points: each row used equally often
    kw = dict(num_particles=2000) if bound == "iwae" else dict(num_particles=8, num_steps=100,
                                                                progress=False)
    est = mutual_information(local_regression, "y", model_args=(c,), bound=bound, num_samples=n,
                             seed=0, **kw)
    assert est.settings["data_plate"] == "data"
    truth = float((0.5 * torch.log1p(c ** 2)).mean())
    assert est.lower <= truth + 3 * est.lower_se
    assert est.upper >= truth - 3 * est.upper_se
    assert est.upper - est.lower < 0.05
    # each sample kept its own row: the per-sample truth is that row's
    per_row = 0.5 * torch.log1p(c ** 2)
    rows = torch.arange(n) % 4
    diff = est.terms["lower"] - per_row[rows].double()
    # the residual is the MC noise of ll* - log p(x), not a row mix-up (which would add ~0.5 nats)
    assert abs(float(diff.mean())) < 4 * float(diff.std()) / math.sqrt(n)


def test_data_plate_errors_name_the_plate_and_the_fix():
    c = torch.tensor([0.5, 1.0, 2.0])
    with pytest.raises(SiteError, match="data_plate='nope'.*not inside a plate"):
        ModelAdapter(local_regression, "y", model_args=(c,), data_plate="nope")
    x = _regression_data()
    with pytest.raises(SiteError, match=r"data_plate='data'.*outside the plate"):
        ModelAdapter(vectorised_regression, "obs", model_args=(x,), data_plate="data")
    # auto: global latents -> the whole data set is one x (no data plate)
    assert ModelAdapter(vectorised_regression, "obs", model_args=(x,)).data_plate is None
    assert ModelAdapter(local_regression, "y", model_args=(c,), data_plate=False).data_plate is None
    with pytest.raises(TypeError, match="data_plate="):
        ModelAdapter(local_regression, "y", model_args=(c,), data_plate=3)


# ---------------------------------------------------------------------------------------------
# Pyro's VAE example, as written (small sizes)
D, Z, H = 6, 2, 12


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(Z, H)
        self.fc21 = nn.Linear(H, D)
        self.softplus = nn.Softplus()
        self.sigmoid = nn.Sigmoid()

    def forward(self, z):
        hidden = self.softplus(self.fc1(z))
        return self.sigmoid(self.fc21(hidden))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D, H)
        self.fc21 = nn.Linear(H, Z)
        self.fc22 = nn.Linear(H, Z)
        self.softplus = nn.Softplus()

    def forward(self, x):
        x = x.reshape(-1, D)
        hidden = self.softplus(self.fc1(x))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.z_dim = Z

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(torch.Size((x.shape[0], self.z_dim)))
            z_scale = x.new_ones(torch.Size((x.shape[0], self.z_dim)))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder.forward(z)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                        obs=x.reshape(-1, D))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder.forward(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


def _trained_vae():
    pyro.clear_param_store()
    with seeded(0):
        vae = VAE()
        g = torch.Generator().manual_seed(1)
        proto = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=torch.float32)
        idx = torch.randint(0, 3, (96,), generator=g)
        flips = torch.rand(96, D, generator=g) < 0.1
        data = (proto[idx] + flips.float()) % 2
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 0.02}), pyro.infer.Trace_ELBO())
        for _ in range(300):
            svi.step(data)
    return vae, data


def _vae_log_marginal(vae, x: torch.Tensor, grid: int = 161, lim: float = 6.0) -> torch.Tensor:
    """log p(x) of the decoder by a 2-D trapezoid grid over z (the integrand is smooth)."""
    t = torch.linspace(-lim, lim, grid, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        probs = vae.decoder(zz.float()).double().clamp(1e-12, 1 - 1e-12)  # (G, D)
    lp_x = (x.double().unsqueeze(1) * probs.log() + (1 - x.double().unsqueeze(1)) * (1 - probs).log()).sum(-1)
    lp_z = torch.distributions.Normal(0.0, 1.0).log_prob(zz).sum(-1)
    w = torch.ones(grid, dtype=torch.float64)
    w[0] = w[-1] = 0.5
    log_w = (w.log().reshape(-1, 1) + w.log().reshape(1, -1)).reshape(-1) + 2 * math.log(t[1] - t[0])
    return torch.logsumexp(lp_x + lp_z + log_w, -1)


@pytest.mark.parametrize("bound", ["iwae", "ais"])
def test_vae_example_per_data_point_mi_brackets_quadrature(bound):
    vae, data = _trained_vae()
    x_batch = data[:32]
    with pytest.warns(UserWarning, match="carry obs= values"):
        adapter = ModelAdapter(vae.model, "obs", model_args=(x_batch,))
    assert adapter.data_plate is not None and adapter.data_plate.name == "data"
    with seeded(2):
        joint = adapter.sample_joint(64)
    kw = dict(num_particles=500) if bound == "iwae" else dict(num_particles=8, num_steps=100, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = mutual_information(vae.model, observed="obs", model_args=(x_batch,), data_plate="data",
                                 bound=bound, joint=joint, seed=3, **kw)
    ref = joint.log_likelihood.double() - _vae_log_marginal(vae, joint.observed["obs"])
    n = joint.num_samples
    for side, sign in (("lower", 1), ("upper", -1)):
        d = est.terms[side] - ref
        se = float(d.std()) / math.sqrt(n)
        assert sign * float(d.mean()) <= 3 * se + 1e-6, (side, float(d.mean()), se)
    assert est.upper - est.lower < 0.1 * max(1.0, float(ref.mean()))
    assert float(ref.mean()) > 0.3  # the trained decoder carries information


def test_vae_data_plate_agrees_with_the_one_point_model():
    vae, data = _trained_vae()

    def one_point():
        z = pyro.sample("latent", dist.Normal(torch.zeros(Z), 1.0).to_event(1))
        pyro.sample("obs", dist.Bernoulli(vae.decoder(z), validate_args=False).to_event(1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mutual_information(vae.model, "obs", model_args=(data[:16],), bound="iwae",
                               num_samples=256, num_particles=300, seed=0)
        b = mutual_information(one_point, "obs", bound="iwae", num_samples=256, num_particles=300, seed=1)
    se = math.hypot(a.lower_se, b.lower_se)
    assert abs(a.lower - b.lower) < 4 * se
    assert abs(a.upper - b.upper) < 4 * math.hypot(a.upper_se, b.upper_se)


def test_vae_audit_with_the_guide_on_data_as_written():
    vae, data = _trained_vae()
    x_test = data[:24]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = audit(vae.model, "obs", guide=vae.guide, data=x_test, num_samples=32,
                    num_particles=8, num_steps=60, encoder_particles=64)
    assert rep.x_source == "data"
    assert rep.settings.get("start") == "guide"
    # -ELBO = R + D >= -log p(x) on the data (exact by quadrature), per data point
    nll = float(-_vae_log_marginal(vae, x_test).mean())
    assert rep.neg_elbo >= nll - 3 * math.hypot(rep.rate_se, rep.distortion_se)
    assert rep.neg_elbo < nll + 2.0  # a trained encoder: the gap is small
    assert rep.rate > 0.1 and math.isfinite(rep.distortion)
    bad = x_test.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(DensityError, match="NaN or infinite"):
        audit(vae.model, "obs", guide=vae.guide, data=bad, num_samples=8)


def test_vae_guide_as_proposal_under_the_data_plate():
    vae, data = _trained_vae()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ModelAdapter(vae.model, "obs", model_args=(data[:16],))
        with seeded(4):
            joint = adapter.sample_joint(48)
        est = mutual_information(vae.model, "obs", model_args=(data[:16],), bound="iwae",
                                 guide=vae.guide, joint=joint, num_particles=100, seed=5)
    ref = joint.log_likelihood.double() - _vae_log_marginal(vae, joint.observed["obs"])
    for side, sign in (("lower", 1), ("upper", -1)):
        d = est.terms[side] - ref
        assert sign * float(d.mean()) <= 3 * float(d.std()) / math.sqrt(48) + 1e-6
    assert est.upper - est.lower < 0.05


def test_vae_log_marginal_on_data_as_written():
    from pyromi import log_marginal

    vae, data = _trained_vae()
    x_test = data[:12]
    res = log_marginal(vae.model, "obs", data=x_test, num_particles=8, num_steps=100, seed=0,
                       progress=False)
    exact = _vae_log_marginal(vae, x_test)
    assert res.lower.shape == (12,)
    d = res.lower.double() - exact
    # a stochastic lower bound: E[lower] <= log p(x); per point the AIS estimate is tight here
    assert float(d.mean()) <= 3 * float(d.std()) / math.sqrt(12) + 1e-6
    assert float(d.mean()) > -0.2


def test_enumerated_assignments_inside_a_data_plate_give_per_point_mi():
    """Pyro's GMM idiom: @config_enumerate, assignments inside pyro.plate("data", len(data))."""
    from pyro.infer import config_enumerate

    weights, locs = torch.tensor([0.3, 0.7]), torch.tensor([-2.0, 2.0])

    @config_enumerate
    def gmm(data):
        with pyro.plate("data", len(data)):
            a = pyro.sample("assignment", dist.Categorical(weights))
            pyro.sample("obs", dist.Normal(locs[a], 1.0), obs=data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = mutual_information(gmm, "obs", model_args=(torch.zeros(10),), bound="iwae",
                                 num_samples=2000, num_particles=1, seed=0)
    assert est.settings["data_plate"] == "data" and est.lower == est.upper
    t = torch.linspace(-12, 12, 100001, dtype=torch.float64)
    comp = torch.exp(-(t[:, None] - locs.double()) ** 2 / 2) / math.sqrt(2 * math.pi) * weights.double()
    p = comp.sum(-1)
    post = comp / p[:, None]
    h_k_given_x = -float((p * (post * post.log()).sum(-1)).sum() * (t[1] - t[0]))
    truth = -float((weights * weights.log()).sum()) - h_k_given_x
    assert abs(est.lower - truth) < 3 * est.lower_se


def test_pyro_gmm_tutorial_form_runs_on_the_fallback_with_enumeration():
    """Pyro's GMM tutorial indexes global cluster locations by enumerated assignments, locs[a]:
    fine in a plain run, not under batch dimensions. The fallback runs it pair by pair with the
    assignments still summed out; IWAE brackets the exact reference (2^3 assignments, locs
    integrated analytically) on the same draws."""
    import itertools

    from pyro.infer import config_enumerate

    w = torch.tensor([0.4, 0.6])

    @config_enumerate
    def mix(data):
        with pyro.plate("components", 2):
            locs = pyro.sample("locs", dist.Normal(0.0, 3.0))
        with pyro.plate("data", len(data)):
            a = pyro.sample("assignment", dist.Categorical(w))
            pyro.sample("obs", dist.Normal(locs[a], 1.0), obs=data)

    data = torch.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adapter = ModelAdapter(mix, "obs", model_args=(data,))
        assert adapter.sequential and adapter.discrete_names == ["assignment"]
        with seeded(0):
            joint = adapter.sample_joint(12)
        est = mutual_information(mix, "obs", model_args=(data,), bound="iwae", joint=joint,
                                 num_particles=60, seed=1)

    def log_px(x):
        terms = []
        for ass in itertools.product([0, 1], repeat=3):
            ass = torch.tensor(ass)
            one_hot = torch.nn.functional.one_hot(ass, 2).double()
            cov = 9 * one_hot @ one_hot.T + torch.eye(3, dtype=torch.float64)
            mvn = torch.distributions.MultivariateNormal(torch.zeros(3, dtype=torch.float64), cov)
            terms.append(torch.log(w[ass]).sum().double() + mvn.log_prob(x.double()))
        return torch.logsumexp(torch.stack(terms), 0)

    ref = joint.log_likelihood.double() - torch.stack([log_px(x) for x in joint.observed["obs"]])
    for side, sign in (("lower", 1), ("upper", -1)):
        d = est.terms[side] - ref
        assert sign * float(d.mean()) <= 3 * float(d.std()) / math.sqrt(12) + 1e-6
    assert est.upper - est.lower < 0.5
