"""MIEstimate: the result type of every estimator (values in nats unless converted)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

__all__ = ["MIEstimate"]

_UNIT_SCALE = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}" if abs(v) >= 1e4 else f"{v:.3f}"


@dataclass(frozen=True)
class MIEstimate:
    """Bounds on (or an estimate of) I(x; z).

    Attributes:
        lower, upper: the bounds as floats; a one-sided bound leaves the other side ``None``.
            Each is the mean of the per-sample terms over the N joint draws.
        lower_se, upper_se: Monte Carlo standard errors of those means over the N joint draws.
        bound: the method (``"iwae"``, ``"ba"``, ...).
        num_samples: N, the number of joint draws (x_i, z_i*).
        num_particles: K, proposal draws per sample (None where it does not apply).
        units: ``"nats"`` (default) or ``"bits"`` after :meth:`to_bits`.
        terms: per-sample terms, e.g. ``terms["lower"]`` of shape ``(N,)`` (float64, in ``units``).
        settings: everything else that determines the estimate (proposal, seed, device, ...).
        diagnostics: health figures (effective sample sizes, weights of z*, timings, ...).
        observed, latent: site names, for display.
        point: a point estimate (MIST's median). When set, ``lower``/``upper`` are the ends of an
            interval of coverage ``level`` around it (quantiles of a learned predictive
            distribution), **not** bounds, and ``value`` returns ``point``.
        level: the nominal coverage of ``[lower, upper]`` when ``point`` is set (e.g. 0.9).
    """

    lower: float | None
    upper: float | None
    lower_se: float | None
    upper_se: float | None
    bound: str
    num_samples: int
    num_particles: int | None = None
    units: str = "nats"
    terms: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    diagnostics: dict[str, Any] = field(default_factory=dict, repr=False)
    observed: tuple[str, ...] = ("x",)
    latent: tuple[str, ...] = ("z",)
    point: float | None = None
    level: float | None = None

    @classmethod
    def from_terms(
        cls,
        bound: str,
        lower: torch.Tensor | None,
        upper: torch.Tensor | None,
        *,
        num_particles: int | None,
        settings: dict[str, Any],
        diagnostics: dict[str, Any],
        observed: tuple[str, ...],
        latent: tuple[str, ...],
    ) -> "MIEstimate":
        """Bounds as means of per-sample terms ``(N,)``, with their standard errors over the N draws."""
        from .ops import standard_error

        terms = {k: v for k, v in (("lower", lower), ("upper", upper)) if v is not None}
        n = next(iter(terms.values())).numel()
        return cls(
            lower=None if lower is None else float(lower.mean()),
            upper=None if upper is None else float(upper.mean()),
            lower_se=None if lower is None else standard_error(lower),
            upper_se=None if upper is None else standard_error(upper),
            bound=bound,
            num_samples=n,
            num_particles=num_particles,
            terms=terms,
            settings=settings,
            diagnostics=diagnostics,
            observed=observed,
            latent=latent,
        )

    @property
    def value(self) -> float:
        """The point estimate if there is one; else the single bound when one-sided, or the
        midpoint of the sandwich when two-sided."""
        if self.point is not None:
            return self.point
        if self.lower is not None and self.upper is not None:
            return 0.5 * (self.lower + self.upper)
        v = self.lower if self.lower is not None else self.upper
        if v is None:
            raise ValueError("this estimate has neither a lower nor an upper bound")
        return v

    @property
    def width(self) -> float | None:
        """``upper - lower`` for a sandwich, else None."""
        if self.lower is None or self.upper is None:
            return None
        return self.upper - self.lower

    def interval(self, level: float = 0.95) -> tuple[float | None, float | None]:
        """The sandwich widened by normal Monte Carlo error: ``(lower - z se, upper + z se)``.

        Each side is a one-sided bound whose estimator has standard error ``*_se``; ``level`` is the
        confidence of each side separately.
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), got {level}")
        z = math.sqrt(2.0) * torch.erfinv(torch.tensor(2 * level - 1.0, dtype=torch.float64)).item()
        lo = None if self.lower is None else self.lower - z * (self.lower_se or 0.0)
        hi = None if self.upper is None else self.upper + z * (self.upper_se or 0.0)
        return lo, hi

    def to_units(self, units: str) -> "MIEstimate":
        """The same estimate in ``"nats"`` or ``"bits"``."""
        if units not in _UNIT_SCALE:
            raise ValueError(f"units must be 'nats' or 'bits', got {units!r}")
        s = _UNIT_SCALE[units] / _UNIT_SCALE[self.units]

        def sc(v):
            return None if v is None else v * s

        return replace(
            self,
            point=sc(self.point),
            lower=sc(self.lower),
            upper=sc(self.upper),
            lower_se=sc(self.lower_se),
            upper_se=sc(self.upper_se),
            units=units,
            terms={k: v * s for k, v in self.terms.items()},
        )

    def to_bits(self) -> "MIEstimate":
        """The same estimate in bits (1 nat = 1/ln 2 bits)."""
        return self.to_units("bits")

    def to_nats(self) -> "MIEstimate":
        """The same estimate in nats."""
        return self.to_units("nats")

    def __repr__(self) -> str:
        what = f"I({', '.join(self.observed)}; {', '.join(self.latent)})"
        k = "" if self.num_particles is None else f", K={self.num_particles}"
        cfg = f"({self.bound}, N={self.num_samples}{k})"
        if self.point is not None:
            lvl = "" if self.level is None else f"{100 * self.level:.0f}% "
            return (
                f"{what} ~= {_fmt(self.point)} {self.units}, {lvl}interval "
                f"[{_fmt(self.lower)}, {_fmt(self.upper)}] {cfg}"
            )
        if self.lower is not None and self.upper is not None:
            body = f"in [{_fmt(self.lower)}, {_fmt(self.upper)}] {self.units}"
            se = f"; s.e. {_fmt(self.lower_se)} / {_fmt(self.upper_se)}"
            if self.lower > self.upper:  # both are estimates of bounds: they can cross by MC error
                se += f"; {self._crossing_note()}"
        elif self.lower is not None:
            body = f">= {_fmt(self.lower)} {self.units}"
            se = f"; s.e. {_fmt(self.lower_se)}"
        else:
            body = f"<= {_fmt(self.upper)} {self.units}"
            se = f"; s.e. {_fmt(self.upper_se)}"
        return f"{what} {body} {cfg[:-1]}{se})"

    __str__ = __repr__

    def _crossing_note(self) -> str:
        """Say whether lower > upper is within the Monte Carlo error of the paired difference."""
        from .ops import standard_error

        gap = self.lower - self.upper
        if "lower" in self.terms and "upper" in self.terms:
            se = standard_error(self.terms["lower"] - self.terms["upper"])
        else:
            se = math.hypot(self.lower_se or 0.0, self.upper_se or 0.0)
        if gap <= 3 * se + 1e-12:
            return "the estimates cross within Monte Carlo error: the sandwich is tight"
        return "the estimates cross by more than Monte Carlo error: check the diagnostics"


