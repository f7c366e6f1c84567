"""Linear-Gaussian model ``z ~ N(0, I)``, ``x = W z + b + sigma * eps``: every quantity in closed form.

* ``I(x; z) = 1/2 log det(I + W^T W / sigma^2)`` nats;
* ``p(x) = N(x; b, W W^T + sigma^2 I)``;
* ``p(z | x) = N(Sigma W^T (x - b) / sigma^2, Sigma)`` with ``Sigma = (I + W^T W / sigma^2)^{-1}``.
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import torch


class LinearGaussian:
    """The linear-Gaussian model as a Pyro model with its closed-form truths.

    Args:
        W: ``(dx, dz)`` loading matrix.
        sigma: observation noise standard deviation.
        b: optional ``(dx,)`` offset.

    Example:
        >>> import torch
        >>> from pyromi.models import LinearGaussian
        >>> lg = LinearGaussian(torch.eye(2), sigma=0.5)
        >>> round(lg.mutual_information(), 4)    # 2 x 1/2 log(1 + 1 / 0.5^2) nats
        1.6094
    """

    def __init__(self, W: torch.Tensor, sigma: float, b: torch.Tensor | None = None) -> None:
        self.W = torch.as_tensor(W)
        self.sigma = float(sigma)
        self.dx, self.dz = self.W.shape
        self.has_offset = b is not None
        self.b = torch.zeros(self.dx, dtype=self.W.dtype, device=self.W.device) if b is None else b

    @classmethod
    def toy(cls, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        """The reference toy: dz=5, dx=20, sigma=0.1,
        ``W = numpy.random.default_rng(0).normal(size=(20, 5)) / sqrt(5)``, MI = 14.275 nats; the
        model of ``pyromi demo`` and of the tests' reference numbers."""
        W = np.random.default_rng(0).normal(size=(20, 5)) / math.sqrt(5)
        return cls(torch.tensor(W, dtype=dtype, device=device), 0.1)

    # ------------------------------------------------------------------ the Pyro model
    def model(self) -> torch.Tensor:
        """``z ~ N(0, I_dz)``; ``x ~ N(W z + b, sigma^2 I_dx)``. Sites ``"z"`` and ``"x"``."""
        zeros = torch.zeros(self.dz, dtype=self.W.dtype, device=self.W.device)
        z = pyro.sample("z", dist.Normal(zeros, 1.0).to_event(1))
        loc = z @ self.W.T + self.b if self.has_offset else z @ self.W.T
        return pyro.sample("x", dist.Normal(loc, self.sigma).to_event(1))

    __call__ = model

    # ------------------------------------------------------------------ closed forms
    def mutual_information(self) -> float:
        """``I(x; z) = 1/2 log det(I + W^T W / sigma^2)`` in nats."""
        W = self.W.double()
        m = torch.eye(self.dz, dtype=torch.float64, device=W.device) + W.T @ W / self.sigma**2
        return 0.5 * float(torch.linalg.slogdet(m)[1])

    def marginal(self) -> dist.MultivariateNormal:
        """``p(x) = N(b, W W^T + sigma^2 I)`` (float64)."""
        W = self.W.double()
        cov = W @ W.T + self.sigma**2 * torch.eye(self.dx, dtype=torch.float64, device=W.device)
        return dist.MultivariateNormal(self.b.double(), covariance_matrix=cov)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` in float64 for ``x`` of shape ``(..., dx)``."""
        return self.marginal().log_prob(x.double())

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` in float64."""
        loc = z.double() @ self.W.double().T + self.b.double()
        return dist.Normal(loc, self.sigma).log_prob(x.double()).sum(-1)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(..., dz)`` and covariance ``(dz, dz)`` of ``p(z | x)`` (float64)."""
        W = self.W.double()
        prec = torch.eye(self.dz, dtype=torch.float64, device=W.device) + W.T @ W / self.sigma**2
        cov = torch.linalg.inv(prec)
        cov = 0.5 * (cov + cov.T)
        mean = (x.double() - self.b.double()) @ W @ cov / self.sigma**2
        return mean, cov

    def oracle(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Per-sample ``log p(x | z) - log p(x)`` (float64); its batch mean is the per-batch oracle."""
        return self.log_likelihood(x, z) - self.log_marginal(x)

    def posterior_guide(self, cov_scale: float = 1.0):
        """An amortised guide ``guide(x)`` drawing ``z ~ N(posterior mean, cov_scale * Sigma)``.

        ``cov_scale=1`` is the exact posterior; follows pyromi's amortised-guide protocol.
        """

        def guide(x: torch.Tensor) -> torch.Tensor:
            mean, cov = self.posterior(x)
            d = dist.MultivariateNormal(
                mean.to(self.W.dtype), covariance_matrix=(cov_scale * cov).to(self.W.dtype)
            )
            return pyro.sample("z", d)

        return guide

    def __repr__(self) -> str:
        return f"LinearGaussian(dz={self.dz}, dx={self.dx}, sigma={self.sigma})"
