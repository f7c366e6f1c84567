"""Unconstrained packing: the latent sites' unconstrained values ``u = T^{-1}(z)`` concatenated
into one vector of length D per (particle, sample), the space HMC moves in."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .sites import SiteInfo

__all__ = ["LatentPacking"]


class LatentPacking:
    """Pack per-site unconstrained values ``(...) + unconstrained_shape`` into ``(..., D)`` and back,
    in the order of ``names``."""

    def __init__(self, sites: dict[str, SiteInfo], names: Sequence[str]) -> None:
        self.names = list(names)
        self.shapes = {n: sites[n].unconstrained_shape for n in self.names}
        self.offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name in self.names:
            n = sites[name].unconstrained_numel
            self.offsets[name] = (start, start + n)
            start += n
        self.dim = start

    def pack(self, unconstrained: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate per-site unconstrained values ``(C, N) + shape`` into ``(C, N, D)``."""
        parts = []
        for name in self.names:
            v = unconstrained[name]
            ushape = self.shapes[name]
            lead = v.shape[: v.dim() - len(ushape)]
            parts.append(v.expand(lead + ushape).reshape(lead + (-1,)))
        return torch.cat(parts, dim=-1)

    def unpack(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a packed ``(..., D)`` tensor into per-site unconstrained values ``(...) + shape``."""
        if u.shape[-1] != self.dim:
            raise ValueError(
                f"packed latent vector has length {u.shape[-1]}, expected {self.dim} "
                f"(sites {self.names})"
            )
        out = {}
        for name in self.names:
            a, b = self.offsets[name]
            out[name] = u[..., a:b].reshape(u.shape[:-1] + self.shapes[name])
        return out
