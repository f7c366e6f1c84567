"""User API: ``mutual_information(model, observed, bound=...)``, a thin dispatcher over one function
per method, each with only its own keywords (in the style of Pyro's ``contrib.oed.eig``):

======================  ===========================================  ==========================
``bound=``              function                                     needs
======================  ===========================================  ==========================
``"iwae"``              :func:`~pyromi.api.density.iwae_mi`          the full joint density
``"ais"``               :func:`~pyromi.api.density.ais_mi`           the full joint density
``"ba"``                :func:`~pyromi.api.trained.ba_mi`            p(z) and q(z | x)
``"giwae"``             :func:`~pyromi.api.trained.giwae_mi`         p(z)
``"infonce"``           :func:`~pyromi.api.trained.infonce_mi`       p(z)
``"mine_dv"/"mine_f"``  :func:`~pyromi.api.trained.mine_mi`          p(z)
``"mine_ais"``          :func:`~pyromi.api.trained.mine_ais_mi`      p(z)
``"mist"``              :func:`~pyromi.api.learned.mist_mi`          samples only
======================  ===========================================  ==========================
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Sequence

from .._state import entry_point
from ..errors import OptionError
from ..result import MIEstimate
from .density import ais_mi, iwae_mi
from .learned import mist_mi
from .log_marginal import log_marginal
from .trained import ba_mi, giwae_mi, infonce_mi, mine_ais_mi, mine_mi

__all__ = ["mutual_information", "log_marginal", "BOUNDS", "METHODS", "iwae_mi", "ais_mi", "ba_mi", "giwae_mi",
           "infonce_mi", "mine_mi", "mine_ais_mi", "mist_mi"]

#: bound name -> what it is
BOUNDS = {
    "iwae": "IWAE sandwich: lower and upper bounds from a proposal q(z|x) (full joint density)",
    "ais": "Multi-Sample AIS sandwich: annealed HMC chains from p(z) or q(z|x) (full joint density)",
    "ba": "Barber-Agakov lower bound E[log q(z|x) - log p(z)] (needs p(z) and q)",
    "giwae": "GIWAE lower bound: trained critic + proposal q(z|x) (needs p(z))",
    "infonce": "InfoNCE lower bound (GIWAE with q = p(z)), at most log K",
    "mine_dv": "MINE Donsker-Varadhan lower bound (trained critic; the critic's InfoNCE bound when its partition estimate is unreliable)",
    "mine_f": "MINE-F / NWJ lower bound (trained critic; same reliability check as mine_dv)",
    "mine_ais": "MINE-AIS: energy-based critic, MCMC-trained, evaluated by AIS (needs p(z))",
    "mist": "MIST: learned estimate with a quantile interval from samples only (no density)",
}

#: bound name -> the function that computes it
METHODS: dict[str, Callable[..., MIEstimate]] = {
    "iwae": iwae_mi,
    "ais": ais_mi,
    "ba": ba_mi,
    "giwae": giwae_mi,
    "infonce": infonce_mi,
    "mine_dv": functools.partial(mine_mi, variant="dv"),
    "mine_f": functools.partial(mine_mi, variant="f"),
    "mine_ais": mine_ais_mi,
    "mist": mist_mi,
}


@functools.lru_cache(maxsize=None)
def keywords(bound: str) -> frozenset[str]:
    """The keywords ``mutual_information(bound=bound)`` passes on: those of its function."""
    method = METHODS[bound]
    fixed = set(method.keywords) if isinstance(method, functools.partial) else set()
    params = inspect.signature(method).parameters
    return frozenset(params) - {"model", "observed", "latent"} - fixed


def check_keywords(bound: str, options: dict) -> None:
    """An :class:`OptionError` (a ``TypeError``) for a keyword ``bound`` does not take, naming the
    bounds that take it (or the keyword meant, for a misspelling)."""
    misapplied = [name for name in options if name not in keywords(bound)]
    if not misapplied:
        return
    users = {name: sorted(b for b in METHODS if name in keywords(b)) for name in misapplied}
    unknown = [name for name, u in users.items() if not u]
    if unknown:
        every = sorted(set().union(*(keywords(b) for b in METHODS)))
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, every, n=1)
            hints.append(f"{name}=" + (f" (did you mean {close[0]}=?)" if close else ""))
        raise OptionError(f"mutual_information() got unexpected keyword(s) {', '.join(hints)}")
    parts = "; ".join(f"{n}= is used by bound={', '.join(map(repr, u))}" for n, u in users.items())
    raise OptionError(
        f"bound={bound!r} does not use {', '.join(n + '=' for n in misapplied)}: {parts}. Remove the "
        f"keyword, or choose a bound that uses it (bound={bound!r} takes: {', '.join(sorted(keywords(bound)))})."
    )


@entry_point
def mutual_information(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    bound: str = "iwae",
    **options,
) -> MIEstimate:
    """Bounds on (or, for ``mist``, an estimate of) the mutual information I(x; z) of a Pyro model,
    in nats: ``METHODS[bound](model, observed, latent, **options)``.

    The model is read as ``p(x, z) = p(z) p(x | z)``: ``observed`` names the sites x, ``latent`` the
    sites z (default: every other stochastic site). N joint pairs ``(x_i, z_i*) ~ p(x, z)`` are drawn
    from the model, and each bound is the average of per-sample terms over them.

    Args:
        model: a Pyro model callable; observed sites are sampled generatively.
        observed: observed site name(s).
        latent: latent site name(s) z; default all other sample sites (but ``given``). With
            ``iwae``/``ais``, sample sites in neither ``observed``, ``latent`` nor ``given`` are
            **nuisance** latents psi, marginalised: I(x; z) = E[log p(x | z) - log p(x)] with
            p(x | z) = int p(x | z, psi) p(psi | z) dpsi, bounded by nested Multi-Sample AIS
            (:mod:`pyromi.estimators.nuisance`). ``mist`` simply ignores unlisted sites; the
            trained bounds refuse them.
        bound: ``"iwae"``, ``"ais"`` (full joint density; two-sided), ``"ba"``, ``"giwae"``,
            ``"infonce"``, ``"mine_dv"``, ``"mine_f"``, ``"mine_ais"`` (p(z) only; lower bounds),
            ``"mist"`` (no density; a learned estimate). See :data:`BOUNDS`.
        **options: the keywords of that bound's function (:data:`METHODS`; a keyword it does not
            take raises :class:`~pyromi.OptionError`, a ``TypeError``, naming the bounds that take
            it, unless its value is None, which means "not given" for every option). Shared by all: ``num_samples`` (N, default 256), ``seed`` (the same seed gives the
            same numbers), ``model_args``/``model_kwargs`` (passed to the model and guides),
            ``device``/``dtype`` (default: the model's own; log-weights are accumulated in float64
            regardless), ``data_plate`` (the plate whose elements are the samples: bounds per data
            point), ``vectorize`` (``"auto"``, True or False: batched or sequential evaluation).
            ``progress`` (a bar on stderr: None shows one once a run takes a few seconds; True, the
            default for ``ais``, always; False never; MIST shows none). All but ``mist``: ``joint`` (pre-drawn
            :class:`~pyromi.JointSamples` to evaluate instead of fresh draws), ``reparam``
            (``"auto"`` non-centres funnel sites with Pyro's ``LocScaleReparam``: a bijection of
            z, so I(x; z) is unchanged, recorded in ``settings["reparam"]``).
            ``iwae``/``ais``: ``given`` (site(s) c for the conditional MI I(x; z | c)), ``guide``,
            ``num_particles``, ``max_batch``/``max_memory`` (pairs per model pass / its memory
            budget in bytes, default 512 MiB), ``guide_steps``; ``ais`` also ``start``,
            ``num_steps``, ``schedule``, ``num_leapfrog``, ``target_accept``, ``kernel``, ``hook``.
            Trained bounds: ``critic``, ``train_steps``, ``optim``, ``batch_size`` (and ``guide``
            for ``ba``/``giwae``; ``num_steps``, ``schedule``, ``num_leapfrog`` for ``mine_ais``'s
            evaluation). ``mist``: ``level``, ``weights``, ``calibration``.

    Returns:
        :class:`~pyromi.MIEstimate` with ``lower``/``upper`` in nats, their standard errors over the
        N draws, per-sample terms and diagnostics; for ``mist`` a :class:`~pyromi.LearnedEstimate`
        (a median and a predictive interval, not bounds).

    Example:
        >>> import math, pyro, pyro.distributions as dist, pyromi
        >>> def model():
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(z, 0.5))
        >>> truth = 0.5 * math.log(1 + 1 / 0.5**2)          # 0.805 nats
        >>> est = pyromi.mutual_information(model, "x", bound="ais", num_samples=64, num_particles=8,
        ...                                 num_steps=50, seed=0, progress=False)
        >>> est.lower - 4 * est.lower_se <= truth <= est.upper + 4 * est.upper_se
        True
        >>> pyromi.mutual_information(model, "x", bound="iwae", num_steps=50)
        Traceback (most recent call last):
        ...
        pyromi.errors.OptionError: bound='iwae' does not use num_steps=: num_steps= is used by bound='ais', 'mine_ais'. ...
    """
    if not isinstance(bound, str) or bound not in METHODS:
        known = ", ".join(repr(b) for b in METHODS)
        raise ValueError(f"unknown bound={bound!r}; choose one of {known}")
    # None is "not given" for every option: a loop over bounds may pass e.g. given=None to all
    options = {k: v for k, v in options.items() if v is not None or k in keywords(bound)}
    check_keywords(bound, options)
    return METHODS[bound](model, observed, latent, **options)

