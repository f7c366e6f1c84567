"""User API: ``mutual_information(model, observed="x", bound=...)``."""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Callable, Sequence

import pyro
import torch
from pyro.infer.autoguide import AutoGuide

from ._state import warn as _warn
from ._rng import check_seed, derived_seed, seeded
from ._state import entry_point
from .model import JointSamples, ModelAdapter, out_of_memory_error
from .model.data import ROW_PREFIX
from .model.sites import OBS_WARNING
from .model import is_out_of_memory as _is_out_of_memory
from .errors import DensityError, GuideError, PyromiError, ResourceError, SiteError
from .estimators.ais import ais_block, ais_mi, default_pilot_steps, divergence_fraction
from .estimators.checks import divergence_advice
from .estimators.importance import importance_mi
from .proposals.base import PriorProposal, Proposal
from .proposals.guide import GuideProposal, fit_autoguide
from .result import LogMarginalEstimate, MIEstimate
from . import distributed

__all__ = ["mutual_information", "log_marginal", "BOUNDS"]

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


#: default memory budget of one model pass, in bytes (``max_memory=``)
DEFAULT_MAX_MEMORY = 2**29


def check_int(name: str, value, minimum: int, allow_none: bool = False) -> int | None:
    """``value`` as an int >= ``minimum``, or a ``TypeError``/``ValueError`` naming ``name=``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name}= must be an int >= {minimum}{' or None' if allow_none else ''}, got {value!r} "
            f"({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{name}= must be an int >= {minimum}, got {value}")
    return int(value)


def pairs_per_pass(adapter: ModelAdapter, max_batch: int, max_memory: int | None) -> int:
    """The most (particle, sample) pairs of one model pass: ``max_batch``, lowered so that the
    pass's estimated memory (:meth:`ModelAdapter.pair_bytes` per pair) stays within ``max_memory``
    bytes."""
    budget = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
    return max(1, min(max_batch, budget // adapter.pair_bytes()))


@contextlib.contextmanager
def memory_guard(what: str):
    """Turn an allocator failure inside an estimator into a :class:`ResourceError` saying what to lower."""
    try:
        yield
    except ResourceError:
        raise
    except (MemoryError, RuntimeError) as e:
        if _is_out_of_memory(e):
            raise out_of_memory_error(what, e) from e
        raise


#: default K per bound: proposal draws (iwae), chains (ais, mine_ais), contrastive samples (giwae,
#: infonce) or product-of-marginals draws per x (mine_dv, mine_f)
DEFAULT_PARTICLES = {"iwae": 1000, "ais": 16, "giwae": 64, "infonce": 64, "mine_dv": 16,
                     "mine_f": 16, "mine_ais": 16}


def _resolve_proposal(
    guide,
    adapter: ModelAdapter,
    joint: JointSamples,
    guide_steps: int,
    given_joint: bool = True,
    argname: str = "guide",
) -> Proposal:
    if guide is None:
        return PriorProposal()
    if isinstance(guide, Proposal):
        return guide.bind(adapter)
    if isinstance(guide, AutoGuide) and not given_joint:
        GuideProposal(guide)._check_sitewise(adapter, joint.num_samples)  # its own errors first
        raise GuideError(
            f"guide={type(guide).__name__}(...) is an autoguide instance: its parameters belong to "
            "the N observations it was built and fitted on, so it must be evaluated on those: pass "
            "joint= (the JointSamples behind adapter.conditioned_model(joint)). Or pass the class "
            "(guide=AutoNormal) and pyromi builds and fits one on the evaluation batch."
        )
    if isinstance(guide, type) and issubclass(guide, AutoGuide):
        if guide_steps < 1:
            raise GuideError("guide_steps must be >= 1 to fit an autoguide class")
        built = guide(adapter.conditioned_model(joint))
        return GuideProposal(fit_autoguide(adapter, joint, built, num_steps=guide_steps)).bind(adapter)
    if isinstance(guide, str):
        raise GuideError(
            f"{argname}={guide!r}: pass a guide object (an amortised guide callable, "
            "pyromi.AmortizedNormal, or an AutoNormal instance/class), not a string."
        )
    return GuideProposal(guide).bind(adapter)


def _per_sample_bound(arguments: dict) -> bool:
    """Bounds sharded over ranks as they stand (:mod:`pyromi.distributed`): the density bounds.
    Trained bounds shard their evaluation inside the trainer (training is data-parallel); MIST
    shards its simulation and reads the gathered sample once."""
    bound = arguments.get("bound")
    return bound in ("iwae", "ais") or (bound == "ba" and (arguments.get("guide") is not None
                                                        or arguments.get("joint") is not None))


@entry_point
@distributed.sharded(when=_per_sample_bound)
def mutual_information(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    given: str | Sequence[str] | None = None,
    bound: str = "iwae",
    guide=None,
    num_samples: int = 256,
    num_particles: int | None = None,
    num_steps: int = 1000,
    schedule="adaptive",
    start=None,
    num_leapfrog: int = 10,
    target_accept: float = 0.65,
    kernel=None,
    hook=None,
    critic=None,
    train_steps: int = 2000,
    optim=None,
    batch_size: int = 256,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    joint: JointSamples | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    max_batch: int | None = None,
    max_memory: int | None = None,
    guide_steps: int = 1000,
    level: float = 0.9,
    weights=None,
    calibration: str | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """Bounds on the mutual information I(x; z) of a Pyro model, in nats.

    The model is read as ``p(x, z) = p(z) p(x | z)``: ``observed`` names the sites x, ``latent`` the
    sites z (default: every other stochastic site). N joint pairs ``(x_i, z_i*) ~ p(x, z)`` are drawn
    from the model, and each bound is the average of per-sample terms over them.

    Args:
        model: a Pyro model callable; observed sites are sampled generatively.
        observed: observed site name(s).
        latent: latent site name(s) z; default all other sample sites (but ``given``). Sample
            sites in neither ``observed``, ``latent`` nor ``given`` are **nuisance** latents psi,
            marginalised: I(x; z) = E[log p(x | z) - log p(x)] with p(x | z) = int p(x | z, psi)
            p(psi | z) dpsi, bounded by nested Multi-Sample AIS (``ais``; ``iwae``: the same at
            T = 1) -- :mod:`pyromi.estimators.nuisance`; a nuisance upstream of the target (a
            parent of z) adds a third sandwich, on log p(z). ``mist`` needs no densities and simply
            ignores unlisted sites.
        given: site name(s) c for the conditional MI I(x; z | c) (``ais``, ``iwae``): c is drawn
            from the model with everything else and held as context; its density may not depend
            on the latents.
        bound: full joint density: ``"iwae"`` (two-sided importance-sampling sandwich) or
            ``"ais"`` (Multi-Sample AIS sandwich, tight at high MI). Only p(z) needed (x is only
            simulated, log p(x|z) is never evaluated; a critic and/or proposal is trained on
            ``train_steps`` fresh batches, then the bound is evaluated on N fresh pairs):
            ``"ba"`` (Barber-Agakov), ``"giwae"``, ``"infonce"``, ``"mine_dv"``, ``"mine_f"``,
            ``"mine_ais"``. No density at all: ``"mist"``.
        guide: the proposal q(z | x). ``None`` uses the prior p(z) (for ``ba`` and ``giwae``:
            trains a fresh :class:`pyromi.AmortizedNormal`). Otherwise a
            :class:`pyromi.AmortizedNormal` (trained with :func:`pyromi.fit_proposal`), an amortised
            guide callable ``guide(x, *model_args, **model_kwargs)``, an ``AutoNormal`` instance built
            on ``ModelAdapter.conditioned_model(joint)`` (pass ``joint=`` too), or the ``AutoNormal``
            class itself, which pyromi builds on the evaluation batch and fits by SVI for
            ``guide_steps`` steps (the fit uses x only, so the bounds stay valid).
        num_samples: N, the number of joint draws.
        num_particles: K, proposal draws (``iwae``, default 1000) or annealing chains (``ais``,
            default 16) per sample; the lower bound uses z* (or a chain from it) plus K - 1.
        num_steps: T, annealing transitions (``ais``); T = 1 reduces AIS to IWAE with proposal pi_0.
        schedule: ``ais`` betas: ``"adaptive"`` (placed from a pilot run: equal variance of the
            log-weight increments), ``"geometric"``, ``"sigmoid"``, ``"linear"``, or an array of T + 1
            increasing betas from 0 to 1.
        start: ``ais`` initial distribution pi_0: None for the prior, or a proposal q(z|x) (default:
            ``guide`` if given). num_leapfrog, target_accept: HMC settings (pilot-tuned step sizes
            and diagonal masses per level and sample, then frozen and shared by all chains).
        kernel: a Pyro ``HMC``/``NUTS`` object: ``ais`` then drives that kernel class chain by chain
            (same pilot-tuned frozen step sizes and masses; adaptation off). Hundreds of times
            slower than the default vectorised HMC; for cross-checks and as a fallback.
        hook: ``ais`` callback ``hook(t, info)`` called after each temperature with tensors.
        critic, train_steps, optim, batch_size: known-marginal bounds (``ba`` without a guide,
            ``giwae``, ``infonce``, ``mine_dv``, ``mine_f``, ``mine_ais``): the critic ``T(x, z)``
            (an ``nn.Module`` called as ``critic(x (N, Dx), z (K, N, Dz)) -> (K, N)``; default a
            concatenation MLP), training steps on fresh simulated pairs, a Pyro optimiser
            (default Adam, lr 1e-3) and pairs per step. The bound is then evaluated on N fresh
            pairs (or on ``joint``). For ``giwae``, ``guide`` may be an :class:`AmortizedNormal`
            or an amortised guide (trained jointly). ``mine_ais`` is evaluated by Multi-Sample AIS
            with ``num_steps``, ``schedule`` and ``num_leapfrog``. The trainer objects
            (:class:`pyromi.GIWAE`, :class:`pyromi.MINE`, :class:`pyromi.MINEAIS`) give
            ``.step()``/``.run()`` control and the training history.
        model_args, model_kwargs: passed to the model (and to guides).
        joint: pre-drawn :class:`~pyromi.adapter.JointSamples` to evaluate instead of fresh draws
            (reuse one batch across bounds, or pair with a site-wise guide).
        device, dtype: where and in which dtype the model runs; default: the model's own.
            Log-weights are always accumulated in float64.
        max_batch: most (particle, sample) pairs per model pass; bounds memory for any K
            (default 2**18 for ``iwae``, 2**16 chain-sample pairs per block for ``ais``).
        max_memory: memory budget of one model pass in bytes (default 2**29 = 512 MiB): the
            pairs per pass are lowered below ``max_batch`` so that the pass's estimated size
            (bytes per pair measured on the probe draws, times 4) fits. An allocator failure
            raises :class:`pyromi.ResourceError` saying what to lower.
        level: ``mist``: the nominal coverage of the returned interval (default 0.9).
        weights, calibration: ``mist``: the weights (a name such as ``"mist-medium"`` or a
            :class:`pyromi.mist.Pretrained`; default the shipped ``mist-hybrid``) and the interval
            rule (``"pooled"`` or ``"family_robust"``; default the weights' recorded rule), as in
            :func:`pyromi.mist.estimate`.
        seed: seeds joint draws and proposals; the same seed gives the same numbers.
        progress: a progress bar on stderr: None (default) shows one from the start for ``ais``
            and, for every other bound, once the run has taken a few seconds (proposal or critic
            training, large-K IWAE); True always; False never.
        reparam: ``"auto"`` non-centres every funnel site (a latent whose scale is another latent,
            e.g. ``theta ~ Normal(mu, tau)``) with Pyro's ``LocScaleReparam(centered=0)`` before
            anything runs (:func:`pyromi.model.reparam.auto_reparam`): a bijection of z, so I(x; z)
            is unchanged, and HMC no longer diverges in the funnel. Recorded in
            ``settings["reparam"]``; not for ``mist``, nor with ``joint=`` or a guide object of the
            original sites (a guide class is fine). Default None: the model as written.

    Returns:
        :class:`~pyromi.MIEstimate` with ``lower``/``upper`` in nats, their standard errors over the
        N draws, per-sample terms and diagnostics.
    """
    if not isinstance(bound, str) or bound not in BOUNDS:
        known = ", ".join(repr(b) for b in BOUNDS)
        raise ValueError(f"unknown bound={bound!r}; choose one of {known}")
    _check_options(bound, dict(
        num_steps=num_steps, schedule=schedule, start=start, num_leapfrog=num_leapfrog,
        target_accept=target_accept, kernel=kernel, hook=hook, guide=guide, critic=critic,
        train_steps=train_steps, optim=optim, batch_size=batch_size, joint=joint,
        guide_steps=guide_steps, level=level, weights=weights, calibration=calibration, given=given,
        num_particles=num_particles, max_batch=max_batch,
        max_memory=max_memory, reparam=reparam, data_plate=data_plate, vectorize=vectorize,
    ))
    check_seed(seed)
    num_samples = check_int("num_samples", num_samples, 1)
    if num_particles is None:
        num_particles = DEFAULT_PARTICLES.get(bound, 1000)
    num_particles = check_int("num_particles", num_particles, 1)
    if max_batch is None:
        max_batch = 2**16 if bound in ("ais", "mine_ais") else 2**18
    max_batch = check_int("max_batch", max_batch, 1)
    max_memory = check_int("max_memory", max_memory, 1, allow_none=True)
    if bound == "ais":
        num_steps = check_int("num_steps", num_steps, 1)
    if not isinstance(level, numbers.Real) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level= must be a number in (0, 1), got {level!r}")
    if progress is None:  # AIS: a bar from the start; others: once a run takes a few seconds
        progress = True if bound == "ais" else None
    if hook is not None and not callable(hook):
        raise TypeError(f"hook= must be a callable hook(t, info) or None, got {type(hook).__name__}")
    if kernel is not None:
        from pyro.infer.mcmc import HMC

        if bound != "ais":
            raise ValueError(f"kernel= applies to bound='ais' only (got bound={bound!r})")
        if not isinstance(kernel, HMC):
            raise ValueError(
                f"kernel= must be a pyro.infer.mcmc.HMC or NUTS object (its class, step size and "
                f"number of leapfrog steps are used), got {type(kernel).__name__}"
            )
    model, latent, reparam_info = _reparam_model(reparam, model, observed, latent, model_args,
                                                 model_kwargs, guide=guide, start=start, joint=joint)
    if bound in ("ais", "iwae") and (latent is not None or given is not None):
        from .estimators.nuisance import site_roles

        target, given_names, nuisance = site_roles(
            model, observed, latent, given, model_args=model_args, model_kwargs=model_kwargs,
            device=device, dtype=dtype, data_plate=data_plate, vectorize=vectorize)
        if nuisance or given_names:
            return _reparam_result(reparam_info, _nested(
                model, observed, target, given_names, nuisance, bound=bound, num_samples=num_samples,
                num_particles=num_particles, num_steps=num_steps, schedule=schedule,
                num_leapfrog=num_leapfrog, target_accept=target_accept, max_batch=max_batch,
                max_memory=max_memory, model_args=model_args, model_kwargs=model_kwargs, device=device,
                dtype=dtype, seed=seed, progress=progress, data_plate=data_plate, vectorize=vectorize,
                unsupported=dict(guide=guide, start=start, kernel=kernel, hook=hook, joint=joint)))
    if bound == "mist":
        return _mist(model, observed, latent, num_samples=num_samples, level=level,
                     weights=weights, calibration=calibration,
                     model_args=model_args, model_kwargs=model_kwargs, device=device, dtype=dtype,
                     seed=seed, data_plate=data_plate, vectorize=vectorize)
    if bound in KNOWN_MARGINAL or (bound == "ba" and guide is None and joint is None):
        return _reparam_result(reparam_info, _known_marginal(
            model, observed, latent, bound=bound, guide=guide, critic=critic,
            train_steps=train_steps, optim=optim, batch_size=batch_size, num_samples=num_samples,
            num_particles=num_particles, num_steps=num_steps, schedule=schedule,
            num_leapfrog=num_leapfrog, joint=joint, model_args=model_args,
            model_kwargs=model_kwargs, device=device, dtype=dtype, seed=seed, progress=progress,
            max_batch=max_batch, data_plate=data_plate, vectorize=vectorize,
        ))
    adapter = ModelAdapter(
        model,
        observed,
        latent,
        model_args=model_args,
        model_kwargs=model_kwargs,
        device=device,
        dtype=dtype,
        likelihood=bound != "ba",  # BA needs only p(z) and q(z|x)
        data_plate=data_plate,
        vectorize=vectorize,
    )
    max_batch = pairs_per_pass(adapter, max_batch, max_memory)
    if joint is None:
        check_rows_balanced(adapter, num_samples)
    # with a given joint batch, the proposal draws must not replay the stream that drew it (a
    # batch drawn with the same seed would hand each sample its own z* as a "proposal" draw,
    # making the upper bound collapse onto the lower one): seed from a derived value instead
    run_seed = seed if (joint is None or seed is None) else derived_seed(seed, "estimate")
    given_joint = joint is not None
    with seeded(run_seed, adapter.device), memory_guard(f"bound={bound!r}"):
        if joint is None:
            with torch.no_grad():
                joint = adapter.sample_joint(num_samples)
        else:
            _check_joint(joint, adapter)
        if not adapter.latent_names:  # only enumerated discrete latents: exact up to MC over x
            from .estimators.exact import exact_mi

            if bound == "ba":
                raise SiteError(
                    f"bound='ba' needs a proposal q(z|x) over continuous latents; the model's latents "
                    f"{adapter.discrete_names} are all discrete and summed out exactly: use "
                    "bound='iwae' or 'ais', which then give I(x; k) exactly up to Monte Carlo over x."
                )
            est = exact_mi(adapter, joint, bound)
        elif bound == "ais":
            pi0 = start if start is not None else guide
            proposal = None if pi0 is None else _resolve_proposal(
                pi0, adapter, joint, guide_steps, given_joint,
                argname="start" if start is not None else "guide")
            if isinstance(proposal, PriorProposal):
                proposal = None
            est = ais_mi(
                adapter,
                joint,
                start=proposal,
                num_particles=num_particles,
                num_steps=num_steps,
                schedule=schedule,
                num_leapfrog=num_leapfrog,
                target_accept=target_accept,
                max_batch=max_batch,
                progress=progress,
                hook=hook,
                kernel=kernel,
            )
        else:
            proposal = _resolve_proposal(guide, adapter, joint, guide_steps, given_joint)
            if bound == "ba" and isinstance(proposal, PriorProposal):
                _warn(
                    "bound='ba' with the prior as proposal is identically 0; pass a trained "
                    "guide= (e.g. pyromi.AmortizedNormal), or leave guide=None to train one.",
                )
            est = importance_mi(
                adapter,
                proposal,
                joint,
                bound=bound,
                num_particles=num_particles,
                max_batch=max_batch,
                progress=progress,
            )
    est.settings.update(seed=seed, guide_steps=guide_steps if isinstance(guide, type) else None,
                        max_memory=DEFAULT_MAX_MEMORY if max_memory is None else max_memory,
                        pairs_per_pass=max_batch)
    est = record_model_layout(est, adapter)
    return _reparam_result(reparam_info, est)


def _nested(model, observed, target, given, nuisance, *, bound, num_samples, num_particles, num_steps,
            schedule, num_leapfrog, target_accept, max_batch, max_memory, model_args, model_kwargs,
            device, dtype, seed, progress, data_plate, vectorize, unsupported) -> MIEstimate:
    """I(x; z | c) with nuisance latents marginalised (:mod:`pyromi.estimators.nuisance`)."""
    from .estimators.nuisance import depends_on, nuisance_ais_mi

    used = [k + "=" for k, v in unsupported.items() if v is not None]
    if used:
        raise ValueError(
            f"{', '.join(used)} cannot be combined with nuisance or given= sites yet (here nuisance "
            f"{nuisance}, given {given}): the nested bounds anneal from the prior. Drop them, or list "
            "every latent in latent=."
        )
    common = dict(model_args=model_args, model_kwargs=model_kwargs, device=device, dtype=dtype,
                  data_plate=data_plate, vectorize=vectorize)
    observed = [observed] if isinstance(observed, str) else list(observed)
    full = ModelAdapter(model, observed + given, target + nuisance, context=given, **common)
    conditional = ModelAdapter(model, observed + given + target, nuisance, context=given + target,
                               **common) if nuisance else None
    pairs = pairs_per_pass(full, max_batch, max_memory)
    with seeded(seed, full.device), memory_guard(f"bound={bound!r}"):
        with torch.no_grad():
            joint = full.sample_joint(num_samples)
        marginal = None
        if nuisance and depends_on(full, joint, target, nuisance):
            # a nuisance upstream of the target: log p(z*) gets its own sandwich, over the nuisance
            # in the model with the observations hidden (x is summed out by simulation)
            from pyro import poutine

            marginal = ModelAdapter(poutine.block(model, hide=list(observed)), given + target, nuisance,
                                    context=given + target, **common)
        est = nuisance_ais_mi(
            full, conditional, joint, marginal=marginal, target=target, given=given, nuisance=nuisance, bound=bound,
            num_particles=num_particles, num_steps=num_steps if bound == "ais" else 1,
            schedule=schedule if bound == "ais" else "linear", num_leapfrog=num_leapfrog,
            target_accept=target_accept, max_batch=pairs, progress=progress)
    est.settings.update(seed=seed, pairs_per_pass=pairs)
    return record_model_layout(est, full)


def check_rows_balanced(adapter: ModelAdapter, num_samples: int) -> None:
    """Under a data plate with covariates, sample i uses data point ``i mod B``: warn when N is not
    a multiple of B (some data points then count once more than others in the average)."""
    plate = adapter.data_plate
    share = distributed.current_shard()
    if share is not None:  # a rank's share: the balance of the whole run is what counts
        num_samples = share[1]
    if plate is None or not plate.covariates() or num_samples % plate.size == 0:
        return
    _warn(
        f"num_samples={num_samples} is not a multiple of the {plate.size} data points of plate "
        f"'{plate.name}': sample i uses data point i mod {plate.size}, so the first "
        f"{num_samples % plate.size} data points count once more than the others in the "
        f"per-data-point average. Pass num_samples as a multiple of {plate.size} (e.g. "
        f"{plate.size * max(1, round(num_samples / plate.size))}) to weight them equally."
    )


def record_model_layout(est: MIEstimate, adapter: ModelAdapter) -> MIEstimate:
    """Record in ``est.settings`` how the model was run: ``data_plate`` (the plate whose elements
    were the samples: the bounds are per data point) and ``evaluation`` (batched or sequential);
    with enumerated discrete latents k, ``enumerated`` and the result's ``latent`` name them too
    (the bounds are on I(x; {k, z}))."""
    import dataclasses

    est.settings.update(
        data_plate=None if adapter.data_plate is None else adapter.data_plate.name,
        evaluation="sequential" if adapter.sequential else "batched",
    )
    if adapter.discrete_names:
        est.settings["enumerated"] = list(adapter.discrete_names)
        names = tuple(dict.fromkeys(tuple(est.latent) + tuple(adapter.discrete_names)))
        est = dataclasses.replace(est, latent=names)
    return est


def _reparam_model(reparam, model, observed, latent, model_args, model_kwargs, *, guide=None,
                   start=None, joint=None):
    """``reparam=``: None, or ``"auto"`` (:func:`pyromi.model.reparam.auto_reparam`). Returns the
    model and latent names to use, and the :class:`ReparamInfo` (None for ``reparam=None``)."""
    from .model.reparam import REPARAM_OPTIONS, auto_reparam

    if not (reparam is None or (isinstance(reparam, str) and reparam in REPARAM_OPTIONS)):
        raise ValueError(f"reparam= must be None or 'auto', got {reparam!r}")
    if reparam is None:
        return model, latent, None
    new_model, info = auto_reparam(model, observed, latent, model_args, model_kwargs)
    if not info.renamed:
        return model, latent, info
    what = ", ".join(f"'{a}' -> '{b}'" for a, b in info.renamed.items())
    if joint is not None and set(getattr(joint, "latent", {})) != set(info.latent):
        raise SiteError(
            f"reparam='auto' replaces latent site(s) {what}, but joint= holds draws of the sites "
            f"{sorted(getattr(joint, 'latent', {}))}. Draw the joint samples from the "
            "reparameterised model (ModelAdapter(pyromi.model.reparam.auto_reparam(model, ...)[0], "
            "...).sample_joint(N)), or pass reparam=None."
        )
    for argname, g in (("guide", guide), ("start", start)):
        if g is not None and not isinstance(g, type):
            raise GuideError(
                f"reparam='auto' replaces latent site(s) {what}; {argname}= proposes the original "
                "sites and cannot score the new ones. Build it on the reparameterised model "
                "(pyromi.model.reparam.auto_reparam(model, ...)[0]), pass an autoguide class "
                f"(e.g. {argname}=AutoNormal), or pass reparam=None."
            )
    return new_model, info.latent, info


def _reparam_result(info, est):
    """Record ``reparam=`` in ``est.settings``; name the original latent sites in the result
    (I(x; mu, tau, theta) = I(x; mu, tau, theta_decentered): the map is a bijection of z)."""
    import dataclasses

    est.settings["reparam"] = None if info is None else info.summary()
    if info is None or not info.renamed:
        return est
    back = {b: a for a, b in info.renamed.items()}
    return dataclasses.replace(est, latent=tuple(back.get(n, n) for n in est.latent))


KNOWN_MARGINAL = ("giwae", "infonce", "mine_dv", "mine_f", "mine_ais")

_TRAINED = frozenset({"ba", "giwae", "infonce", "mine_dv", "mine_f", "mine_ais"})
#: keyword -> (its default, the bounds that use it); any other bound refuses a non-default value
_BOUND_OPTIONS = {
    "num_steps": (1000, {"ais", "mine_ais"}),
    "schedule": ("adaptive", {"ais", "mine_ais"}),
    "start": (None, {"ais"}),
    "num_leapfrog": (10, {"ais", "mine_ais"}),
    "target_accept": (0.65, {"ais"}),
    "kernel": (None, {"ais"}),
    "hook": (None, {"ais"}),
    "guide": (None, {"iwae", "ais", "ba", "giwae"}),
    "critic": (None, _TRAINED - {"ba"}),
    "train_steps": (2000, _TRAINED),
    "optim": (None, _TRAINED),
    "batch_size": (256, _TRAINED),
    "joint": (None, set(BOUNDS) - {"mist"}),
    "guide_steps": (1000, {"iwae", "ais", "ba"}),
    "level": (0.9, {"mist"}),
    "given": (None, {"ais", "iwae"}),
    "weights": (None, {"mist"}),
    "calibration": (None, {"mist"}),
    "num_particles": (None, set(BOUNDS) - {"mist"}),
    "max_batch": (None, {"iwae", "ais", "mine_ais"}),
    "max_memory": (None, {"iwae", "ais"}),
    # a bijection of z for the samplers and proposals; MIST only sees samples, never the geometry
    "reparam": (None, set(BOUNDS) - {"mist"}),
    "data_plate": (None, set(BOUNDS)),
    "vectorize": ("auto", set(BOUNDS)),
}


def _check_options(bound: str, given: dict) -> None:
    """Refuse keywords that ``bound`` would silently ignore (a ``ValueError`` naming them)."""
    misapplied = []
    for name, value in given.items():
        default, users = _BOUND_OPTIONS[name]
        if bound in users:
            continue
        same = value is default if default is None or not isinstance(value, (int, float, str)) \
            else (type(value) is type(default) and value == default)
        if not same:
            misapplied.append((name, sorted(users)))
    if misapplied:
        parts = "; ".join(f"{n}= is used by bound={', '.join(map(repr, u))}" for n, u in misapplied)
        raise ValueError(
            f"bound={bound!r} does not use {', '.join(n + '=' for n, _ in misapplied)}: {parts}. "
            "Remove the keyword, or choose a bound that uses it."
        )


def _known_marginal(model, observed, latent, *, bound, guide, critic, train_steps, optim,
                    batch_size, num_samples, num_particles, num_steps, schedule, num_leapfrog,
                    joint, model_args, model_kwargs, device, dtype, seed, progress,
                    max_batch, data_plate=None, vectorize="auto") -> MIEstimate:
    """Train the critic (and proposal) on fresh simulated pairs, evaluate on N fresh pairs."""
    from .estimators.known_marginal import GIWAE, MINE, MINEAIS

    if not isinstance(train_steps, int) or isinstance(train_steps, bool) or train_steps < 0:
        raise ValueError(f"train_steps must be an int >= 0, got {train_steps!r}")
    # the trainer's own stream: the seed's (None: one draw of the global RNG); with a given joint
    # batch a derived one, so that no training batch replays a batch drawn with the same seed
    train_seed = seed if (joint is None or seed is None) else derived_seed(seed, "train")
    kw = dict(critic=critic, optim=optim, batch_size=batch_size, model_args=model_args,
              model_kwargs=model_kwargs, device=device, dtype=dtype, seed=train_seed)
    if data_plate is not None or vectorize != "auto":
        kw.update(data_plate=data_plate, vectorize=vectorize)
    k = num_particles
    # a given joint batch is evaluated with the derived stream (see mutual_information); training
    # keeps the seed's own stream, and fresh evaluation pairs continue it after training
    eval_seed = seed if joint is not None else None
    ctx = distributed.current()
    if ctx is not None and joint is None and seed is not None:
        # the sharded evaluation's streams derive from a seed of the call's own, so that the
        # recorded seed reproduces the run (one process continues the trainer's stream instead)
        eval_seed = derived_seed(seed, "evaluation")

    def build():
        if bound == "ba":  # GIWAE with T = 0: train q(z|x) by maximising E log q(z*|x)
            kw.pop("critic")
            return GIWAE(model, observed, latent, critic=False, proposal="amortized", num_particles=1, **kw)
        if bound in ("giwae", "infonce"):
            proposal = "prior" if bound == "infonce" else (guide if guide is not None else "amortized")
            return GIWAE(model, observed, latent, proposal=proposal, num_particles=k, **kw)
        if bound in ("mine_dv", "mine_f"):
            return MINE(model, observed, latent, variant=bound[5:], **kw)
        return MINEAIS(model, observed, latent, **kw)

    if ctx is not None and ctx.rank != 0:
        progress = False  # one bar (rank 0's) per job
    with seeded(seed):
        if bound == "ba":
            k = 1
        # under torch.distributed a rank whose model fails while being probed stops every rank
        trainer = build() if ctx is None else distributed.checked(build, ctx)
        if joint is not None:
            _check_joint(joint, trainer.adapter)
        trainer.run(train_steps, progress=progress)
        if joint is None:
            check_rows_balanced(trainer.adapter, num_samples)
        if bound == "mine_ais":
            est = trainer.evaluate(num_samples, k, num_steps, schedule=schedule,
                                   num_leapfrog=num_leapfrog, joint=joint, progress=progress,
                                   max_batch=max_batch, seed=eval_seed)
        else:
            est = trainer.evaluate(num_samples, k, joint=joint, seed=eval_seed)
    est.settings["seed"] = seed
    return record_model_layout(est, trainer.adapter)


def _mist(model, observed, latent, *, num_samples, level, weights, calibration, model_args, model_kwargs, device,
          dtype, seed, data_plate=None, vectorize="auto") -> MIEstimate:
    """MIST on N joint draws of the model: no density is evaluated, not even p(z).

    The observed sites are flattened and concatenated into x ``(N, dx)``, the latent sites into
    z ``(N, dz)``; the estimate is MIST's median and ``level`` interval of I(x; z), in nats.
    """
    from . import mist

    weights = mist._resolve(weights, "weights")
    weights.rule(calibration)  # a bad calibration= fails before the model runs
    ctx = distributed.current()
    draw_seed, share, first = seed, num_samples, 0
    if ctx is not None:  # each rank simulates its share; every rank reads the gathered sample
        if num_samples < ctx.world_size:
            raise PyromiError(f"num_samples={num_samples} over {ctx.world_size} ranks: pass num_samples >= "
                              f"{ctx.world_size} (the world size), one sample per rank at least.")
        run_seed = distributed.base_seed(seed, ctx)
        lo, hi = distributed.shares(num_samples, ctx.world_size)[ctx.rank]
        draw_seed, share, first = distributed.rank_seed(run_seed, ctx), hi - lo, lo
        device = distributed.check_device(device, ctx)
    def simulate():
        adapter = ModelAdapter(model, observed, latent, model_args=model_args,
                               model_kwargs=model_kwargs, device=device, dtype=dtype, densities=False,
                               data_plate=data_plate, vectorize=vectorize)
        with seeded(draw_seed, adapter.device), torch.no_grad(), pyro.validation_enabled(False), \
                distributed.shard(first, num_samples):
            joint = adapter.sample_joint(share)
        n = joint.num_samples
        x = torch.cat([joint.observed[k].reshape(n, -1) for k in adapter.observed_names], -1)
        z = torch.cat([joint.latent[k].reshape(n, -1) for k in adapter.latent_names], -1)
        return x.double().cpu(), z.double().cpu(), adapter

    if ctx is None:
        x, z, adapter = simulate()
    else:  # every rank builds and simulates inside the guard: a failure anywhere stops all ranks
        parts = distributed.run_everywhere(lambda: simulate()[:2], ctx)
        x, z = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        adapter = ModelAdapter(model, observed, latent, model_args=model_args, model_kwargs=model_kwargs,
                               device=device, dtype=dtype, densities=False, data_plate=data_plate,
                               vectorize=vectorize)
    est = mist.estimate(x, z, level=level, seed=seed,
                        model=weights, calibration=calibration,
                        observed=tuple(adapter.observed_names), latent=tuple(adapter.latent_names))
    est.settings.update(seed=seed, source="pyro model", device=str(adapter.device))
    if ctx is not None:  # the slowest rank's time, so that every rank returns the same record
        est.diagnostics["milliseconds"] = max(distributed.gather(est.diagnostics["milliseconds"], ctx))
        est.settings["distributed"] = {
            "world_size": ctx.world_size, "backend": ctx.backend, "seed": run_seed,
            "samples_per_rank": [b - a for a, b in distributed.shares(num_samples, ctx.world_size)]}
    return record_model_layout(est, adapter)


def _check_joint(joint: JointSamples, adapter: ModelAdapter) -> None:
    if not isinstance(joint, JointSamples):
        raise PyromiError(f"joint= must be JointSamples from ModelAdapter.sample_joint, got {type(joint).__name__}")
    sites_observed = {k: v for k, v in joint.observed.items() if not k.startswith(ROW_PREFIX)}
    if set(sites_observed) != set(adapter.observed_names) or set(joint.latent) != set(adapter.latent_names):
        raise PyromiError(
            f"joint= holds sites observed={list(sites_observed)}, latent={list(joint.latent)} but the "
            f"estimate uses observed={adapter.observed_names}, latent={adapter.latent_names}."
        )
    for name, v in {**sites_observed, **joint.latent}.items():
        expected = adapter.sites[name].local_shape
        if v.shape[1:] != expected or v.shape[0] != joint.num_samples:
            raise PyromiError(
                f"joint= site '{name}' has shape {tuple(v.shape)}, expected (N,) + {tuple(expected)}"
            )
        if v.device != adapter.device and adapter.device.type != v.device.type:
            raise PyromiError(f"joint= site '{name}' is on {v.device}, the model on {adapter.device}")
    if joint.num_samples < 1:
        raise PyromiError("joint= holds no samples (N = 0); draw at least one with sample_joint(N)")
    values = {**joint.observed, **joint.latent, "log_prior": joint.log_prior,
              "log_likelihood": joint.log_likelihood}
    for name, v in values.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v.reshape(v.shape[0], -1))).any(-1).sum())
            raise DensityError(
                f"joint= entry '{name}' is NaN or infinite in {bad} of {joint.num_samples} samples; "
                "pass joint draws from ModelAdapter.sample_joint (which checks them), or remove "
                "those rows."
            )


@entry_point
def log_marginal(
    model: Callable,
    observed: str | Sequence[str],
    data,
    latent: str | Sequence[str] | None = None,
    *,
    latent_values=None,
    start=None,
    num_particles: int = 16,
    num_steps: int = 1000,
    schedule="adaptive",
    num_leapfrog: int = 10,
    target_accept: float = 0.65,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool = True,
    reparam: str | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> LogMarginalEstimate:
    """AIS bounds on ``log p(x_i)`` (nats) for given observations ``data``.

    Args:
        data: the observed values: a tensor ``(N,) + site shape`` for one observed site (a single
            observation without the leading N is accepted), or a dict of them. For a model that
            takes its data as an argument (``model(x)`` with ``obs=x`` inside
            ``pyro.plate("data", x.shape[0])``, as Pyro's VAE example) and no ``model_args``, the
            tensor ``data`` is that argument, and the bounds are on each data point's
            ``log p(x_i)``.
        data_plate, vectorize: as in :func:`mutual_information`.
        latent_values: optional exact posterior samples z* for each x (a tensor or dict), e.g. the
            latents that simulated x. Only then is an upper bound on log p(x) available.
        start: pi_0, the prior (None) or a proposal q(z|x) such as a trained AmortizedNormal.
        reparam: ``"auto"``: anneal in the non-centred form of the funnel sites (as in
            :func:`mutual_information`; p(x) is unchanged). ``latent_values`` stay keyed by the
            original site names and are mapped to the new sites.
        Other arguments as in :func:`mutual_information` with ``bound="ais"``.
    """
    check_seed(seed)
    ctx = distributed.current()
    if ctx is not None:
        distributed.check_same_call("log_marginal", dict(
            model=model, observed=observed, data=data, latent=latent, latent_values=latent_values,
            start=start, num_particles=num_particles, num_steps=num_steps, schedule=schedule,
            num_leapfrog=num_leapfrog, target_accept=target_accept, model_args=model_args,
            model_kwargs=model_kwargs, seed=seed, reparam=reparam, data_plate=data_plate), ctx)
        device = distributed.check_device(device, ctx)
        progress = progress and ctx.rank == 0  # one bar (rank 0's) per job
    return _log_marginal(model, observed, data, latent, latent_values=latent_values, start=start,
                         num_particles=num_particles, num_steps=num_steps, schedule=schedule,
                         num_leapfrog=num_leapfrog, target_accept=target_accept, model_args=model_args,
                         model_kwargs=model_kwargs, device=device, dtype=dtype, seed=seed,
                         progress=progress, reparam=reparam, data_plate=data_plate, vectorize=vectorize,
                         ctx=ctx)


def _log_marginal_setup(model, observed, data, latent, *, latent_values, start, model_args, model_kwargs,
                        device, dtype, reparam, data_plate, vectorize):
    """The adapter and the observations (and exact latents) of :func:`log_marginal`, validated."""
    data_argument = (isinstance(data, torch.Tensor) and not model_args and latent_values is None
                     and takes_data(model))
    if data_argument:  # model(x) with obs=x (Pyro's VAE example): the data are its argument
        model_args = (check_data_argument(data),)
    original_model = model
    model, latent, reparam_info = _reparam_model(reparam, model, observed, latent, model_args,
                                                 model_kwargs, start=start)
    if reparam_info is not None and reparam_info.renamed and latent_values is not None:
        latent_values = _reparam_values(original_model, reparam_info, latent_values, model_args,
                                        model_kwargs)
    with warnings.catch_warnings():
        if data_argument:
            warnings.filterwarnings("ignore", message=OBS_WARNING)
        adapter = ModelAdapter(
            model, observed, latent, model_args=model_args, model_kwargs=model_kwargs, device=device,
            dtype=dtype, data_plate=data_plate, vectorize=vectorize,
        )
    if data_argument:
        obs = data_argument_observations(adapter)
    else:
        obs = _as_site_dict(data, adapter.observed_names, adapter, "data")
    lat = None
    if latent_values is not None:
        lat = _as_site_dict(latent_values, adapter.latent_names, adapter, "latent_values")
        n_obs, n_lat = next(iter(obs.values())).shape[0], next(iter(lat.values())).shape[0]
        if n_obs != n_lat:
            raise PyromiError(f"data has {n_obs} observations but latent_values has {n_lat}")
    if isinstance(start, type):
        raise GuideError(
            "log_marginal(start=...) needs a proposal object (a trained pyromi.AmortizedNormal or an "
            "amortised guide callable), not a class: there is no batch to fit an autoguide on."
        )
    return adapter, obs, lat, reparam_info


def _log_marginal(model, observed, data, latent, *, latent_values, start, num_particles, num_steps,
                  schedule, num_leapfrog, target_accept, model_args, model_kwargs, device, dtype, seed,
                  progress, reparam, data_plate, vectorize, ctx) -> LogMarginalEstimate:
    """:func:`log_marginal` after its arguments are checked (``ctx``: the process group, if any).
    The set-up has no collective, and under a process group a failure in it on any rank stops
    every rank before the first one."""
    def prepare():
        return _log_marginal_setup(model, observed, data, latent, latent_values=latent_values, start=start,
                                   model_args=model_args, model_kwargs=model_kwargs, device=device,
                                   dtype=dtype, reparam=reparam, data_plate=data_plate, vectorize=vectorize)

    adapter, obs, lat, reparam_info = prepare() if ctx is None else distributed.checked(prepare, ctx)
    if ctx is not None:  # each rank bounds its share of the observations (rows), then all gather
        n_rows = next(iter(obs.values())).shape[0]
        if n_rows < ctx.world_size:
            raise PyromiError(f"log_marginal: {n_rows} observation(s) over {ctx.world_size} ranks; pass at "
                              f"least {ctx.world_size} (one per rank), or run it in one process.")
        run_seed = distributed.base_seed(seed, ctx)
        lo, hi = distributed.shares(n_rows, ctx.world_size)[ctx.rank]
        obs = {k: v[lo:hi] for k, v in obs.items()}
        lat = None if lat is None else {k: v[lo:hi] for k, v in lat.items()}
        seed = distributed.rank_seed(run_seed, ctx)

    def compute():
        with seeded(seed, adapter.device):
            proposal = None if start is None else _resolve_proposal(start, adapter, None, 0)
            if isinstance(proposal, PriorProposal):
                proposal = None
            from .estimators.ais import _check_args

            _check_args(num_particles, num_steps, num_leapfrog, schedule, target_accept)
            res, tables = ais_block(
                adapter, obs, lat, proposal, num_steps, schedule, num_particles=num_particles,
                num_leapfrog=num_leapfrog, target_accept=target_accept,
                pilot_steps=default_pilot_steps(num_steps),
                pilot_chains=max(num_particles, 16), progress=progress,
            )
        from .ops import logmeanexp

        lower = logmeanexp(res.log_weights, 0)
        upper = None
        if res.log_weight_backward is not None:
            lw = torch.cat([res.log_weight_backward.unsqueeze(0), res.log_weights[: num_particles - 1]])
            upper = logmeanexp(lw, 0)
        for side, t in (("lower", lower), ("upper", upper)):
            if t is not None and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise DensityError(
                    f"log_marginal: the {side} bound on log p(x) is not finite for {bad} of {t.numel()} "
                    "observations: every chain ended where p(x | z) = 0 (or a log-weight was NaN). Start "
                    "from a proposal that covers the posterior (start=AmortizedNormal(...)) or use more "
                    "chains (num_particles=)."
                )
        diagnostics = {
            "log_weights": res.log_weights,
            "acceptance": res.acceptance,
            "step_size": tables.step_size,
            "betas": tables.betas,
            "divergences": int(res.divergences.sum()),
            "divergence_fraction": divergence_fraction(
                int(res.divergences.sum()), num_particles + (lat is not None), lower.numel(), num_steps),
            "reparam": None if reparam_info is None else reparam_info.summary(),
        }
        return lower, upper, diagnostics

    if ctx is None:
        lower, upper, diagnostics = compute()
    else:
        with distributed.local():
            parts = distributed.run_everywhere(compute, ctx)
        sizes = [p[0].numel() for p in parts]
        lower = torch.cat([p[0] for p in parts])
        upper = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        diagnostics, per_rank = {}, []
        for k in parts[0][2]:
            diagnostics[k] = distributed.merge_values(k, [p[2][k] for p in parts], sizes, diagnostics, per_rank)
        diagnostics["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend, "seed": run_seed,
                                      "samples_per_rank": sizes, "per_rank_keys": per_rank}
    divergence_advice("log_marginal", adapter, diagnostics)
    return LogMarginalEstimate(lower, upper, num_particles, num_steps, diagnostics)


def _reparam_values(model, info, values, model_args, model_kwargs) -> dict:
    """``latent_values=`` of the original sites, mapped to the sites of the reparameterised model."""
    from .model.reparam import to_reparam_values

    if not isinstance(values, dict):
        raise PyromiError(
            "with reparam='auto', latent_values= must be a dict keyed by the original latent site "
            f"names ({', '.join(repr(n) for n in info.renamed)} are reparameterised)"
        )
    missing = [n for n in info.renamed if n not in values]
    if missing:
        raise PyromiError(f"latent_values= lacks site(s) {missing}")
    tensors = {k: torch.as_tensor(v) for k, v in values.items()}
    return to_reparam_values(model, info, tensors, model_args, model_kwargs)


def check_finite_rows(values: dict, argname: str) -> None:
    """A :class:`DensityError` naming the site and rows where ``values[name]`` ``(N, ...)`` is NaN
    or infinite: a log density at a non-finite observation is meaningless."""
    for name, v in values.items():
        if v.is_floating_point():
            bad = ~torch.isfinite(v.reshape(v.shape[0], -1)).all(-1)
            if bool(bad.any()):
                rows = bad.nonzero().flatten()[:5].tolist()
                raise DensityError(
                    f"{argname}= site '{name}' has NaN or infinite values in {int(bad.sum())} of "
                    f"{v.shape[0]} rows (first rows {rows}); remove or impute them: a log density "
                    "at a non-finite observation is meaningless."
                )


def takes_data(model: Callable) -> bool:
    """True if ``model`` has a required positional parameter (``model(x)``)."""
    import inspect

    try:
        params = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in params)


def check_data_argument(data) -> torch.Tensor:
    """``data=`` passed as the model's argument: a non-empty tensor (a ``TypeError`` or a
    :class:`PyromiError` naming ``data=`` otherwise)."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(
            f"data= is passed as the model's argument (model(x)); it must be a tensor, got "
            f"{type(data).__name__}."
        )
    if data.dim() == 0 or data.shape[0] == 0:
        raise PyromiError(
            f"data= holds no data points (shape {tuple(data.shape)}); pass at least one row."
        )
    return data


