"""``reparam="auto"``: Pyro's loc-scale (non-centred) reparameterisation of funnel-shaped latents.

A **funnel** is a latent site whose *scale* is itself a function of other latents, e.g. eight
schools written the centred way::

    mu = pyro.sample("mu", dist.Normal(0., 5.))
    tau = pyro.sample("tau", dist.HalfCauchy(5.))
    with pyro.plate("schools", 8):
        theta = pyro.sample("theta", dist.Normal(mu, tau))      # scale tau is a latent

As ``tau`` shrinks, ``theta`` is squeezed into a neck of width ``tau``: no fixed HMC step size
fits both the neck and the mouth, and the chains diverge. The non-centred form samples
``theta_decentered ~ Normal(0, 1)`` and sets ``theta = mu + tau * theta_decentered``; Pyro does this
rewrite with ``poutine.reparam(model, config={"theta": LocScaleReparam(centered=0)})``, and
:func:`auto_reparam` applies it to every funnel site it can.

**Which sites.** A latent site is reparameterised when (all three)

1. its distribution is a location-scale family on the real line (``value = loc + scale * e`` with
   ``e`` drawn from the same family at loc 0, scale 1): :data:`LOC_SCALE_FAMILIES` (Normal,
   StudentT, Cauchy, Laplace, AsymmetricLaplace, SoftLaplace), optionally wrapped in ``.to_event``;
   or ``LogNormal``, which is first rewritten to its Normal base by Pyro's ``TransformReparam``
   (``log s`` is then decentred);
2. its **scale** depends on another latent site (a funnel). A site whose scale is fixed gains
   nothing: decentring it is a fixed affine map (only a shift by latent locations), the curvature
   stays constant, and the pilot-tuned diagonal mass already absorbs the scale. Such sites are left
   centred (the centred form is also the better one when the data are informative);
3. its loc and scale depend on latent sites only, never on an observed site (below).

Dependencies are found by differentiating each site's loc and scale with respect to the values of
the other sites at one prior draw (a dependence that is piecewise constant there, e.g. through
``torch.where`` or ``clamp``, is not seen).

**Why I(x; z) is unchanged, and when it would not be.** The map ``(mu, tau, theta) <->
(mu, tau, theta_decentered)`` is a bijection of the latents alone, and mutual information is
invariant under bijections of either argument: ``I(x; mu, tau, theta) = I(x; mu, tau,
theta_decentered)``. That needs every site the loc and scale depend on to be in z:

* observed sites are never reparameterised, and a latent whose loc or scale depends on an observed
  site is left centred (a map that depends on x can change the information: ``z - x`` carries none
  about ``x``) -- pyromi's adapter rejects such latents anyway;
* if ``latent=`` names a subset of the stochastic sites and a funnel site's scale depends on a site
  that is neither latent nor observed, the decentred value would mix in a nuisance variable and the
  information about the named latents would change: :func:`auto_reparam` raises
  :class:`~pyromi.errors.SiteError` naming both sites (pyromi's density bounds need every
  stochastic site in ``observed=`` or ``latent=`` in any case).

The reparameterised model has the new latent sites (``theta_decentered``, ``s_base_decentered``);
the original site becomes a ``pyro.deterministic``-style site (marked ``_deterministic``), which
pyromi's adapter skips. :attr:`ReparamInfo.renamed` maps each original latent name to its new one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.reparam import LocScaleReparam, TransformReparam
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from .._rng import seeded
from ..errors import PyromiError, SiteError

__all__ = ["LOC_SCALE_FAMILIES", "FunnelSite", "ReparamInfo", "funnel_sites", "auto_reparam",
           "REPARAM_OPTIONS"]

#: accepted values of ``reparam=`` in :func:`pyromi.mutual_information` and :func:`pyromi.log_marginal`
REPARAM_OPTIONS = (None, "auto")

#: distribution classes for which ``value = loc + scale * e`` with ``e ~ type(fn)(loc=0, scale=1,
#: **shape params)`` (exact types: a subclass may change the meaning of loc and scale)
LOC_SCALE_FAMILIES: tuple[type, ...] = tuple(
    {dist.Normal, dist.StudentT, dist.Cauchy, dist.Laplace, dist.AsymmetricLaplace,
     dist.SoftLaplace, torch.distributions.Normal, torch.distributions.StudentT,
     torch.distributions.Cauchy, torch.distributions.Laplace}
)
_LOG_NORMAL = (dist.LogNormal, torch.distributions.LogNormal)


@dataclass(frozen=True)
class FunnelSite:
    """How one latent site's distribution depends on the other sites (at one prior draw).

    Attributes:
        name: the site.
        family: its distribution class name (``.to_event`` unwrapped).
        kind: ``"loc_scale"`` (a :data:`LOC_SCALE_FAMILIES` member), ``"log_normal"``, or None
            (no loc-scale reparameterisation known for it).
        loc_deps, scale_deps: names of the other sample sites that its loc and scale depend on.
            Filled for the two kinds above and for other real-line families with a scale (a funnel
            pyromi names but does not rewrite); empty otherwise: a positive family's scale (Gamma,
            HalfNormal, ...) only shifts log z, the unconstrained coordinate HMC moves, so it
            makes no funnel.
    """

    name: str
    family: str
    kind: str | None
    loc_deps: frozenset[str]
    scale_deps: frozenset[str]

    def is_funnel(self, latent: Sequence[str]) -> bool:
        """True when the scale depends on another latent site."""
        return bool(self.scale_deps & set(latent))


@dataclass(frozen=True)
class ReparamInfo:
    """What :func:`auto_reparam` did.

    Attributes:
        config: the ``poutine.reparam`` config applied (site name -> Pyro reparameteriser).
        renamed: original latent site -> the latent site that replaces it in the new model
            (``{"theta": "theta_decentered"}``); empty when nothing was reparameterised.
        latent: the latent site names of the new model, in the order of the original ones.
        skipped: latent funnel sites left centred -> why.
    """

    config: dict = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    latent: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict:
        """A plain record for ``result.settings["reparam"]``."""
        return {"mode": "auto", "renamed": dict(self.renamed), "skipped": dict(self.skipped)}


class _MarkDeterministic(Messenger):
    """Mark the original sites of a reparameterised model as ``pyro.deterministic`` sites (Pyro's
    reparameterisers leave them as masked ``Delta`` observations; pyromi's adapter skips sites
    marked ``_deterministic``). Outside the ``ReparamMessenger``, so it sees them rewritten."""

    def __init__(self, names):
        super().__init__()
        self.names = frozenset(names)

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names:
            msg["infer"] = dict(msg.get("infer") or {}, _deterministic=True)


def _unwrap(fn):
    while isinstance(fn, torch.distributions.Independent):
        fn = fn.base_dist
    return fn


def _kind(fn) -> str | None:
    fn = _unwrap(fn)
    if type(fn) in LOC_SCALE_FAMILIES:
        return "loc_scale"
    if type(fn) in _LOG_NORMAL and type(_unwrap(fn.base_dist)) in LOC_SCALE_FAMILIES:
        return "log_normal"
    return None


def _real_scale_family(fn) -> bool:
    """A real-support distribution with a ``scale`` parameter (e.g. Gumbel, Logistic)."""
    support = fn.support
    while hasattr(support, "base_constraint"):
        support = support.base_constraint
    return "scale" in getattr(fn, "arg_constraints", {}) and support is torch.distributions.constraints.real


def _as_list(names, argname: str) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, str):
        return [names]
    try:
        out = list(names)
    except TypeError:
        raise TypeError(f"{argname}= must be a site name or a sequence of names, got {names!r}") from None
    if not all(isinstance(n, str) for n in out):
        raise TypeError(f"{argname}= must hold site names (str), got {out!r}")
    return out


def _sample_sites(tr: poutine.Trace) -> dict[str, dict]:
    return {n: s for n, s in tr.nodes.items()
            if s["type"] == "sample" and not site_is_subsample(s)
            and not s["infer"].get("_deterministic")}


def _grad_deps(param, leaves: dict[str, torch.Tensor], exclude: str) -> frozenset[str]:
    if not isinstance(param, torch.Tensor) or not param.requires_grad:
        return frozenset()
    names = [n for n in leaves if n != exclude]
    if not names:
        return frozenset()
    grads = torch.autograd.grad(param.sum(), [leaves[n] for n in names], retain_graph=True,
                                allow_unused=True)
    return frozenset(n for n, g in zip(names, grads)
                     if g is not None and bool((g != 0).any()))


def _site_names(tr, observed, latent):
    sites = _sample_sites(tr)
    constants = {n for n, s in sites.items() if s["is_observed"] and n not in observed}
    missing = [n for n in observed if n not in sites]
    if missing:
        raise SiteError(f"observed site '{missing[0]}' is not a sample site of the model. Sample "
                        f"sites: {', '.join(repr(n) for n in sites) or '(none)'}.")
    if latent is None:
        latent = [n for n in sites if n not in observed and n not in constants]
    else:
        bad = [n for n in latent if n not in sites]
        if bad:
            raise SiteError(f"latent site '{bad[0]}' is not a sample site of the model. Sample "
                            f"sites: {', '.join(repr(n) for n in sites) or '(none)'}.")
    return sites, constants, latent


def funnel_sites(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    seed: int = 0,
) -> dict[str, FunnelSite]:
    """The dependence structure of each latent site's distribution, from one prior draw.

    Runs the model twice (once to draw values, once conditioned on them as autograd leaves), then
    differentiates each latent site's loc and scale with respect to every other site's value. The
    caller's random state is left untouched (``seed`` seeds the draw).
    """
    observed = _as_list(observed, "observed") or []
    latent = _as_list(latent, "latent")
    model_kwargs = dict(model_kwargs or {})
    with seeded(seed), pyro.validation_enabled(False):
        with torch.no_grad():
            tr0 = poutine.trace(model).get_trace(*model_args, **model_kwargs)
        sites, constants, latent = _site_names(tr0, observed, latent)
        leaves = {}  # every stochastic site: latent, observed, and any other (a nuisance site)
        for n in sites:
            if n in constants:
                continue
            v = sites[n]["value"]
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                leaves[n] = v.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            tr = poutine.trace(poutine.condition(model, data=leaves)).get_trace(
                *model_args, **model_kwargs)
            out = {}
            for n in latent:
                fn = tr.nodes[n]["fn"]
                kind = _kind(fn)
                base = _unwrap(fn)
                if kind == "log_normal":
                    base = _unwrap(base.base_dist)
                loc = scale = frozenset()
                if kind is not None or _real_scale_family(base):
                    # (another real-line family with a scale: a funnel named in advice, not
                    # rewritten; a positive family's scale is a shift of log z, no funnel)
                    loc = _grad_deps(getattr(base, "loc", None), leaves, n)
                    scale = _grad_deps(base.scale, leaves, n)
                out[n] = FunnelSite(n, type(_unwrap(fn)).__name__, kind, loc, scale)
    return out


def auto_reparam(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
) -> tuple[Callable, ReparamInfo]:
    """Non-centre every funnel site of ``model`` with Pyro's ``LocScaleReparam(centered=0)``.

    Returns ``(new_model, info)``. ``new_model`` is ``model`` itself when no site qualifies
    (``info.renamed`` is then empty); otherwise ``poutine.reparam(model, config=info.config)``
    with the original sites marked deterministic. See the module docstring for which sites
    qualify and why I(x; z) is unchanged; raises :class:`~pyromi.errors.SiteError` when a funnel
    site's scale depends on a site that is neither latent nor observed.
    """
    if not callable(model):
        raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
    observed_l = _as_list(observed, "observed") or []
    latent_l = _as_list(latent, "latent")
    try:
        structure = funnel_sites(model, observed_l, latent_l, model_args, model_kwargs)
    except PyromiError:
        raise
    except Exception as e:  # the model fails on its own: pyromi's adapter reports it in context
        why = f"the model could not be traced ({type(e).__name__}: {e})"
        return model, ReparamInfo(latent=list(latent_l or []), skipped={"(model)": why})
    latent_all = list(structure)
    model_kwargs = dict(model_kwargs or {})
    with seeded(0), torch.no_grad(), pyro.validation_enabled(False):
        sites, constants, _ = _site_names(
            poutine.trace(model).get_trace(*model_args, **model_kwargs), observed_l, latent_l)
    stochastic = [n for n in sites if n not in constants and n not in observed_l]
    config: dict = {}
    renamed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    deterministic: list[str] = []
    for name, s in structure.items():
        if not s.is_funnel(stochastic):  # the scale depends on another unobserved site
            continue
        deps = s.loc_deps | s.scale_deps
        on_observed = sorted(deps & set(observed_l))
        if on_observed:
            skipped[name] = (f"its loc/scale depend on observed site(s) {on_observed}: a map that "
                             "depends on x can change I(x; z)")
            continue
        nuisance = sorted(deps - set(latent_all))
        if nuisance:
            raise SiteError(
                f"reparam='auto': latent site '{name}' has a scale that depends on site(s) "
                f"{nuisance}, which are neither in latent= nor in observed=: its non-centred form "
                f"would mix them into the latent, changing I(x; z). Add {nuisance} to latent=, or "
                "pass reparam=None."
            )
        if s.kind == "loc_scale":
            config[name] = LocScaleReparam(centered=0.0)
            renamed[name] = f"{name}_decentered"
            deterministic.append(name)
        elif s.kind == "log_normal":
            config[name] = TransformReparam()
            config[f"{name}_base"] = LocScaleReparam(centered=0.0)
            renamed[name] = f"{name}_base_decentered"
            deterministic += [name, f"{name}_base"]
        else:
            skipped[name] = (f"its distribution ({s.family}) is not a location-scale family that "
                             "LocScaleReparam supports; write its non-centred form by hand")
    new_latent = [renamed.get(n, n) for n in latent_all]
    info = ReparamInfo(config=config, renamed=renamed, latent=new_latent, skipped=skipped)
    if not config:
        return model, info
    reparam = poutine.reparam(model, config=config)
    marker = _MarkDeterministic(deterministic)

    @functools.wraps(model)
    def reparameterised(*args, **kwargs):
        with marker:
            return reparam(*args, **kwargs)

    reparameterised.pyromi_reparam = info  # type: ignore[attr-defined]
    return reparameterised, info


def to_reparam_values(
    model: Callable,
    info: ReparamInfo,
    values: dict[str, torch.Tensor],
    model_args: tuple = (),
    model_kwargs: dict | None = None,
) -> dict[str, torch.Tensor]:
    """Latent values of the original ``model`` (``(N,) + site shape`` per site) mapped to the sites
    of the reparameterised model: ``theta -> theta_decentered = (theta - loc) / scale``, computed by
    Pyro's reparameterisers themselves (one conditioned model pass per row)."""
    if not info.renamed:
        return dict(values)
    model_kwargs = dict(model_kwargs or {})
    n = next(iter(values.values())).shape[0]
    rows: dict[str, list[torch.Tensor]] = {new: [] for new in info.renamed.values()}
    with torch.no_grad(), pyro.validation_enabled(False), seeded(0):
        for i in range(n):
            data = {k: v[i] for k, v in values.items()}
            fn = poutine.reparam(poutine.condition(model, data=data), config=info.config)
            tr = poutine.trace(fn).get_trace(*model_args, **model_kwargs)
            for new in rows:
                rows[new].append(tr.nodes[new]["value"])
    out = {k: v for k, v in values.items() if k not in info.renamed}
    for old, new in info.renamed.items():
        out[new] = torch.stack(rows[new])
    return {name: out[name] for name in info.latent if name in out}
