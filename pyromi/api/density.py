"""The full-joint-density sandwiches: :func:`iwae_mi` and :func:`ais_mi` (and the density
evaluation behind :func:`~pyromi.api.trained.ba_mi` with a given proposal).

Both bound I(x; z) = E[log p(x | z) - log p(x)] on N joint draws (x_i, z_i*) ~ p(x, z): the lower
bound is E[log p(x|z*)] minus an upper bound on log p(x) (a chain or draw from the exact posterior
draw z* among K), the upper bound the same with a lower bound on log p(x) (K draws from the
proposal or K annealed chains). Sites neither observed, latent nor ``given`` are nuisance latents,
marginalised by nested bounds (:mod:`pyromi.estimators.nuisance`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._rng import check_seed, derived_seed, seeded
from .._state import entry_point
from .._state import warn as _warn
from .. import distributed
from ..errors import SiteError
from ..estimators.ais import ais_mi as _ais_estimate
from ..estimators.importance import importance_mi
from ..model import JointSamples, ModelAdapter
from ..proposals.base import PriorProposal
from ..result import MIEstimate
from .common import (DEFAULT_MAX_MEMORY, ModelSpec, check_int, check_joint, check_rows_balanced, memory_guard,
                     pairs_per_pass, record_model_layout, reparam_model, reparam_result, resolve_proposal)

__all__ = ["iwae_mi", "ais_mi"]


@entry_point
@distributed.sharded()
def iwae_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    given: str | Sequence[str] | None = None,
    guide=None,
    num_samples: int = 256,
    num_particles: int = 1000,
    guide_steps: int = 1000,
    joint: JointSamples | None = None,
    max_batch: int = 2**18,
    max_memory: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """IWAE sandwich on I(x; z) (nats) from a proposal q(z | x) and the full joint density.

    With K draws z_1..K ~ q(z | x_i) and w(z) = p(x_i, z) / q(z | x_i), per sample i:
    ``lower_i = log p(x_i, z_i*) - log((w(z_i*) + sum_{k<K} w(z_k)) / K)`` (z* is an exact posterior
    draw, so the log-mean-exp with it included is an upper bound on log p(x_i) in expectation) and
    ``upper_i = log p(x_i, z_i*) - log(sum_{k<=K} w(z_k) / K)``, both minus log p(z_i*) terms that
    cancel in log p(x_i | z_i*). The bounds are their means over the N draws.

    Args:
        guide: q(z | x): None for the prior p(z); a :class:`pyromi.AmortizedNormal` (trained with
            :func:`pyromi.fit_proposal`), an amortised guide callable
            ``guide(x, *model_args, **model_kwargs)``, an ``AutoNormal`` instance built on
            ``ModelAdapter.conditioned_model(joint)`` (pass ``joint=`` too), or the ``AutoNormal``
            class itself, which is built on the evaluation batch and fitted by SVI for
            ``guide_steps`` steps (the fit uses x only, so the bounds stay valid).
        num_particles: K proposal draws per sample (default 1000; None: the default).
        max_batch: most (particle, sample) pairs per model pass (default 2**18; None: the default).
        max_memory: the memory budget of one model pass in bytes (None: 2**29 = 512 MiB); the pairs
            per pass are lowered below ``max_batch`` so that the pass's estimated size fits. An
            allocator failure raises :class:`pyromi.ResourceError` saying what to lower.
        given: site(s) c for the conditional MI I(x; z | c); unlisted latent sites are nuisance
            latents (nested bounds at T = 1: :mod:`pyromi.estimators.nuisance`).

    The other arguments are as in :func:`pyromi.mutual_information`.

    Example:
        >>> import math, pyro, pyro.distributions as dist, pyromi
        >>> def model():
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(z, 0.5))
        >>> est = pyromi.iwae_mi(model, "x", num_samples=64, num_particles=100, seed=0)
        >>> est.lower <= 0.5 * math.log(5.0) + 4 * est.lower_se and est.lower <= math.log(100)
        True
    """
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)
    return _density_mi(spec, "iwae", given=given, guide=guide, num_samples=num_samples,
                       num_particles=num_particles, guide_steps=guide_steps, joint=joint, max_batch=max_batch,
                       max_memory=max_memory, seed=seed, progress=progress, reparam=reparam)


@entry_point
@distributed.sharded()
def ais_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    given: str | Sequence[str] | None = None,
    start=None,
    guide=None,
    num_samples: int = 256,
    num_particles: int = 16,
    num_steps: int = 1000,
    schedule="adaptive",
    num_leapfrog: int = 10,
    target_accept: float = 0.65,
    kernel=None,
    hook: Callable | None = None,
    guide_steps: int = 1000,
    joint: JointSamples | None = None,
    max_batch: int = 2**16,
    max_memory: int | None = None,
    seed: int | None = None,
    progress: bool | None = True,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """Multi-Sample AIS sandwich on I(x; z) (nats).

    K chains per sample anneal pi_beta(z) ∝ pi_0(z)^(1-beta) p(x_i, z)^beta over T transitions
    (vectorised HMC with pilot-tuned, frozen step sizes and diagonal masses); the lower bound uses
    one backward chain from the exact posterior draw z_i* plus K - 1 forward chains (an upper bound
    on log p(x_i) in expectation), the upper bound K forward chains (a lower bound on log p(x_i)).
    T = 1 is the IWAE sandwich with proposal pi_0.

    Args:
        start: pi_0: None for the prior p(z), or a proposal q(z | x) (default: ``guide``, any of
            the kinds :func:`iwae_mi` takes).
        num_particles: K chains per sample (default 16; None: the default).
        max_batch: most chain-sample pairs per block (default 2**16; None: the default).
        max_memory: the memory budget of one model pass in bytes, as in :func:`iwae_mi`.
        num_steps: T annealing transitions.
        schedule: betas: ``"adaptive"`` (placed from a pilot run: equal variance of the
            log-weight increments), ``"geometric"``, ``"sigmoid"``, ``"linear"``, or T + 1
            increasing betas from 0 to 1.
        num_leapfrog: HMC leapfrog steps per transition.
        target_accept: the acceptance rate the pilot tunes each level's step size towards.
        kernel: a Pyro ``HMC``/``NUTS`` object: its class is driven chain by chain with the same
            frozen tuned step sizes (hundreds of times slower; for cross-checks).
        hook: callback ``hook(t, info)`` after each temperature.
        given: site(s) c for the conditional MI I(x; z | c); unlisted latent sites are nuisance
            latents marginalised by nested Multi-Sample AIS (:mod:`pyromi.estimators.nuisance`).

    The other arguments are as in :func:`pyromi.mutual_information`.
    """
    if hook is not None and not callable(hook):
        raise TypeError(f"hook= must be a callable hook(t, info) or None, got {type(hook).__name__}")
    if kernel is not None:
        from pyro.infer.mcmc import HMC

        if not isinstance(kernel, HMC):
            raise ValueError(
                f"kernel= must be a pyro.infer.mcmc.HMC or NUTS object (its class, step size and "
                f"number of leapfrog steps are used), got {type(kernel).__name__}"
            )
    num_steps = check_int("num_steps", num_steps, 1)
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)
    annealing = dict(start=start, num_steps=num_steps, schedule=schedule, num_leapfrog=num_leapfrog,
                     target_accept=target_accept, kernel=kernel, hook=hook)
    return _density_mi(spec, "ais", given=given, guide=guide, num_samples=num_samples,
                       num_particles=num_particles, guide_steps=guide_steps, joint=joint, max_batch=max_batch,
                       max_memory=max_memory, seed=seed, progress=progress, reparam=reparam, annealing=annealing)


def _density_mi(spec: ModelSpec, bound: str, *, guide, num_samples, num_particles, guide_steps, joint,
                max_batch, max_memory, seed, progress, reparam, given=None, annealing=None) -> MIEstimate:
    """The sandwich ``bound`` (``"iwae"``, ``"ais"``; ``"ba"``: the lower side from q alone) on the
    N joint draws (fresh, or ``joint``)."""
    check_seed(seed)
    num_samples = check_int("num_samples", num_samples, 1)
    if num_particles is None:  # None: the method's default
        num_particles = {"iwae": 1000, "ais": 16}.get(bound, 1)
    if max_batch is None:
        max_batch = 2**16 if bound == "ais" else 2**18
    num_particles = check_int("num_particles", num_particles, 1)
    max_batch = check_int("max_batch", max_batch, 1)
    max_memory = check_int("max_memory", max_memory, 1, allow_none=True)
    start = None if annealing is None else annealing["start"]
    spec, reparam_info = reparam_model(reparam, spec, guide=guide, start=start, joint=joint)
    if spec.latent is not None or given is not None:
        from ..estimators.nuisance import site_roles

        target, given_names, nuisance = site_roles(
            spec.model, spec.observed, spec.latent, given, **spec.adapter_options())
        if nuisance or given_names:
            used = [k + "=" for k, v in dict(guide=guide, start=start, joint=joint, reparam=reparam,
                                             kernel=(annealing or {}).get("kernel"),
                                             hook=(annealing or {}).get("hook")).items() if v is not None]
            if used:
                raise ValueError(
                    f"{', '.join(used)} cannot be combined with nuisance or given= sites yet (here nuisance "
                    f"{nuisance}, given {given_names}): the nested bounds anneal from the prior. Drop "
                    f"{'them' if len(used) > 1 else 'it'}, or list every latent in latent=."
                )
            return reparam_result(reparam_info, _nested(
                spec, target, given_names, nuisance, bound=bound, num_samples=num_samples,
                num_particles=num_particles, max_batch=max_batch, max_memory=max_memory, seed=seed,
                progress=progress, annealing=annealing))
    adapter = spec.adapter(likelihood=bound != "ba")  # BA needs only p(z) and q(z|x)
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
            check_joint(joint, adapter)
        if not adapter.latent_names:  # only enumerated discrete latents: exact up to MC over x
            from ..estimators.exact import exact_mi

            if bound == "ba":
                raise SiteError(
                    f"bound='ba' needs a proposal q(z|x) over continuous latents; the model's latents "
                    f"{adapter.discrete_names} are all discrete and summed out exactly: use "
                    "bound='iwae' or 'ais', which then give I(x; k) exactly up to Monte Carlo over x."
                )
            est = exact_mi(adapter, joint, bound)
        elif bound == "ais":
            pi0 = start if start is not None else guide
            proposal = None if pi0 is None else resolve_proposal(
                pi0, adapter, joint, guide_steps, given_joint, argname="start" if start is not None else "guide")
            if isinstance(proposal, PriorProposal):
                proposal = None
            est = _ais_estimate(
                adapter, joint, start=proposal, num_particles=num_particles, num_steps=annealing["num_steps"],
                schedule=annealing["schedule"], num_leapfrog=annealing["num_leapfrog"],
                target_accept=annealing["target_accept"], max_batch=max_batch, progress=progress,
                hook=annealing["hook"], kernel=annealing["kernel"])
        else:
            proposal = resolve_proposal(guide, adapter, joint, guide_steps, given_joint)
            if bound == "ba" and isinstance(proposal, PriorProposal):
                _warn(
                    "bound='ba' with the prior as proposal is identically 0; pass a trained "
                    "guide= (e.g. pyromi.AmortizedNormal), or leave guide=None to train one.",
                )
            est = importance_mi(adapter, proposal, joint, bound=bound, num_particles=num_particles,
                                max_batch=max_batch, progress=progress)
    est.settings.update(seed=seed, guide_steps=guide_steps if isinstance(guide, type) else None,
                        max_memory=DEFAULT_MAX_MEMORY if max_memory is None else max_memory,
                        pairs_per_pass=max_batch)
    est = record_model_layout(est, adapter)
    return reparam_result(reparam_info, est)


def _nested(spec: ModelSpec, target, given, nuisance, *, bound, num_samples, num_particles, max_batch,
            max_memory, seed, progress, annealing) -> MIEstimate:
    """I(x; z | c) with nuisance latents marginalised (:mod:`pyromi.estimators.nuisance`); ``iwae``
    is the same construction at T = 1."""
    from ..estimators.nuisance import depends_on, nuisance_ais_mi

    common = spec.adapter_options()
    observed = [spec.observed] if isinstance(spec.observed, str) else list(spec.observed)
    full = ModelAdapter(spec.model, observed + given, target + nuisance, context=given, **common)
    conditional = ModelAdapter(spec.model, observed + given + target, nuisance, context=given + target,
                               **common) if nuisance else None
    pairs = pairs_per_pass(full, max_batch, max_memory)
    if annealing is None:  # IWAE: one transition from the prior
        annealing = dict(num_steps=1, schedule="linear", num_leapfrog=10, target_accept=0.65)
    with seeded(seed, full.device), memory_guard(f"bound={bound!r}"):
        with torch.no_grad():
            joint = full.sample_joint(num_samples)
        marginal = None
        if nuisance and depends_on(full, joint, target, nuisance):
            # a nuisance upstream of the target: log p(z*) gets its own sandwich, over the nuisance
            # in the model with the observations hidden (x is summed out by simulation)
            from pyro import poutine

            # with the full model's plate nesting: hiding x may hide the outermost plate's only site
            marginal = ModelAdapter(poutine.block(spec.model, hide=list(observed)), given + target, nuisance,
                                    context=given + target, max_plate_nesting=full._table.max_plate_nesting,
                                    **common)
        est = nuisance_ais_mi(
            full, conditional, joint, marginal=marginal, target=target, given=given, nuisance=nuisance,
            bound=bound, num_particles=num_particles, num_steps=annealing["num_steps"],
            schedule=annealing["schedule"], num_leapfrog=annealing["num_leapfrog"],
            target_accept=annealing["target_accept"], max_batch=pairs, progress=progress)
    est.settings.update(seed=seed, pairs_per_pass=pairs)
    return record_model_layout(est, full)