def data_argument_observations(adapter: ModelAdapter) -> dict:
    """The observations of a model run on its data argument (its own ``obs=`` values), checked."""
    obs = adapter.data_observations()
    check_finite_rows(obs, "data")
    return obs


def _as_site_dict(values, names: list[str], adapter: ModelAdapter, argname: str) -> dict:
    if isinstance(values, dict):
        missing = [n for n in names if n not in values]
        if missing:
            raise PyromiError(f"{argname}= lacks site(s) {missing}")
        values = {n: values[n] for n in names}
    else:
        if len(names) != 1:
            raise PyromiError(f"{argname}= must be a dict keyed by site name for sites {names}")
        values = {names[0]: values}
    out = {}
    for name, v in values.items():
        try:
            v = torch.as_tensor(v, device=adapter.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"{argname}= site '{name}': cannot make a numeric tensor of {type(v).__name__} ({e})"
            ) from None
        if v.dtype == torch.bool or v.is_complex():
            raise TypeError(f"{argname}= site '{name}' has dtype {v.dtype}; pass real numbers")
        if v.is_floating_point():
            v = v.to(adapter.dtype) if name in adapter.latent_names else v
        local = adapter.sites[name].local_shape
        if v.shape == local or (v.dim() == len(local) and v.shape == local):
            v = v.unsqueeze(0)
        if v.shape[1:] != local:
            raise PyromiError(
                f"{argname}= site '{name}' has shape {tuple(v.shape)}; expected (N,) + {tuple(local)}"
            )
        if v.shape[0] == 0:
            raise PyromiError(
                f"{argname}= site '{name}' holds no rows (shape {tuple(v.shape)}); pass at least one "
                "observation."
            )
        out[name] = v
    check_finite_rows(out, argname)
    n = {k: t.shape[0] for k, t in out.items()}
    if len(set(n.values())) > 1:
        raise PyromiError(f"{argname}= sites hold different numbers of rows: {n}")
    return out
