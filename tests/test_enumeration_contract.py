"""Enumerated density passes (pyromi.model.enumeration) against brute force in plain torch.

Every model is written as Pyro users write them (``infer={"enumerate": "parallel"}`` or
``@config_enumerate``, ``pyro.plate``, ``pyro.markov``) and evaluated under pyromi's two outer
plates (C particles, N samples); the contracted log densities, shape (C, N), must equal sums over
all discrete configurations written out by hand, and their gradients with respect to the
continuous values must equal autograd through the hand-written formula.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import config_enumerate

from pyromi.errors import SiteError
from pyromi.model.enumeration import (
    SetValues,
    contract_log_densities,
    discrete_latent_sites,
    enum_first_dim,
    enumerated_log_densities,
    enumerated_trace,
)

C, N = 2, 3
ATOL = 1e-10

W = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
MU = torch.tensor([-2.0, 0.5, 3.0], dtype=torch.float64)
SD = torch.tensor([0.7, 1.0, 1.5], dtype=torch.float64)


# ----------------------------------------------------------------------------- (a) GMM in a data plate
N_DATA = 4


def gmm():
    """Global continuous shift m, per-data-point assignment k_i inside the data plate."""
    m = pyro.sample("m", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
    with pyro.plate("data", N_DATA):
        k = pyro.sample("k", dist.Categorical(W), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(MU[k] + m, SD[k]))


def gmm_brute(m, x):
    """log p(m) and log p(m, x) = log p(m) + sum_i log sum_k w_k N(x_i; mu_k + m, sd_k)."""
    lp_m = dist.Normal(0.0, 1.0).log_prob(m)  # (C, N)
    comp = W.log() + dist.Normal(MU + m[..., None, None], SD).log_prob(x[..., None])  # (C, N, n, K)
    return lp_m, lp_m + comp.logsumexp(-1).sum(-1)


def _gmm_values():
    torch.manual_seed(0)
    m = torch.randn(C, N, dtype=torch.float64, requires_grad=True)
    x = 2 * torch.randn(N, N_DATA, dtype=torch.float64)
    return m, x


def test_gmm_in_data_plate_matches_brute_force():
    m, x = _gmm_values()
    with pyro.validation_enabled(True):
        res = enumerated_log_densities(
            gmm, (), {}, lead_shape=(C, N), values={"m": m[..., None], "x": x}, observed=["x"],
            groups={"prior": ["m", "k"], "joint": ["m", "k", "x"]}, max_plate_nesting=1,
        )
    prior, joint = gmm_brute(m, x)
    assert res.log_densities["prior"].shape == (C, N)
    assert res.log_densities["joint"].shape == (C, N)
    torch.testing.assert_close(res.log_densities["prior"], prior, atol=ATOL, rtol=0)
    torch.testing.assert_close(res.log_densities["joint"], joint, atol=ATOL, rtol=0)
    assert res.enumerated == ["k"]
    # m does not depend on k: its own density is reported; k and x depend on k: no per-site density
    assert set(res.site_log_probs) == {"m"}
    torch.testing.assert_close(res.site_log_probs["m"], prior, atol=ATOL, rtol=0)
    assert set(res.site_nan) == {"m", "k", "x"}
    assert not any(bool(v.any()) for v in res.site_nan.values())


def test_gmm_gradient_matches_autograd_of_brute_force():
    m, x = _gmm_values()
    res = enumerated_log_densities(
        gmm, (), {}, lead_shape=(C, N), values={"m": m[..., None], "x": x}, observed=["x"],
        groups={"joint": ["m", "k", "x"]}, max_plate_nesting=1,
    )
    (g,) = torch.autograd.grad(res.log_densities["joint"].sum(), m)
    (g_ref,) = torch.autograd.grad(gmm_brute(m, x)[1].sum(), m)
    torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=0)
    # and a central finite difference of the contracted density itself
    eps = 1e-6

    def f(mv):
        r = enumerated_log_densities(
            gmm, (), {}, lead_shape=(C, N), values={"m": mv[..., None], "x": x}, observed=["x"],
            groups={"joint": ["m", "k", "x"]}, max_plate_nesting=1,
        )
        return r.log_densities["joint"].detach()

    fd = (f(m.detach() + eps) - f(m.detach() - eps)) / (2 * eps)  # each (c, n) depends on its own m
    torch.testing.assert_close(g, fd, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- (b) k -> z -> x
@config_enumerate
def kzx():
    k = pyro.sample("k", dist.Categorical(W))
    z = pyro.sample("z", dist.Normal(MU[k], SD[k]))
    pyro.sample("x", dist.Normal(z, 1.0))


def kzx_brute(z, x):
    log_pz = (W.log() + dist.Normal(MU, SD).log_prob(z[..., None])).logsumexp(-1)
    return log_pz, log_pz + dist.Normal(z, 1.0).log_prob(x)


def test_mixed_model_prior_is_the_mixture_density_and_gradients_flow():
    torch.manual_seed(1)
    z = (2 * torch.randn(C, N, dtype=torch.float64)).requires_grad_()
    x = torch.randn(N, dtype=torch.float64)
    with pyro.validation_enabled(True):
        res = enumerated_log_densities(
            kzx, (), {}, lead_shape=(C, N), values={"z": z, "x": x}, observed=["x"],
            groups={"prior": ["k", "z"], "joint": ["k", "z", "x"]}, max_plate_nesting=0,
        )
    prior, joint = kzx_brute(z, x)
    torch.testing.assert_close(res.log_densities["prior"], prior, atol=ATOL, rtol=0)
    torch.testing.assert_close(res.log_densities["joint"], joint, atol=ATOL, rtol=0)
    assert set(res.site_log_probs) == {"x"}  # x | z does not depend on k
    (g,) = torch.autograd.grad(res.log_densities["joint"].sum() + res.log_densities["prior"].sum(), z)
    (g_ref,) = torch.autograd.grad(joint.sum() + prior.sum(), z)
    torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=0)


def test_discrete_site_given_a_value_is_not_enumerated_and_sums_plainly():
    """ll* = log p(x | k*, z*) needs the true k*: a discrete site with a value is conditioned."""
    torch.manual_seed(2)
    z = torch.randn(C, N, dtype=torch.float64)
    x = torch.randn(N, dtype=torch.float64)
    k = torch.randint(0, 3, (C, N))
    res = enumerated_log_densities(
        kzx, (), {}, lead_shape=(C, N), values={"k": k, "z": z, "x": x}, observed=["x"],
        groups={"joint": ["k", "z", "x"], "lik": ["x"]}, max_plate_nesting=0,
    )
    ref = W.log()[k] + dist.Normal(MU[k], SD[k]).log_prob(z) + dist.Normal(z, 1.0).log_prob(x)
    assert res.enumerated == []
    torch.testing.assert_close(res.log_densities["joint"], ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(res.log_densities["lik"], dist.Normal(z, 1.0).log_prob(x).expand(C, N),
                               atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- (c) HMM with pyro.markov
T, S = 5, 3
INIT = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
TRANS = torch.tensor([[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.25, 0.5]], dtype=torch.float64)
LOCS = torch.tensor([-2.0, 0.0, 2.5], dtype=torch.float64)


def hmm(num_steps=T):
    s = pyro.sample("s_0", dist.Categorical(INIT), infer={"enumerate": "parallel"})
    pyro.sample("y_0", dist.Normal(LOCS[s], 1.0))
    for t in pyro.markov(range(1, num_steps)):
        s = pyro.sample(f"s_{t}", dist.Categorical(TRANS[s]), infer={"enumerate": "parallel"})
        pyro.sample(f"y_{t}", dist.Normal(LOCS[s], 1.0))


def forward_algorithm(y, scale=1.0):
    """log p(y_{0:T-1}) for y of shape (..., T)."""
    alpha = INIT.log() + dist.Normal(LOCS, scale).log_prob(y[..., 0, None])
    for t in range(1, y.shape[-1]):
        alpha = (alpha[..., :, None] + TRANS.log()).logsumexp(-2) + dist.Normal(LOCS, scale).log_prob(y[..., t, None])
    return alpha.logsumexp(-1)


def test_hmm_with_markov_matches_forward_algorithm():
    torch.manual_seed(3)
    y = 2 * torch.randn(N, T, dtype=torch.float64)
    states = [f"s_{t}" for t in range(T)]
    obs = [f"y_{t}" for t in range(T)]
    with pyro.validation_enabled(True):
        res = enumerated_log_densities(
            hmm, (), {}, lead_shape=(C, N), values={f"y_{t}": y[:, t] for t in range(T)}, observed=obs,
            groups={"prior": states, "joint": states + obs}, max_plate_nesting=0,
        )
    assert res.enumerated == states
    torch.testing.assert_close(res.log_densities["joint"], forward_algorithm(y).expand(C, N), atol=ATOL, rtol=0)
    # only discrete latents: log sum_s p(s) = 0
    torch.testing.assert_close(res.log_densities["prior"], torch.zeros(C, N, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    # pyro.markov recycles enumeration dims: s_0 (outside the markov loop) keeps its dim, s_1..s_4
    # alternate between two more
    tr = enumerated_trace(hmm, (), {}, max_plate_nesting=0, lead_shape=(C, N),
                          handlers=[SetValues({f"y_{t}": y[:, t] for t in range(T)}, obs)])
    dims = {tr.nodes[s]["infer"]["_enumerate_dim"] for s in states}
    assert dims == {enum_first_dim(0), enum_first_dim(0) - 1, enum_first_dim(0) - 2}


def hmm_sequences(num_seq=2, num_steps=4):
    """The tutorial layout: a plate over sequences, the markov chain inside it, a continuous
    global emission scale."""
    scale = pyro.sample("scale", dist.LogNormal(torch.tensor(0.0, dtype=torch.float64), 0.3))
    with pyro.plate("sequences", num_seq):
        s = 0
        for t in pyro.markov(range(num_steps)):
            probs = INIT if t == 0 else TRANS[s]
            s = pyro.sample(f"s_{t}", dist.Categorical(probs), infer={"enumerate": "parallel"})
            pyro.sample(f"y_{t}", dist.Normal(LOCS[s], scale))


def test_hmm_in_sequence_plate_with_continuous_latent():
    torch.manual_seed(4)
    num_steps = 4
    scale = torch.rand(C, N, dtype=torch.float64).add(0.5).requires_grad_()
    y = 2 * torch.randn(N, 2, num_steps, dtype=torch.float64)
    states = [f"s_{t}" for t in range(num_steps)]
    obs = [f"y_{t}" for t in range(num_steps)]
    values = {f"y_{t}": y[..., t] for t in range(num_steps)}
    values["scale"] = scale[..., None]
    res = enumerated_log_densities(
        hmm_sequences, (), {}, lead_shape=(C, N), values=values, observed=obs,
        groups={"prior": ["scale"] + states, "joint": ["scale"] + states + obs}, max_plate_nesting=1,
    )
    lp_scale = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64), 0.3).log_prob(scale)
    ref = lp_scale + forward_algorithm(y[None], scale[..., None, None]).sum(-1)
    torch.testing.assert_close(res.log_densities["joint"], ref, atol=ATOL, rtol=0)
    torch.testing.assert_close(res.log_densities["prior"], lp_scale, atol=1e-12, rtol=0)
    (g,) = torch.autograd.grad(res.log_densities["joint"].sum(), scale)
    (g_ref,) = torch.autograd.grad(ref.sum(), scale)
    torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- NaN naming, groups
def test_site_nan_names_the_site_whose_density_is_nan():
    def model():
        k = pyro.sample("k", dist.Bernoulli(torch.tensor(0.5, dtype=torch.float64)),
                        infer={"enumerate": "parallel"})
        z = pyro.sample("z", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))
        pyro.sample("x", dist.Normal(z * (1 + k), torch.tensor(1.0, dtype=torch.float64) * z))  # scale z: NaN if z < 0

    z = torch.tensor([[1.0, -1.0, 2.0], [-0.5, 0.3, 0.7]], dtype=torch.float64)
    x = torch.zeros(N, dtype=torch.float64)
    with pyro.validation_enabled(False):
        res = enumerated_log_densities(
            model, (), {}, lead_shape=(C, N), values={"z": z, "x": x}, observed=["x"],
            groups={"joint": ["k", "z", "x"]}, max_plate_nesting=0,
        )
    assert torch.equal(res.site_nan["x"], z < 0)
    assert not bool(res.site_nan["z"].any()) and not bool(res.site_nan["k"].any())
    assert torch.equal(torch.isnan(res.log_densities["joint"]), z < 0)


def test_group_must_hold_the_enumerated_sites_it_depends_on():
    z = torch.zeros(C, N, dtype=torch.float64)
    x = torch.zeros(N, dtype=torch.float64)
    with pytest.raises(ValueError, match="depends on the enumerated site"):
        enumerated_log_densities(kzx, (), {}, lead_shape=(C, N), values={"z": z, "x": x},
                                 observed=["x"], groups={"prior": ["z"]}, max_plate_nesting=0)


def test_value_setters_inside_enum_fail_and_the_helper_orders_them_outside():
    """Pitfall: a handler that fixes a site's value must sit outside poutine.enum."""
    z = torch.zeros(C, N, dtype=torch.float64)
    x = torch.zeros(N, dtype=torch.float64)
    inner = SetValues({"z": z, "x": x}, ["x"])(kzx)
    tr = enumerated_trace(inner, (), {}, max_plate_nesting=0, lead_shape=(C, N))
    with pytest.raises(ValueError, match="packing"):
        contract_log_densities(tr, {"joint": ["k", "z", "x"]}, max_plate_nesting=0, lead_shape=(C, N))


