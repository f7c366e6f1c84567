"""Model adapter: a Pyro model callable seen as a joint density p(x, z) = p(z) p(x | z).

Every estimator in pyromi talks to the model only through :class:`ModelAdapter`. It

* inspects the model once and validates it (:mod:`.sites`), raising errors that name the site and
  the fix;
* draws N joint samples ``(x_i, z_i*) ~ p(x, z)`` in one pass under an outer plate ``_pm_x``;
* evaluates ``log p(z)`` and ``log p(x | z)`` for every (particle, sample) pair in one pass under two
  outer plates, ``_pm_particles`` (size C, dim ``-2 - mpn``) and ``_pm_x`` (size N, dim ``-1 - mpn``),
  where ``mpn`` is the model's own maximum plate nesting (:mod:`.scoring`);
* provides an unconstrained parametrisation of the continuous latent sites packed into one vector
  of length D per (particle, sample) (:mod:`.packing`): ``z = T(u)`` with ``T = biject_to(support)``
  applied *inside* the model pass, so latent-dependent supports get the right bijection.

Three ways of running the model share these methods: *batched* (the default), under a **data
plate** (:mod:`.data`: the model's own plate over data points is the sample plate), and
**sequential** (:mod:`.sequential`: one (particle, sample) pair at a time, chosen automatically, with
a warning, when the model cannot be batched). Discrete latents marked for enumeration are summed out
in every density pass (:mod:`.enumeration`).

Shapes. A site's *local shape* is its value's shape without the outer plates: the model's plate
dimensions (left-padded with 1 to ``mpn``) followed by the event shape. Joint samples of a site have
shape ``(N,) + local_shape``; particle values have shape ``(C, N) + local_shape``; per-pair log
densities have shape ``(C, N)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import pyro
import torch
from pyro import poutine
from pyro.poutine.runtime import _PYRO_STACK

from .. import transforms  # noqa: F401  (registers bijections for mixture supports)
from .._rng import seeded
from ..errors import PyromiError, SiteError, VectorizationError
from . import joint as joint_draws
from . import probe
from .data import DataPlate, find_data_plate
from .devices import as_dtype, available_device
from .scoring import (AsEvents, JointSamples, ModelEvaluation, ScoringPass, UnconditionSites,
                      check_finite_draws, check_finite_log_probs, sum_trailing, total)
from .sites import as_names, check_plate_dims, inspect_sites, undeclared_event_dims
from .translate import PLAIN_STAGE, LastSite, translate_errors

__all__ = ["ModelAdapter", "PARTICLE_PLATE", "SAMPLE_PLATE"]

PARTICLE_PLATE = "_pm_particles"
SAMPLE_PLATE = "_pm_x"


class ModelAdapter:
    """A validated view of a Pyro model as ``p(x, z) = p(z) p(x | z)``.

    Args:
        model: a Pyro model callable that samples every latent site and every observed site
            (observed sites are sampled generatively; an ``obs=`` in the model is ignored when
            drawing joint samples).
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
        densities: False for samples only (MIST): no site is ever scored.
        data_plate: None (detect a plate over data points, :mod:`pyromi.model.data`), False, or
            the plate's name.
        vectorize: ``"auto"`` (batched when the probe passes, else one pair at a time with a
            warning), True (batched or a :class:`VectorizationError`), False (one pair at a time).
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
        data_plate: str | bool | None = None,
        vectorize: bool | str = "auto",
        context: Sequence[str] = (),
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
        if not (isinstance(vectorize, bool) or vectorize == "auto"):
            raise ValueError(f"vectorize= must be 'auto', True or False, got {vectorize!r}")
        self.model_args = tuple(model_args)
        self.model_kwargs = dict(model_kwargs or {})
        observed_names = as_names(observed, "observed")
        if not observed_names:
            raise SiteError("observed= must name at least one observed sample site, e.g. observed='x'")
        latent_names = as_names(latent, "latent")
        self.densities = densities
        self.likelihood = likelihood and densities
        #: observed sites that latents may depend on, held as context (conditional MI, nested bounds)
        self.context_names = [n for n in (context or ()) if n in observed_names]
        self.requested_device = available_device(device)
        self.requested_dtype = as_dtype(dtype)
        self._observed_request = observed_names
        self.data_plate: DataPlate | None = None
        self.sequential = False
        self.enumerator = None
        self._model = model
        with seeded(seed, self.requested_device):
            prototype = self.call_traced(self._generative(), PLAIN_STAGE)
            self._prototype = prototype
            table = inspect_sites(prototype, observed_names, latent_names, densities=densities,
                                  likelihood=self.likelihood, max_plate_nesting=max_plate_nesting)
            self.observed_names = table.observed
            self.latent_names = table.latent
            self.discrete_names = table.discrete
            self.constant_names = table.constants
            self.scored_observed = list(table.observed) if self.likelihood else []
            self.data_plate = find_data_plate(
                lambda a, k: self.call_traced(self._generative(), PLAIN_STAGE, args=a, kwargs=k),
                prototype, self.model_args, self.model_kwargs, table.observed,
                table.latent + table.discrete, table.max_plate_nesting, data_plate)
            self.max_plate_nesting = table.max_plate_nesting - (self.data_plate is not None)
            self._table = table
            self._events = undeclared_event_dims(table)
            if self._events:
                self._model = AsEvents(self._events)(model)
            if table.discrete:
                from .enumerated import Enumerator

                self.enumerator = Enumerator(self, table)
            if vectorize is False:
                self._use_sequential(None)
            else:
                try:
                    check_plate_dims(table, self._events)
                    self._probe()
                except VectorizationError as e:
                    if vectorize is True:
                        raise
                    self._use_sequential(e)

    # ------------------------------------------------------------------ running the model
    def call_traced(self, fn: Callable, stage: str, validate: bool = True, args=None,
                    kwargs=None) -> poutine.Trace:
        """Trace ``fn`` with the model's arguments (or ``args``/``kwargs``), translating failures
        into pyromi errors. ``validate=True`` turns on Pyro's argument and support checks (used
        for probes); hot paths pass False, since validation synchronises with the device."""
        last = LastSite()
        args = self.model_args if args is None else args
        kwargs = self.model_kwargs if kwargs is None else kwargs
        with self._translate_errors(stage, last), pyro.validation_enabled(validate):
            return poutine.trace(last(fn)).get_trace(*args, **kwargs)

    def _translate_errors(self, stage: str, last: LastSite | None = None):
        return translate_errors(stage, last, self._fails_on_its_own)

    def _fails_on_its_own(self) -> bool:
        """Run the model once more without pyromi's plates (RNG state kept): True if it raises.

        May be called inside pyromi's plates (from an error raised under them): ``poutine.block``
        keeps the model's messages from reaching those outer plates, so the run is plain.
        """
        from .._state import unwind_handlers

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
        model (``obs=`` or ``pyro.condition`` on a site not in ``observed``) keep their values."""
        return UnconditionSites(self._observed_request)(self._model)

    def arguments(self, observed: dict[str, torch.Tensor], num_samples: int) -> tuple[tuple, dict]:
        """The model's arguments for a pass over ``num_samples`` samples with values ``observed``:
        the user's ``model_args``/``model_kwargs``, or under a data plate the data arguments'
        rows of those samples."""
        if self.data_plate is None:
            return self.model_args, self.model_kwargs
        return self.data_plate.arguments(self.model_args, self.model_kwargs, observed, num_samples)

    def joint_rows(self, num_samples: int) -> dict[str, torch.Tensor]:
        """The data arguments' covariate rows that N joint samples use (empty without a data plate)."""
        return {} if self.data_plate is None else self.data_plate.sample_rows(num_samples)

    def single_value(self, v: torch.Tensor) -> torch.Tensor:
        """A site value of local shape as the model's own single-sample run takes it."""
        return v.unsqueeze(0) if self.data_plate is not None else v

    def sample_values(self, observed: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
        """Sample i's observed-site values, shaped for a single-sample run."""
        return {n: self.single_value(observed[n][i]) for n in self.observed_names}

    @contextlib.contextmanager
    def _plates(self, num_particles: int | None, num_samples: int):
        """Enter the outer plates (particles at dim -2-mpn, samples at -1-mpn; under a data plate,
        the model's own plate is the sample plate and only the particle plate is entered).

        Plate objects are cached per size and re-entered (creating one allocates its index tensor,
        a cost paid on every model pass). Both plates are exited on every path out, an exception
        included (a plate left on Pyro's global handler stack would break every later model call).
        """
        for size, what in ((num_particles, "particles"), (num_samples, "samples")):
            if size is not None and size < 1:
                raise ValueError(f"the number of {what} in a model pass must be >= 1, got {size}")
        with ExitStack() as stack:
            if num_particles is not None:
                stack.enter_context(self._plate(PARTICLE_PLATE, num_particles, -2))
            if self.data_plate is None:
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

    # ------------------------------------------------------------------ the probe
    def _probe(self) -> None:
        """Validated pass under the outer plates: shapes, devices, dtypes, vectorisation checks."""
        probe.run_probe(self)

    def _probe_pairs(self, joint: JointSamples):
        return probe.probe_pairs(self, joint)

    def _probe_latent_independent_of_x(self, joint, z_pair, perm, pair_ev) -> None:
        probe.check_latent_independent_of_x(self, joint, z_pair, perm, pair_ev)

    def _set_device_dtype(self, joint: JointSamples) -> None:
        probe.set_device_dtype(self, joint)

    def _use_sequential(self, reason: VectorizationError | None) -> None:
        from .sequential import SequentialRunner

        self.sequential = True
        self._runner = SequentialRunner(self)
        self._runner.probe(reason)

    def data_observations(self) -> dict[str, torch.Tensor]:
        """The observations the model is conditioned on by its own ``obs=`` (see
        :func:`pyromi.model.joint.data_observations`)."""
        return joint_draws.data_observations(self)

    # ------------------------------------------------------------------ joint draws
    def sample_joint(self, num_samples: int, *, _validate: bool = False) -> JointSamples:
        """Draw ``(x_i, z_i*) ~ p(x, z)``, i = 1..N, in one vectorised pass (no Python loop; one
        run per sample for a model evaluated one pair at a time).

        Raises :class:`~pyromi.errors.DensityError` if a log density is NaN or infinite at a draw.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if self.sequential:
            return self._runner.sample_joint(num_samples)
        return self._sample_joint_batched(num_samples, _validate)[0]

    def _sample_joint_batched(self, num_samples: int, validate: bool) -> tuple[JointSamples, poutine.Trace]:
        return joint_draws.sample_joint_batched(self, num_samples, validate)

    # ------------------------------------------------------------------ density passes
    def _score(self, lead_shape: tuple[int, int], observed, **kw):
        """One scoring pass over ``lead_shape = (C, N)`` pairs (batched, or pair by pair); returns
        the :class:`ScoringPass` with its per-site terms."""
        if self.sequential:
            return self._runner.score(lead_shape, observed, **kw)
        if self.enumerator is not None and kw.get("score", True):
            return self.enumerator.score(lead_shape, observed, **kw)
        ev = ScoringPass(self.latent_names, self.scored_observed, lead_shape,
                         self._observed_with_lead(observed, lead_shape), **kw)
        args, kwargs = self.arguments(observed, lead_shape[1])
        try:
            with self._plates(*lead_shape):
                ev(self._model)(*args, **kwargs)
        except PyromiError:
            raise
        except Exception:  # allocator failures included: translate_errors makes them ResourceError
            with self._translate_errors(
                f"in a model pass over {lead_shape[0]} x {lead_shape[1]} (particle, sample) pairs"
            ):
                raise
        return ev

    def _observed_with_lead(self, observed: dict[str, torch.Tensor], lead_shape) -> dict[str, torch.Tensor]:
        """The observed sites' values ``(N,) + local_shape`` with singleton dims for the outer plates
        left of the sample plate (``(1, N) + local_shape`` in a (particle, sample) pass).

        The scoring pass sets an observed site's value itself, so Pyro's plates do not broadcast
        its distribution: a site whose distribution depends on no latent (a given site c ~ p(c),
        or a target z held as context in a nested bound) then has a log density without the
        particle dimension. Without model plates that is harmless (``(N,)`` broadcasts to
        ``(C, N)``), but with them ``(N, 1)`` does not: the value must carry every outer dim."""
        extra = len(lead_shape) - 1
        if extra <= 0:
            return observed
        names = set(self.observed_names)
        return {k: (v.reshape((1,) * extra + tuple(v.shape)) if k in names else v) for k, v in observed.items()}

    def _evaluation(self, ev: ScoringPass, latent=None, score_prior: bool = True) -> ModelEvaluation:
        like = next(iter(ev.site_log_probs.values()), None)
        if like is None:
            like = torch.zeros(ev.lead_shape, dtype=self.dtype, device=self.device)
        if getattr(ev, "log_prior", None) is not None:  # enumerated: k summed out of p(z)
            log_prior = ev.log_prior if score_prior else None
        else:
            log_prior = total(ev.site_log_probs, self.latent_names, ev.lead_shape, like) if score_prior else None
        log_lik = getattr(ev, "log_likelihood", None)
        if log_lik is None:
            log_lik = total(ev.site_log_probs, self.scored_observed, ev.lead_shape, like)
        ladj = torch.as_tensor(ev.log_abs_det_jacobian, device=log_lik.device)
        ladj = ladj.to(log_lik.dtype).expand(ev.lead_shape)
        return ModelEvaluation(latent if latent is not None else {n: ev.values[n] for n in self.latent_names},
                               log_prior, log_lik, ladj, ev.site_log_probs, ev.site_ladj,
                               getattr(ev, "saturated", None))

    def log_density(self, latent: dict[str, torch.Tensor], observed: dict[str, torch.Tensor]) -> ModelEvaluation:
        """``log p(z)`` and ``log p(x | z)`` per (particle, sample), each ``(C, N)``.

        ``latent[name]``: ``(C, N) + local_shape``; ``observed[name]``: ``(N,) + local_shape``.
        """
        lead = self._lead_shape(latent, observed)
        return self._evaluation(self._score(lead, observed, latent=latent), latent)

    def site_log_probs_at(self, values: dict[str, torch.Tensor], observed: dict[str, torch.Tensor],
                          names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Each named site's own log density ``log p(site | its parents)`` at N joint values, shape
        ``(N,)`` per site (float64, summed over the site's plates and event dims).

        ``values`` holds every latent site, the discrete ones too (``JointSamples.latent`` merged
        with ``JointSamples.discrete``), ``(N,) + shape``; ``observed`` the observed sites. Nothing
        is enumerated (every discrete value is given), so a discrete site has its own density here,
        which the enumerated density passes (:meth:`log_density`) do not provide."""
        names = list(names)
        unknown = [n for n in names if n not in self.latent_names + self.discrete_names + self.observed_names]
        if unknown:
            raise SiteError(f"site(s) {unknown} are not sample sites of this adapter")
        all_latent = self.latent_names + self.discrete_names
        missing = [n for n in all_latent if n not in values]
        if missing:
            raise SiteError(f"values for latent site(s) {missing} are missing")
        n_num = next(iter(observed[o] for o in self.observed_names)).shape[0]
        if self.sequential:
            runner = self._runner
            parts: dict[str, list] = {n: [] for n in names}
            for i in range(n_num):
                obs_i = {n: runner._as_plain(n, observed[n][i]) for n in self.observed_names}
                lat_i = {n: (runner._as_plain(n, values[n][i]) if n in self.latent_names else values[n][i])
                         for n in all_latent}
                sp = ScoringPass(all_latent, self.observed_names, (), obs_i, latent=lat_i)
                args, kwargs = runner._pair_arguments(observed, i)
                runner._run(sp, args, kwargs, f"scoring joint sample {i} of {n_num}")
                for n in names:
                    parts[n].append(sp.site_log_probs[n].double())
            return {n: torch.stack(v).reshape(n_num) for n, v in parts.items()}
        lead = (1, n_num)
        sp = ScoringPass(all_latent, self.observed_names, lead, self._observed_with_lead(observed, lead),
                         latent={n: values[n].unsqueeze(0) for n in all_latent})
        args, kwargs = self.arguments(observed, n_num)
        try:
            with self._plates(*lead):
                sp(self._model)(*args, **kwargs)
        except PyromiError:
            raise
        except Exception:
            with self._translate_errors(f"in a model pass scoring {n_num} joint samples"):
                raise
        return {n: sp.site_log_probs[n][0].double() for n in names}

    def sample_prior(self, num_particles: int, observed: dict[str, torch.Tensor], *,
                     score_prior: bool = True) -> ModelEvaluation:
        """Draw C latent particles from p(z) for each of N samples and score them, in one pass.

        Latents are sampled by the model itself with the observed sites set to ``observed``
        (valid because latent sites do not depend on observed ones; the adapter checks this).
        ``score_prior=False`` skips ``log p(z)`` (returned as None): with the prior as proposal it
        cancels from the importance weight ``p(x|z) p(z) / p(z)``.
        """
        n = next(iter(observed.values())).shape[0]
        if self.enumerator is not None:
            # the model draws k and then z | k (exact draws from p(z)); score z with k summed out
            draws = self._score((num_particles, n), observed, score=False)
            latent = {name: draws.values[name].expand((num_particles, n) + self.sites[name].local_shape)
                      for name in self.latent_names}
            ev = self.log_density(latent, observed)
            return ev if score_prior else ev._replace(log_prior=None)
        ev = self._score((num_particles, n), observed, score_prior=score_prior)
        latent = {name: ev.values[name].expand((num_particles, n) + self.sites[name].local_shape)
                  for name in self.latent_names}
        return self._evaluation(ev, latent, score_prior)

    def log_density_unconstrained(self, u: torch.Tensor, observed: dict[str, torch.Tensor]) -> ModelEvaluation:
        """Evaluate at packed unconstrained points ``u`` of shape ``(C, N, D)``.

        Returns ``log p(z)``, ``log p(x|z)`` and ``log|dT/du|`` at ``z = T(u)``; the density of ``u``
        under the prior is ``log_prior + log_abs_det_jacobian``.
        """
        ev = self._score((u.shape[0], u.shape[1]), observed, unconstrained=self.unpack(u))
        return self._evaluation(ev)

    def unconstrain(self, latent: dict[str, torch.Tensor],
                    observed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ModelEvaluation]:
        """Map constrained latents ``(C, N) + local_shape`` to packed ``u`` of shape ``(C, N, D)``.

        Runs the model once (supports may depend on other latents) and also returns the evaluation
        at that point, including ``log|dT/du|``.
        """
        lead = self._lead_shape(latent, observed)
        ev = self._score(lead, observed, latent=latent, record_unconstrained=True)
        if not self.latent_names:
            some = next(iter(observed.values()))
            return some.new_zeros(lead + (0,), dtype=self.dtype), self._evaluation(ev, latent)
        return self.pack(ev.unconstrained), self._evaluation(ev, latent)

    def _lead_shape(self, latent: dict[str, torch.Tensor], observed: dict[str, torch.Tensor]) -> tuple[int, int]:
        missing = [n for n in self.latent_names if n not in latent]
        if missing:
            raise SiteError(f"values for latent site(s) {missing} are missing")
        missing = [n for n in self.observed_names if n not in observed]
        if missing:
            raise SiteError(f"values for observed site(s) {missing} are missing")
        if not self.latent_names:
            raise SiteError("the model has no continuous latent site to evaluate")
        name = self.latent_names[0]
        v = latent[name]
        local = self.sites[name].local_shape
        if v.dim() != 2 + len(local):
            raise ValueError(f"latent site '{name}': expected shape (C, N) + {tuple(local)}, got {tuple(v.shape)}")
        return v.shape[0], v.shape[1]

    # ------------------------------------------------------------------ packing
    @property
    def latent_dim(self) -> int:
        return self.packing.dim

    @property
    def _offsets(self) -> dict[str, tuple[int, int]]:
        return self.packing.offsets

    def pack(self, unconstrained: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate per-site unconstrained values ``(C, N) + shape`` into ``(C, N, D)``."""
        return self.packing.pack(unconstrained)

    def unpack(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a packed ``(..., D)`` tensor into per-site unconstrained values ``(...) + shape``."""
        return self.packing.unpack(u)

    def constrain(self, u: torch.Tensor, observed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Constrained latent values ``z = T(u)`` for packed ``u`` of shape ``(C, N, D)``."""
        return self.log_density_unconstrained(u, observed).latent

    def pair_bytes(self) -> int:
        """Estimated bytes one (particle, sample) pair occupies in a model pass.

        Measured on the probe draws: the per-sample bytes of every sample site's value and of its
        distribution's batched parameter tensors (tensors shared by all samples, such as weight
        matrices, are not counted), times 4 for temporaries and the autograd graph of an HMC step.
        """
        return self._pair_bytes

    def conditioned_model(self, joint: JointSamples) -> Callable:
        """The model under pyromi's sample plate, conditioned on the N observations of ``joint``.

        Build site-wise guides on it (``AutoNormal(adapter.conditioned_model(joint))``): each
        observation then gets its own local variational parameters. Call it with
        ``adapter.arguments(joint.observed, N)``... or simply without arguments: the model's
        arguments are bound inside.
        """
        if self.sequential:
            raise VectorizationError(
                "guides built on pyromi's sample plate need a vectorisable model; this model is "
                "evaluated one (particle, sample) pair at a time. Use the default proposal or "
                "proposal='amortized', or vectorise the model."
            )
        n = joint.num_samples
        observed = {k: v for k, v in joint.observed.items() if k in self.observed_names}
        args, kwargs = self.arguments(joint.observed, n)
        data_plate = self.data_plate

        def conditioned(*_args, **_kwargs):
            if data_plate is not None:
                return poutine.condition(self._model, data=observed)(*args, **kwargs)
            with pyro.plate(SAMPLE_PLATE, n, dim=-1 - self.max_plate_nesting):
                return poutine.condition(self._model, data=observed)(*(_args or args), **(_kwargs or kwargs))

        return conditioned

    def __repr__(self) -> str:
        mode = "sequential" if self.sequential else "batched"
        plate = f", data_plate='{self.data_plate.name}'" if self.data_plate is not None else ""
        disc = f", discrete={self.discrete_names}" if self.discrete_names else ""
        return (
            f"ModelAdapter(observed={self.observed_names}, latent={self.latent_names}{disc}, "
            f"latent_dim={self.latent_dim}, max_plate_nesting={self.max_plate_nesting}, "
            f"device={self.device}, dtype={self.dtype}, {mode}{plate})"
        )
