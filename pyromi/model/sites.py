"""Site discovery and validation: which sample sites of a model are observed (x), latent (z),
fixed (constants) or discrete (summed out by enumeration), read from one plain trace."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import pyro.distributions as dist
import torch
from pyro.poutine.util import site_is_factor, site_is_subsample

from .._state import warn
from ..errors import SiteError, VectorizationError
from .enumeration import is_discrete

__all__ = ["SiteInfo", "SiteTable", "inspect_sites", "as_names", "check_plate_dims", "undeclared_event_dims", "fn_chain", "is_masked"]


class SiteInfo(NamedTuple):
    """Static facts about one latent or observed site, read from a validated probe pass."""

    name: str
    local_shape: torch.Size  # constrained value shape without the outer plates
    event_dim: int
    unconstrained_shape: torch.Size  # shape of T^{-1}(value) without the outer plates
    support: Any

    @property
    def unconstrained_numel(self) -> int:
        return math.prod(self.unconstrained_shape)


class SiteTable(NamedTuple):
    """The roles of a model's sample sites.

    ``latent``: continuous latent sites (moved by HMC, packed); ``discrete``: discrete latent sites
    marked for parallel enumeration (summed out in every density pass); ``constants``: sites fixed in
    the model (``obs=`` on a site not in ``observed=``, or ``pyro.condition``); ``sites``: the plain
    trace's nodes of the observed and latent sites; ``max_plate_nesting``: the model's own.
    """

    observed: list[str]
    latent: list[str]
    discrete: list[str]
    constants: list[str]
    sites: dict[str, dict]
    max_plate_nesting: int


#: the start of the warning about ``obs=`` on an observed site (callers that pass the data as the
#: model's argument, where those values are the data, silence it with this pattern)
OBS_WARNING = r"observed site\(s\) .* carry obs= values"


def as_names(names: str | Sequence[str] | None, argname: str) -> list[str] | None:
    """``observed=``/``latent=`` as a list of site names (None stays None)."""
    if names is None:
        return None
    if isinstance(names, str):
        return [names]
    try:
        names = list(names)
    except TypeError:
        raise TypeError(
            f"{argname}= must be a site name (str) or a list of site names, got {names!r} "
            f"({type(names).__name__}); e.g. {argname}='x' or {argname}=['x1', 'x2']."
        ) from None
    if not all(isinstance(n, str) for n in names):
        raise SiteError(f"{argname}= must be a site name or a list of site names, got {names!r}")
    return names


def inspect_sites(
    tr,
    observed: list[str],
    latent: list[str] | None,
    *,
    densities: bool,
    likelihood: bool,
    max_plate_nesting: int | None,
) -> SiteTable:
    """Classify and validate the sample sites of a plain (unbatched) trace of the model.

    Raises :class:`SiteError` naming the site and the fix for ``pyro.factor``, ``obs_mask``,
    subsampled, scaled or masked sites, unknown or duplicated names, sites neither observed nor
    latent (density paths), improper or density-less sites and discrete latents that are not
    marked for enumeration (that check is the caller's: :mod:`pyromi.model.enumeration`).
    """
    sample_sites: dict[str, dict] = {}
    deterministic: set[str] = set()
    constants: list[str] = []
    masked: list[str] = []
    for name, site in tr.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site_is_factor(site):
            raise SiteError(
                f"site '{name}' is a pyro.factor: pyromi cannot tell whether it belongs to "
                "log p(z) or log p(x|z). Write it as a pyro.sample site with a distribution "
                "(observed or latent), or remove it."
            )
        if site["infer"].get("_deterministic"):
            deterministic.add(name)
            continue
        if site["is_observed"] and name not in observed:
            constants.append(name)  # fixed in the model (obs= or pyro.condition): never a latent
            continue
        for frame in site["cond_indep_stack"]:
            if frame.full_size is not None and frame.size != frame.full_size:
                raise SiteError(
                    f"site '{name}' is inside the subsampled plate '{frame.name}' "
                    f"(subsample_size={frame.size} of {frame.full_size}): MI bounds need the full "
                    "joint density. Remove subsample_size= from the plate."
                )
        if site["scale"] is not None and not (
            isinstance(site["scale"], (int, float)) and site["scale"] == 1.0
        ):
            raise SiteError(
                f"site '{name}' has its log density scaled (poutine.scale or a subsampled "
                "plate): MI bounds need the unscaled joint density. Remove the scaling."
            )
        if is_masked(site):
            masked.append(name)
        sample_sites[name] = site
    for name in list(sample_sites):
        for suffix in ("_observed", "_unobserved"):
            if name.endswith(suffix) and name[: -len(suffix)] in deterministic:
                raise SiteError(
                    f"site '{name[: -len(suffix)]}' uses obs_mask= (it appears as sites "
                    f"'{name[: -len(suffix)]}_observed' / '_unobserved'): partially observed "
                    "sites are not supported. Split the site into an observed and a latent "
                    "site, or drop obs_mask=."
                )
    if masked:
        raise SiteError(
            f"site '{masked[0]}' has its log density masked (poutine.mask or "
            "Distribution.mask(...)): a masked site contributes 0 to the log density, so MI "
            "bounds computed from it would be wrong. Remove the mask (to leave data out, drop "
            "it from the model's data instead)."
        )
    available = ", ".join(repr(n) for n in sample_sites) or "(none)"
    if constants:
        available += f"; fixed in the model by obs= or pyro.condition: {', '.join(map(repr, constants))}"

    def require_sample_sites(kind: str, names: list[str]) -> None:
        for name in names:
            if name in constants:
                raise SiteError(
                    f"{kind} site '{name}' is fixed in the model (it has obs= or is set by "
                    "pyro.condition), so pyromi treats it as a constant: it is never simulated "
                    "and cannot be a latent variable. Remove the obs=/condition to make it a "
                    "random latent site, or leave it out of latent=."
                    if kind == "latent" else
                    f"{kind} site '{name}' is fixed in the model by pyro.condition: a constant "
                    "cannot be an observed variable. Pass the unconditioned model."
                )
            if name in deterministic:
                raise SiteError(
                    f"{kind} site '{name}' is a pyro.deterministic site; name the sample site "
                    f"it is computed from. Sample sites: {available}."
                )
            if name not in sample_sites:
                raise SiteError(
                    f"{kind} site '{name}' is not a sample site of the model. Sample sites: "
                    f"{available}."
                )
        if len(set(names)) != len(names):
            raise SiteError(f"{kind}= lists a site twice: {names}")

    require_sample_sites("observed", observed)
    if latent is None:
        latent = [n for n in sample_sites if n not in observed]
        if not latent:
            fixed = (
                f" Site(s) {constants} are fixed in the model (obs= or pyro.condition) and so "
                "are constants, not latents: x depends on no random latent."
                if constants else ""
            )
            raise SiteError(
                f"the model has no latent sites besides the observed ones ({observed}) that it samples."
                f"{fixed} I(x; z) needs at least one latent pyro.sample site that the model "
                "samples."
            )
    else:
        if not latent:
            raise SiteError("latent= is empty; name at least one latent site or leave it None.")
        both = [n for n in latent if n in observed]
        if both:
            raise SiteError(f"site '{both[0]}' is listed in both observed= and latent=.")
        require_sample_sites("latent", latent)
        others = [n for n in sample_sites if n not in observed and n not in latent]
        if others and densities:
            need = (
                "pyromi needs p(x|z) in closed form"
                if likelihood else
                "the known-marginal bounds compare the critic on pairs (x, z) against z drawn "
                "from p(z), and a hidden stochastic site between z and x would need p(z) of "
                "it too"
            )
            raise SiteError(
                f"site(s) {others} are neither observed nor latent. {need}, so every "
                "stochastic site must be in observed= or latent=: add "
                f"them to latent= (giving I(x; {', '.join(latent + others)})), or use a bound that "
                "marginalises continuous nuisance sites: bound='ais' or 'iwae' (nested sandwiches), "
                "bound='mist' (samples only)."
            )
    if densities:
        for name in latent + (observed if likelihood else []):
            check_density(name, sample_sites[name], name in latent)
    discrete = [n for n in latent if is_discrete(sample_sites[n]["fn"])]
    if discrete:
        if not (densities and likelihood):
            name = discrete[0]
            why = (
                "the known-marginal bounds train a critic on continuous latents"
                if densities else
                "MIST is trained on continuous data (ties from discrete values are outside its "
                "training domain)"
            )
            raise SiteError(
                f"latent site '{name}' is discrete ({type(sample_sites[name]['fn']).__name__}): "
                f"{why}. Use bound='iwae' or bound='ais', which sum discrete latents out exactly "
                "(mark the site with infer={'enumerate': 'parallel'}), or marginalise it in the "
                "model, e.g. dist.MixtureSameFamily(dist.Categorical(probs), components)."
            )
    mpn = 0
    for site in sample_sites.values():
        for frame in site["cond_indep_stack"]:
            if frame.vectorized:
                mpn = max(mpn, -frame.dim)
    if max_plate_nesting is not None:
        if max_plate_nesting < mpn:
            raise VectorizationError(
                f"max_plate_nesting={max_plate_nesting} but the model has plates down to dim "
                f"{-mpn}; pass max_plate_nesting>={mpn} or leave it None."
            )
        mpn = max_plate_nesting
    carried = [n for n in observed if sample_sites[n]["infer"].get("was_observed")]
    if carried:
        warn(
            f"observed site(s) {carried} carry obs= values in the model; pyromi does not use "
            "them: I(x; z) is a property of the generative model p(x, z), so x is simulated "
            "together with z (for model(x) with a data plate, model_args=(x,) only sets the "
            "number of data points and the covariates). To use the data themselves: "
            "pyromi.audit.audit(model, observed, guide=..., data=x) (rate and distortion on x) or "
            "pyromi.log_marginal(model, observed, data=x) (bounds on each log p(x_i))."
        )
    return SiteTable(
        observed=list(observed),
        latent=[n for n in latent if n not in discrete],
        discrete=discrete,
        constants=constants,
        sites={n: sample_sites[n] for n in list(observed) + list(latent)},
        max_plate_nesting=mpn,
    )


def undeclared_event_dims(table: SiteTable) -> dict[str, int]:
    """Sites whose rightmost batch dimensions belong to no plate, and how many: a plain Pyro model
    may write ``dist.Normal(torch.zeros(5), 1.)`` without ``.to_event(1)`` (its log density is summed
    over every dimension either way); pyromi reads those dimensions as event dimensions, so that its
    outer plates go left of them. Dimensions of size 1 need nothing."""
    mpn = table.max_plate_nesting
    out = {}
    for name in table.observed + table.latent + table.discrete:
        site = table.sites[name]
        batch_shape = site["fn"].batch_shape
        plate_dims = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
        undeclared = [d for d in range(-len(batch_shape), 0)
                      if d not in plate_dims and (batch_shape[d] != 1 or d < -mpn)]
        if undeclared and not plate_dims:  # inside a plate, reading dims as events would shift it
            out[name] = -min(undeclared)
    return out


def check_plate_dims(table: SiteTable, events: dict[str, int] | None = None) -> None:
    """Every batch dimension of a site in a plain run must belong to one of the model's plates or
    be read as an event dimension (``events``, from :func:`undeclared_event_dims`); otherwise
    pyromi's outer plates cannot be placed left of them: a :class:`VectorizationError` naming the
    site and the fix."""
    mpn = table.max_plate_nesting
    events = events or {}
    for name in table.observed + table.latent + table.discrete:
        site = table.sites[name]
        batch_shape = site["fn"].batch_shape
        batch_shape = batch_shape[:len(batch_shape) - events.get(name, 0)]
        plate_dims = {f.dim for f in site["cond_indep_stack"] if f.vectorized}
        if len(batch_shape) > mpn:
            raise VectorizationError(
                f"site '{name}' has batch shape {tuple(batch_shape)} but the model has only "
                f"{mpn} plate dimension(s): the extra dimensions belong to no pyro.plate. "
                f"Declare them as event dimensions, e.g. .to_event({len(batch_shape) - mpn}), "
                "or wrap the site in a pyro.plate."
            )
        for d in range(-len(batch_shape), 0):
            if batch_shape[d] != 1 and d not in plate_dims:
                raise VectorizationError(
                    f"site '{name}' has a batch dimension of size {batch_shape[d]} at dim {d} "
                    "that no pyro.plate declares. Use .to_event(...) for event dimensions or "
                    "put the site inside a pyro.plate with that dim."
                )


def check_density(name: str, site: dict, is_latent: bool) -> None:
    """Raise a SiteError unless the site's distribution can score its value."""
    fn = site["fn"]
    base = fn
    while isinstance(base, torch.distributions.Independent):
        base = base.base_dist
    kind = "latent" if is_latent else "observed"
    if isinstance(base, dist.ImproperUniform):
        raise SiteError(
            f"latent site '{name}' has an improper prior (ImproperUniform): the bounds need "
            "the normalised density p(z). Give it a proper prior."
        )
    try:
        fn.log_prob(site["value"])
    except NotImplementedError as e:
        fix = (
            "Every bound in pyromi needs the prior density p(z); for a model known only "
            "through samples use bound='mist'."
            if is_latent
            else "bound='iwae'/'ba'/'ais' need p(x|z); for a simulator without a likelihood "
            "use a known-marginal bound (bound='giwae', 'infonce', 'mine_ais', ...) or "
            "bound='mist'."
        )
        raise SiteError(
            f"{kind} site '{name}' ({type(fn).__name__}) has no log density "
            f"(log_prob raised NotImplementedError). {fix}"
        ) from e


def is_masked(site: dict) -> bool:
    """True if any element of the site's log density is masked out (``poutine.mask`` or a
    ``MaskedDistribution`` anywhere in its distribution's wrappers)."""
    def masks_out(mask) -> bool:
        if mask is None or mask is True:
            return False
        if mask is False:
            return True
        return isinstance(mask, torch.Tensor) and not bool(mask.all())

    if masks_out(site.get("mask")):
        return True
    return any(isinstance(fn, dist.MaskedDistribution) and masks_out(fn._mask)
               for fn in fn_chain(site["fn"]))


def fn_chain(fn):
    """A distribution and the distributions it wraps (``base_dist``), outermost first."""
    depth = 0
    while fn is not None and depth < 8:
        yield fn
        fn, depth = getattr(fn, "base_dist", None), depth + 1
