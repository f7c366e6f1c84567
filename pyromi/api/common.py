"""What every method of the user API shares: the model specification, argument checks, the
proposal resolution, memory guards and the record of how the model was run."""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from pyro.infer.autoguide import AutoGuide

from .._state import warn as _warn
from .. import distributed
from ..errors import DensityError, GuideError, PyromiError, ResourceError, SiteError
from ..model import JointSamples, ModelAdapter, out_of_memory_error
from ..model import is_out_of_memory as _is_out_of_memory
from ..model.data import ROW_PREFIX
from ..proposals.base import PriorProposal, Proposal
from ..proposals.guide import GuideProposal, fit_autoguide
from ..result import MIEstimate

#: default memory budget of one model pass, in bytes (``max_memory=``)
DEFAULT_MAX_MEMORY = 2**29


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A Pyro model and how to run it: the sites, its arguments, where and in which dtype, its data
    plate and evaluation mode. Every method takes these; each builds the adapter it needs with
    :meth:`adapter`."""

    model: Callable
    observed: str | Sequence[str]
    latent: str | Sequence[str] | None = None
    model_args: tuple = ()
    model_kwargs: dict | None = None
    device: torch.device | str | None = None
    dtype: torch.dtype | None = None
    data_plate: str | bool | None = None
    vectorize: bool | str = "auto"

    def adapter(self, **options: Any) -> ModelAdapter:
        """The :class:`ModelAdapter` of this model (``options``: ``likelihood=``, ``densities=``)."""
        return ModelAdapter(self.model, self.observed, self.latent, model_args=self.model_args,
                            model_kwargs=self.model_kwargs, device=self.device, dtype=self.dtype,
                            data_plate=self.data_plate, vectorize=self.vectorize, **options)

    def adapter_options(self) -> dict:
        """The keywords of :class:`ModelAdapter` and the trainers beyond model, observed, latent."""
        return dict(model_args=self.model_args, model_kwargs=self.model_kwargs, device=self.device,
                    dtype=self.dtype, data_plate=self.data_plate, vectorize=self.vectorize)


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


def resolve_proposal(guide, adapter: ModelAdapter, joint: JointSamples | None, guide_steps: int,
                     given_joint: bool = True, argname: str = "guide") -> Proposal:
    """The proposal q(z|x) that ``guide=`` (or ``start=``) names, bound to ``adapter``: the prior
    for None; an autoguide class is built on the evaluation batch and fitted for ``guide_steps``."""
    if guide is None:
        return PriorProposal()
    if isinstance(guide, Proposal):
        return guide.bind(adapter)
    if isinstance(guide, AutoGuide) and not given_joint:
        GuideProposal(guide)._check_sitewise(adapter, joint.num_samples)  # its own errors first
        raise GuideError(
            f"{argname}={type(guide).__name__}(...) is an autoguide instance: its parameters belong to "
            "the N observations it was built and fitted on, so it must be evaluated on those: pass "
            "joint= (the JointSamples behind adapter.conditioned_model(joint)). Or pass the class "
            f"({argname}=AutoNormal) and pyromi builds and fits one on the evaluation batch."
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
    est.settings.update(
        data_plate=None if adapter.data_plate is None else adapter.data_plate.name,
        evaluation="sequential" if adapter.sequential else "batched",
    )
    est.settings.setdefault("nuisance", [])
    est.settings.setdefault("given", [])
    if adapter.discrete_names:
        est.settings["enumerated"] = list(adapter.discrete_names)
        names = tuple(dict.fromkeys(tuple(est.latent) + tuple(adapter.discrete_names)))
        est = dataclasses.replace(est, latent=names)
    est.settings.setdefault("target", list(est.latent))
    return est


def reparam_model(reparam, spec: ModelSpec, *, guide=None, start=None, joint=None):
    """``reparam=``: None, or ``"auto"`` (:func:`pyromi.model.reparam.auto_reparam`). Returns the
    spec to use (the reparameterised model and its latent names) and the :class:`ReparamInfo`
    (None for ``reparam=None``)."""
    from ..model.reparam import REPARAM_OPTIONS, auto_reparam

    if not (reparam is None or (isinstance(reparam, str) and reparam in REPARAM_OPTIONS)):
        raise ValueError(f"reparam= must be None or 'auto', got {reparam!r}")
    if reparam is None:
        return spec, None
    new_model, info = auto_reparam(spec.model, spec.observed, spec.latent, spec.model_args, spec.model_kwargs)
    if not info.renamed:
        return spec, info
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
    return dataclasses.replace(spec, model=new_model, latent=info.latent), info


def reparam_result(info, est: MIEstimate) -> MIEstimate:
    """Record ``reparam=`` in ``est.settings``; name the original latent sites in the result
    (I(x; mu, tau, theta) = I(x; mu, tau, theta_decentered): the map is a bijection of z)."""
    est.settings["reparam"] = None if info is None else info.summary()
    if info is None or not info.renamed:
        return est
    back = {b: a for a, b in info.renamed.items()}
    return dataclasses.replace(est, latent=tuple(back.get(n, n) for n in est.latent))


def check_joint(joint: JointSamples, adapter: ModelAdapter) -> None:
    """``joint=``: JointSamples of the adapter's sites and shapes, finite, on its device."""
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
