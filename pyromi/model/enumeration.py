"""Discrete latent sites summed out exactly by Pyro's parallel enumeration.

A model marks a discrete latent site for enumeration with ``infer={"enumerate": "parallel"}`` or
``@config_enumerate``. In a density pass pyromi then runs the model under
``poutine.enum(first_available_dim=-3 - mpn)`` (left of its two outer plates, particles at
``-2 - mpn`` and samples at ``-1 - mpn``): each enumerated site takes all its values at once in its
own tensor dimension, and :func:`contract_log_densities` sums those dimensions out with Pyro's own
tensor-network contraction (:func:`pyro.ops.contract.contract_to_tensor` on the packed log-prob
factors, as :class:`pyro.infer.mcmc.util.TraceEinsumEvaluator` does for Pyro's HMC), keeping the two
outer plates as batch dimensions. The result, per (particle, sample) pair, is e.g.

    log p(z) = log sum_k p(k) p(z | k)            (the "prior" group: every latent site)
    log p(x, z) = log sum_k p(k) p(z | k) p(x | k, z)   (the "joint" group: latent + observed)

so HMC moves only the continuous latents z while the bounds stay bounds on I(x; {k, z}).
``pyro.markov`` chains (HMMs) are contracted by the same machinery (recycled enumeration dims get
distinct symbols from :class:`~pyro.poutine.enum_messenger.EnumMessenger`).

Contract with the caller (what must be set up around the model):

* Handler order. Sites whose values the caller fixes (observed values, continuous latent values,
  ``T(u)`` for unconstrained ones) must be set by a messenger entered **before** (outside)
  ``poutine.enum``: Pyro processes the innermost handler first, and
  :class:`~pyro.poutine.enum_messenger.EnumMessenger` skips a site already marked ``done``, so it
  never records the enumeration dims that site's distribution depends on, and packing its
  log-prob fails (``ValueError: Error while packing tensors at site ...``). The outer plates, in
  turn, must be entered *inside* ``poutine.enum`` (so that every distribution is broadcast over
  them before enumeration). :func:`enumerated_trace` builds the stack in this order:
  ``trace > value setters > enum > outer plates > model``, as ``TraceEnum_ELBO`` does with
  vectorised particles; do not enter pyromi's outer plates around it.
* Shapes. ``lead_shape = (C, N)``: observed values ``(N,) + local_shape`` (broadcast over
  particles), continuous latent values ``(C, N) + local_shape`` (``local_shape`` = the model's
  plate dims left-padded with 1 to ``mpn``, then the event shape); ``lead_shape = (N,)`` (joint
  draws, sample plate only): every value ``(N,) + local_shape``. Values are not expanded over
  enumeration dims: log-probs broadcast. Results have shape ``lead_shape``.
* Discrete latent sites left to the model are enumerated. A discrete site *given* a value (the
  true k* for ``log p(x | k*, z*)``) is conditioned instead (list it in ``values``, or in ``fixed``
  when a handler of the caller sets it); with no site enumerated the contraction is a plain sum.
* A continuous latent whose support depends on an enumerated site (``Uniform(lo[k], hi[k])``) cannot
  be unconstrained independently of k: ``T(u)`` would differ per k. Detected (the site's value
  carries an enumeration dim) and reported as a :class:`~pyromi.errors.SiteError`.
* Groups must be closed under enumeration: a group holding a site whose log-prob depends on an
  enumerated site must hold that site as well (``"prior"`` = all latent sites, continuous and
  discrete; ``"joint"`` = those + the observed sites); otherwise a :class:`ValueError` is raised.
  With only discrete latents, ``"prior"`` contracts to ``log sum_k p(k) = 0`` up to rounding.
* Per-site NaN naming: :class:`EnumeratedDensities` carries ``site_nan`` (which sites' log-probs
  were NaN for which pairs, over all enumerated values) and the exact per-site log densities of
  the sites that do not depend on an enumerated site.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import ExitStack
from typing import NamedTuple

import pyro
import torch
from opt_einsum import shared_intermediates
from pyro import poutine
from pyro.ops.contract import contract_to_tensor
from pyro.ops.rings import LogRing
from pyro.poutine.messenger import Messenger
from pyro.infer.util import is_validation_enabled
from pyro.util import check_site_shape

from ..errors import SiteError

__all__ = [
    "PARTICLE_PLATE",
    "SAMPLE_PLATE",
    "EnumeratedDensities",
    "SetValues",
    "contract_log_densities",
    "discrete_latent_sites",
    "enum_first_dim",
    "enumerated_log_densities",
    "enumerated_trace",
    "is_discrete",
    "outer_plates",
]

PARTICLE_PLATE = "_pm_particles"
SAMPLE_PLATE = "_pm_x"


def is_discrete(fn) -> bool:
    """True for a distribution with a discrete support (Categorical, Bernoulli, Poisson, ...)."""
    support = getattr(fn, "support", None)
    return bool(getattr(support, "is_discrete", False)) or bool(
        getattr(fn, "has_enumerate_support", False)
    )


def discrete_latent_sites(trace: poutine.Trace, latent_names: Sequence[str]) -> list[str]:
    """The discrete sites among ``latent_names`` of a plain trace, checked for parallel enumeration.

    ``trace`` is a trace of the model without pyromi's handlers (``config_enumerate`` marks show
    in ``site["infer"]`` at run time). Raises :class:`~pyromi.errors.SiteError` naming the site and
    the fix when a discrete latent site is not marked ``infer={"enumerate": "parallel"}``, is marked
    ``"sequential"`` or with ``num_samples`` (Monte Carlo, not exact), or has no finite support to
    enumerate (Poisson, Geometric, ...).
    """
    found = []
    for name in latent_names:
        site = trace.nodes[name]
        fn = site["fn"]
        if not is_discrete(fn):
            continue
        kind = type(fn).__name__
        how = site["infer"].get("enumerate")
        if not getattr(fn, "has_enumerate_support", False):
            raise SiteError(
                f"latent site '{name}' is discrete ({kind}) without a finite support, so it cannot "
                "be summed out by enumeration. Marginalise it in the model, or replace it by a "
                "distribution with finite support (e.g. a truncated Categorical)."
            )
        if how is None:
            raise SiteError(
                f"latent site '{name}' is discrete ({kind}) and not marked for enumeration. pyromi "
                "sums discrete latents out exactly by Pyro's parallel enumeration: mark it with "
                f"pyro.sample('{name}', ..., infer={{'enumerate': 'parallel'}}), or decorate the "
                "model with @pyro.infer.config_enumerate; or marginalise it in the model, e.g. "
                "dist.MixtureSameFamily(dist.Categorical(probs), components) for a mixture indicator."
            )
        if how != "parallel":
            raise SiteError(
                f"latent site '{name}' is marked infer={{'enumerate': {how!r}}}; pyromi sums "
                "discrete latents out only by parallel enumeration (every density pass runs the "
                "model once, vectorised). Mark it infer={'enumerate': 'parallel'} or use "
                "@config_enumerate (default 'parallel')."
            )
        if site["infer"].get("num_samples") is not None:
            raise SiteError(
                f"latent site '{name}' is marked for enumeration with num_samples="
                f"{site['infer']['num_samples']} (tensor Monte Carlo): that is a sampled, not an "
                "exact, marginalisation, and the bounds need exact densities. Remove num_samples= "
                "to enumerate its full support."
            )
        found.append(name)
    return found


def enum_first_dim(max_plate_nesting: int) -> int:
    """``first_available_dim`` of ``poutine.enum`` for a model of plate nesting ``mpn``:
    ``-3 - mpn``, left of the model's plates and pyromi's two outer plates."""
    return -3 - max_plate_nesting


class SetValues(Messenger):
    """Fix sample sites to given values, **outside** ``poutine.enum`` (see the module docstring).

    ``values[name]`` replaces the site's value (``done``); ``observed`` names are marked observed.
    Other sites are left to the model and to the enumeration below.
    """

    def __init__(self, values: Mapping[str, torch.Tensor], observed: Sequence[str] = ()):
        super().__init__()
        self.values = values
        self.observed = set(observed)

    def _pyro_sample(self, msg) -> None:
        name = msg["name"]
        if name in self.values:
            msg["value"] = self.values[name]
            msg["is_observed"] = name in self.observed
            msg["done"] = True


class _KeepValues(Messenger):
    """Clear the enumeration mark of the named sites (inside ``poutine.enum``): their values are
    set by a handler outside it."""

    def __init__(self, names: Collection[str]):
        super().__init__()
        self.names = frozenset(names)

    def _pyro_sample(self, msg) -> None:
        if msg["name"] in self.names and msg["infer"].get("enumerate") is not None:
            msg["infer"] = dict(msg["infer"], enumerate=None)


def outer_plates(lead_shape: Sequence[int], max_plate_nesting: int,
                 data_plate: str | None = None) -> list[tuple[str, int, int | None]]:
    """``(name, size, dim)`` of pyromi's outer plates for ``lead_shape = (C, N)`` (particles at
    ``-2 - mpn``, samples at ``-1 - mpn``) or ``(N,)`` (samples only, for joint draws). Under a
    data plate (``data_plate``: the model's own plate over data points plays the sample plate) the
    sample entry names that plate with ``dim=None``: it is not entered, the model enters it."""
    mpn = max_plate_nesting
    sample = (data_plate, None) if data_plate is not None else (SAMPLE_PLATE, -1 - mpn)
    if len(lead_shape) == 2:
        return [(PARTICLE_PLATE, lead_shape[0], -2 - mpn), (sample[0], lead_shape[1], sample[1])]
    if len(lead_shape) == 1:
        return [(sample[0], lead_shape[0], sample[1])]
    if len(lead_shape) == 0:  # a plain run of one pair (the sequential fallback): no outer plate
        return []
    raise ValueError(f"lead_shape must be (C, N), (N,) or (), got {tuple(lead_shape)}")


def enumerated_trace(
    model: Callable,
    args: tuple,
    kwargs: dict,
    *,
    max_plate_nesting: int,
    lead_shape: tuple[int, ...],
    handlers: Sequence[Messenger] = (),
    fixed: Collection[str] = (),
    data_plate: str | None = None,
) -> poutine.Trace:
    """Trace ``model`` under pyromi's outer plates with its parallel-marked discrete sites enumerated.

    The handler stack mirrors ``TraceEnum_ELBO`` with vectorised particles; outermost first:
    ``poutine.trace``, then ``handlers`` in order (value setters such as :class:`SetValues`, an
    unconstraining messenger: they must sit outside the enumeration), then
    ``poutine.enum(first_available_dim=-3 - mpn)``, then the outer plates (:func:`outer_plates`:
    ``_pm_particles`` of size C at ``-2 - mpn`` when ``lead_shape = (C, N)``, ``_pm_x`` of size N
    at ``-1 - mpn``), then the model. Do not enter the outer plates around this call: they must be
    inside the enumeration, so that a site's distribution is broadcast over them before the
    enumeration (``check_site_shape`` then holds and every factor spans the outer plates).

    ``fixed`` names the sites whose values ``handlers`` set: a discrete site among them (the true
    k* of a joint draw) is then not enumerated (its enumeration mark is cleared inside the
    enumeration; otherwise the enumeration, running first, would enumerate it and the handler
    would overwrite its value).
    """
    plates = outer_plates(lead_shape, max_plate_nesting, data_plate)

    def plated(*a, **kw):
        with ExitStack() as stack:
            for name, size, dim in plates:
                if dim is not None:  # the data plate (dim None) is the model's own
                    stack.enter_context(pyro.plate(name, size, dim=dim))
            return model(*a, **kw)

    fn = _KeepValues(fixed)(plated) if fixed else plated
    fn = poutine.enum(fn, first_available_dim=enum_first_dim(max_plate_nesting))
    for h in reversed(handlers):
        fn = h(fn)
    return poutine.trace(fn).get_trace(*args, **kwargs)


class EnumeratedDensities(NamedTuple):
    """Log densities of one enumerated model pass, per (particle, sample) pair.

    Shapes are ``lead_shape``: ``(C, N)`` (or ``(N,)`` for a pass under the sample plate only).
    ``log_densities[group]``: the log density of the group's sites with every enumerated site
    summed out, summed over the model's plates (nats). ``site_log_probs[name]``: the site's own
    log density summed over the model's plates, for the sites whose log density does not depend
    on an enumerated site (e.g. a global continuous latent, or x | z when x depends on k only
    through z); sites that do depend on one have no per-site density of their own and are absent.
    ``site_nan[name]`` (bool), for every scored site: its log density was NaN for some enumerated
    value or plate element of that pair; use it to name the site at fault when a group's density
    is NaN (a ``-inf`` for some enumerated value is legitimate, a zero-probability configuration,
    and is not flagged). ``enumerated``: the sites enumerated in this pass.
    """

    log_densities: dict[str, torch.Tensor]
    site_log_probs: dict[str, torch.Tensor]
    site_nan: dict[str, torch.Tensor]
    enumerated: list[str]


def contract_log_densities(
    trace: poutine.Trace,
    groups: Mapping[str, Sequence[str]],
    *,
    max_plate_nesting: int,
    lead_shape: tuple[int, ...],
    data_plate: str | None = None,
) -> EnumeratedDensities:
    """Sum the enumerated dimensions of a trace from :func:`enumerated_trace` out of each group.

    For every ``groups[g]`` (a list of site names) the packed log-prob factors of those sites
    (``trace.pack_tensors()``) are contracted with :func:`pyro.ops.contract.contract_to_tensor`
    (log-sum-exp over the enumeration dims, product over the model's plates, by message passing
    in Pyro's ``LogRing``) down to the ordinal of the outer plates, and returned as a
    ``lead_shape`` tensor. Differentiable with respect to every site value (HMC takes its
    gradient). With no enumerated site, the contraction is the plain sum of the groups' log-probs.
    """
    mpn = max_plate_nesting
    lead = len(lead_shape)
    plates = outer_plates(lead_shape, mpn, data_plate)
    names = list(dict.fromkeys(n for g in groups.values() for n in g))
    missing = [n for n in names if n not in trace.nodes or trace.nodes[n]["type"] != "sample"]
    if missing:
        raise SiteError(f"site(s) {missing} are not sample sites of the enumerated trace")
    wanted = set(names)
    trace.compute_log_prob(site_filter=lambda name, site: name in wanted)
    trace.pack_tensors()
    plate_to_symbol = trace.plate_to_symbol
    missing = [name for name, _, _ in plates if name not in plate_to_symbol]
    if missing:
        raise RuntimeError(
            f"the enumerated trace has no outer plate(s) {missing}: trace the model with "
            "enumerated_trace(..., lead_shape=...)"
        )
    outer_symbols = [plate_to_symbol[name] for name, _, _ in plates]
    target = frozenset(outer_symbols)
    enum_symbols = set(trace.symbol_to_dim) - set(plate_to_symbol.values())
    if is_validation_enabled():
        for n in names:
            check_site_shape(trace.nodes[n], mpn + 2)

    enumerated = [
        n for n, site in trace.nodes.items()
        if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None
    ]
    site_of_symbol = {trace.nodes[n]["infer"]["_enumerate_symbol"]: n for n in enumerated}
    for n in names:
        site = trace.nodes[n]
        if n in enumerated or not isinstance(site["value"], torch.Tensor):
            continue
        batch = site["value"].shape[: site["value"].dim() - site["fn"].event_dim]
        if any(size > 1 for size in batch[: max(0, len(batch) - mpn - 2)]):
            raise SiteError(
                f"the value of latent site '{n}' depends on the enumerated site(s) "
                f"{[m for m in enumerated if m != n] or enumerated}: its support does (e.g. "
                "Uniform(lo[k], hi[k])), so it cannot be moved in an unconstrained space shared "
                "by all values of k. Give it a support that does not depend on the discrete "
                "latents (e.g. sample a standard variable and transform it in the model with "
                "pyro.deterministic), or marginalise the discrete latent in the model."
            )

    factors: dict[str, tuple[frozenset, torch.Tensor]] = {}
    for n in names:
        site = trace.nodes[n]
        ordinal = frozenset(plate_to_symbol[f.name] for f in site["cond_indep_stack"] if f.vectorized)
        factors[n] = (ordinal, site["packed"]["log_prob"])
    # sizes of every dim, the outer plates included, so that LogRing.broadcast can expand a
    # result that is constant over them (e.g. log sum_k p(k) of a model with only discrete latents)
    dim_to_size = dict(zip(outer_symbols, lead_shape))
    for _, t in factors.values():
        dim_to_size.update(zip(t._pyro_dims, t.shape))

    out: dict[str, torch.Tensor] = {}
    with shared_intermediates() as cache:
        ring = LogRing(cache=cache, dim_to_size=dim_to_size)
        for group, members in groups.items():
            members = list(dict.fromkeys(members))
            if not members:
                raise ValueError(f"group '{group}' names no site")
            tree: OrderedDict = OrderedDict()
            for n in members:
                ordinal, t = factors[n]
                needs = {site_of_symbol[s] for s in t._pyro_dims if s in site_of_symbol}
                lacking = sorted(needs - set(members))
                if lacking:
                    raise ValueError(
                        f"group '{group}' holds site '{n}', whose density depends on the enumerated "
                        f"site(s) {lacking}, but not those sites: add them to the group."
                    )
                tree.setdefault(ordinal, []).append(t)
            term = contract_to_tensor(tree, enum_symbols, target_ordinal=target, ring=ring)
            dims = term._pyro_dims
            assert sorted(dims) == sorted(outer_symbols), (dims, outer_symbols)
            out[group] = term.permute(*(dims.index(s) for s in outer_symbols)) if outer_symbols else term

    site_log_probs: dict[str, torch.Tensor] = {}
    site_nan: dict[str, torch.Tensor] = {}
    for n in names:
        # log_prob: (enumeration dims..., [C,] N, model plates...), left-padded with 1s
        lp = trace.nodes[n]["log_prob"]
        lp = lp.reshape((1,) * max(0, mpn + lead - lp.dim()) + lp.shape)
        site_nan[n] = _any_to_lead(torch.isnan(lp), lead, mpn).expand(lead_shape)
        if not any(s in enum_symbols for s in trace.nodes[n]["packed"]["log_prob"]._pyro_dims):
            lp = lp.reshape(lp.shape[lp.dim() - mpn - lead:])  # the left dims are all 1 here
            site_log_probs[n] = lp.reshape(lp.shape[:lead] + (-1,)).sum(-1).expand(lead_shape)
    return EnumeratedDensities(out, site_log_probs, site_nan, enumerated)


def _any_to_lead(t: torch.Tensor, lead: int, mpn: int) -> torch.Tensor:
    """Reduce a bool ``(enum..., lead..., plates...)`` tensor to ``lead`` dims with ``any``."""
    left = t.dim() - mpn - lead
    if left:
        t = t.reshape((-1,) + t.shape[left:]).any(0)
    return t.reshape(t.shape[:lead] + (-1,)).any(-1)


def enumerated_log_densities(
    model: Callable,
    args: tuple,
    kwargs: dict,
    *,
    lead_shape: tuple[int, ...],
    values: Mapping[str, torch.Tensor],
    groups: Mapping[str, Sequence[str]],
    max_plate_nesting: int,
    observed: Sequence[str] = (),
    handlers: Sequence[Messenger] = (),
    fixed: Collection[str] = (),
    data_plate: str | None = None,
) -> EnumeratedDensities:
    """One enumerated density pass: fix ``values``, enumerate the rest, contract ``groups``.

    ``lead_shape = (C, N)``: ``values[name]`` is ``(N,) + local_shape`` for observed sites (names in
    ``observed``; broadcast over particles) and ``(C, N) + local_shape`` for continuous latent
    sites. ``lead_shape = (N,)`` (a pass over joint draws): every value is ``(N,) + local_shape``.
    A discrete site given a value is conditioned, not enumerated. ``handlers`` are entered after
    :class:`SetValues`, outside the enumeration (e.g. an unconstraining messenger); name the
    discrete sites they set, if any, in ``fixed`` so that they are not enumerated. Returns
    :class:`EnumeratedDensities`; e.g. ``groups={"prior": latent + discrete, "joint": latent + discrete + observed}`` gives
    ``log p(z)`` and ``log p(x, z)`` with the discrete latents summed out.
    """
    tr = enumerated_trace(
        model, args, kwargs, max_plate_nesting=max_plate_nesting, lead_shape=lead_shape,
        handlers=(SetValues(values, observed), *handlers), fixed=(*values, *fixed),
        data_plate=data_plate,
    )
    return contract_log_densities(tr, groups, max_plate_nesting=max_plate_nesting, lead_shape=lead_shape,
                                  data_plate=data_plate)