# ----------------------------------------------------------------------------- marks on a plain trace
def _plain(model):
    return poutine.trace(model).get_trace()


def test_discrete_latent_sites_accepts_parallel_marks():
    assert discrete_latent_sites(_plain(kzx), ["k", "z"]) == ["k"]
    assert discrete_latent_sites(_plain(gmm), ["m", "k"]) == ["k"]
    assert discrete_latent_sites(_plain(hmm), [f"s_{t}" for t in range(T)]) == [f"s_{t}" for t in range(T)]


def _unmarked():
    k = pyro.sample("k", dist.Categorical(W))
    pyro.sample("x", dist.Normal(MU[k], 1.0))


def test_unmarked_discrete_latent_says_to_mark_or_marginalise_it():
    with pytest.raises(SiteError) as e:
        discrete_latent_sites(_plain(_unmarked), ["k"])
    msg = str(e.value)
    assert "'k'" in msg and "not marked for enumeration" in msg
    assert "infer={'enumerate': 'parallel'}" in msg and "config_enumerate" in msg
    assert "MixtureSameFamily" in msg


def test_sequential_enumeration_is_rejected_with_the_fix():
    def model():
        k = pyro.sample("k", dist.Categorical(W), infer={"enumerate": "sequential"})
        pyro.sample("x", dist.Normal(MU[k], 1.0))

    with pytest.raises(SiteError, match="'sequential'.*parallel"):
        discrete_latent_sites(_plain(model), ["k"])


