"""MI of latent subsets (nuisance latents marginalised) and conditional MI, against closed forms.

Linear-Gaussian chain z2 -> z1 -> x (every quantity Gaussian):
  I(x; z2)       = 1/2 logdet(S_x) - 1/2 logdet(S_x|z2),  S_x|z2 = s1^2 B B^T + s2^2 I  (z1 nuisance)
  I(x; z1 | z2)  = 1/2 logdet(S_x|z2) - 1/2 logdet(s2^2 I)                            (z2 given)
  I(x; z1, z2)   = 1/2 logdet(S_x) - 1/2 logdet(s2^2 I)
so the chain rule holds exactly; each call's sandwich must hold its own truth (tolerances: 4 Monte
Carlo standard errors of the bound's own terms) and the three calls must satisfy the chain rule.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings, strategies as st

from pyromi import mutual_information
from pyromi.errors import SiteError


def chain(A: torch.Tensor, B: torch.Tensor, s1: float, s2: float):
    """z2 ~ N(0, I), z1 ~ N(A z2, s1^2 I), x ~ N(B z1, s2^2 I), and the three closed forms."""

    def model():
        z2 = pyro.sample("z2", dist.Normal(torch.zeros(A.shape[1]), 1.0).to_event(1))
        z1 = pyro.sample("z1", dist.Normal(z2 @ A.T, s1).to_event(1))
        pyro.sample("x", dist.Normal(z1 @ B.T, s2).to_event(1))

    A64, B64 = A.double(), B.double()
    dx = B.shape[0]
    s_x = B64 @ (A64 @ A64.T + s1**2 * torch.eye(A.shape[0], dtype=torch.float64)) @ B64.T \
        + s2**2 * torch.eye(dx, dtype=torch.float64)
    s_x_z2 = s1**2 * B64 @ B64.T + s2**2 * torch.eye(dx, dtype=torch.float64)
    ld = lambda m: float(torch.logdet(m))  # noqa: E731
    noise = dx * math.log(s2**2)
    truths = {"z2": 0.5 * (ld(s_x) - ld(s_x_z2)), "z1|z2": 0.5 * (ld(s_x_z2) - noise),
              "z1,z2": 0.5 * (ld(s_x) - noise)}
    return model, truths


def holds(est, truth, k=4.0):
    assert est.lower - k * est.lower_se <= truth <= est.upper + k * est.upper_se, (est, truth)


@pytest.fixture(scope="module")
def small_chain():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 2, generator=gen)
    B = torch.randn(4, 3, generator=gen)
    return chain(A, B, 0.6, 0.5)


def test_chain_rule_across_three_calls(small_chain):
    """I(x; z2) (z1 marginalised), I(x; z1 | z2) and I(x; z1, z2): each sandwich holds its closed
    form, is informative (width well below the truth), and the chain rule holds between the calls."""
    model, truth = small_chain
    kw = dict(bound="ais", num_samples=64, num_particles=8, num_steps=100, progress=False)
    top = mutual_information(model, "x", latent="z2", seed=1, **kw)
    cond = mutual_information(model, "x", latent="z1", given="z2", seed=2, **kw)
    both = mutual_information(model, "x", latent=["z1", "z2"], seed=3, **kw)
    holds(top, truth["z2"])
    holds(cond, truth["z1|z2"])
    holds(both, truth["z1,z2"])
    assert top.settings["nuisance"] == ["z1"] and top.settings["given"] == []
    assert cond.settings["given"] == ["z2"] and cond.settings["nuisance"] == []
    assert top.latent == ("z2",) and cond.latent == ("z1",)
    for est, t in ((top, truth["z2"]), (cond, truth["z1|z2"])):
        assert est.upper - est.lower < 0.25 * t + 0.1, est  # informative, not just valid
    se = math.sqrt(top.lower_se**2 + cond.lower_se**2 + both.upper_se**2)
    assert top.lower + cond.lower <= both.upper + 4 * se  # L(z2) + L(z1|z2) <= I(x; z1, z2)
    se = math.sqrt(top.upper_se**2 + cond.upper_se**2 + both.lower_se**2)
    assert top.upper + cond.upper >= both.lower - 4 * se


def test_iwae_version_is_valid(small_chain):
    """bound='iwae' with a nuisance site: the same construction at T = 1 (importance sampling from
    the prior): valid."""
    model, truth = small_chain
    est = mutual_information(model, "x", latent="z2", bound="iwae", num_samples=128, num_particles=64,
                             seed=4, progress=False)
    holds(est, truth["z2"])
    assert est.settings["nuisance"] == ["z1"] and est.settings["num_steps"] == 1


def test_above_twenty_nats_with_a_nuisance():
    """x = B z + C psi + noise with psi a nuisance (independent of z, as a nuisance parameter of an
    experiment): I(x; z) = 1/2 logdet(B B^T + C C^T + s^2 I) - 1/2 logdet(C C^T + s^2 I) = 23.5
    nats; the nested sandwich holds it within a nat."""
    gen = torch.Generator().manual_seed(5)
    B = torch.randn(12, 6, generator=gen)
    C = torch.randn(12, 2, generator=gen) * 0.5
    s = 0.05

    def model():
        z = pyro.sample("z", dist.Normal(torch.zeros(6), 1.0).to_event(1))
        psi = pyro.sample("psi", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ B.T + psi @ C.T, s).to_event(1))

    B64, C64, eye = B.double(), C.double(), torch.eye(12, dtype=torch.float64)
    truth = 0.5 * float(torch.logdet(B64 @ B64.T + C64 @ C64.T + s**2 * eye) - torch.logdet(C64 @ C64.T + s**2 * eye))
    assert truth > 20
    est = mutual_information(model, "x", latent="z", bound="ais", num_samples=32, num_particles=8,
                             num_steps=300, seed=6, progress=False)
    holds(est, truth)
    assert est.settings["nuisance"] == ["psi"]
    assert est.upper - est.lower < 1.5, est


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), dz2=st.integers(1, 2), dz1=st.integers(1, 3), dx=st.integers(1, 3),
       s1=st.floats(0.3, 1.5), s2=st.floats(0.3, 1.5))
def test_random_chains_hold_their_truth(seed, dz2, dz1, dx, s1, s2):
    """Hypothesis: random linear-Gaussian chains, I(x; z2) with z1 marginalised (IWAE version) and
    I(x; z1 | z2): each sandwich holds its closed form."""
    gen = torch.Generator().manual_seed(seed)
    model, truth = chain(torch.randn(dz1, dz2, generator=gen), torch.randn(dx, dz1, generator=gen), s1, s2)
    kw = dict(num_samples=96, num_particles=128, progress=False)
    holds(mutual_information(model, "x", latent="z2", bound="iwae", seed=seed, **kw), truth["z2"])
    holds(mutual_information(model, "x", latent="z1", given="z2", bound="iwae", seed=seed + 1, **kw),
          truth["z1|z2"])


def test_site_roles_are_checked(small_chain):
    model, _ = small_chain
    kw = dict(bound="ais", num_samples=8, num_particles=2, num_steps=5, progress=False)
    with pytest.raises(SiteError, match="both latent= and given="):
        mutual_information(model, "x", latent="z1", given="z1", **kw)
    with pytest.raises(SiteError, match="given= names \\['w'\\]"):
        mutual_information(model, "x", latent="z1", given="w", **kw)
    with pytest.raises(SiteError, match="given site"):  # c must not depend on the latents
        mutual_information(model, "x", latent="z2", given="z1", **kw)
    with pytest.raises(ValueError, match="given= is used by"):
        mutual_information(model, "x", latent="z1", given="z2", bound="giwae", num_samples=8)


def test_nuisance_upstream_of_the_target(small_chain):
    """I(x; z1) with z2 (z1's parent) marginalised: log p(z1) = log int p(z1 | z2) p(z2) dz2 gets
    its own AIS sandwich. Truth: x | z1 does not involve z2, so I(x; z1) = 1/2 logdet(S_x) -
    1/2 logdet(s2^2 I) = I(x; z1, z2)."""
    model, truth = small_chain
    est = mutual_information(model, "x", latent="z1", bound="ais", num_samples=64, num_particles=8,
                             num_steps=100, seed=8, progress=False)
    assert est.settings["nuisance"] == ["z2"] and est.settings["target_marginal"].startswith("AIS")
    holds(est, truth["z1,z2"])
    assert est.upper - est.lower < 0.25 * truth["z1,z2"], est


def test_given_only_reduces_to_the_full_latent_set(small_chain):
    """given=c with latent=None: every other latent is the target, no nuisance."""
    model, truth = small_chain
    est = mutual_information(model, "x", given="z2", bound="ais", num_samples=48, num_particles=8,
                             num_steps=80, seed=7, progress=False)
    assert est.latent == ("z1",) and est.settings["nuisance"] == []
    holds(est, truth["z1|z2"])


def test_audit_reports_each_layer(small_chain, tmp_path):
    """audit(layers=...): I(x; z_layer) per layer with the other layer marginalised, each holding
    its closed form (bottom layer z1: the whole I(x; z1, z2), since x depends on z2 only through
    z1; top layer z2: less), in the table and the flow plot."""
    pytest.importorskip("matplotlib")
    from pyromi.audit import audit

    model, truth = small_chain
    rep = audit(model, "x", layers={"bottom": "z1", "top": "z2"}, num_samples=40, num_particles=6,
                num_steps=50, seed=9)
    assert [layer.name for layer in rep.layers] == ["bottom", "top"]
    assert rep.layers[0].sites == ("z1",) and rep.layers[0].mi.settings["nuisance"] == ["z2"]
    holds(rep.layers[0].mi, truth["z1,z2"])
    holds(rep.layers[1].mi, truth["z2"])
    holds(rep.mi, truth["z1,z2"])
    text = rep.table()
    assert "I(x; bottom) (other latents marginalised)" in text and "I(x; top)" in text
    fig = rep.plot_flow(path=str(tmp_path / "flow.png"))
    assert (tmp_path / "flow.png").stat().st_size > 0 and len(fig.axes[0].get_xticklabels()) == 3
    with pytest.raises(ValueError, match="layers= entries must be site names"):
        audit(model, "x", layers=[3], num_samples=8, num_steps=5)
    with pytest.raises(ValueError, match="plot_flow needs an audit with layers="):
        audit(model, "x", num_samples=8, num_particles=2, num_steps=5, seed=0).plot_flow()


# ---------------------------------------------------------------- enumerated discrete targets
def _normal_pdf(x, loc, scale=1.0):
    return torch.exp(-0.5 * ((x - loc) / scale) ** 2) / (scale * math.sqrt(2 * math.pi))


def _mixture_mi(weights, locs, scale, xs):
    """I(x; k) for x | k ~ N(locs[k], scale^2), k ~ weights, by quadrature on the grid ``xs``."""
    comps = torch.stack([_normal_pdf(xs, m, scale) for m in locs])  # (K, G)
    px = (weights[:, None] * comps).sum(0)
    return float((weights * torch.trapz(comps * torch.log(comps / px), xs, dim=1)).sum())


def test_enumerated_target_with_a_continuous_nuisance():
    """k ~ Bernoulli(1/2) (enumerated) is the target, psi ~ N(0, 1) a nuisance, x ~ N(3k + psi, 1):
    x | k ~ N(3k, 2), so I(x; k) is a two-component mixture's MI (1-D quadrature, 0.3637 nats).
    The discrete target's draws live in joint.discrete and log p(k*) = log 1/2 must enter the
    bound (dropping it would shift both sides by log 2 = 0.69)."""
    def model():
        k = pyro.sample("k", dist.Bernoulli(0.5), infer={"enumerate": "parallel"})
        psi = pyro.sample("psi", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(3.0 * k + psi, 1.0))

    xs = torch.linspace(-15, 18, 20001, dtype=torch.float64)
    truth = _mixture_mi(torch.tensor([0.5, 0.5], dtype=torch.float64), [0.0, 3.0], math.sqrt(2), xs)
    assert abs(truth - 0.3637) < 1e-3
    est = mutual_information(model, "x", latent="k", bound="ais", num_samples=200, num_particles=16,
                             num_steps=50, seed=0, progress=False)
    holds(est, truth)
    assert est.latent == ("k",) and est.settings["target"] == ["k"] and est.settings["nuisance"] == ["psi"]
    assert est.settings["target_marginal"] == "exact" and est.settings["evaluation"] == "batched"
    assert est.upper - est.lower < 0.05, est  # the continuous nuisance is annealed, k summed exactly


def test_enumerated_target_below_its_nuisance():
    """psi ~ N(0, 1), k | psi ~ Bernoulli(sigmoid(2 psi)) (enumerated target), x ~ N(3k + psi, 1):
    log p(k*) = log int p(k* | psi) p(psi) dpsi gets its own sandwich (a discrete target's
    dependence on the nuisance must be seen). Truth by quadrature over (psi, x)."""
    def model():
        psi = pyro.sample("psi", dist.Normal(0.0, 1.0))
        k = pyro.sample("k", dist.Bernoulli(logits=2.0 * psi), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(3.0 * k + psi, 1.0))

    D = torch.float64
    psi = torch.linspace(-8, 8, 801, dtype=D)
    xs = torch.linspace(-12, 15, 1351, dtype=D)
    p_psi, p1 = _normal_pdf(psi, 0.0), torch.sigmoid(2 * psi)
    cond, pk = [], []
    for k, w in ((0, p_psi * (1 - p1)), (1, p_psi * p1)):
        pk.append(torch.trapz(w, psi))
        cond.append(torch.trapz(_normal_pdf(xs[:, None], 3.0 * k + psi[None, :]) * w, psi, dim=1) / pk[-1])
    px = pk[0] * cond[0] + pk[1] * cond[1]
    truth = float(sum(pk[k] * torch.trapz(cond[k] * torch.log(cond[k] / px), xs) for k in (0, 1)))
    est = mutual_information(model, "x", latent="k", bound="ais", num_samples=128, num_particles=16,
                             num_steps=50, seed=1, progress=False)
    assert est.settings["target_marginal"].startswith("AIS"), est.settings
    holds(est, truth)
    assert est.upper - est.lower < 0.1, est


def test_enumerated_target_given_a_context_site_is_exact():
    """c ~ N(0, 1) given, k | c ~ Bernoulli(sigmoid(c)) the only target, x ~ N(3k + c, 1): no
    continuous latent is left, so I(x; k | c) is exact up to Monte Carlo over (x, c) (both sides
    equal). Truth: E_c[MI of the mixture with weight sigmoid(c)] by quadrature."""
    def model():
        c = pyro.sample("c", dist.Normal(0.0, 1.0))
        k = pyro.sample("k", dist.Bernoulli(logits=c), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(3.0 * k + c, 1.0))

    D = torch.float64
    cs = torch.linspace(-8, 8, 401, dtype=D)
    xs = torch.linspace(-8, 11, 1901, dtype=D)
    per_c = torch.stack([torch.tensor(_mixture_mi(torch.stack([1 - p, p]), [0.0, 3.0], 1.0, xs))
                         for p in torch.sigmoid(cs)])
    truth = float(torch.trapz(per_c * _normal_pdf(cs, 0.0), cs))
    est = mutual_information(model, "x", latent="k", given="c", bound="ais", num_samples=2000,
                             num_particles=4, num_steps=5, seed=2, progress=False)
    assert est.lower == est.upper and est.settings["method"].startswith("exact"), est.settings
    holds(est, truth)
    assert est.settings["target"] == ["k"] and est.settings["given"] == ["c"] and est.settings["nuisance"] == []


# ---------------------------------------------------------------- models with plates
def test_plate_models_are_batched_on_the_nested_path():
    """m ~ N(0, 1), psi ~ N(0, 1), x_j ~ N(m + psi, 1) for j in a plate of 5: I(x; m) with psi a
    nuisance is 1/2 log(11/6) and I(x; m | psi) = 1/2 log 6. A given or target site held as
    context has a density without the particle dimension; under a model plate that used to break
    the batched pass (expand (N, 1) to (C, N)) and send every such model to the slow path."""
    def model():
        m = pyro.sample("m", dist.Normal(0.0, 1.0))
        psi = pyro.sample("psi", dist.Normal(0.0, 1.0))
        with pyro.plate("g", 5):
            pyro.sample("x", dist.Normal(m + psi, 1.0))

    kw = dict(bound="ais", num_samples=64, num_particles=8, num_steps=40, progress=False, vectorize=True)
    marg = mutual_information(model, "x", latent="m", seed=3, **kw)
    cond = mutual_information(model, "x", latent="m", given="psi", seed=4, **kw)
    for est, truth in ((marg, 0.5 * math.log(11 / 6)), (cond, 0.5 * math.log(6))):
        assert est.settings["evaluation"] == "batched", est.settings
        holds(est, truth)
        assert est.upper - est.lower < 0.1, est


def test_plate_model_given_a_scale_matches_quadrature_and_the_sequential_path():
    """m ~ N(0, 1), s ~ LogNormal(0, 1/2), x_j ~ N(m, s^2) in a plate of 5; given s:
    I(x; m | s) = E_s[1/2 log(1 + 5 / s^2)] (1-D quadrature). Batched, and the density passes of
    the adapters it builds equal the sequential ones exactly."""
    from pyromi.adapter import ModelAdapter

    def model():
        m = pyro.sample("m", dist.Normal(0.0, 1.0))
        s = pyro.sample("s", dist.LogNormal(0.0, 0.5))
        with pyro.plate("g", 5):
            pyro.sample("x", dist.Normal(m, s))

    u = torch.linspace(-8, 8, 4001, dtype=torch.float64)  # log s ~ N(0, 1/4)
    truth = float(torch.trapz(0.5 * torch.log1p(5 * torch.exp(-2 * u)) * _normal_pdf(u, 0.0, 0.5), u))
    est = mutual_information(model, "x", latent="m", given="s", bound="ais", num_samples=96,
                             num_particles=8, num_steps=40, seed=5, progress=False, vectorize=True)
    assert est.settings["evaluation"] == "batched"
    holds(est, truth)
    for obs, lat in ((["x", "s"], ["m"]), (["x", "m"], ["s"])):  # given s; target m held as context
        fast = ModelAdapter(model, obs, lat, context=obs[1:], vectorize=True)
        slow = ModelAdapter(model, obs, lat, context=obs[1:], vectorize=False)
        assert not fast.sequential and slow.sequential
        joint = fast.sample_joint(6)
        z = {n: joint.latent[n].unsqueeze(0) * torch.tensor([1.0, 0.5, 1.5]).reshape(3, 1, 1) for n in lat}
        a, b = fast.log_density(z, joint.observed), slow.log_density(z, joint.observed)
        assert torch.allclose(a.log_likelihood, b.log_likelihood, atol=1e-5)
        assert torch.allclose(a.log_prior, b.log_prior, atol=1e-5)


# ---------------------------------------------------------------- the given-site check
def test_given_dependence_error_names_the_site_and_its_parents():
    """The error names the given site and the sites its density actually depends on (not every
    latent), and the fixes."""
    def model():
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(0.0, 1.0))
        c = pyro.sample("c", dist.Normal(a, 1.0))
        pyro.sample("x", dist.Normal(a + b + c, 1.0))

    kw = dict(bound="iwae", num_samples=8, num_particles=4, progress=False)
    with pytest.raises(SiteError) as info:
        mutual_information(model, "x", latent="b", given="c", **kw)
    msg = str(info.value)
    assert "given site 'c' depends on the latent site 'a'" in msg, msg
    assert "'b'" not in msg.split("(")[0] and "latent=" in msg and "drop given=" in msg, msg


def test_given_site_downstream_of_the_observations_is_refused():
    """c ~ N(x, 1) after x: holding c as context would give I((x, c); z), not I(x; z | c)."""
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        x = pyro.sample("x", dist.Normal(z, 1.0))
        pyro.sample("c", dist.Normal(x, 1.0))

    with pytest.raises(SiteError, match="given site 'c' depends on the observed site 'x'"):
        mutual_information(model, "x", latent="z", given="c", bound="iwae", num_samples=8,
                           num_particles=4, progress=False)


def test_given_site_depending_on_a_nearly_constant_discrete_target_is_refused():
    """k ~ Bernoulli(0.999): all draws agree, so exchanging values between draws would not move
    c's density; the check moves a discrete site to another value of its support instead."""
    def model():
        k = pyro.sample("k", dist.Bernoulli(0.999), infer={"enumerate": "parallel"})
        c = pyro.sample("c", dist.Normal(k, 1.0))
        pyro.sample("x", dist.Normal(k + c, 1.0))

    with pytest.raises(SiteError, match="given site 'c' depends on the latent site 'k'"):
        mutual_information(model, "x", latent="k", given="c", bound="iwae", num_samples=8,
                           num_particles=4, seed=0, progress=False)


def test_upstream_nuisance_is_seen_with_one_draw(small_chain):
    """num_samples=1: the dependence check cannot exchange values between draws, so it draws a
    few of its own; the target's marginal still gets its sandwich (else log p(z1*) would be
    taken as exact while it depends on the nuisance z2)."""
    model, _ = small_chain
    est = mutual_information(model, "x", latent="z1", bound="ais", num_samples=1, num_particles=4,
                             num_steps=10, seed=0, progress=False)
    assert est.settings["target_marginal"].startswith("AIS"), est.settings


def test_upstream_nuisance_with_the_observations_in_an_inner_plate():
    """mu ~ N(0, 1); th_g ~ N(mu, 1), c_g ~ N(0, 1) (plate of 3); x_gj ~ N(th_g + c_g, 1) (inner
    plate of 4). I(x; th | c) with mu a nuisance upstream of th: the model without x (for
    log p(th*)) has one plate fewer, so its sites have other shapes than the full model's; the
    values must be passed in its own shapes. Truth: 1/2 logdet(A S_th A^T + I), S_th = I + 1 1^T."""
    def model():
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("g", 3):
            th = pyro.sample("th", dist.Normal(mu, 1.0))
            c = pyro.sample("c", dist.Normal(0.0, 1.0))
            with pyro.plate("j", 4):
                pyro.sample("x", dist.Normal(th + c, 1.0))

    A = torch.kron(torch.ones(4, 1, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    s_th = torch.eye(3, dtype=torch.float64) + 1.0
    truth = 0.5 * float(torch.logdet(A @ s_th @ A.T + torch.eye(12, dtype=torch.float64)))
    est = mutual_information(model, "x", latent="th", given="c", bound="iwae", num_samples=200,
                             num_particles=256, seed=6, progress=False, vectorize=True)
    assert est.settings["target_marginal"].startswith("IWAE sandwich") and est.settings["nuisance"] == ["mu"]
    assert est.settings["evaluation"] == "batched"
    holds(est, truth)
    assert est.upper - est.lower < 0.5, est


def test_upstream_nuisance_with_an_explicit_plate_dim_around_the_observations():
    """a ~ N(0, 1), b ~ N(a, 1), x_j ~ N(b, 1) in plate("j", 4, dim=-2): hiding x leaves the model
    for log p(b*) with no plate, so its adapter must keep the full model's plate nesting (else the
    plates collide). Truth: b ~ N(0, 2), I(x; b) = 1/2 log(1 + 4 * 2)."""
    def model():
        a = pyro.sample("a", dist.Normal(0.0, 1.0))
        b = pyro.sample("b", dist.Normal(a, 1.0))
        with pyro.plate("j", 4, dim=-2):
            pyro.sample("x", dist.Normal(b, 1.0))

    est = mutual_information(model, "x", latent="b", bound="iwae", num_samples=200, num_particles=256,
                             seed=2, progress=False)
    assert est.settings["nuisance"] == ["a"] and est.settings["target_marginal"].startswith("IWAE sandwich")
    assert est.settings["evaluation"] == "batched"
    holds(est, 0.5 * math.log(9.0))


def test_reparam_with_nuisance_sites_is_refused(small_chain):
    """reparam='auto' only reparameterises listed latents: with nuisance sites it would silently do
    nothing, so it is refused like the other options the nested bounds do not support."""
    model, _ = small_chain
    with pytest.raises(ValueError, match="reparam="):
        mutual_information(model, "x", latent="z2", bound="iwae", reparam="auto", num_samples=8)
