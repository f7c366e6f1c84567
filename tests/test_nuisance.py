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