def test_monte_carlo_enumeration_and_infinite_supports_are_rejected():
    def tmc():
        k = pyro.sample("k", dist.Categorical(W), infer={"enumerate": "parallel", "num_samples": 5})
        pyro.sample("x", dist.Normal(MU[k], 1.0))

    def poisson():
        k = pyro.sample("k", dist.Poisson(3.0), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(k, 1.0))

    with pytest.raises(SiteError, match="num_samples"):
        discrete_latent_sites(_plain(tmc), ["k"])
    with pytest.raises(SiteError, match="without a finite support"):
        discrete_latent_sites(_plain(poisson), ["k"])


# ----------------------------------------------------------------------------- joint draws: (N,) only
def test_sample_plate_only_pass_gives_per_draw_densities():
    """lead_shape=(N,): the pass over joint draws, log p(z*) with k summed out and log p(x | k*, z*)."""
    torch.manual_seed(5)
    z = torch.randn(N, dtype=torch.float64)
    x = torch.randn(N, dtype=torch.float64)
    with pyro.validation_enabled(True):
        res = enumerated_log_densities(
            kzx, (), {}, lead_shape=(N,), values={"z": z, "x": x}, observed=["x"],
            groups={"prior": ["k", "z"], "joint": ["k", "z", "x"]}, max_plate_nesting=0,
        )
    prior, joint = kzx_brute(z, x)
    torch.testing.assert_close(res.log_densities["prior"], prior, atol=ATOL, rtol=0)
    torch.testing.assert_close(res.log_densities["joint"], joint, atol=ATOL, rtol=0)
    m = torch.randn(N, dtype=torch.float64)
    xs = 2 * torch.randn(N, N_DATA, dtype=torch.float64)
    res = enumerated_log_densities(
        gmm, (), {}, lead_shape=(N,), values={"m": m[..., None], "x": xs}, observed=["x"],
        groups={"joint": ["m", "k", "x"]}, max_plate_nesting=1,
    )
    torch.testing.assert_close(res.log_densities["joint"], gmm_brute(m, xs)[1], atol=ATOL, rtol=0)


