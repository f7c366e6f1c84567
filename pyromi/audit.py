"""Information audits of generative models: how much information does the latent code carry?

``audit(model, observed="x", guide=encoder)`` returns an :class:`AuditReport`:

* the Multi-Sample AIS sandwich on the model's ``I(x; z)`` (nats), on simulated pairs;
* with an encoder q(z|x): the **rate** ``R = E_x KL(q(z|x) || p(z))`` and the **distortion**
  ``D = -E_x E_q(z|x) log p(x|z)`` (Alemi et al. 2018), so ``-ELBO = R + D``; per latent site, its
  share of the rate ``R_s = E_x E_q[log q(z_s|x, ...) - log p(z_s | parents)]`` (the chain rule makes
  the shares sum to R) and its **active units**, the dimensions u with
  ``Var_x E_q[z_u | x] > 0.01`` (Burda et al. 2016);
* **flags**: posterior collapse of the model (the AIS *upper* bound on I(x; z) is below
  ``collapse_threshold`` by more than 2 standard errors: a bound, not a guess), collapse of an encoder site (its rate is below the
  threshold), an unresolved near-zero lower bound, and a sandwich wider than ``max_width`` (with
  what to change).

The expectations over x use the model's own simulated x by default, or the observations passed as
``data=`` (e.g. the training set).
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyro
import torch
from pyro.poutine.util import site_is_subsample

from ._state import warn as _warn
from . import distributed
from ._rng import check_seed, seeded
from ._state import entry_point
from .adapter import ModelAdapter, _sum_trailing
from .api import mutual_information
from .api.common import check_int, resolve_proposal as _resolve_proposal
from .api.log_marginal import as_site_dict as _as_site_dict, check_data_argument, data_argument_observations, \
    takes_data
from .model.sites import OBS_WARNING
from .errors import GuideError, SiteError
from .ops import standard_error
from .proposals.amortized import AmortizedNormal
from .proposals.base import PriorProposal, Proposal
from .proposals.guide import GuideProposal
from .result import MIEstimate

__all__ = ["audit", "AuditReport", "SiteAudit", "LayerAudit", "encoder_rate_distortion"]

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016)


@dataclass(frozen=True)
class SiteAudit:
    """One latent site: its share of the encoder's rate (nats) and its active units."""

    name: str
    dim: int
    rate: float
    rate_se: float
    active_units: int
    unit_activity: torch.Tensor  # (dim,) Var_x E_q[z_u | x]

    @property
    def collapsed(self) -> bool:
        return self.active_units == 0


@dataclass(frozen=True)
class LayerAudit:
    """One latent layer (a named group of sites): I(x; z_layer) with every other latent
    marginalised, a sandwich in nats (:mod:`pyromi.estimators.nuisance`)."""

    name: str
    sites: tuple[str, ...]
    mi: MIEstimate


