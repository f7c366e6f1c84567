"""Critics T(x, z) for the known-marginal lower bounds (GIWAE, InfoNCE, MINE-DV/F, MINE-AIS).

A critic is an ``nn.Module`` called as ``critic(x, z)`` with ``x`` of shape ``(N, Dx)`` (the
observed sites, flattened and concatenated) and ``z`` of shape ``(K, N, Dz)`` (the latent sites,
flattened and concatenated, constrained values); it returns scores of shape ``(K, N)``. Any user
``nn.Module`` / ``PyroModule`` with that contract works; pyromi checks the output shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from .errors import PyromiError

__all__ = ["ConcatCritic", "SeparableCritic", "default_critic", "check_critic_output", "frozen"]


def _mlp(inp: int, hidden: Sequence[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.ELU()]
        inp = h
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class ConcatCritic(nn.Module):
    """``T(x, z) = MLP([x, z])``: the most flexible critic; cost linear in K * N."""

    def __init__(self, x_dim: int, z_dim: int, hidden: Sequence[int] = (128, 128)) -> None:
        super().__init__()
        self.net = _mlp(x_dim + z_dim, hidden, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = x.expand(z.shape[:-1] + x.shape[-1:])
        return self.net(torch.cat([x, z], -1)).squeeze(-1)


class SeparableCritic(nn.Module):
    """``T(x, z) = f(x) . g(z)`` with MLPs f, g into ``embed_dim`` dimensions: cheap for large K."""

    def __init__(
        self, x_dim: int, z_dim: int, hidden: Sequence[int] = (128, 128), embed_dim: int = 32
    ) -> None:
        super().__init__()
        self.f = _mlp(x_dim, hidden, embed_dim)
        self.g = _mlp(z_dim, hidden, embed_dim)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return (self.f(x) * self.g(z)).sum(-1)


def default_critic(x_dim: int, z_dim: int, kind: str = "concat") -> nn.Module:
    """A default critic for the given input sizes: ``"concat"`` (default) or ``"separable"``."""
    width = max(64, min(256, 4 * (x_dim + z_dim)))
    if kind == "concat":
        return ConcatCritic(x_dim, z_dim, (width, width))
    if kind == "separable":
        return SeparableCritic(x_dim, z_dim, (width, width))
    raise ValueError(f"unknown critic kind {kind!r}; choose 'concat' or 'separable'")


def check_critic_output(t: torch.Tensor, expected: tuple[int, ...], critic) -> torch.Tensor:
    """Raise a clear error unless the critic returned scores of shape ``expected``."""
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(expected):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise PyromiError(
            f"the critic {type(critic).__name__} returned {got} for x of shape (N, Dx) and z of "
            f"shape {tuple(expected) + ('Dz',)}; a critic must return one score per (particle, "
            f"sample), shape {tuple(expected)} (e.g. squeeze the last dimension)."
        )
    return t


@contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Turn off ``requires_grad`` on every parameter of ``module`` for the ``with`` block, then
    give each parameter back its own flag (also when the block raises): layers the user froze
    stay frozen, trainable ones become trainable again."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
