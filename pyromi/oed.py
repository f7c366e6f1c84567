"""Expected information gain with guarantees: one sandwich per design, in ``pyro.contrib.oed``'s terms.

``EIG(d) = I(y; theta | d)`` -- the MI between the observations y (``observation_labels``) and the
target parameters theta (``target_labels``) of ``model(design)``; every other sample site is a
nuisance parameter (Pyro's "random effects") and is marginalised
(:mod:`pyromi.estimators.nuisance`). Pyro's estimators (``nmc_eig``, ``posterior_eig``, ...)
return a number per design with no guarantee; :func:`eig` returns a lower and an upper bound per
design (nats), and :meth:`EIGResult.best` says whether the bounds certify the best design.

Conventions as in ``pyro.contrib.oed.eig``: ``model(design)`` takes the design tensor as its only
argument; the leading ``design.ndim - design_dims`` dimensions of ``design`` index the candidate
designs (``model`` is called on one candidate at a time, ``design[i]``, so a model written with
``pyro.plate_stack("plate", design.shape[:-1])`` sees an empty batch shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ._rng import check_seed, derived_seed
from .api import mutual_information
from .errors import PyromiError
from .result import MIEstimate

__all__ = ["eig", "EIGResult"]


@dataclass(frozen=True)
class EIGResult:
    """Sandwich bounds on the EIG of each candidate design (nats).

    ``lower``/``upper`` and their standard errors have the design batch shape; ``estimates`` holds
    the :class:`~pyromi.MIEstimate` of each design (flattened order); ``design`` the candidates."""

    lower: torch.Tensor
    upper: torch.Tensor
    lower_se: torch.Tensor
    upper_se: torch.Tensor
    design: torch.Tensor
    estimates: tuple[MIEstimate, ...] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)

    def best(self, z: float = 2.0) -> dict:
        """The design with the largest lower bound, and whether the sandwiches **certify** it: its
        lower bound minus ``z`` standard errors lies above every other design's upper bound plus
        ``z`` of its standard errors (then no other design can have a larger EIG, up to Monte
        Carlo error). Returns ``{"index", "design", "lower", "upper", "certified", "contenders",
        "message"}``; ``contenders`` are the designs whose upper bound reaches the best lower bound."""
        lo = self.lower.reshape(-1)
        up = self.upper.reshape(-1)
        lo_se, up_se = self.lower_se.reshape(-1), self.upper_se.reshape(-1)
        i = int(torch.argmax(lo))
        floor = float(lo[i] - z * lo_se[i])
        others = [j for j in range(lo.numel()) if j != i]
        contenders = [j for j in others if float(up[j] + z * up_se[j]) >= floor]
        index = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), self.lower.shape)) \
            if self.lower.dim() else ()
        batch = self.lower.shape
        if contenders:
            named = ", ".join(str(tuple(int(v) for v in torch.unravel_index(torch.tensor(j), batch)))
                              for j in contenders[:5])
            msg = (f"design {index} has the largest lower bound ({float(lo[i]):.3f} nats) but is not "
                   f"certified: the upper bounds of design(s) {named} reach it. Tighten the sandwiches "
                   "(num_steps=, num_particles=, num_samples=) or keep those designs in the running.")
        else:
            msg = (f"design {index} is certified best: its EIG is at least {float(lo[i]):.3f} nats, above "
                   f"every other design's upper bound (with {z:g} standard errors on each side).")
        return {"index": index, "design": self.design.reshape((-1,) + self.design.shape[len(batch):])[i],
                "lower": float(lo[i]), "upper": float(up[i]), "certified": not contenders,
                "contenders": contenders, "message": msg}

    def __repr__(self) -> str:
        rows = [f"  design {tuple(int(v) for v in torch.unravel_index(torch.tensor(j), self.lower.shape))}: "
                f"EIG in [{float(lo):.3f}, {float(up):.3f}] nats"
                for j, (lo, up) in enumerate(zip(self.lower.reshape(-1), self.upper.reshape(-1)))]
        return "EIGResult(\n" + "\n".join(rows[:20]) + ("\n  ..." if len(rows) > 20 else "") + "\n)"


def eig(model, design: torch.Tensor, observation_labels, target_labels=None, *, bound: str = "ais",
        design_dims: int = 1, seed: int | None = None, **kwargs) -> EIGResult:
    """Lower and upper bounds on ``EIG(d) = I(y; theta | d)`` for every candidate design.

    Args:
        model: a Pyro model called as ``model(design_i)``.
        design: candidate designs, shape ``batch_shape + event_shape`` with ``design_dims`` event
            dimensions (default 1, as in Pyro's OED examples).
        observation_labels: the observation site name(s) y.
        target_labels: the parameter site name(s) theta (default: every other sample site, i.e.
            no nuisance). Sites in neither list are nuisance parameters, marginalised.
        bound: ``"ais"`` (default; nested Multi-Sample AIS when there are nuisance sites) or
            ``"iwae"``, as in :func:`pyromi.mutual_information`.
        seed: design i uses ``derived_seed(seed, "design i")``, so each sandwich is reproducible
            on its own and independent of the others.
        **kwargs: passed to :func:`pyromi.mutual_information` (``num_samples``, ``num_particles``,
            ``num_steps``, ``progress``, ...).
    """
    if bound not in ("ais", "iwae"):
        raise ValueError(f"eig: bound must be 'ais' or 'iwae' (a sandwich), got {bound!r}")
    if not isinstance(design, torch.Tensor):
        raise PyromiError(f"eig: design must be a torch.Tensor of candidate designs, got {type(design).__name__}")
    if not isinstance(design_dims, int) or isinstance(design_dims, bool) or not 0 <= design_dims <= design.dim():
        raise ValueError(f"eig: design_dims must be an int in [0, design.ndim = {design.dim()}], got {design_dims!r}")
    seed = check_seed(seed)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    batch = design.shape[: design.dim() - design_dims]
    flat = design.reshape((-1,) + design.shape[design.dim() - design_dims:])
    if flat.shape[0] == 0:
        raise PyromiError("eig: design has no candidate (an empty batch dimension)")
    ests = []
    for i in range(flat.shape[0]):
        d = flat[i]

        def model_i(d=d):
            return model(d)

        ests.append(mutual_information(model_i, observation_labels, target_labels, bound=bound,
                                       seed=derived_seed(seed, f"design {i}"), **kwargs))

    def stack(attr):
        return torch.tensor([getattr(e, attr) for e in ests], dtype=torch.float64).reshape(batch)

    for e in ests:
        if e.lower is None or e.upper is None or not (math.isfinite(e.lower) and math.isfinite(e.upper)):
            raise PyromiError("eig: a design's sandwich is not finite; see its MIEstimate diagnostics")
    return EIGResult(stack("lower"), stack("upper"), stack("lower_se"), stack("upper_se"), design, tuple(ests),
                     {"bound": bound, "seed": seed, "observation_labels": observation_labels,
                      "target_labels": target_labels})