@dataclass(frozen=True)
class AuditReport:
    """The result of :func:`audit`; ``str(report)`` is a plain-text table, ``.plot()`` a figure."""

    mi: MIEstimate
    rate: float | None = None
    rate_se: float | None = None
    distortion: float | None = None
    distortion_se: float | None = None
    sites: tuple[SiteAudit, ...] = ()
    flags: tuple[str, ...] = ()
    x_source: str = "model"
    settings: dict[str, Any] = field(default_factory=dict, repr=False)
    layers: tuple[LayerAudit, ...] = ()

    @property
    def neg_elbo(self) -> float | None:
        """``R + D`` (nats): the negative ELBO of the encoder, averaged over x."""
        if self.rate is None or self.distortion is None:
            return None
        return self.rate + self.distortion

    @property
    def gap(self) -> float | None:
        """``R - I`` with I the midpoint of the AIS sandwich (nats)."""
        return None if self.rate is None else self.rate - self.mi.value

    @property
    def collapsed(self) -> bool:
        """True when the AIS upper bound proves ``I(x; z) < collapse_threshold``."""
        thr = self.settings.get("collapse_threshold", 0.0)
        return self.mi.upper is not None and self.mi.upper < thr

    def table(self) -> str:
        """The audit as a plain-text table (no pandas)."""
        m = self.mi
        obs, lat = ", ".join(m.observed), ", ".join(m.latent)
        lines = [f"Information audit: I({obs}; {lat}), nats", "-" * 66]

        def row(label, value):
            lines.append(f"{label:44s} {value:>21s}" if len(label) <= 44 else f"{label} {value:>{65 - len(label)}s}")

        k, t = m.num_particles, m.settings.get("num_steps")
        row(f"I(x; z) under the model (AIS, N={m.num_samples}, K={k}, T={t})",
            f"[{m.lower:.3f}, {m.upper:.3f}]")
        if m.lower_se is not None and math.isfinite(m.lower_se):
            row("  Monte Carlo s.e. over the N draws (lower / upper)",
                f"{m.lower_se:.3f} / {m.upper_se:.3f}")
        for layer in self.layers:
            e = layer.mi
            row(f"I(x; {layer.name}) (other latents marginalised)",
                f"[{e.lower:.3f}, {e.upper:.3f}]; s.e. {e.lower_se:.3f} / {e.upper_se:.3f}")
        if self.rate is not None:
            src = "simulated x" if self.x_source == "model" else "data x"
            row("encoder rate R = E KL(q(z|x) || p(z))", f"{self.rate:.3f} ± {self.rate_se:.3f}")
            row("distortion D = -E log p(x|z)", f"{self.distortion:.3f} ± {self.distortion_se:.3f}")
            row("-ELBO = R + D", f"{self.neg_elbo:.3f}")
            row("gap R - I (I = sandwich midpoint)", f"{self.gap:.3f}")
            row("expectations over", src)
            lines.append("")
            lines.append(f"{'latent site':20s} {'dim':>5s} {'rate R_s':>10s} {'active units':>14s}")
            for s in self.sites:
                lines.append(f"{s.name:20s} {s.dim:5d} {s.rate:10.3f} {s.active_units:>8d} / {s.dim:<4d}")
        lines.append("")
        if self.flags:
            lines.append("flags:")
            lines.extend(f"  - {f}" for f in self.flags)
        else:
            lines.append("flags: none")
        return "\n".join(lines)

    __str__ = table

    def plot_flow(self, path: str | None = None, ax=None):
        """The information flow across layers: the sandwich of I(x; z_layer) for each layer (in the
        order given) beside I(x; z) of all latents; returns the matplotlib Figure. Needs ``layers=``."""
        if not self.layers:
            raise ValueError("plot_flow needs an audit with layers=, e.g. audit(model, 'x', layers=['z1', 'z2'])")
        from .plots import plot_sandwiches

        estimates = {f"I(x; {layer.name})": layer.mi for layer in self.layers}
        estimates["I(x; all latents)"] = self.mi
        fig = plot_sandwiches(estimates, ax=ax)
        fig.axes[0].set_title("information about x, layer by layer", fontsize=9)
        if path is not None:
            fig.savefig(path, bbox_inches="tight")
        return fig

    def plot(self, path: str | None = None, ax=None):
        """Bars: the MI sandwich beside the encoder's rate, and the per-site rates; returns the
        matplotlib Figure (saved to ``path`` if given). Needs matplotlib."""
        from .plots import plot_audit

        return plot_audit(self, path=path, ax=ax)


def _draw_with_sites(adapter: ModelAdapter, proposal: Proposal, observed, k: int):
    """K draws of q(z|x) per x with total and per-site ``log q`` and the model's evaluation."""
    n = next(iter(observed.values())).shape[0]
    if isinstance(proposal, AmortizedNormal):
        return proposal.sample_sites(adapter, observed, k)
    if isinstance(proposal, GuideProposal):
        tr = proposal._trace(adapter, observed, k, n)
        latent = {name: tr.nodes[name]["value"] for name in adapter.latent_names if name in tr.nodes}
        missing = [nm for nm in adapter.latent_names if nm not in latent]
        if missing:
            raise GuideError(f"the guide does not sample latent site(s) {missing}")
        site_log_q = {name: torch.zeros((k, n), dtype=torch.float64, device=adapter.device)
                      for name in adapter.latent_names}
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or "log_prob" not in site or site_is_subsample(site):
                continue
            base = name[: -len("_unconstrained")] if name.endswith("_unconstrained") else name
            if base not in site_log_q:
                raise GuideError(
                    f"guide site '{name}' is not a latent site of the model; the audit assigns "
                    "every guide site's density to a latent site of the same name."
                )
            site_log_q[base] = site_log_q[base] + _sum_trailing(site["log_prob"], 2).double()
        ev = adapter.log_density(latent, observed)
        return ev, site_log_q
    raise GuideError(
        f"audit(guide=...) needs an encoder with a density: a pyromi.AmortizedNormal or an "
        f"amortised Pyro guide guide(x); got {type(proposal).__name__}"
    )