def _to_inference_data(diagnostics: dict, terms: dict, attrs: dict):
    """arviz ``InferenceData`` (0.23, via ``from_dict``) of per-sample terms and AIS diagnostics.

    Layout: arviz's ``chain`` axis is the joint sample (each x is its own estimation problem) and
    ``draw`` is the particle / chain index; per-temperature records go to ``constant_data`` with a
    ``temperature`` dimension.
    """
    import arviz as az  # imported lazily: slow to import, and only this path needs it

    sample_stats, constant = {}, {}
    lw = diagnostics.get("log_weights")
    if isinstance(lw, torch.Tensor):
        sample_stats["log_weight"] = lw.T.double().cpu().numpy()  # (N, K): chain=sample, draw=particle
    dims = {}
    for name, t in terms.items():
        constant[f"mi_{name}_term"] = t.double().cpu().numpy()
        dims[f"mi_{name}_term"] = ["sample"]
    for key in ("acceptance", "acceptance_backward", "step_size"):
        v = diagnostics.get(key)
        if isinstance(v, torch.Tensor) and v.dim() == 2:
            constant[key] = v.double().cpu().numpy()
            dims[key] = [f"{key}_level", "sample"]
    betas = diagnostics.get("betas")
    if isinstance(betas, torch.Tensor):
        constant["beta"] = betas.double().cpu().numpy()
        dims["beta"] = ["level"] if betas.dim() == 1 else ["block", "level"]
    for key in ("ess_fraction", "pareto_k", "bdmc_gap"):
        v = diagnostics.get(key)
        if isinstance(v, torch.Tensor):
            constant[key] = v.double().cpu().numpy()
            dims[key] = ["sample"]
    return az.from_dict(
        sample_stats=sample_stats or None, constant_data=constant or None, dims=dims, attrs=attrs
    )


def _mi_to_inference_data(self: MIEstimate):
    """This estimate as an arviz ``InferenceData`` (requires arviz >= 0.23, < 1)."""
    attrs = {
        "bound": self.bound,
        "lower": float("nan") if self.lower is None else self.lower,
        "upper": float("nan") if self.upper is None else self.upper,
        "units": self.units,
        "num_samples": self.num_samples,
        "num_particles": -1 if self.num_particles is None else self.num_particles,
    }
    return _to_inference_data(self.diagnostics, self.terms, attrs)


MIEstimate.to_inference_data = _mi_to_inference_data


@dataclass(frozen=True)
class LogMarginalEstimate:
    """AIS bounds on ``log p(x_i)`` for given observations (nats, float64 tensors of shape (N,)).

    ``lower[i] = LME_k log w_k``: a stochastic lower bound (its expectation is <= log p(x_i)).
    ``upper[i]``: a stochastic upper bound, available only when exact posterior samples z* were
    given (e.g. the z that simulated x): one backward chain from z* plus K - 1 forward chains.
    """

    lower: torch.Tensor
    upper: torch.Tensor | None
    num_particles: int
    num_steps: int
    diagnostics: dict[str, Any] = field(default_factory=dict, repr=False)
    units: str = "nats"

    def __repr__(self) -> str:
        lo = float(self.lower.mean())
        body = f"mean log p(x) >= {lo:.3f}" if self.upper is None else (
            f"mean log p(x) in [{lo:.3f}, {float(self.upper.mean()):.3f}]"
        )
        return f"LogMarginalEstimate({body} nats, N={self.lower.numel()}, K={self.num_particles}, T={self.num_steps})"
