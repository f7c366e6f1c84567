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
    with pytest.raises(PyromiError, match="design must be a torch.Tensor"):
        pyromi.oed.eig(model, [[1.0, 1.0]], "y", "theta")
    with pytest.raises(ValueError, match="design_dims"):
        pyromi.oed.eig(model, d, "y", "theta", design_dims=3)
    with pytest.raises(pyromi.SiteError):
        pyromi.oed.eig(model, d, "y", "nope", num_samples=8)