def _layers(layers) -> list[tuple[str, tuple[str, ...]]]:
    """``layers=`` as ``[(label, sites), ...]`` (see :func:`audit`)."""
    if layers is None:
        return []
    if isinstance(layers, str):
        layers = [layers]
    items = layers.items() if isinstance(layers, dict) else ((None, v) for v in layers)
    out = []
    for label, sites in items:
        names = (sites,) if isinstance(sites, str) else tuple(sites) if isinstance(sites, (list, tuple)) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError(
                f"layers= entries must be site names or lists of them (e.g. layers=['z1', 'z2'] or "
                f"layers={{'top': 'z2', 'bottom': ['z1a', 'z1b']}}), got {sites!r}"
            )
        out.append((label if label is not None else ", ".join(names), names))
    return out


#: standard errors by which an upper bound must clear the collapse threshold (one-sided, ~98%)
COLLAPSE_Z = 2.0


def _upper_margin(est: MIEstimate) -> float:
    """The upper bound plus :data:`COLLAPSE_Z` standard errors (inf when the s.e. is undefined)."""
    se = est.upper_se
    if se is None or math.isnan(se):
        return math.inf
    return est.upper + COLLAPSE_Z * se


def _collapse_flag(est: MIEstimate, thr: float, name: str, what: str, meaning: str) -> str | None:
    """A collapse flag when the AIS upper bound plus :data:`COLLAPSE_Z` standard errors is below
    ``thr`` (a stochastic upper bound: its Monte Carlo error is counted before anything is called
    collapsed), else None."""
    margin = _upper_margin(est)
    if not margin < thr:
        return None
    return (f"{name}: {what} <= {est.upper:.3f} nats (AIS upper bound; + {COLLAPSE_Z:g} s.e. = {margin:.3f}) "
            f"< {thr:g}: {meaning}")


def _check_layer_sites(layer_list, adapter: ModelAdapter) -> None:
    """Every ``layers=`` site is a latent of the audit (a :class:`SiteError` naming ``layers=``)."""
    latent = list(adapter.latent_names) + list(adapter.discrete_names)
    for label, names in layer_list:
        if len(set(names)) < len(names):
            raise SiteError(f"layers= entry '{label}' names a site twice: {list(names)}")
        for n in names:
            if n in adapter.observed_names:
                raise SiteError(
                    f"layers= entry '{label}' names the observed site '{n}': a layer is a set of latent "
                    f"sites whose information about {adapter.observed_names} is measured; choose among "
                    f"the latents {latent}."
                )
            if n not in latent:
                raise SiteError(
                    f"layers= entry '{label}' names '{n}', which is not a latent site of this audit; "
                    f"choose among the latents {latent}."
                )


def encoder_rate_distortion(
    adapter: ModelAdapter,
    proposal: Proposal,
    observed: dict[str, torch.Tensor],
    num_particles: int = 16,
) -> dict[str, Any]:
    """Rate, distortion and per-site rates and activities of an encoder q(z|x), per observation.

    With ``z_k ~ q(z | x_i)``, k = 1..K:
    ``R_i = mean_k [log q(z_k|x_i) - log p(z_k)]``, ``D_i = -mean_k log p(x_i|z_k)``,
    ``R_{s,i} = mean_k [log q_s - log p(z_{k,s} | parents)]`` and
    ``activity_u = Var_i(mean_k z_{k,u}) - mean_i Var_k(z_{k,u}) / K`` (the K-sample noise of the
    posterior mean removed). Returns per-sample tensors ``(N,)`` and activities ``(dim,)``.
    """
    with torch.no_grad(), pyro.validation_enabled(False):
        ev, site_log_q = _draw_with_sites(adapter, proposal, observed, num_particles)
    site_lp = ev.site_log_probs
    rate_sites = {n: (site_log_q[n] - site_lp[n].double()).mean(0) for n in adapter.latent_names}
    rate = sum(rate_sites.values())
    distortion = -ev.log_likelihood.double().mean(0)
    activity = {}
    for name in adapter.latent_names:
        z = ev.latent[name].reshape(ev.latent[name].shape[:2] + (-1,)).double()  # (K, N, d)
        mean_k = z.mean(0)
        noise = z.var(0).mean(0) / num_particles if num_particles > 1 else 0.0
        activity[name] = (mean_k.var(0) - noise).clamp_min(0.0) if z.shape[1] > 1 else torch.zeros(z.shape[-1])
    return {"rate": rate, "distortion": distortion, "rate_sites": rate_sites, "activity": activity}


