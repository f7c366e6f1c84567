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

``design`` is checked before any run (a tensor, non-empty, finite; ``design_dims`` an int in
``[0, design.dim()]``); an error or warning raised while one candidate is evaluated names that
candidate (``eig, design (i,) = [...]: ...``). The bounds are Monte Carlo estimates of bounds,
with standard errors over the N joint draws: :meth:`EIGResult.best` certifies a design only with
a margin of ``z`` standard errors on each side.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ._rng import check_seed, derived_seed
from .api import mutual_information
from .errors import PyromiError
from .result import MIEstimate

__all__ = ["eig", "EIGResult"]


def _for_design(err: PyromiError, what: str) -> Exception:
    """``err`` (same type) with the design it concerns named in front of its message."""
    try:
        new = type(err)(f"eig, {what}: {err}")
    except Exception:  # noqa: BLE001 - an error type with another constructor: keep it as it is
        return err
    return new


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
        """The design with the largest lower bound, and whether the sandwiches **certify** it.

        Each bound is a Monte Carlo estimate (a mean over N joint draws) of a bound, with a standard
        error; the best design is certified when its lower bound minus ``z`` of its standard errors
        lies above every other design's upper bound plus ``z`` of that design's standard errors
        (then, up to Monte Carlo error at that level, no other design can have a larger EIG).
        Returns ``{"index", "design", "lower", "lower_se", "upper", "upper_se", "certified",
        "contenders", "message"}``; ``contenders`` are the (flat) indices of the designs whose upper
        bound (plus ``z`` standard errors) reaches the best lower bound (minus ``z`` standard
        errors). A standard error that is not available (N = 1 draw) certifies nothing."""
        if isinstance(z, bool) or not isinstance(z, numbers.Real) or not math.isfinite(z) or z < 0:
            raise ValueError(f"best: z= (standard errors of margin on each side) must be a finite number "
                             f">= 0, e.g. z=2.0; got {z!r}")
        lo = self.lower.reshape(-1)
        up = self.upper.reshape(-1)
        lo_se, up_se = self.lower_se.reshape(-1), self.upper_se.reshape(-1)
        batch = self.lower.shape
        i = int(torch.argmax(lo))
        index = _index(i, batch)
        floor = float(lo[i] - z * lo_se[i])
        others = [j for j in range(lo.numel()) if j != i]
        # a NaN margin (no standard error) must count as reaching the floor, never as clearing it
        contenders = [j for j in others if not float(up[j] + z * up_se[j]) < floor]
        undefined = math.isnan(floor) or any(math.isnan(float(up_se[j])) for j in others)
        bound = (f"{float(lo[i]):.3f} ± {float(lo_se[i]):.3f} nats (a Monte Carlo estimate of a lower bound "
                 "± its standard error)")
        if undefined:
            msg = (f"design {index} has the largest lower bound, {bound}, but is not certified: a standard "
                   "error is not available (N = 1 joint draw), so the Monte Carlo error of the bounds is "
                   "unknown. Use num_samples >= 2 (many more for a useful standard error).")
        elif contenders:
            named = ", ".join(str(_index(j, batch)) for j in contenders[:5])
            more = f" and {len(contenders) - 5} more" if len(contenders) > 5 else ""
            msg = (f"design {index} has the largest lower bound, {bound}, but is not certified: the upper "
                   f"bounds of design(s) {named}{more} plus {z:g} standard errors reach its lower bound minus "
                   f"{z:g} standard errors ({floor:.3f}). Tighten the sandwiches (num_steps=, "
                   "num_particles=, num_samples=) or keep those designs in the running.")
        elif not others:
            msg = f"design {index} is the only candidate: its EIG lower bound is {bound}."
        else:
            rival = max(others, key=lambda j: float(up[j] + z * up_se[j]))
            msg = (f"design {index} is certified best at {z:g} standard errors: its lower bound is {bound}, "
                   f"and that minus {z:g} standard errors ({floor:.3f}) is above every other design's upper "
                   f"bound plus {z:g} standard errors (the largest: design {_index(rival, batch)}, "
                   f"{float(up[rival] + z * up_se[rival]):.3f}).")
        return {"index": index, "design": self.design.reshape((-1,) + self.design.shape[len(batch):])[i],
                "lower": float(lo[i]), "lower_se": float(lo_se[i]), "upper": float(up[i]),
                "upper_se": float(up_se[i]), "certified": not contenders and not undefined,
                "contenders": contenders, "message": msg}

    def __repr__(self) -> str:
        rows = [f"  design {_index(j, self.lower.shape)}: EIG in [{float(lo):.3f}, {float(up):.3f}] nats"
                for j, (lo, up) in enumerate(zip(self.lower.reshape(-1), self.upper.reshape(-1)))]
        return "EIGResult(\n" + "\n".join(rows[:20]) + ("\n  ..." if len(rows) > 20 else "") + "\n)"


def _warn_again(caught, what: str) -> None:
    """The warnings one design's run raised, said again with the design they concern."""
    for w in caught:
        warnings.warn_explicit(f"eig, {what}: {w.message}", w.category, w.filename, w.lineno)


def _index(j: int, batch: torch.Size) -> tuple[int, ...]:
    """The batch index of flat candidate ``j``."""
    if len(batch) == 0:
        return ()
    return tuple(int(v) for v in torch.unravel_index(torch.tensor(j), batch))


