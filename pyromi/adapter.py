"""Model adapter: a Pyro model callable seen as a joint density p(x, z) = p(z) p(x | z).

Every estimator in pyromi talks to the model only through :class:`ModelAdapter`. It

* inspects the model once and validates it (site names, discrete latents, ``obs_mask``, subsampling,
  ``pyro.factor``, vectorisation, devices and dtypes), raising errors that name the site and the fix;
* draws N joint samples ``(x_i, z_i*) ~ p(x, z)`` in one pass under an outer plate ``_pm_x``;
* evaluates ``log p(z)`` and ``log p(x | z)`` for every (particle, sample) pair in one pass under two
  outer plates, ``_pm_particles`` (size C, dim ``-2 - mpn``) and ``_pm_x`` (size N, dim ``-1 - mpn``),
  where ``mpn`` is the model's own maximum plate nesting; sites are split into prior and likelihood
  terms *by name*;
* provides an unconstrained parametrisation of all latent sites packed into one vector of length D
  per (particle, sample): ``z = T(u)`` with ``T = biject_to(support)`` applied *inside* the model pass,
  so latent-dependent supports (``Uniform(a, a + 1)`` with latent ``a``) get the right bijection.

Shapes. A site's *local shape* is its value's shape without the outer plates: the model's plate
dimensions (left-padded with 1 to ``mpn``) followed by the event shape. Joint samples of a site have
shape ``(N,) + local_shape``; particle values have shape ``(C, N) + local_shape``; per-pair log
densities have shape ``(C, N)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.distributions.util import scale_and_mask, sum_rightmost
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK
from pyro.poutine.util import site_is_factor, site_is_subsample

from . import transforms  # noqa: F401  (registers bijections for mixture supports)
from ._rng import seeded
from ._state import warn
from .errors import (
    DensityError,
    DeviceError,
    ModelError,
    PyromiError,
    ResourceError,
    SiteError,
    VectorizationError,
)

__all__ = ["ModelAdapter", "JointSamples", "ModelEvaluation", "SiteInfo"]

PARTICLE_PLATE = "_pm_particles"
_PLAIN_STAGE = "when run on its own (no pyromi plates)"
SAMPLE_PLATE = "_pm_x"
_PROBE_N = 3  # a prime that rarely coincides with a model's own dimension sizes


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


class JointSamples(NamedTuple):
    """N joint draws ``(x_i, z_i*) ~ p(x, z)`` with their log densities.

    ``observed[name]`` and ``latent[name]`` have shape ``(N,) + local_shape``; ``log_prior`` is
    ``log p(z_i*)`` and ``log_likelihood`` is ``log p(x_i | z_i*)``, both of shape ``(N,)``, in nats.
    """

    observed: dict[str, torch.Tensor]
    latent: dict[str, torch.Tensor]
    log_prior: torch.Tensor
    log_likelihood: torch.Tensor

    @property
    def num_samples(self) -> int:
        return self.log_prior.shape[0]


class ModelEvaluation(NamedTuple):
    """Log densities of C particles for each of N samples, each of shape ``(C, N)`` (nats).

    ``log_prior = log p(z)`` (None where it was not needed), ``log_likelihood = log p(x | z)``
    and, for evaluations in the unconstrained space, ``log_abs_det_jacobian = log |dT(u)/du|``
    (zeros otherwise).
    ``latent`` holds the constrained latent values, ``(C, N) + local_shape``.
    """

    latent: dict[str, torch.Tensor]
    log_prior: torch.Tensor | None
    log_likelihood: torch.Tensor
    log_abs_det_jacobian: torch.Tensor
    #: per-site log densities ``(C, N)`` of the scored sites (latent: ``log p(z_s | parents)``)
    site_log_probs: dict[str, torch.Tensor] | None = None
    #: per-site ``log|dT_s/du_s|`` ``(C, N)`` of the unconstrained latent sites (identity: absent)
    site_log_abs_det_jacobian: dict[str, torch.Tensor] | None = None


def _sum_trailing(t: torch.Tensor, lead: int) -> torch.Tensor:
    """Sum all dimensions after the first ``lead`` ones."""
    if t.dim() <= lead:
        return t
    return t.reshape(t.shape[:lead] + (-1,)).sum(-1)


def _as_names(names: str | Sequence[str] | None, argname: str) -> list[str] | None:
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


def _as_device(device) -> torch.device | None:
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise TypeError(f"device= must be a torch.device, a string such as 'cpu' or 'cuda:0', or None; got {device!r}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"device={device!r} is not a device torch knows; use 'cpu', 'cuda' or 'cuda:<index>' "
            "(or leave device=None to use the model's own device)."
        ) from None


def available_device(device) -> torch.device | None:
    """``device`` as a torch.device that this machine has (None stays None), or a
    :class:`DeviceError` saying what to pass instead."""
    dev = _as_device(device)
    if dev is not None and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device={dev} was requested but CUDA is not available on this machine; pass "
                "device='cpu' (or leave device=None)."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={dev} was requested but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); pass device='cuda:0' or device='cpu'."
            )
    return dev


_DTYPES = {"float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
           "double": torch.float64}


def _as_dtype(dtype) -> torch.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key in _DTYPES:
            return _DTYPES[key]
    elif isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    raise TypeError(
        f"dtype= must be a floating torch dtype (torch.float32, torch.float64) or its name "
        f"('float32', 'float64'), or None for the model's own dtype; got {dtype!r}."
    )


class _UnconditionSites(Messenger):
    """``poutine.uncondition`` restricted to the named sites: they are sampled from their
    distribution even where the model passes ``obs=``; every other conditioned site keeps its value."""

    def __init__(self, names):
        super().__init__()
        self.names = set(names)

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names and msg["is_observed"]:
            if msg["infer"].get("_deterministic"):
                return
            msg["is_observed"] = False
            msg["infer"]["was_observed"] = True
            msg["infer"]["obs"] = msg["value"]
            msg["value"] = None
            msg["done"] = False


def _is_identity(transform) -> bool:
    """True for the identity bijection of real supports (possibly wrapped in IndependentTransform)."""
    while isinstance(transform, torch.distributions.transforms.IndependentTransform):
        transform = transform.base_transform
    return transform is torch.distributions.transforms.identity_transform or (
        isinstance(transform, torch.distributions.transforms.ComposeTransform) and not transform.parts
    )


class _Evaluate(Messenger):
    """One model pass without building a trace: set site values, accumulate log densities.

    Observed sites take ``observed`` values; latent sites take constrained ``latent`` values, or
    ``T(u)`` for ``unconstrained`` values (``T = biject_to(support)`` chosen at run time, so
    latent-dependent supports are handled, with ``log|dT/du|`` accumulated), or are sampled by the
    model itself. Log densities are summed over the model's own dimensions to ``(C, N)``; with
    ``record_unconstrained`` the pass also records ``u = T^{-1}(z)`` and ``log|dT/du|`` at z.
    """

    def __init__(
        self,
        latent_names: Sequence[str],
        observed_names: Sequence[str],
        lead_shape: tuple[int, int],
        observed: dict[str, torch.Tensor],
        latent: dict[str, torch.Tensor] | None = None,
        unconstrained: dict[str, torch.Tensor] | None = None,
        record_unconstrained: bool = False,
        score_prior: bool = True,
        constant_names: Sequence[str] = (),
    ):
        super().__init__()
        self.constant_names = set(constant_names)
        self.batch_shapes: dict[str, torch.Size] = {}
        self.constant_log_probs: dict[str, torch.Tensor] = {}
        self.latent_names = set(latent_names)
        self.observed_names = set(observed_names)
        self.lead_shape = lead_shape
        self.observed = observed
        self.latent = latent or {}
        self.unconstrained_in = unconstrained or {}
        self.record = record_unconstrained
        self.score_prior = score_prior
        self.values: dict[str, torch.Tensor] = {}
        self.unconstrained: dict[str, torch.Tensor] = {}
        self.site_log_probs: dict[str, torch.Tensor] = {}
        self.site_ladj: dict[str, torch.Tensor] = {}
        self.log_abs_det_jacobian: torch.Tensor | float = 0.0

    def _add_ladj(self, name, transform, u, value, event_dim) -> None:
        if _is_identity(transform):
            return
        ladj = transform.log_abs_det_jacobian(u, value)
        ladj = _sum_trailing(sum_rightmost(ladj, ladj.dim() - (value.dim() - event_dim)), 2)
        self.site_ladj[name] = ladj
        self.log_abs_det_jacobian = self.log_abs_det_jacobian + ladj

    def _pyro_sample(self, msg) -> None:
        name = msg["name"]
        if name in self.observed:
            msg["value"] = self.observed[name]
            msg["is_observed"] = True
            msg["done"] = True
        elif name in self.unconstrained_in:
            fn = msg["fn"]
            transform = biject_to(fn.support)
            u = self.unconstrained_in[name]
            msg["value"] = transform(u)
            self._add_ladj(name, transform, u, msg["value"], fn.event_dim)
            msg["done"] = True
        elif name in self.latent:
            msg["value"] = self.latent[name]
            msg["done"] = True

    def _postprocess_message(self, msg) -> None:
        if msg["type"] != "sample":
            return
        name = msg["name"]
        if name in self.constant_names:
            lp = scale_and_mask(msg["fn"].log_prob(msg["value"]), msg["scale"], msg["mask"])
            self.constant_log_probs[name] = _sum_trailing(lp, 2).expand(self.lead_shape)
            return
        is_latent = name in self.latent_names
        if not is_latent and name not in self.observed_names:
            return
        fn, value = msg["fn"], msg["value"]
        self.batch_shapes[name] = fn.batch_shape
        if is_latent:
            self.values[name] = value
            if self.record:
                transform = biject_to(fn.support)
                u = transform.inv(value)
                self.unconstrained[name] = u
                self._add_ladj(name, transform, u, value, fn.event_dim)
            if not self.score_prior:
                return
        lp = scale_and_mask(fn.log_prob(value), msg["scale"], msg["mask"])
        self.site_log_probs[name] = _sum_trailing(lp, 2).expand(self.lead_shape)

    def log_densities(self, names: Sequence[str]) -> torch.Tensor:
        return sum(self.site_log_probs[n] for n in names)


class _LastSite(Messenger):
    """Remember the sample site being processed and the last one completed, to name them when a
    model fails part-way."""

    def __init__(self):
        super().__init__()
        self.last: str | None = None
        self.current: str | None = None

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample":
            self.current = msg["name"]

    def _postprocess_message(self, msg) -> None:
        if msg["type"] == "sample":
            self.last = msg["name"]

    def where(self) -> str:
        if self.current is not None and self.current != self.last:
            return f" at site '{self.current}'"
        if self.last is not None:
            return f" after site '{self.last}'"
        return " before its first sample site"


class ModelAdapter:
    """A validated view of a Pyro model as ``p(x, z) = p(z) p(x | z)``.

    Args:
        model: a Pyro model callable that samples every latent site and every observed site
            (observed sites are sampled generatively; an ``obs=`` in the model is ignored when
            drawing joint samples, via ``poutine.uncondition``).
        observed: name or names of the observed sites x.
        latent: names of the latent sites z. Default: every other non-deterministic sample site.
        model_args, model_kwargs: passed to the model on every call.
        device: where computations run. Default: the device of the model's sampled values.
        dtype: floating dtype of the latent values. Default: the model's.
        max_plate_nesting: the model's plate nesting; inferred from a trace when omitted.
        seed: seed of the probe pass (the validation run).
        likelihood: False for models whose observation density p(x|z) is unavailable or must not
            be used (implicit simulators, the known-marginal bounds): observed sites are then only
            sampled and conditioned, never scored, and ``log_likelihood`` is returned as zeros.
        densities: False for samples only (MIST): no site is ever scored (``log_prior`` and
            ``log_likelihood`` are zeros) and the checks that need densities are skipped; the
            site, shape, device and vectorisation-by-shape checks remain.
    """

    def __init__(
        self,
        model: Callable,
        observed: str | Sequence[str],
        latent: str | Sequence[str] | None = None,
        *,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        max_plate_nesting: int | None = None,
        seed: int | None = 0,
        likelihood: bool = True,
        densities: bool = True,
    ) -> None:
        if not callable(model):
            raise TypeError(f"model must be a callable Pyro model, got {type(model).__name__}")
        self.model = model
        if not isinstance(model_args, (tuple, list)):
            raise TypeError(
                f"model_args= must be a tuple of positional arguments for the model, got "
                f"{type(model_args).__name__}; e.g. model_args=(x_data,) for model(x_data)."
            )
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(
                f"model_kwargs= must be a dict of keyword arguments for the model, got "
                f"{type(model_kwargs).__name__}; e.g. model_kwargs={{'scale': 0.5}}."
            )
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        observed_names = _as_names(observed, "observed")
        if not observed_names:
            raise SiteError("observed= must name at least one observed sample site, e.g. observed='x'")
        latent_names = _as_names(latent, "latent")
        self.densities = densities
        self.likelihood = likelihood and densities
        self.requested_device = available_device(device)
        self.requested_dtype = _as_dtype(dtype)
        self._observed_request = observed_names
        with seeded(seed, self.requested_device):
            prototype = self._prototype_trace()
            self._prototype = prototype
            self._inspect(prototype, observed_names, latent_names, max_plate_nesting)
            self._probe()

    # ------------------------------------------------------------------ inspection and validation
    def _call_traced(self, fn: Callable, stage: str, validate: bool = True) -> poutine.Trace:
        """Trace ``fn`` with the model's arguments, translating failures into pyromi errors.

        ``validate=True`` turns on Pyro's argument and support checks (used for probes); hot
        paths pass False, since validation synchronises with the device.
        """
        last = _LastSite()
        with self._translate_errors(stage, last), pyro.validation_enabled(validate):
            return poutine.trace(last(fn)).get_trace(*self.model_args, **self.model_kwargs)

    @contextlib.contextmanager
    def _translate_errors(self, stage: str, last: "_LastSite | None" = None):
        """Turn exceptions raised by the model into errors that say what to change."""
        try:
            yield
        except PyromiError:
            raise
        except Exception as e:
            if _is_out_of_memory(e):
                raise out_of_memory_error(f"the model {stage}", e) from e
            where = "" if last is None else last.where()
            msg = str(e).split("\nTrace Shapes:")[0]  # drop Pyro's shape dump
            if isinstance(e, ValueError) and (
                "to satisfy the constraint" in msg or "to be within the support" in msg
            ):
                what = "invalid parameters" if "to satisfy the constraint" in msg else "a value outside its support"
                first = _first_sentence(msg)
                nxt = " (in the distribution of the site sampled next)" if where.startswith(" after") else ""
                raise DensityError(
                    f"a distribution in the model received {what} {stage}{where}{nxt}: {first}. "
                    "Check the parameters of the site's distribution (a NaN or infinite "
                    "location, a scale that can reach 0 or go negative, probabilities outside "
                    "[0, 1]) at the latent values the model can draw."
                ) from e
            if isinstance(e, NotImplementedError):
                raise SiteError(
                    f"a distribution in the model raised NotImplementedError {stage}{where}"
                    f"{': ' + msg if msg else ''}. pyromi draws joint samples (x, z) ~ p(x, z) from "
                    "the model, so every site must be samplable, and the latent sites need a "
                    "normalised density p(z). Improper priors (ImproperUniform) have neither: "
                    "replace them by a proper prior."
                ) from e
            if "device" in msg.lower():
                raise DeviceError(
                    f"the model failed {stage}{where} with a device mismatch: {msg}. Create the "
                    "model's tensors (constants, nn.Module weights, model_args) on one device, the "
                    "one passed as device=, e.g. W = W.to(device)."
                ) from e
            if not stage.startswith(_PLAIN_STAGE) and self._fails_on_its_own():
                raise ModelError(
                    f"the model raised {type(e).__name__} {stage}{where}: {msg}. It also fails when "
                    "run again on its own, without pyromi's plates, so this is an error of the model "
                    "itself (one that depends on the values drawn or on how often it is called), "
                    "not of its vectorisation: check that model(*model_args, **model_kwargs) runs "
                    "reliably in plain Pyro."
                ) from e
            if stage.startswith(_PLAIN_STAGE):
                raise ModelError(
                    f"the model raised {type(e).__name__} {stage}{where}: {msg}. This is an "
                    "error of the model itself, before pyromi adds any batch dimension: check "
                    "that model(*model_args, **model_kwargs) runs in plain Pyro."
                ) from e
            if "Shape mismatch inside plate('_pm_" in msg:
                raise VectorizationError(
                    f"the model is not vectorisable{where} ({stage}): {msg}. pyromi "
                    "evaluates many samples at once under outer plates left of the model's own "
                    "plates; every site must declare its event dimensions, e.g. "
                    "dist.Normal(loc, scale).to_event(1), or put batch dimensions inside a "
                    "pyro.plate, and the model must not add dimensions to sampled values by hand "
                    "(z.unsqueeze(-1) on a site outside a plate: let the plate broadcast instead)."
                ) from e
            raise VectorizationError(
                f"the model raised {type(e).__name__} {stage}{where}: {msg}. If the model runs on "
                "its own, it probably is not vectorisable: pyromi adds outer batch dimensions (left "
                "of the model's plates) to every sampled value, so the model must broadcast over "
                "leading dimensions (use `...` indexing, `.to_event`, no reshape(-1)/flatten/sum "
                "over all dimensions)."
            ) from e

    def _fails_on_its_own(self) -> bool:
        """Run the model once more without pyromi's plates (RNG state kept): True if it raises.

        May be called inside pyromi's plates (from an error raised under them): ``poutine.block``
        keeps the model's messages from reaching those outer plates, so the run is plain.
        """
        from ._state import unwind_handlers

        depth = len(_PYRO_STACK)
        try:
            with torch.random.fork_rng(devices=[]), pyro.validation_enabled(False):
                poutine.block(poutine.trace(self._generative()).get_trace)(
                    *self.model_args, **self.model_kwargs
                )
        except Exception:
            return True
        finally:
            unwind_handlers(depth)
        return False

    def _generative(self) -> Callable:
        """The model with its observed sites sampled (their ``obs=`` ignored); sites fixed in the
        model (``obs=`` or ``pyro.condition`` on a site not in ``observed=``) keep their values."""
        return _UnconditionSites(self._observed_request)(self.model)

    def _prototype_trace(self) -> poutine.Trace:
        return self._call_traced(self._generative(), _PLAIN_STAGE)

    def _inspect(
        self,
        tr: poutine.Trace,
        observed: list[str],
        latent: list[str] | None,
        max_plate_nesting: int | None,
    ) -> None:
        sample_sites: dict[str, dict] = {}
        deterministic: set[str] = set()
        constants: list[str] = []
        masked: list[str] = []
        for name, site in tr.nodes.items():
            if site["type"] != "sample":
                continue
            if site_is_subsample(site):
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
                # fixed in the model (obs= or pyro.condition): a constant, never a latent
                constants.append(name)
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
            if _is_masked(site):
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
            if others and self.densities:
                need = (
                    "pyromi needs p(x|z) in closed form"
                    if self.likelihood else
                    "the known-marginal bounds compare the critic on pairs (x, z) against z drawn "
                    "from p(z), and a hidden stochastic site between z and x would need p(z) of "
                    "it too"
                )
                raise SiteError(
                    f"site(s) {others} are neither observed nor latent. {need}, so every "
                    "stochastic site must be in observed= or latent=: add "
                    f"them to latent= (giving I(x; {', '.join(latent + others)})) or marginalise "
                    "them inside the model (bound='mist' accepts such nuisance sites)."
                )
        if self.densities:
            for name in latent + (observed if self.likelihood else []):
                self._check_density(name, sample_sites[name], name in latent)
        for name in latent:
            fn = sample_sites[name]["fn"]
            if fn.support.is_discrete or getattr(fn, "has_enumerate_support", False):
                why = (
                    "these bounds need continuous latents (importance weights over densities, "
                    "HMC moves)"
                    if self.densities
                    else "MIST is trained on continuous data (ties from discrete values are "
                    "outside its training domain)"
                )
                raise SiteError(
                    f"latent site '{name}' is discrete ({type(fn).__name__}): {why}. "
                    "Marginalise it in the model, e.g. replace a discrete mixture indicator by "
                    "dist.MixtureSameFamily(dist.Categorical(probs), components)."
                )
        # the model's own plate nesting and the plate coverage of every batch dimension
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
        self.max_plate_nesting = mpn
        for name in observed + latent:
            site = sample_sites[name]
            batch_shape = site["fn"].batch_shape
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
        self.observed_names = list(observed)
        self.latent_names = list(latent)
        self.constant_names = constants
        self.scored_observed = list(observed) if self.likelihood else []
        carried = [n for n in observed if sample_sites[n]["infer"].get("was_observed")]
        if carried:
            warn(
                f"observed site(s) {carried} carry obs= values in the model; pyromi does not use "
                "them: I(x; z) is a property of the generative model p(x, z), so x is simulated "
                "together with z. To measure the information in a data set, use "
                "pyromi.audit.audit(model, observed, data=...)."
            )

    @staticmethod
    def _check_density(name: str, site: dict, is_latent: bool) -> None:
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

    def _probe(self) -> None:
        """Validated pass under the outer plates: shapes, devices, dtypes, vectorisation checks."""
        joint = self.sample_joint(_PROBE_N, _validate=True)
        device = None
        for name in self.observed_names + self.latent_names:
            value = joint.observed.get(name, joint.latent.get(name))
            device = device or value.device
            if self.requested_device is not None and not _same_device(
                value.device, self.requested_device
            ):
                raise DeviceError(
                    f"site '{name}' produced a tensor on {value.device} but device="
                    f"{self.requested_device} was requested. Move the model's tensors (constants, "
                    "nn.Module weights, model_args) to that device, or pass "
                    f"device='{value.device}'."
                )
            if device is not None and not _same_device(value.device, device):
                raise DeviceError(
                    f"site '{name}' is on {value.device} while other sites are on {device}; "
                    "create all of the model's tensors on one device."
                )
        self.device = self.requested_device or device
        lat_dtypes = {joint.latent[n].dtype for n in self.latent_names}
        if any(not dt.is_floating_point for dt in lat_dtypes):
            raise SiteError("latent sites must be real-valued (floating point)")
        if self.requested_dtype is not None:
            for name in self.latent_names:
                if joint.latent[name].dtype != self.requested_dtype:
                    raise DeviceError(
                        f"latent site '{name}' has dtype {joint.latent[name].dtype} but dtype="
                        f"{self.requested_dtype} was requested. Build the model's parameters in "
                        f"that dtype, or leave dtype=None."
                    )
        self.dtype = self.requested_dtype or joint.latent[self.latent_names[0]].dtype
        self.sites: dict[str, SiteInfo] = {}
        tr = self._last_joint_trace
        self._pair_bytes = 4 * max(1, _per_sample_bytes(tr, _PROBE_N))
        for name in self.observed_names + self.latent_names:
            site = tr.nodes[name]
            value = site["value"]
            local = value.shape[1:]
            support = site["fn"].support
            # with the sample dimension, so that parameters of latent-dependent supports broadcast
            ushape = (
                biject_to(support).inverse_shape(value.shape)[1:]
                if name in self.latent_names
                else local
            )
            self.sites[name] = SiteInfo(name, local, site["fn"].event_dim, torch.Size(ushape), support)
        offsets, start = {}, 0
        for name in self.latent_names:
            n = self.sites[name].unconstrained_numel
            offsets[name] = (start, start + n)
            start += n
        self._offsets = offsets
        self.latent_dim = start

        if not self.densities:
            # without densities, vectorisation is checked by shape: under the sample plate every
            # site must keep the shape it has in a plain run (left-padded to the model's plates)
            for name in self.observed_names + self.latent_names:
                plain = self._prototype.nodes[name]["value"].shape
                if math.prod(plain) != math.prod(self.sites[name].local_shape):
                    raise VectorizationError(
                        f"site '{name}' has shape {tuple(plain)} in a plain run but "
                        f"{tuple(self.sites[name].local_shape)} per sample under pyromi's sample "
                        "plate: the model mixes values across leading batch dimensions. Write it so "
                        "that it broadcasts over leading dimensions (z[..., i], dim=-1)."
                    )
            self._check_no_mixing(tr)
            return
        if not self.likelihood:  # the pair check below scores the latents only
            self._check_no_mixing(tr)
        # vectorisation: a batched evaluation must equal evaluating each sample on its own
        perm = torch.tensor([1, 2, 0], device=joint.log_prior.device)
        # particle 0 = each sample's own z*, particle 1 = another sample's z*
        z_pair = {n: torch.stack([v, v[perm]]) for n, v in joint.latent.items()}
        # without Pyro's support checks: x_i may lie outside the support of p(x | z_j) (a hard-support
        # likelihood), which is density 0, not an error; NaN densities are checked below
        with self._translate_errors("under pyromi's particle and sample plates"):
            with pyro.validation_enabled(False):
                ev = self._evaluate((2, _PROBE_N), joint.observed, latent=z_pair,
                                    constant_names=self.constant_names)
        for name, lp in ev.site_log_probs.items():
            if bool(torch.isnan(lp).any()):
                raise DensityError(
                    f"the log density of site '{name}' is NaN at some of pyromi's probe draws "
                    "(each sample's x scored under its own and another sample's z). The model is "
                    "undefined there: check the site's distribution parameters (NaN or infinite "
                    "locations, scales that reach 0) for every value the latents can take."
                )
        for name, batch_shape in ev.batch_shapes.items():
            self._check_batch_shape(name, batch_shape, (2, _PROBE_N))
        for name, lp in ev.constant_log_probs.items():
            if not torch.allclose(lp, lp.reshape(-1)[0].expand_as(lp), rtol=1e-5, atol=1e-6):
                raise SiteError(
                    f"site '{name}' is fixed in the model (obs= or pyro.condition) but its density "
                    "depends on the latent sites: the model then describes a posterior given "
                    f"'{name}', from which pyromi cannot draw joint samples (x, z) by running the "
                    f"model. Either add '{name}' to observed= (then it is simulated, and the MI is "
                    f"about x and '{name}' together), or remove the obs=/condition so that it is "
                    "a latent site."
                )
        pair_lp = dict(self._last_site_log_probs)
        for p, i in ((0, 0), (0, 1), (1, 0)):
            data = {n: v[p, i] for n, v in z_pair.items()}
            data.update({n: v[i] for n, v in joint.observed.items()})
            tr_i = self._call_traced(poutine.condition(self.model, data=data), "on a single sample",
                                     validate=False)
            scored = set(self.latent_names + self.scored_observed)
            with pyro.validation_enabled(False):  # x_i may lie outside p(x | z_j)'s support
                tr_i.compute_log_prob(site_filter=lambda name, site: name in scored)
            for name in self.latent_names + self.scored_observed:
                lp_single = tr_i.nodes[name]["log_prob"].sum()
                lp_batch = pair_lp[name][p, i]
                if not torch.isclose(lp_single, lp_batch, rtol=1e-4, atol=1e-4):
                    raise VectorizationError(
                        f"site '{name}': the log density of a sample evaluated on its own is "
                        f"{float(lp_single):.6g} but {float(lp_batch):.6g} inside pyromi's batch "
                        "plates. The model mixes values across leading batch dimensions (e.g. "
                        "z.sum(), z.mean(0), z.reshape(-1), z[0] on a sampled value); write it so "
                        "that it broadcasts over leading dimensions (z[..., i], dim=-1)."
                    )
        # log p(z) must not depend on x: I(x; z) = E[log p(x|z) - log p(x)] needs log p(z) to be
        # the sum of the latent sites' densities under the generative order.
        z_own = {n: v[0:1] for n, v in z_pair.items()}
        x_other = {n: v[perm] for n, v in joint.observed.items()}
        with self._translate_errors("under pyromi's particle and sample plates"):
            with pyro.validation_enabled(False):
                self.log_density(z_own, x_other)
        for name in self.latent_names:
            if not torch.allclose(
                self._last_site_log_probs[name][0], pair_lp[name][0], rtol=1e-5, atol=1e-5
            ):
                raise SiteError(
                    f"the density of latent site '{name}' depends on the observed sites "
                    f"{self.observed_names}: pyromi needs a generative model in which every latent "
                    "site is drawn from p(z) before, and independently of, the observations. "
                    "Reorder the model or move that site to observed=."
                )

    def _check_no_mixing(self, tr: poutine.Trace) -> None:
        """Vectorisation check for the paths that score no likelihood (known-marginal bounds,
        MIST), without evaluating any density: each draw of the batched probe is run alone,
        conditioned on its values of every sample site (nuisance sites included), and each site's
        distribution parameters there must equal that draw's slice of the batched parameters. A
        model that mixes samples (``z.mean()``, ``z.sum()``, ``z[0]``) gives each x a
        distribution built from other samples' z and fails this."""
        names = [n for n, site in tr.nodes.items()
                 if site["type"] == "sample" and not site_is_subsample(site)
                 and not site["infer"].get("_deterministic") and n not in self.constant_names
                 and site["value"].dim() > 0 and site["value"].shape[0] == _PROBE_N]
        for i in range(_PROBE_N):
            data = {n: tr.nodes[n]["value"][i] for n in names}
            tr_i = self._call_traced(poutine.condition(self.model, data=data), "on a single sample",
                                     validate=False)
            for n in names:
                site = tr_i.nodes.get(n)
                if site is None:
                    continue
                for key, batched, single in _param_pairs(tr.nodes[n]["fn"], site["fn"]):
                    b = batched[i]
                    try:
                        b, a = torch.broadcast_tensors(b, single)
                    except RuntimeError:
                        continue
                    if not bool(torch.isclose(a.double(), b.double(), rtol=1e-4, atol=1e-5,
                                              equal_nan=True).all()):
                        raise VectorizationError(
                            f"site '{n}': the parameter '{key}' of its distribution differs "
                            "between a sample evaluated on its own and the same sample inside "
                            "pyromi's batch plate. The model mixes values across leading batch "
                            "dimensions (e.g. z.mean(), z.sum(), z.reshape(-1), z[0] on a sampled "
                            "value); write it so that it broadcasts over leading dimensions "
                            "(z[..., i], dim=-1)."
                        )

    def _check_batch_shape(self, name: str, batch_shape: torch.Size, outer: tuple[int, ...]) -> None:
        """Every batch dimension of a site must be explained by pyromi's outer plates ``outer``
        (sizes, right-aligned at dims ``-1 - mpn`` and left) or by one of the site's own plates;
        any other dimension would silently pair values of different samples or particles."""
        mpn = self.max_plate_nesting
        site = self._prototype.nodes[name]
        plates = {f.dim: f.size for f in site["cond_indep_stack"] if f.vectorized}
        expected = []
        for d in range(-mpn - len(outer), 0):
            if d < -mpn:
                expected.append(outer[len(outer) + (d + mpn)])
            else:
                expected.append(plates.get(d, 1))
        shape = tuple(batch_shape)
        ok = len(shape) <= len(expected) and all(
            s == 1 or s == e for s, e in zip(shape[::-1], expected[::-1])
        )
        if not ok:
            outer_names = ("particles", "samples")[-len(outer):]
            raise VectorizationError(
                f"site '{name}' has batch shape {shape} under pyromi's outer plates "
                f"({', '.join(f'{n}={k}' for n, k in zip(outer_names, outer))}), but only "
                f"{tuple(expected)} is explained by those plates and the model's own plates "
                f"({'none' if not plates else ', '.join(f'dim {d}: size {k}' for d, k in sorted(plates.items()))}). "
                "A dimension that no plate declares pairs values of different samples: typically "
                "a latent with an explicit singleton batch dimension (e.g. .expand([1, d])) "
                "combined by matrix products or squeeze(). Give latents only event dimensions "
                "(.to_event) and index from the right (x @ w.unsqueeze(-1), ..., dim=-1), or "
                "declare the dimension with a pyro.plate."
            )

    # ------------------------------------------------------------------ plates
    @contextlib.contextmanager
    def _plates(self, num_particles: int | None, num_samples: int):
        """Enter the outer plates (particles at dim -2-mpn, samples at -1-mpn).

        Plate objects are cached per size and re-entered (Pyro plates are reusable context
        managers): creating one allocates its index tensor, a cost paid on every model pass.
        Both plates are exited on every path out, an exception included (a plate left on Pyro's
        global handler stack would break every later model call in the process).
        """
        for size, what in ((num_particles, "particles"), (num_samples, "samples")):
            if size is not None and size < 1:
                raise ValueError(f"the number of {what} in a model pass must be >= 1, got {size}")
        with ExitStack() as stack:
            if num_particles is not None:
                stack.enter_context(self._plate(PARTICLE_PLATE, num_particles, -2))
            stack.enter_context(self._plate(SAMPLE_PLATE, num_samples, -1))
            yield

    def _plate(self, name: str, size: int, dim: int):
        cache = self.__dict__.setdefault("_plate_cache", {})
        key = (name, size)
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = pyro.plate(name, size, dim=dim - self.max_plate_nesting)
        return cache[key]

    def _split(
        self, tr: poutine.Trace, lead_shape: tuple[int, ...], score_prior: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Sum site log densities over the model's own dims into ``log p(z)``, ``log p(x|z)``.

        With ``score_prior=False`` the latent sites are not scored and ``log p(z)`` is None.
        """
        names = set(self.scored_observed)
        if score_prior:
            names |= set(self.latent_names)
        tr.compute_log_prob(site_filter=lambda name, site: name in names)
        lead = len(lead_shape)
        site_lp = {}
        for name in names:
            lp = tr.nodes[name]["log_prob"]
            site_lp[name] = _sum_trailing(lp, lead).expand(lead_shape)
        self._last_site_log_probs = site_lp
        log_prior = sum(site_lp[n] for n in self.latent_names) if score_prior else None
        log_lik = _total(site_lp, self.scored_observed, lead_shape, tr.nodes[self.latent_names[0]]["value"])
        return log_prior, log_lik

    # ------------------------------------------------------------------ joint draws
    def sample_joint(self, num_samples: int, *, _validate: bool = False) -> JointSamples:
        """Draw ``(x_i, z_i*) ~ p(x, z)``, i = 1..N, in one vectorised pass (no Python loop).

        Raises :class:`~pyromi.errors.DensityError` if a log density is NaN or infinite at a draw.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        with self._plates(None, num_samples):
            tr = self._call_traced(
                self._generative(), "under pyromi's sample plate", validate=_validate
            )
        self._last_joint_trace = tr
        if _validate:
            for name in self.observed_names + self.latent_names:
                value = tr.nodes[name]["value"]
                if value.dim() < 1 or value.shape[0] != num_samples:
                    raise VectorizationError(
                        f"site '{name}' returned a value of shape {tuple(value.shape)} under an "
                        f"outer plate of size {num_samples}: it ignores leading batch dimensions. "
                        "Make the model broadcast over leading dimensions."
                    )
                self._check_batch_shape(name, tr.nodes[name]["fn"].batch_shape, (num_samples,))
        for name in self.observed_names + self.latent_names:
            value = tr.nodes[name]["value"]
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value.reshape(num_samples, -1))).any(-1).sum())
                raise DensityError(
                    f"site '{name}' is NaN or infinite in {bad} of {num_samples} joint draws (its "
                    "simulated values): "
                    "its distribution's parameters are not finite for some values of the sites "
                    "before it (e.g. a location computed as NaN, an overflow in exp). Make them "
                    "finite for every value the latents can take."
                )
        if not self.densities:
            observed = {n: tr.nodes[n]["value"].detach() for n in self.observed_names}
            latent = {n: tr.nodes[n]["value"].detach() for n in self.latent_names}
            some = latent[self.latent_names[0]]
            zeros = torch.zeros(num_samples, dtype=some.dtype, device=some.device)
            return JointSamples(observed, latent, zeros, zeros)
        log_prior, log_lik = self._split(tr, (num_samples,))
        bad = [
            n
            for n, lp in self._last_site_log_probs.items()
            if not bool(torch.isfinite(lp).all())
        ]
        if bad:
            name = bad[0]
            lp = self._last_site_log_probs[name]
            count = int((~torch.isfinite(lp)).sum())
            raise DensityError(
                f"log density of site '{name}' is NaN or infinite at {count} of {num_samples} joint "
                "draws. Check its parameters (e.g. a scale that can reach 0, a support the "
                "drawn values can leave, overflow in exp); pyromi never averages non-finite terms."
            )
        observed = {n: tr.nodes[n]["value"].detach() for n in self.observed_names}
        latent = {n: tr.nodes[n]["value"].detach() for n in self.latent_names}
        return JointSamples(observed, latent, log_prior.detach(), log_lik.detach())

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, lead_shape: tuple[int, int], observed, **kw) -> _Evaluate:
        ev = _Evaluate(self.latent_names, self.scored_observed, lead_shape, observed, **kw)
        try:
            with self._plates(*lead_shape):
                ev(self.model)(*self.model_args, **self.model_kwargs)
        except PyromiError:
            raise
        except Exception:  # allocator failures included: _translate_errors makes them ResourceError
            with self._translate_errors(
                f"in a model pass over {lead_shape[0]} x {lead_shape[1]} (particle, sample) pairs"
            ):
                raise
        self._last_site_log_probs = ev.site_log_probs
        return ev

    def pair_bytes(self) -> int:
        """Estimated bytes one (particle, sample) pair occupies in a model pass.

        Measured on the probe draws: the per-sample bytes of every sample site's value and of its
        distribution's batched parameter tensors (tensors shared by all samples, such as weight
        matrices, are not counted), times 4 for temporaries and the autograd graph of an HMC step.
        """
        return self._pair_bytes

    def _evaluation(self, ev: _Evaluate, latent=None, score_prior: bool = True) -> ModelEvaluation:
        log_prior = ev.log_densities(self.latent_names) if score_prior else None
        log_lik = _total(ev.site_log_probs, self.scored_observed, ev.lead_shape,
                         ev.values[self.latent_names[0]])
        ladj = torch.as_tensor(ev.log_abs_det_jacobian, device=log_lik.device)
        ladj = ladj.to(log_lik.dtype).expand(ev.lead_shape)
        return ModelEvaluation(latent if latent is not None else ev.values, log_prior, log_lik, ladj,
                               ev.site_log_probs, ev.site_ladj)

    def log_density(
        self, latent: dict[str, torch.Tensor], observed: dict[str, torch.Tensor]
    ) -> ModelEvaluation:
        """``log p(z)`` and ``log p(x | z)`` per (particle, sample), each ``(C, N)``.

        ``latent[name]``: ``(C, N) + local_shape``; ``observed[name]``: ``(N,) + local_shape``.
        """
        lead = self._lead_shape(latent, observed)
        return self._evaluation(self._evaluate(lead, observed, latent=latent), latent)

    def sample_prior(
        self, num_particles: int, observed: dict[str, torch.Tensor], *, score_prior: bool = True
    ) -> ModelEvaluation:
        """Draw C latent particles from p(z) for each of N samples and score them, in one pass.

        Latents are sampled by the model itself with the observed sites set to ``observed``
        (valid because latent sites do not depend on observed ones; the adapter checks this).
        ``score_prior=False`` skips ``log p(z)`` (returned as None): with the prior as proposal it
        cancels from the importance weight ``p(x|z) p(z) / p(z)``.
        """
        n = next(iter(observed.values())).shape[0]
        ev = self._evaluate((num_particles, n), observed, score_prior=score_prior)
        latent = {
            name: ev.values[name].expand((num_particles, n) + self.sites[name].local_shape)
            for name in self.latent_names
        }
        return self._evaluation(ev, latent, score_prior)

    def log_density_unconstrained(
        self, u: torch.Tensor, observed: dict[str, torch.Tensor]
    ) -> ModelEvaluation:
        """Evaluate at packed unconstrained points ``u`` of shape ``(C, N, D)``.

        Returns ``log p(z)``, ``log p(x|z)`` and ``log|dT/du|`` at ``z = T(u)``; the density of ``u``
        under the prior is ``log_prior + log_abs_det_jacobian``.
        """
        ev = self._evaluate((u.shape[0], u.shape[1]), observed, unconstrained=self.unpack(u))
        return self._evaluation(ev)

    def unconstrain(
        self, latent: dict[str, torch.Tensor], observed: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, ModelEvaluation]:
        """Map constrained latents ``(C, N) + local_shape`` to packed ``u`` of shape ``(C, N, D)``.

        Runs the model once (supports may depend on other latents) and also returns the evaluation
        at that point, including ``log|dT/du|``.
        """
        lead = self._lead_shape(latent, observed)
        ev = self._evaluate(lead, observed, latent=latent, record_unconstrained=True)
        return self.pack(ev.unconstrained), self._evaluation(ev, latent)

    def _lead_shape(
        self, latent: dict[str, torch.Tensor], observed: dict[str, torch.Tensor]
    ) -> tuple[int, int]:
        missing = [n for n in self.latent_names if n not in latent]
        if missing:
            raise SiteError(f"values for latent site(s) {missing} are missing")
        missing = [n for n in self.observed_names if n not in observed]
        if missing:
            raise SiteError(f"values for observed site(s) {missing} are missing")
        name = self.latent_names[0]
        v = latent[name]
        local = self.sites[name].local_shape
        if v.dim() != 2 + len(local):
            raise ValueError(
                f"latent site '{name}': expected shape (C, N) + {tuple(local)}, got {tuple(v.shape)}"
            )
        return v.shape[0], v.shape[1]

    # ------------------------------------------------------------------ packing
    def pack(self, unconstrained: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate per-site unconstrained values ``(C, N) + shape`` into ``(C, N, D)``."""
        parts = []
        for name in self.latent_names:
            v = unconstrained[name]
            ushape = self.sites[name].unconstrained_shape
            lead = v.shape[: v.dim() - len(ushape)]
            parts.append(v.expand(lead + ushape).reshape(lead + (-1,)))
        return torch.cat(parts, dim=-1)

    def unpack(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a packed ``(..., D)`` tensor into per-site unconstrained values ``(...) + shape``."""
        if u.shape[-1] != self.latent_dim:
            raise ValueError(
                f"packed latent vector has length {u.shape[-1]}, expected {self.latent_dim} "
                f"(sites {self.latent_names})"
            )
        out = {}
        for name in self.latent_names:
            a, b = self._offsets[name]
            out[name] = u[..., a:b].reshape(u.shape[:-1] + self.sites[name].unconstrained_shape)
        return out

    def constrain(self, u: torch.Tensor, observed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Constrained latent values ``z = T(u)`` for packed ``u`` of shape ``(C, N, D)``."""
        return self.log_density_unconstrained(u, observed).latent

    def conditioned_model(self, joint: JointSamples) -> Callable:
        """The model under pyromi's sample plate, conditioned on the N observations of ``joint``.

        Build site-wise guides on it (``AutoNormal(adapter.conditioned_model(joint))``): each
        observation then gets its own local variational parameters.
        """
        n = joint.num_samples
        observed = dict(joint.observed)

        def conditioned(*args, **kwargs):
            with pyro.plate(SAMPLE_PLATE, n, dim=-1 - self.max_plate_nesting):
                return poutine.condition(self.model, data=observed)(*args, **kwargs)

        return conditioned

    # ------------------------------------------------------------------ misc
    def __repr__(self) -> str:
        return (
            f"ModelAdapter(observed={self.observed_names}, latent={self.latent_names}, "
            f"latent_dim={self.latent_dim}, max_plate_nesting={self.max_plate_nesting}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def _total(site_lp: dict, names: Sequence[str], lead_shape, like: torch.Tensor) -> torch.Tensor:
    """Sum of the per-site log densities of ``names``; zeros of ``lead_shape`` when none is scored."""
    if names:
        return sum(site_lp[n] for n in names)
    return torch.zeros(lead_shape, dtype=like.dtype, device=like.device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        ia = a.index if a.index is not None else torch.cuda.current_device()
        ib = b.index if b.index is not None else torch.cuda.current_device()
        return ia == ib
    return True


def _is_out_of_memory(e: BaseException) -> bool:
    """True for allocator failures: ``MemoryError``, torch's CPU ``can't allocate memory`` and
    CUDA out of memory."""
    if isinstance(e, MemoryError):
        return True
    if not isinstance(e, RuntimeError):
        return False
    if isinstance(e, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def _per_sample_bytes(tr: poutine.Trace, num_samples: int) -> int:
    """Bytes per sample of the batched tensors of a trace drawn under a sample plate of size
    ``num_samples``: site values and the tensor parameters of their distributions."""
    seen: set[int] = set()
    total = 0

    def add(t) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and id(t) not in seen:
            seen.add(id(t))
            if t.dim() > 0 and t.shape[0] == num_samples:
                total += t.numel() * t.element_size() // num_samples

    for site in tr.nodes.values():
        if site["type"] != "sample":
            continue
        add(site["value"])
        for fn in _fn_chain(site["fn"]):
            for v in vars(fn).values():
                add(v)
    return total


def _first_sentence(msg: str) -> str:
    """torch's validation message without its tensor dump: the text before ', but found'."""
    head = msg.split(", but found")[0].split("\n")[0]
    head = head.split(" of distribution ")[0]
    return head.strip().rstrip(".:")


def _is_masked(site: dict) -> bool:
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
               for fn in _fn_chain(site["fn"]))


def _param_pairs(batched_fn, single_fn):
    """``(name, batched, single)`` for the tensor parameters two distributions of the same site
    share (walking ``base_dist`` wrappers): batched ones with the probe's leading sample dim."""
    out = []
    for b, a in zip(_fn_chain(batched_fn), _fn_chain(single_fn)):
        if type(b) is not type(a):
            break
        vb, va = vars(b), vars(a)
        for key, tb in vb.items():
            ta = va.get(key)
            if (isinstance(tb, torch.Tensor) and isinstance(ta, torch.Tensor) and tb.dim() > 0
                    and tb.shape[0] == _PROBE_N and tb.is_floating_point()):
                out.append((key, tb.detach(), ta.detach()))
    return out


def out_of_memory_error(what: str, e: BaseException) -> ResourceError:
    """The :class:`ResourceError` for an allocator failure in ``what``, saying what to lower."""
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ResourceError(
        f"{what} ran out of memory: {detail}. Lower max_memory= (bytes per model pass; default "
        "2**29) or max_batch=, num_particles=, num_samples= so that fewer (particle, sample) pairs "
        "are evaluated at once."
    )


def _fn_chain(fn):
    """A distribution and the distributions it wraps (``base_dist``), outermost first."""
    depth = 0
    while fn is not None and depth < 8:
        yield fn
        fn, depth = getattr(fn, "base_dist", None), depth + 1