def _audit(
    model: Callable,
    observed: str | Sequence[str] = "x",
    latent: str | Sequence[str] | None = None,
    *,
    guide=None,
    data=None,
    num_samples: int = 128,
    num_particles: int = 16,
    num_steps: int = 500,
    start: str | None = "guide",
    encoder_particles: int = 16,
    collapse_threshold: float = 0.05,
    max_width: float = 0.1,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    seed: int | None = 0,
    progress: bool = False,
    data_plate: str | bool | None = None,
    layers=None,
    **ais_kwargs,
) -> AuditReport:
    """Audit the information flow of a generative model (and its encoder), in nats.

    Args:
        model: the generative Pyro model p(z) p(x|z) (one observation, as for
            :func:`~pyromi.mutual_information`).
        observed, latent: site names.
        guide: optional encoder q(z|x): a :class:`pyromi.AmortizedNormal` or an amortised Pyro
            guide ``guide(x)`` (e.g. a VAE encoder) that samples every latent site.
        data: observations for the rate and distortion (a tensor ``(M,) + site shape`` or a dict);
            default: ``num_samples`` x's simulated from the model. For a model that takes its data
            as an argument (Pyro's VAE example: ``model(x)`` with ``pyro.plate("data",
            x.shape[0])`` and ``obs=x.reshape(-1, 784)``) and no ``model_args``, ``data`` is that
            argument: the observations are the model's own ``obs=`` values, and every quantity is
            per data point (the plate's elements are the samples; see ``data_plate``).
        data_plate: as in :func:`~pyromi.mutual_information` (None detects it).
        num_samples, num_particles, num_steps: N pairs, K chains and T transitions of the AIS
            sandwich on I(x; z) (more steps narrow it; see ``max_width``).
        start: ``"guide"`` starts AIS from the encoder when one is given (tighter at equal T);
            None starts from the prior.
        encoder_particles: draws of q(z|x) per x for the rate and distortion.
        collapse_threshold: nats below which information counts as absent.
        max_width: the sandwich is flagged when ``(upper - lower) / midpoint`` exceeds this.
        layers: latent layers to audit one by one: a list of site names or of lists of them
            (``["z1", "z2"]``), or a dict ``{label: site or sites}``. For each, ``I(x; z_layer)`` with
            every other latent marginalised (nested AIS sandwiches, started from the prior, with the
            same N, K, T and seed, hence on the same joint draws as ``I(x; z)``: differences between
            layers are not blurred by Monte Carlo error over x), in ``report.layers``; ``report.plot_flow()`` draws them beside
            ``I(x; z)``. A layer that carries (almost) nothing is flagged.
        **ais_kwargs: passed to :func:`~pyromi.mutual_information` (``schedule``, ``num_leapfrog``, ...).
    """
    check_seed(seed)
    for name, value in (("collapse_threshold", collapse_threshold), ("max_width", max_width)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value > 0
        ):
            raise ValueError(f"{name}= must be a finite number > 0, got {value!r}")
    encoder_particles = check_int("encoder_particles", encoder_particles, 1)
    if start not in ("guide", None):
        raise ValueError(f"start must be 'guide' or None, got {start!r}")
    layer_list = _layers(layers)
    ctx = distributed.current()
    if ctx is not None:  # one seed on every rank: the AIS shares derive from it, the encoder pass uses it
        seed = distributed.base_seed(seed, ctx)
    data_argument = data is not None and not model_args and takes_data(model)
    if data_argument:  # model(x) with obs=x: the data are the model's argument
        model_args = (check_data_argument(data),)
    adapter = ModelAdapter(model, observed, latent, model_args=model_args, model_kwargs=model_kwargs,
                           data_plate=data_plate)
    _check_layer_sites(layer_list, adapter)
    x_data = None
    if data_argument:
        x_data = data_argument_observations(adapter)
    elif data is not None:  # validated before any expensive work
        x_data = _as_site_dict(data, adapter.observed_names, adapter, "data")
        if guide is None:
            _warn(
                "audit(data=...) is used for the encoder's rate and distortion, which need "
                "guide=; without a guide the data are not used (I(x; z) is a property of the "
                "model and is computed on simulated x).",
            )
    proposal = None
    if guide is not None:
        if isinstance(guide, type):
            raise GuideError("audit(guide=...) needs a trained encoder object, not a class")
        proposal = _resolve_proposal(guide, adapter, None, 0)
        if isinstance(proposal, PriorProposal):
            proposal = None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the AIS sandwich is wide")
        mi = mutual_information(
            model, observed, latent, bound="ais", num_samples=num_samples,
            num_particles=num_particles, num_steps=num_steps,
            start=proposal if (start == "guide" and proposal is not None) else None,
            model_args=model_args, model_kwargs=model_kwargs, seed=seed, progress=progress,
            data_plate=data_plate, **ais_kwargs,
        )
    flags: list[str] = []
    thr = collapse_threshold
    collapse = _collapse_flag(mi, thr, "POSTERIOR COLLAPSE", "I(x; z)",
                              "the model's observations carry (almost) no information about its latents.")
    if collapse:
        flags.append(collapse)
    elif mi.lower < thr:
        flags.append(
            f"UNRESOLVED: the lower bound {mi.lower:.3f} is below {thr:g} nats but the upper bound is "
            f"{mi.upper:.3f} (+ {COLLAPSE_Z:g} s.e. = {_upper_margin(mi):.3f}); collapse is neither shown nor "
            "excluded. Increase num_samples (the Monte Carlo error) or num_steps (the sandwich's width)."
        )
    rel = mi.diagnostics.get("relative_width", float("inf"))
    if rel > max_width:
        flags.append(
            f"LOOSE BOUNDS: the sandwich [{mi.lower:.3f}, {mi.upper:.3f}] is {100 * rel:.0f}% of its "
            f"midpoint (asked <= {100 * max_width:.0f}%). Raise num_steps (e.g. {4 * num_steps})"
            + (", or pass guide= to start the chains from an encoder" if proposal is None else "")
            + "."
        )
    settings = {
        "collapse_threshold": thr, "max_width": max_width, "encoder_particles": encoder_particles,
        "start": "guide" if (start == "guide" and proposal is not None) else "prior", "seed": seed,
    }
    layer_audits = []
    for label, sites in layer_list:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="the AIS sandwich is wide")
            e = mutual_information(
                model, observed, list(sites), bound="ais", num_samples=num_samples,
                num_particles=num_particles, num_steps=num_steps, model_args=model_args,
                model_kwargs=model_kwargs, seed=seed,
                progress=progress, data_plate=data_plate, **ais_kwargs,
            )
        layer_audits.append(LayerAudit(label, tuple(sites), e))
        collapse = _collapse_flag(e, thr, f"LAYER COLLAPSE at '{label}'", f"I(x; {label})",
                                  "this layer carries (almost) no information about x.")
        if collapse:
            flags.append(collapse)
    layer_audits = tuple(layer_audits)
    if proposal is None:
        return AuditReport(mi=mi, flags=tuple(flags), settings=settings, layers=layer_audits)

    with seeded(None if seed is None else seed + 1, adapter.device):
        if data is None:
            with torch.no_grad(), pyro.validation_enabled(False):
                x = adapter.sample_joint(num_samples).observed
            source = "model"
        else:
            x = x_data
            source = "data"
        enc = encoder_rate_distortion(adapter, proposal, x, encoder_particles)
    sites = []
    for name in adapter.latent_names:
        act = enc["activity"][name].cpu()
        r = enc["rate_sites"][name]
        sites.append(SiteAudit(name, act.numel(), float(r.mean()), standard_error(r),
                               int((act > ACTIVE_UNIT_THRESHOLD).sum()), act))
        if float(r.mean()) < thr:
            flags.append(
                f"ENCODER COLLAPSE at site '{name}': its rate is {float(r.mean()):.3f} nats < {thr:g}; "
                "q(z|x) is (almost) the prior there."
            )
        elif sites[-1].active_units < sites[-1].dim:
            flags.append(
                f"site '{name}': {sites[-1].active_units} of {sites[-1].dim} dimensions active "
                f"(Var_x E_q[z_u|x] > {ACTIVE_UNIT_THRESHOLD}); the others are unused."
            )
    rate, dist_ = enc["rate"], enc["distortion"]
    return AuditReport(
        mi=mi, flags=tuple(flags), settings=settings,
        rate=float(rate.mean()), rate_se=standard_error(rate),
        distortion=float(dist_.mean()), distortion_se=standard_error(dist_),
        sites=tuple(sites), x_source=source, layers=layer_audits,
    )


@entry_point
@functools.wraps(_audit)
def audit(model, *args, **kwargs) -> AuditReport:
    with warnings.catch_warnings():
        if kwargs.get("data") is not None and not kwargs.get("model_args") and takes_data(model):
            # the model's obs= values are the data here (the rate and distortion use them)
            warnings.filterwarnings("ignore", message=OBS_WARNING, category=UserWarning)
        return _audit(model, *args, **kwargs)