class _Exp(pyro.poutine.messenger.Messenger):
    """A toy unconstraining handler: sets site ``name`` to exp(u)."""

    def __init__(self, name, u):
        super().__init__()
        self.name, self.u = name, u

    def _pyro_sample(self, msg):
        if msg["name"] == self.name:
            msg["value"] = self.u.exp()
            msg["done"] = True


def test_caller_handlers_set_values_outside_the_enumeration():
    """A caller's own value-setting messenger (pyromi's unconstraining pass) goes in handlers=."""
    torch.manual_seed(6)
    u = torch.randn(C, N, dtype=torch.float64, requires_grad=True)
    y = 2 * torch.randn(N, 2, 3, dtype=torch.float64)
    obs = [f"y_{t}" for t in range(3)]
    states = [f"s_{t}" for t in range(3)]
    res = enumerated_log_densities(
        hmm_sequences, (), {"num_steps": 3}, lead_shape=(C, N),
        values={f"y_{t}": y[..., t] for t in range(3)}, observed=obs, handlers=[_Exp("scale", u[..., None])],
        groups={"joint": ["scale"] + states + obs}, max_plate_nesting=1,
    )
    scale = u.exp()
    ref = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64), 0.3).log_prob(scale) + \
        forward_algorithm(y[None], scale[..., None, None]).sum(-1)
    torch.testing.assert_close(res.log_densities["joint"], ref, atol=ATOL, rtol=0)
    (g,) = torch.autograd.grad(res.log_densities["joint"].sum(), u)
    (g_ref,) = torch.autograd.grad(ref.sum(), u)
    torch.testing.assert_close(g, g_ref, atol=1e-9, rtol=0)


