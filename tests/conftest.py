"""Shared models with closed-form truths, and Monte Carlo tolerance helpers.

Tolerances: a bound's per-sample terms are compared with the per-sample oracle
``log p(x_i|z_i*) - log p(x_i)`` on the same joint draws; the paired differences have a standard
error ``se = std(d) / sqrt(N)`` and a bound is "on the correct side" when ``mean(d) <= 3 se``
(lower) or ``mean(d) >= -3 se`` (upper). Seeds are fixed, so each test is deterministic.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from pyromi.models import LinearGaussian

Z_SCORE = 3.0

# Test tensors are small: a second intra-op thread gains nothing, and on a loaded machine OpenMP
# oversubscription makes small ops 10-20x slower.
torch.set_num_threads(1)


def paired_se(d: torch.Tensor) -> float:
    d = d.double()
    return float(d.std() / math.sqrt(d.numel()))


def assert_lower_bound(terms: torch.Tensor, oracle: torch.Tensor) -> None:
    """mean(terms - oracle) <= Z se: a lower bound must not exceed the truth beyond MC error."""
    d = terms.double() - oracle.double()
    assert float(d.mean()) <= Z_SCORE * paired_se(d) + 1e-9, (float(d.mean()), paired_se(d))


def assert_upper_bound(terms: torch.Tensor, oracle: torch.Tensor) -> None:
    """mean(terms - oracle) >= -Z se: an upper bound must not fall below the truth beyond MC error."""
    d = terms.double() - oracle.double()
    assert float(d.mean()) >= -Z_SCORE * paired_se(d) - 1e-9, (float(d.mean()), paired_se(d))


@pytest.fixture(autouse=True)
def _clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def toy() -> LinearGaussian:
    """bounds.md section 7 toy in float64 (exactness checks to 1e-8)."""
    return LinearGaussian.toy(dtype=torch.float64)


@pytest.fixture(scope="session")
def toy32() -> LinearGaussian:
    return LinearGaussian.toy()


class HierarchicalGaussian:
    """Two latent sites and an inner plate: ``mu ~ N(0,1)``, ``z_j ~ N(mu, 1)``,
    ``x_j ~ N(z_j, s^2)``, j = 1..P. Jointly Gaussian, so every quantity is exact:
    ``p(x) = N(0, 11^T + (1 + s^2) I)``; ``mu | x ~ N(a sum(x) / (1+s^2), a)`` with
    ``a = 1 / (1 + P/(1+s^2))``; ``z_j | mu, x_j ~ N((mu + x_j/s^2) c, c)`` with ``c = 1/(1 + 1/s^2)``.
    """

    def __init__(self, P: int = 3, s: float = 0.3, dtype=torch.float64):
        self.P, self.s, self.dtype = P, s, dtype

    def model(self):
        zero = torch.zeros((), dtype=self.dtype)
        mu = pyro.sample("mu", dist.Normal(zero, 1.0))
        with pyro.plate("items", self.P, dim=-1):
            z = pyro.sample("z", dist.Normal(mu, 1.0))
            return pyro.sample("x", dist.Normal(z, self.s))

    def log_marginal(self, x):
        P, s = self.P, self.s
        cov = torch.ones(P, P, dtype=torch.float64) + (1 + s**2) * torch.eye(P, dtype=torch.float64)
        return dist.MultivariateNormal(torch.zeros(P, dtype=torch.float64), cov).log_prob(x.double())

    def mutual_information(self):
        P, s = self.P, self.s
        cov = torch.ones(P, P, dtype=torch.float64) + (1 + s**2) * torch.eye(P, dtype=torch.float64)
        return 0.5 * float(torch.logdet(cov)) - P * math.log(s)

    def oracle(self, x, z):
        ll = dist.Normal(z.double(), self.s).log_prob(x.double()).sum(-1)
        return ll - self.log_marginal(x)

    def posterior_guide(self):
        P, s = self.P, self.s
        a = 1.0 / (1.0 + P / (1 + s**2))
        c = 1.0 / (1.0 + 1.0 / s**2)

        def guide(x):
            mu = pyro.sample("mu", dist.Normal(a * x.sum(-1, keepdim=True) / (1 + s**2), math.sqrt(a)))
            with pyro.plate("items", P, dim=-1):
                pyro.sample("z", dist.Normal((mu + x / s**2) * c, math.sqrt(c)))

        return guide


class GammaExponential:
    """Positive latent: ``lam ~ Gamma(a, b)``, ``x_j ~ Exponential(lam)``, j = 1..n (one event).
    Conjugate: ``lam | x ~ Gamma(a + n, b + sum x)``; ``log p(x) = a log b + lgamma(a+n) - lgamma(a)
    - (a+n) log(b + sum x)``.
    """

    def __init__(self, a: float = 3.0, b: float = 2.0, n: int = 4, dtype=torch.float64):
        self.a, self.b, self.n, self.dtype = a, b, n, dtype

    def model(self):
        lam = pyro.sample("lam", dist.Gamma(torch.tensor(self.a, dtype=self.dtype), self.b))
        rate = lam.unsqueeze(-1).expand(lam.shape + (self.n,))
        return pyro.sample("x", dist.Exponential(rate).to_event(1))

    def log_marginal(self, x):
        a, b, n = self.a, self.b, self.n
        sx = x.double().sum(-1)
        return a * math.log(b) + math.lgamma(a + n) - math.lgamma(a) - (a + n) * torch.log(b + sx)

    def oracle(self, x, lam):
        ll = dist.Exponential(lam.double().unsqueeze(-1)).log_prob(x.double()).sum(-1)
        return ll - self.log_marginal(x)

    def posterior_guide(self, shape_scale: float = 1.0):
        a, b, n = self.a, self.b, self.n

        def guide(x):
            conc = torch.full(x.shape[:-1], (a + n) * shape_scale, dtype=x.dtype)
            pyro.sample("lam", dist.Gamma(conc, (b + x.sum(-1)) * shape_scale))

        return guide


@pytest.fixture
def hier():
    return HierarchicalGaussian()


@pytest.fixture
def gamma_exp():
    return GammaExponential()
