"""pyromi.oed.eig: one sandwich per design, in pyro.contrib.oed's conventions, against closed forms.

Linear model with a nuisance offset (``pyromi.models.LinearDesign``): theta ~ N(0, 1) (target),
psi ~ N(0, 1) (nuisance, Pyro's "random effect"), y_j ~ N(d_j theta + psi, sigma^2):
  EIG(d) = 1/2 log(1 + d^T (1 1^T + sigma^2 I)^-1 d), checked against direct Gaussian algebra.
"""

from __future__ import annotations

import math

import pytest
import torch

import pyromi
from pyromi.errors import PyromiError
from pyromi.models import LinearDesign

LINEAR = LinearDesign(sigma=0.5)
model, truth = LINEAR.model, LINEAR.eig


def test_closed_form_against_direct_gaussian_algebra():
    """LinearDesign.eig: 1/2 logdet(S_y) - 1/2 logdet(S_y|theta) with S_y = d d^T + 1 1^T + s^2 I."""
    for d in (torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0, -1.0])):
        d64, one = d.double(), torch.ones(d.numel(), dtype=torch.float64)
        noise = 0.25 * torch.eye(d.numel(), dtype=torch.float64) + torch.outer(one, one)
        direct = 0.5 * float(torch.logdet(torch.outer(d64, d64) + noise) - torch.logdet(noise))
        assert abs(LINEAR.eig(d) - direct) < 1e-10
        full = 0.5 * float(torch.logdet(torch.outer(d64, d64) + noise) - d.numel() * math.log(0.25))
        assert abs(LINEAR.eig_full(d) - full) < 1e-10


def test_sandwich_per_design_and_certified_best():
    designs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.3, 0.3]])
    res = pyromi.oed.eig(model, designs, "y", "theta", num_samples=64, num_particles=8, num_steps=60,
                         seed=0, progress=False)
    assert res.lower.shape == (3,) and res.upper.shape == (3,)
    for i in range(3):
        t = truth(designs[i])
        e = res.estimates[i]
        assert e.settings["nuisance"] == ["psi"]
        assert e.lower - 4 * e.lower_se <= t <= e.upper + 4 * e.upper_se, (i, e, t)
        assert e.upper - e.lower < 0.1 + 0.2 * t, e
    best = res.best()
    assert best["index"] == (1,) and torch.equal(best["design"], designs[1])
    assert best["certified"] and "certified best" in best["message"], best
    same = pyromi.oed.eig(model, designs[:1], "y", "theta", num_samples=64, num_particles=8, num_steps=60,
                          seed=0, progress=False)
    assert same.lower[0] == res.lower[0] and same.upper[0] == res.upper[0]  # seeded, design by design


def test_near_tie_is_not_certified():
    """Designs [2, 0] (EIG 1.146) and [1, -1] (1.099): the sandwiches cannot tell them apart at
    this N, and best() says so instead of naming a winner."""
    designs = torch.tensor([[[2.0, 0.0]], [[1.0, -1.0]]])  # batch shape (2, 1)
    res = pyromi.oed.eig(model, designs, "y", "theta", num_samples=48, num_particles=8, num_steps=60,
                         seed=1, progress=False)
    assert res.lower.shape == (2, 1)
    best = res.best()
    assert not best["certified"] and best["contenders"] and "not certified" in best["message"]
    for i, d in enumerate(designs.reshape(2, 2)):
        e = res.estimates[i]
        assert e.lower - 4 * e.lower_se <= truth(d) <= e.upper + 4 * e.upper_se


def test_bad_arguments():
    d = torch.tensor([[1.0, 1.0]])
    with pytest.raises(ValueError, match="bound must be 'ais' or 'iwae'"):
        pyromi.oed.eig(model, d, "y", "theta", bound="mist")
    with pytest.raises(PyromiError, match="design= must be a torch.Tensor"):
        pyromi.oed.eig(model, [[1.0, 1.0]], "y", "theta")
    for dims in (3, -1, 1.0, True, None):
        with pytest.raises(ValueError, match=r"design_dims= must be an int in \[0, design.dim\(\) = 2\]"):
            pyromi.oed.eig(model, d, "y", "theta", design_dims=dims)
    with pytest.raises(pyromi.SiteError, match=r"^eig, design \(0,\) = \[1, 1\]: "):  # names the design
        pyromi.oed.eig(model, d, "y", "nope", num_samples=8)