class _Unconstrain(pyro.poutine.messenger.Messenger):
    """Sets site ``name`` to biject_to(support)(u), as pyromi's unconstraining pass does."""

    def __init__(self, name, u):
        super().__init__()
        self.name, self.u = name, u

    def _pyro_sample(self, msg):
        if msg["name"] == self.name:
            msg["value"] = torch.distributions.biject_to(msg["fn"].support)(self.u)
            msg["done"] = True


def test_support_that_depends_on_an_enumerated_site_is_reported():
    @config_enumerate
    def model():
        k = pyro.sample("k", dist.Categorical(W))
        lo = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
        z = pyro.sample("z", dist.Uniform(lo[k], lo[k] + 1))
        pyro.sample("x", dist.Normal(z, 1.0))

    u = torch.zeros(C, N, dtype=torch.float64)
    with pytest.raises(SiteError, match="'z'.*support"):
        enumerated_log_densities(
            model, (), {}, lead_shape=(C, N), values={"x": torch.zeros(N, dtype=torch.float64)},
            observed=["x"], handlers=[_Unconstrain("z", u)], groups={"joint": ["k", "z", "x"]},
            max_plate_nesting=0,
        )
    # a support that does not depend on k is fine through the same handler
    res = enumerated_log_densities(
        kzx, (), {}, lead_shape=(C, N), values={"x": torch.zeros(N, dtype=torch.float64)},
        observed=["x"], handlers=[_Unconstrain("z", u)], groups={"joint": ["k", "z", "x"]},
        max_plate_nesting=0,
    )
    torch.testing.assert_close(res.log_densities["joint"], kzx_brute(u, torch.zeros(N, dtype=torch.float64))[1],
                               atol=ATOL, rtol=0)
