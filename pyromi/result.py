"""Results: :class:`MIEstimate` (bounds, from every bound) and :class:`LearnedEstimate` (a learned
point estimate with predictive intervals, from MIST); values in nats unless converted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import torch

__all__ = ["MIEstimate", "LearnedEstimate", "LogMarginalEstimate"]

_UNIT_SCALE = {"nats": 1.0, "bits": 1.0 / math.log(2.0)}


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}" if abs(v) >= 1e4 else f"{v:.3f}"


def _fmt_se(v: float | None, n: int) -> str:
    """A standard error for display: ``n/a (N=1)`` where it is undefined (one draw)."""
    if v is not None and math.isnan(v):
        return f"n/a (N={n})"
    return _fmt(v)


@dataclass(frozen=True)
class MIEstimate:
    """Bounds on I(x; z): a stochastic lower and/or upper bound with Monte Carlo standard errors.

    Attributes:
        lower, upper: the bounds as floats; a one-sided bound leaves the other side ``None``.
            Each is the mean of the per-sample terms over the N joint draws.
        lower_se, upper_se: Monte Carlo standard errors of those means over the N joint draws;
            ``nan`` when N = 1 (a standard error from one draw is undefined: printed as
            ``s.e. n/a (N=1)``, and :meth:`interval` raises).
        bound: the method (``"iwae"``, ``"ba"``, ...).
        num_samples: N, the number of joint draws (x_i, z_i*).
        num_particles: K, proposal draws per sample (None where it does not apply).
        units: ``"nats"`` (default) or ``"bits"`` after :meth:`to_bits`.
        terms: per-sample terms, e.g. ``terms["lower"]`` of shape ``(N,)`` (float64, in ``units``).
        settings: everything else that determines the estimate (proposal, seed, device, ...).
        diagnostics: health figures (effective sample sizes, weights of z*, timings, ...).
        observed, latent: site names, for display.

    A learned estimate (MIST) is a :class:`LearnedEstimate` instead: a median and predictive
    intervals, not bounds.
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

    #: bounds carry no point estimate (see :class:`LearnedEstimate`)
    point = None

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
        """Bounds as means of per-sample terms ``(N,)``, with their standard errors over the N draws
        (``nan`` at N = 1: undefined from one draw)."""
        from .ops import standard_error

        terms = {k: v for k, v in (("lower", lower), ("upper", upper)) if v is not None}
        n = next(iter(terms.values())).numel()

        def se(t):
            return None if t is None else (standard_error(t) if n >= 2 else math.nan)

        return cls(
            lower=None if lower is None else float(lower.mean()),
            upper=None if upper is None else float(upper.mean()),
            lower_se=se(lower),
            upper_se=se(upper),
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
        """The single bound when one-sided, or the midpoint of the sandwich when two-sided."""
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

    def interval(self, level: float | None = None) -> tuple[float | None, float | None]:
        """The sandwich widened by normal Monte Carlo error, ``(lower - z se, upper + z se)``: each
        side is a one-sided bound whose estimator has standard error ``*_se``, and ``level``
        (default 0.95) is the confidence of each side separately. At N = 1 the standard error is
        undefined and this raises ``ValueError`` (``lower``/``upper`` are still there, unwidened).
        """
        _check_level(level)
        level = 0.95 if level is None else float(level)
        ses = [se for side, se in ((self.lower, self.lower_se), (self.upper, self.upper_se)) if side is not None]
        if any(se is not None and math.isnan(se) for se in ses):
            raise ValueError(
                f"the standard error is undefined with N={self.num_samples} joint draw(s), so the "
                f"bounds cannot be widened to a {level} interval; rerun with num_samples >= 2 "
                f"(lower/upper are the unwidened bounds)"
            )
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
        given = list(self.settings.get("given") or [])
        observed = [n for n in self.observed if n not in given]
        cond = f" | {', '.join(given)}" if given else ""
        what = f"I({', '.join(observed)}; {', '.join(self.latent)}{cond})"
        k = "" if self.num_particles is None else f", K={self.num_particles}"
        cfg = f"({self.bound}, N={self.num_samples}{k})"
        n = self.num_samples
        if self.lower is not None and self.upper is not None:
            body = f"in [{_fmt(self.lower)}, {_fmt(self.upper)}] {self.units}"
            if self.lower_se is not None and self.upper_se is not None and math.isnan(self.lower_se) and math.isnan(self.upper_se):
                se = f"; s.e. n/a (N={n})"
            else:
                se = f"; s.e. {_fmt_se(self.lower_se, n)} / {_fmt_se(self.upper_se, n)}"
            if self.lower > self.upper:  # both are estimates of bounds: they can cross by MC error
                se += f"; {self._crossing_note()}"
        elif self.lower is not None:
            body = f">= {_fmt(self.lower)} {self.units}"
            se = f"; s.e. {_fmt_se(self.lower_se, n)}"
        else:
            body = f"<= {_fmt(self.upper)} {self.units}"
            se = f"; s.e. {_fmt_se(self.upper_se, n)}"
        return f"{what} {body} {cfg[:-1]}{se})"

    __str__ = __repr__

    def _crossing_note(self) -> str:
        """Say whether lower > upper is within the Monte Carlo error of the paired difference."""
        from .ops import standard_error

        gap = self.lower - self.upper
        if self.num_samples < 2:
            return f"the estimates cross; with N={self.num_samples} the Monte Carlo error is unknown: rerun with more draws"
        if "lower" in self.terms and "upper" in self.terms:
            se = standard_error(self.terms["lower"] - self.terms["upper"])
        else:
            se = math.hypot(self.lower_se or 0.0, self.upper_se or 0.0)
        if gap <= 3 * se + 1e-12:
            return "the estimates cross within Monte Carlo error: the sandwich is tight"
        return "the estimates cross by more than Monte Carlo error: check the diagnostics"


def _check_level(level) -> None:
    if level is not None and (isinstance(level, bool) or not isinstance(level, (int, float))
                              or not 0.0 < level < 1.0):
        raise ValueError(f"level must be a float in (0, 1), got {level!r}")


@dataclass(frozen=True)
class LearnedEstimate:
    """A learned estimate of I(x; z) (MIST): the median ``point`` of a learned predictive
    distribution and intervals of stated coverage around it -- **not** bounds.

    Attributes:
        point: the estimate (the predictive median), in ``units``.
        lower, upper: the ends of the interval of nominal coverage ``level`` (quantiles of the
            calibrated predictive distribution). An upper end ``None`` means the interval is
            unbounded above (the sample shows more dependence than the weights were trained on;
            the estimate warned and says so in ``diagnostics["beyond_trained_range"]``).
        level: the nominal coverage of ``[lower, upper]`` (e.g. 0.9).
        intervals: every interval computed with it, ``{level: (lower, upper)}`` (``level`` and the
            calibrated levels); read them with :meth:`interval`.
        bound: the method (``"mist"``); num_samples: n, the sample size.
        settings, diagnostics, observed, latent, units: as in :class:`MIEstimate`.
    """

    point: float
    lower: float | None
    upper: float | None
    level: float
    bound: str
    num_samples: int
    intervals: dict[float, tuple[float, float | None]] = field(default_factory=dict, repr=False)
    units: str = "nats"
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    diagnostics: dict[str, Any] = field(default_factory=dict, repr=False)
    observed: tuple[str, ...] = ("x",)
    latent: tuple[str, ...] = ("z",)

    #: a learned estimate has no Monte Carlo standard errors, particles or per-sample terms
    lower_se = None
    upper_se = None
    num_particles = None

    @property
    def terms(self) -> dict:
        return {}

    @property
    def value(self) -> float:
        """The point estimate (the predictive median)."""
        return self.point

    @property
    def width(self) -> float | None:
        """``upper - lower`` of the ``level`` interval (None when unbounded above)."""
        return None if self.upper is None else self.upper - self.lower

    def interval(self, level: float | None = None) -> tuple[float | None, float | None]:
        """The stored interval of nominal coverage ``level`` (default: the estimate's own
        ``level``, i.e. ``(lower, upper)``); the levels available are the keys of ``intervals``.
        Any other level raises ``ValueError`` saying how to get it: a predictive interval is
        recomputed from the sample, never rescaled from another level."""
        _check_level(level)
        if level is None or abs(level - self.level) < 1e-9:
            return self.lower, self.upper
        for lev, iv in self.intervals.items():
            if abs(lev - level) < 1e-9:
                return iv
        have = sorted({*self.intervals, self.level})
        raise ValueError(
            f"this {self.bound} estimate holds intervals at levels {have} only, not {level}: its "
            f"interval is not a normal error band and cannot be rescaled; recompute it from the "
            f"sample, e.g. mist.estimate(x, y, level={level}) (or mutual_information(..., "
            f"bound={self.bound!r}, level={level}))"
        )

    def to_units(self, units: str) -> "LearnedEstimate":
        """The same estimate in ``"nats"`` or ``"bits"``."""
        if units not in _UNIT_SCALE:
            raise ValueError(f"units must be 'nats' or 'bits', got {units!r}")
        s = _UNIT_SCALE[units] / _UNIT_SCALE[self.units]

        def sc(v):
            return None if v is None else v * s

        return replace(self, point=sc(self.point), lower=sc(self.lower), upper=sc(self.upper), units=units,
                       intervals={lev: (sc(lo), sc(hi)) for lev, (lo, hi) in self.intervals.items()})

    def to_bits(self) -> "LearnedEstimate":
        """The same estimate in bits (1 nat = 1/ln 2 bits)."""
        return self.to_units("bits")

    def to_nats(self) -> "LearnedEstimate":
        """The same estimate in nats."""
        return self.to_units("nats")

    def __repr__(self) -> str:
        what = f"I({', '.join(self.observed)}; {', '.join(self.latent)})"
        hi = "inf)" if self.upper is None else f"{_fmt(self.upper)}]"
        return (f"{what} ~= {_fmt(self.point)} {self.units}, {100 * self.level:.0f}% interval "
                f"[{_fmt(self.lower)}, {hi} ({self.bound}, N={self.num_samples})")

    __str__ = __repr__


def _to_inference_data(diagnostics: dict, terms: dict, attrs: dict):
    """arviz ``InferenceData`` (0.23, via ``from_dict``) of per-sample terms and AIS diagnostics.

    Layout, as arviz reads ``(chain, draw, ...)``: the K final log-weights of each joint sample
    are K independent draws with no chain structure, so ``sample_stats["log_weight"]`` is one
    chain of K draws with a ``sample`` dimension, shape ``(1, K, N)``. Everything indexed by the
    joint sample alone (the per-sample terms, the backward chain's log-weight, ESS, Pareto k,
    BDMC gap) goes to ``constant_data`` with a ``sample`` dimension; per-level records (acceptance,
    step size, betas) with a level dimension.
    """
    import arviz as az  # imported lazily: slow to import, and only this path needs it

    sample_stats, constant, dims = {}, {}, {}
    lw = diagnostics.get("log_weights")
    if isinstance(lw, torch.Tensor):
        sample_stats["log_weight"] = lw.double().cpu().numpy()[None]  # (chain 1, draw K, sample N)
        dims["log_weight"] = ["sample"]
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
    for key in ("log_weight_backward", "ess_fraction", "pareto_k", "bdmc_gap"):
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
LearnedEstimate.to_inference_data = _mi_to_inference_data


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