@pytest.mark.parametrize("design, match", [
    (torch.empty(0, 2), r"design= is empty \(shape \(0, 2\)\)"),
    (torch.empty(3, 0), r"design= is empty \(shape \(3, 0\)\)"),
    (torch.tensor([[1.0, float("nan")], [1.0, 1.0]]), r"design= has 1 NaN or infinite value\(s\) \(first at \(0, 1\)"),
    (torch.tensor([[1.0, 1.0], [float("inf"), 1.0]]), r"design= has 1 NaN or infinite value\(s\) \(first at \(1, 0"),
])
def test_design_is_validated_before_any_run(design, match):
    """An empty or non-finite design is refused up front, naming design= and the fix (it used to
    reach the model: a raw RuntimeError, or a DensityError that did not mention the design)."""
    with pytest.raises(ValueError, match=match):
        pyromi.oed.eig(model, design, "y", "theta", num_samples=8, num_particles=2, num_steps=2)


def test_warnings_name_the_design_they_concern():
    """A warning raised inside one design's run is said again with that design's index and values."""
    designs = torch.tensor([[1.0, 1.0], [0.5, -0.5]])
    with pytest.warns(pyromi.PyromiWarning) as rec:
        pyromi.oed.eig(model, designs, "y", "theta", bound="iwae", num_samples=16, num_particles=2,
                       seed=3, progress=False)
    texts = [str(w.message) for w in rec if issubclass(w.category, pyromi.PyromiWarning)]
    assert any(t.startswith("eig, design (0,) = [1, 1]: ") for t in texts), texts
    assert any(t.startswith("eig, design (1,) = [0.5, -0.5]: ") for t in texts), texts
    assert all(t.startswith("eig, design (") for t in texts), texts


def _result(lower, upper, lower_se, upper_se):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return pyromi.oed.EIGResult(t(lower), t(upper), t(lower_se), t(upper_se),
                                torch.arange(2.0 * len(lower)).reshape(len(lower), 2), ())


def test_best_accounts_for_standard_errors_and_says_what_the_bound_is():
    """Certification compares the best lower bound minus z s.e. with every other upper bound plus
    z s.e.; the message calls the lower bound a Monte Carlo estimate with its standard error, never
    'at least'."""
    res = _result([1.0, 0.5], [1.2, 0.75], [0.1, 0.1], [0.1, 0.1])
    strict = res.best()  # 1.0 - 0.2 = 0.8 < 0.75 + 0.2 = 0.95: not certified
    assert not strict["certified"] and strict["contenders"] == [1] and strict["index"] == (0,)
    assert "1.000 ± 0.100 nats" in strict["message"] and "at least" not in strict["message"]
    loose = res.best(z=0.0)  # 1.0 > 0.75: certified at 0 standard errors
    assert loose["certified"] and "certified best at 0 standard errors" in loose["message"], loose
    assert "± 0.100" in loose["message"] and "at least" not in loose["message"]
    assert loose["lower_se"] == pytest.approx(0.1) and loose["upper"] == pytest.approx(1.2)
    assert res.best(z=1.0)["certified"]  # 0.9 > 0.85
    nan = _result([1.0, 0.5], [1.2, 0.6], [float("nan"), float("nan")], [float("nan"), float("nan")])
    out = nan.best()  # N = 1: no standard error, nothing certified
    assert not out["certified"] and "standard error is not available" in out["message"], out
    one = _result([0.7], [0.8], [0.05], [0.05]).best()
    assert one["certified"] and "only candidate" in one["message"]
    for z in (-1.0, float("nan"), "2", True):
        with pytest.raises(ValueError, match="z="):
            res.best(z=z)


def test_model_arguments_follow_the_design():
    """model(design_i, *model_args, **model_kwargs): the extra arguments reach the model after the
    candidate design (they once replaced it, silently). y = scale d theta + noise(sigma):
    EIG = 1/2 log(1 + (scale d / sigma)^2), with sigma as a keyword and scale as an argument."""
    import pyro
    import pyro.distributions as dist

    from pyromi.oed import eig

    def experiment(design, scale=1.0, *, sigma=0.5):
        theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(scale * design * theta, sigma).to_event(1))

    designs = torch.tensor([[0.2], [2.0]])
    kw = dict(bound="iwae", num_samples=64, num_particles=256, seed=0)
    sharp = eig(experiment, designs, "y", "theta", model_kwargs={"sigma": 0.1}, **kw)
    blunt = eig(experiment, designs, "y", "theta", model_args=(0.5,), **kw)
    truth_sharp = [0.5 * math.log(1 + (0.2 / 0.1) ** 2), 0.5 * math.log(1 + (2.0 / 0.1) ** 2)]
    truth_blunt = [0.5 * math.log(1 + (0.1 / 0.5) ** 2), 0.5 * math.log(1 + (1.0 / 0.5) ** 2)]
    for res, truth in ((sharp, truth_sharp), (blunt, truth_blunt)):
        for j in range(2):
            assert float(res.lower[j] - 4 * res.lower_se[j]) <= truth[j] <= float(res.upper[j] + 4 * res.upper_se[j])
        assert res.best()["index"] == (1,)
