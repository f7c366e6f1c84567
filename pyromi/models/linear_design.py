"""A linear experiment with a nuisance offset, in ``pyro.contrib.oed``'s conventions, with its EIG.

``theta ~ N(0, 1)`` (the target), ``psi ~ N(0, 1)`` (a nuisance offset shared by the
measurements: Pyro's "random effect"), ``y_j ~ N(d_j theta + psi, sigma^2)`` for a design ``d``:

* ``EIG(d) = I(y; theta | d) = 1/2 log(1 + d^T (1 1^T + sigma^2 I)^-1 d)`` nats;
* ``I(y; theta, psi | d) = 1/2 logdet(I + X^T X / sigma^2)`` with ``X = [d, 1]``.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch

__all__ = ["LinearDesign"]


class LinearDesign:
    """The model (``.model(design)``, design batch dimensions as candidates) and its closed forms."""

    def __init__(self, sigma: float = 0.5) -> None:
        self.sigma = float(sigma)

    def model(self, design: torch.Tensor) -> torch.Tensor:
        with pyro.plate_stack("plate", design.shape[:-1]):
            theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
            psi = pyro.sample("psi", dist.Normal(0.0, 1.0))
            mean = design * theta.unsqueeze(-1) + psi.unsqueeze(-1)
            return pyro.sample("y", dist.Normal(mean, self.sigma).to_event(1))

    def eig(self, d: torch.Tensor) -> float:
        """``I(y; theta | d)`` (psi marginalised), nats, for one design ``d`` of shape ``(m,)``."""
        d = d.double()
        cov = torch.ones(d.numel(), d.numel(), dtype=torch.float64) + self.sigma**2 * torch.eye(d.numel(), dtype=torch.float64)
        return 0.5 * math.log1p(float(d @ torch.linalg.solve(cov, d)))

    def eig_full(self, d: torch.Tensor) -> float:
        """``I(y; theta, psi | d)``, nats."""
        x = torch.stack([d.double(), torch.ones(d.numel(), dtype=torch.float64)], -1)
        return 0.5 * float(torch.logdet(torch.eye(2, dtype=torch.float64) + x.T @ x / self.sigma**2))

    def __repr__(self) -> str:
        return f"LinearDesign(sigma={self.sigma})"