def _describe(index: tuple[int, ...], d: torch.Tensor) -> str:
    """``design (i, ...) = [values]`` (or its shape when large), for messages."""
    if d.numel() <= 8:
        values = ", ".join(f"{float(v):.4g}" for v in d.reshape(-1))
        return f"design {index} = [{values}]" if d.dim() else f"design {index} = {values}"
    return f"design {index} (shape {tuple(d.shape)})"


def _check_design(design, design_dims) -> None:
    """``design=`` and ``design_dims=``: a non-empty tensor of finite values, with ``design_dims``
    an int in [0, design.dim()]."""
    if not isinstance(design, torch.Tensor):
        raise PyromiError(
            f"eig: design= must be a torch.Tensor of candidate designs, got {type(design).__name__}; "
            "e.g. design=torch.tensor([[1.0, 1.0], [1.0, -1.0]]) for two candidates of 2 values each."
        )
    if isinstance(design_dims, bool) or not isinstance(design_dims, numbers.Integral) \
            or not 0 <= int(design_dims) <= design.dim():
        raise PyromiError(
            f"eig: design_dims= must be an int in [0, design.dim() = {design.dim()}] (the number of "
            f"trailing dimensions of design= that make one candidate; the others index the candidates), "
            f"got {design_dims!r} for design= of shape {tuple(design.shape)}."
        )
    if design.numel() == 0:
        raise PyromiError(
            f"eig: design= is empty (shape {tuple(design.shape)}): there is no candidate design to "
            "evaluate. Pass at least one candidate, e.g. design=torch.tensor([[1.0, 1.0]])."
        )
    if design.is_floating_point() or design.is_complex():
        bad = ~torch.isfinite(design)
        if bool(bad.any()):
            where = [tuple(int(v) for v in ix) for ix in torch.nonzero(bad)[:3]]
            raise PyromiError(
                f"eig: design= has {int(bad.sum())} NaN or infinite value(s) (first at "
                f"{', '.join(map(str, where))}): a candidate design must be finite. Remove those "
                "candidates or replace the values."
            )


def eig(model, design: torch.Tensor, observation_labels, target_labels=None, *, bound: str = "ais",
        design_dims: int = 1, seed: int | None = None, **kwargs) -> EIGResult:
    """Lower and upper bounds on ``EIG(d) = I(y; theta | d)`` for every candidate design.

    Args:
        model: a Pyro model called as ``model(design_i, *model_args, **model_kwargs)`` (the two
            keywords are optional and passed after the candidate design).
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

    Returns:
        :class:`EIGResult`: ``lower``/``upper`` (nats) and their standard errors, each of shape
        ``design.shape[:-design_dims]``; ``best()`` picks (and certifies) the best design.

    Example:
        >>> import torch, pyro, pyro.distributions as dist, pyromi
        >>> def experiment(d):                  # y = d theta + noise: EIG = 1/2 log(1 + d^2 / 0.5^2)
        ...     theta = pyro.sample("theta", dist.Normal(0.0, 1.0))
        ...     pyro.sample("y", dist.Normal(d * theta, 0.5).to_event(1))
        >>> res = pyromi.oed.eig(experiment, torch.tensor([[0.1], [2.0]]), "y", "theta", bound="iwae",
        ...                      num_samples=64, num_particles=256, seed=0)
        >>> res.lower.shape, res.best()["index"]
        (torch.Size([2]), (1,))
    """
    if bound not in ("ais", "iwae"):
        raise ValueError(f"eig: bound must be 'ais' or 'iwae' (a sandwich), got {bound!r}")
    _check_design(design, design_dims)
    design_dims = int(design_dims)
    # the model's own extra arguments follow the design: model(design_i, *model_args, **model_kwargs)
    model_args = tuple(kwargs.pop("model_args", ()) or ())
    model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
    seed = check_seed(seed)
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    batch = design.shape[: design.dim() - design_dims]
    flat = design.reshape((-1,) + design.shape[design.dim() - design_dims:])
    ests = []
    for i in range(flat.shape[0]):
        d = flat[i]
        what = _describe(_index(i, batch), d)

        def model_i(d=d):
            return model(d, *model_args, **model_kwargs)

        caught: list = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                e = mutual_information(model_i, observation_labels, target_labels, bound=bound,
                                       seed=derived_seed(seed, f"design {i}"), **kwargs)
        except PyromiError as err:
            _warn_again(caught, what)
            named = _for_design(err, what)
            if named is err:
                raise
            raise named from err
        _warn_again(caught, what)
        if e.lower is None or e.upper is None or not (math.isfinite(e.lower) and math.isfinite(e.upper)):
            raise PyromiError(f"eig, {what}: its sandwich is not finite ([{e.lower}, {e.upper}]); see its "
                              "MIEstimate's diagnostics")
        ests.append(e)

    def stack(attr):
        return torch.tensor([getattr(e, attr) for e in ests], dtype=torch.float64).reshape(batch)

    return EIGResult(stack("lower"), stack("upper"), stack("lower_se"), stack("upper_se"), design, tuple(ests),
                     {"bound": bound, "seed": seed, "observation_labels": observation_labels,
                      "target_labels": target_labels})
