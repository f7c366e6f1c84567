"""Annealing schedules ``0 = beta_0 < beta_1 < ... < beta_T = 1`` (T = number of transitions).

* ``linear``: evenly spaced.
* ``sigmoid`` (Wu et al. 2017): ``beta_t = (s(x_t) - s(x_0)) / (s(x_T) - s(x_0))`` with
  ``x = linspace(-rad, rad, T + 1)``.
* ``geometric``: ``beta_0 = 0`` then ``T`` values log-spaced from ``beta_min`` to 1.
* a user array of increasing betas starting at 0 and ending at 1.
* ``adaptive`` (the default of the AIS estimator) is placed from a pilot run by
  :func:`equal_length_schedule`: equal thermodynamic length ``std_chains(tilt) * delta beta``
  per transition.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["anneal_schedule", "equal_length_schedule", "SCHEDULES"]

SCHEDULES = ("adaptive", "geometric", "sigmoid", "linear")


def anneal_schedule(
    schedule: str | Sequence[float] | torch.Tensor,
    num_steps: int,
    *,
    rad: float = 4.0,
    beta_min: float = 1e-8,
) -> torch.Tensor:
    """The ``(T + 1,)`` float64 vector of inverse temperatures for a named or given schedule."""
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps (T, the number of transitions) must be an int >= 1, got {num_steps!r}")
    T = num_steps
    if not isinstance(schedule, str):
        try:
            betas = torch.as_tensor(schedule, dtype=torch.float64).flatten().cpu()
        except (TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise TypeError(
                f"schedule= must be one of {', '.join(map(repr, SCHEDULES))} or an increasing array "
                f"of T + 1 = {T + 1} numbers (betas) from 0 to 1, e.g. torch.linspace(0, 1, {T + 1}); "
                f"got {type(schedule).__name__} that does not convert to numbers ({e})"
            ) from None
        if betas.numel() != T + 1:
            hint = f"; or pass num_steps={betas.numel() - 1}" if betas.numel() >= 2 else ""
            raise ValueError(
                f"a schedule array must hold T + 1 = {T + 1} betas (from 0 to 1) for num_steps={T}, "
                f"got {betas.numel()}{hint}."
            )
        if float(betas[0]) != 0.0 or float(betas[-1]) != 1.0:
            raise ValueError("a schedule array must start at beta = 0 and end at beta = 1")
        if not bool((betas[1:] > betas[:-1]).all()):
            raise ValueError("a schedule array must be strictly increasing")
        return betas
    if schedule == "linear":
        return torch.linspace(0.0, 1.0, T + 1, dtype=torch.float64)
    if schedule == "sigmoid":
        x = torch.linspace(-rad, rad, T + 1, dtype=torch.float64)
        s = torch.sigmoid(x)
        betas = (s - s[0]) / (s[-1] - s[0])
        betas[-1] = 1.0
        return betas
    if schedule == "geometric":
        if not 0.0 < beta_min < 1.0:
            raise ValueError(f"beta_min must be in (0, 1), got {beta_min}")
        if T == 1:
            return torch.tensor([0.0, 1.0], dtype=torch.float64)
        logs = torch.linspace(math.log(beta_min), 0.0, T, dtype=torch.float64)
        return torch.cat([torch.zeros(1, dtype=torch.float64), logs.exp()])
    if schedule == "adaptive":
        raise ValueError("the adaptive schedule is placed from a pilot run; see equal_length_schedule")
    raise ValueError(
        f"unknown schedule {schedule!r}; choose one of {', '.join(map(repr, SCHEDULES))} or pass an "
        "increasing array of betas from 0 to 1"
    )


def equal_length_schedule(
    grid: torch.Tensor, tilt_std: torch.Tensor, num_steps: int
) -> torch.Tensor:
    """Place ``T + 1`` betas with equal thermodynamic length per transition.

    Args:
        grid: ``(G,)`` increasing pilot betas, ``grid[0] = 0``, ``grid[-1] = 1``.
        tilt_std: ``(G,)`` spread across chains of the tilt (the log-weight increment per unit
            beta) at each pilot beta, averaged over samples.
        num_steps: T.

    The length ``Lambda(beta) = int_0^beta std(tilt) dbeta`` is integrated by the trapezoid rule on
    the grid and inverted piecewise linearly (linearly in log beta between positive grid points),
    so that ``std(tilt) * (beta_t - beta_{t-1})`` is the same for every t: equal variance of the
    log-weight increments.
    """
    grid = grid.double().cpu()
    s = tilt_std.double().cpu().clamp_min(1e-12)
    lengths = torch.cat(
        [torch.zeros(1, dtype=torch.float64), torch.cumsum(0.5 * (s[1:] + s[:-1]) * grid.diff(), 0)]
    )
    targets = torch.linspace(0.0, float(lengths[-1]), num_steps + 1, dtype=torch.float64)
    idx = torch.searchsorted(lengths, targets).clamp(1, len(grid) - 1)
    l0, l1 = lengths[idx - 1], lengths[idx]
    frac = ((targets - l0) / (l1 - l0).clamp_min(1e-300)).clamp(0.0, 1.0)
    b0, b1 = grid[idx - 1], grid[idx]
    positive = b0 > 0
    log_interp = torch.exp(torch.log(b0.clamp_min(1e-300)) * (1 - frac) + torch.log(b1) * frac)
    betas = torch.where(positive, log_interp, b0 + frac * (b1 - b0))
    betas[0], betas[-1] = 0.0, 1.0
    # strictly increasing (ties can appear where the pilot saw no spread)
    betas = torch.cummax(betas, 0).values
    for t in range(1, num_steps + 1):
        if betas[t] <= betas[t - 1]:
            betas[t] = betas[t - 1] + (1.0 - betas[t - 1]) * 1e-9 if t < num_steps else 1.0
    return betas
