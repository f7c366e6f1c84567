"""The sequential fallback: a model that cannot be batched, evaluated one (particle, sample) pair at a
time.

Pyro's Bayesian-regression tutorial writes ``PyroModule[nn.Linear]`` with ``PyroSample`` weights:
``nn.Linear.forward`` cannot take a batch of weight matrices, so pyromi's outer plates break it.
When the batched probe fails, the adapter runs every pass as a loop of plain model runs, each with
one pair's values (reshaped to the shapes the model has on its own), and stacks the per-site terms
to the same ``(C, N)`` layout. The numbers are the same in distribution; only the time differs
(``benchmarks/bench_fallback.py``).
"""

from __future__ import annotations

import math
import time
import weakref

import pyro
import torch
from pyro.distributions.transforms import biject_to

from .._state import warn
from ..errors import PyromiWarning, VectorizationError
from . import probe
from .packing import LatentPacking
from .scoring import JointSamples, ScoringPass
from .sites import SiteInfo

__all__ = ["SequentialRunner", "SlowPathWarning"]

_WARNED: "weakref.WeakSet | set" = set()


class SlowPathWarning(PyromiWarning):
    """The model is evaluated one (particle, sample) pair at a time (it cannot be batched)."""


class _Stacked:
    """The per-site terms of a pass made of single-pair runs, stacked to ``lead_shape``."""

    def __init__(self, lead_shape):
        self.lead_shape = tuple(lead_shape)
        self.values: dict[str, torch.Tensor] = {}
        self.unconstrained: dict[str, torch.Tensor] = {}
        self.site_log_probs: dict[str, torch.Tensor] = {}
        self.site_ladj: dict[str, torch.Tensor] = {}
        self.constant_log_probs: dict[str, torch.Tensor] = {}
        self.batch_shapes: dict[str, torch.Size] = {}
        self.log_abs_det_jacobian: torch.Tensor | float = 0.0


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _same_terms(a: _Stacked, b: _Stacked) -> bool:
    """True if two passes hold the same per-site terms (the vmapped pass checked against the loop)."""
    for key in ("site_log_probs", "site_ladj", "values", "unconstrained", "constant_log_probs"):
        da, db = getattr(a, key), getattr(b, key)
        if set(da) != set(db):
            return False
        for n in da:
            x, y = da[n].detach(), db[n].detach()
            if x.shape != y.shape or not torch.allclose(x, y, rtol=1e-4, atol=1e-4, equal_nan=True):
                return False
    return True


def _stack(parts: list[torch.Tensor], lead_shape, shape) -> torch.Tensor:
    return torch.stack(parts).reshape(tuple(lead_shape) + tuple(shape))


class SequentialRunner:
    """Runs the adapter's passes pair by pair. Site shapes: ``plain`` (the value's shape in a plain
    run for one sample) and ``local`` (the adapter's convention, see :mod:`pyromi.model.adapter`)."""

    def __init__(self, adapter) -> None:
        self.adapter = adapter
        self.plain: dict[str, torch.Size] = {}
        self.plain_u: dict[str, torch.Size] = {}
        #: None: not tried yet; True: vmapped density passes agree with the loop; False: loop only
        self.vmap_ok: bool | None = None

    # ------------------------------------------------------------------ set-up
    def probe(self, reason: VectorizationError | None) -> None:
        a = self.adapter
        args, kwargs = a.arguments(a.joint_rows(1), 1)
        from .translate import PLAIN_STAGE

        tr = a.call_traced(a._generative(), PLAIN_STAGE, args=args, kwargs=kwargs)
        mpn = a._table.max_plate_nesting
        a.sites = {}
        for name in a.observed_names + a.latent_names:
            site = tr.nodes[name]
            value, fn = site["value"], site["fn"]
            self.plain[name] = value.shape
            batch_ndim = value.dim() - fn.event_dim
            padded = torch.Size((1,) * max(0, mpn - batch_ndim)) + value.shape
            local = padded[1:] if a.data_plate is not None else padded
            ushape = value.shape
            if name in a.latent_names:
                ushape = torch.Size(biject_to(fn.support).inverse_shape(value.shape))
            self.plain_u[name] = ushape
            a.sites[name] = SiteInfo(name, local, fn.event_dim, ushape, fn.support)
        a.packing = LatentPacking(a.sites, a.latent_names)
        start = time.perf_counter()
        joint = self.sample_joint(probe.PROBE_N)
        self.seconds_per_draw = (time.perf_counter() - start) / probe.PROBE_N
        a._set_device_dtype(joint)
        a._pair_bytes = 4 * max(1, sum(
            math.prod(a.sites[n].local_shape) * joint.observed.get(n, joint.latent.get(n)).element_size()
            for n in a.observed_names + a.latent_names))
        if a.densities:
            ev, z_pair, perm = a._probe_pairs(joint)
            a._probe_latent_independent_of_x(joint, z_pair, perm, ev)
            # the cost of a density pass as the estimators will see it (vmapped where it agreed)
            reps = 16
            z_many = {n: v.repeat_interleave(reps // 2, 0) for n, v in z_pair.items()}
            start = time.perf_counter()
            with torch.no_grad(), pyro.validation_enabled(False):
                a._score((reps, probe.PROBE_N), joint.observed, latent=z_many)
            per_pair = (time.perf_counter() - start) / (reps * probe.PROBE_N)
        else:
            start = time.perf_counter()
            self.sample_joint(probe.PROBE_N)
            per_pair = (time.perf_counter() - start) / probe.PROBE_N
        self.seconds_per_pair = per_pair
        self._warn(reason, per_pair)

    def _warn(self, reason: VectorizationError | None, per_pair: float) -> None:
        model = self.adapter.model
        key = getattr(model, "__func__", model)
        try:
            if key in _WARNED:
                return
            _WARNED.add(key)
        except TypeError:  # unhashable callables: warn every time
            pass
        why = (f"the batched probe failed: {str(reason).splitlines()[0].split('. ')[0]}" if reason is not None
               else "vectorize=False was passed")
        warn(
            f"pyromi evaluates this model one (particle, sample) pair at a time, the slow path "
            f"({why}). Measured per (particle, sample) pair: {per_pair * 1e3:.2g} ms in a density "
            f"pass ({'vectorised by torch.func.vmap' if self.vmap_ok else 'a Python loop'}), "
            f"{self.seconds_per_draw * 1e3:.2g} ms for a draw from the model (always a loop): a "
            f"million pairs (e.g. AIS with N=100 samples, 10 chains, 1000 steps; IWAE with N=1000, "
            f"K=1000 draws) take about {_duration(per_pair * 1e6)} and {_duration(self.seconds_per_draw * 1e6)}; "
            "a vectorised model does either in seconds "
            "(one to three orders of magnitude faster, benchmarks/bench_fallback.py). To vectorise "
            "it, make every operation broadcast over leading dimensions: give latents only event "
            "dimensions (.to_event), index from the right (x[..., i], dim=-1), and replace "
            "nn.Linear applied to sampled weights by x @ w.transpose(-1, -2) + b (a PyroModule's "
            "forward cannot take a batch of weights). Pass vectorize=True to get the batching error "
            "instead of this fallback.",
            SlowPathWarning,
        )

    # ------------------------------------------------------------------ shapes
    def _as_plain(self, name: str, v: torch.Tensor, unconstrained: bool = False) -> torch.Tensor:
        return v.reshape(self.plain_u[name] if unconstrained else self.plain[name])

    def _pair_arguments(self, observed: dict[str, torch.Tensor], i: int):
        return self.adapter.arguments({k: v[i:i + 1] for k, v in observed.items()}, 1)

    # ------------------------------------------------------------------ passes
    def score(self, lead_shape, observed, latent=None, unconstrained=None, record_unconstrained=False,
              score_prior=True, constant_names=(), score=True):
        """The scoring pass of the adapter, as C x N single-pair runs: through ``torch.func.vmap``
        where that works for this model (every latent value given, no data plate), else a loop.
        The first vmapped pass is checked against the loop; any difference or error turns vmap off
        for good."""
        kw = dict(latent=latent, unconstrained=unconstrained, record_unconstrained=record_unconstrained,
                  score_prior=score_prior, constant_names=constant_names, score=score)
        given = set(latent or {}) | set(unconstrained or {})
        if not set(self.adapter.latent_names) <= given:
            # the model draws latents: a loop (Pyro's samplers draw in place, which vmap refuses)
            return self._score_loop(lead_shape, observed, **kw)
        if self.vmap_ok is not False and self.adapter.data_plate is None and self.adapter.enumerator is None:
            try:
                out = self._score_vmap(lead_shape, observed, **kw)
            except Exception:  # noqa: BLE001 - vmap unsupported by this model: use the loop
                self.vmap_ok = False
            else:
                if self.vmap_ok:
                    return out
                loop = self._score_loop(lead_shape, observed, **kw)
                self.vmap_ok = _same_terms(out, loop)
                return loop
        return self._score_loop(lead_shape, observed, **kw)

    def _score_vmap(self, lead_shape, observed, latent=None, unconstrained=None,
                    record_unconstrained=False, score_prior=True, constant_names=(), score=True):
        a = self.adapter
        c_num, n_num = lead_shape
        pairs = c_num * n_num
        latent, unconstrained = latent or {}, unconstrained or {}

        def flat(name, v, per_sample, unc=False):
            shape = self.plain_u[name] if unc else self.plain[name]
            if per_sample:
                v = v.unsqueeze(0).expand((c_num,) + tuple(v.shape))
            return v.reshape((pairs,) + tuple(shape))

        obs = {n: flat(n, observed[n], True) for n in a.observed_names if n in observed}
        lat = {n: flat(n, v, False) for n, v in latent.items()}
        unc = {n: flat(n, v, False, True) for n, v in unconstrained.items()}

        def one(o, z, u):
            sp = ScoringPass(a.latent_names, a.scored_observed, (), o, latent=z, unconstrained=u,
                             record_unconstrained=record_unconstrained, score_prior=score_prior,
                             constant_names=constant_names, score=score)
            sp(a._model)(*a.model_args, **a.model_kwargs)
            return (dict(sp.values), sp.unconstrained,
                    sp.site_log_probs, sp.site_ladj, sp.constant_log_probs)

        with pyro.validation_enabled(False):
            values, unc_out, lps, ladjs, consts = torch.func.vmap(one, randomness="error")(obs, lat, unc)
        out = _Stacked(lead_shape)
        for n, v in values.items():
            out.values[n] = v.reshape(tuple(lead_shape) + tuple(a.sites[n].local_shape))
        for n, v in unc_out.items():
            out.unconstrained[n] = v.reshape(tuple(lead_shape) + tuple(a.sites[n].unconstrained_shape))
        out.site_log_probs = {n: v.reshape(lead_shape) for n, v in lps.items()}
        out.site_ladj = {n: v.reshape(lead_shape) for n, v in ladjs.items()}
        out.constant_log_probs = {n: v.reshape(lead_shape) for n, v in consts.items()}
        if out.site_ladj:
            out.log_abs_det_jacobian = sum(out.site_ladj.values())
        return out

    def _score_loop(self, lead_shape, observed, latent=None, unconstrained=None,
                    record_unconstrained=False, score_prior=True, constant_names=(), score=True):
        a = self.adapter
        c_num, n_num = lead_shape
        latent = latent or {}
        unconstrained = unconstrained or {}
        out = _Stacked(lead_shape)
        parts: dict[str, dict[str, list]] = {k: {} for k in ("values", "unconstrained", "lp", "ladj", "const")}
        ladj_total: list = []
        for c in range(c_num):
            for i in range(n_num):
                obs_i = {n: self._as_plain(n, observed[n][i]) for n in a.observed_names if n in observed}
                sp = ScoringPass(
                    a.latent_names, a.scored_observed, (), obs_i,
                    latent={n: self._as_plain(n, v[c, i]) for n, v in latent.items()},
                    unconstrained={n: self._as_plain(n, v[c, i], True) for n, v in unconstrained.items()},
                    record_unconstrained=record_unconstrained, score_prior=score_prior,
                    constant_names=constant_names, score=score,
                )
                args, kwargs = self._pair_arguments(observed, i)
                if a.enumerator is not None and score:
                    sp.score = False
                    prior, joint = self._enumerated(sp, args, kwargs, f"on pair ({c}, {i}) of {c_num} x {n_num}")
                    parts.setdefault("prior", []).append(prior)
                    parts.setdefault("joint", []).append(joint)
                else:
                    self._run(sp, args, kwargs, f"on pair ({c}, {i}) of {c_num} x {n_num}")
                for n, v in sp.values.items():
                    parts["values"].setdefault(n, []).append(v)
                for n, v in sp.unconstrained.items():
                    parts["unconstrained"].setdefault(n, []).append(v)
                for n, v in sp.site_log_probs.items():
                    parts["lp"].setdefault(n, []).append(v)
                for n, v in sp.site_ladj.items():
                    parts["ladj"].setdefault(n, []).append(v)
                for n, v in sp.constant_log_probs.items():
                    parts["const"].setdefault(n, []).append(v)
                ladj_total.append(torch.as_tensor(sp.log_abs_det_jacobian))
        for n, vs in parts["values"].items():
            out.values[n] = _stack(vs, lead_shape, a.sites[n].local_shape)
        for n, vs in parts["unconstrained"].items():
            out.unconstrained[n] = _stack(vs, lead_shape, a.sites[n].unconstrained_shape)
        for n, vs in parts["lp"].items():
            out.site_log_probs[n] = _stack(vs, lead_shape, ())
        for n, vs in parts["ladj"].items():
            out.site_ladj[n] = _stack(vs, lead_shape, ())
        for n, vs in parts["const"].items():
            out.constant_log_probs[n] = _stack(vs, lead_shape, ())
        if parts["ladj"]:
            out.log_abs_det_jacobian = sum(out.site_ladj.values())
        if "prior" in parts:  # enumerated: p(z) and p(x | z) with the discrete latents summed out
            out.log_prior = _stack(parts["prior"], lead_shape, ())
            out.log_likelihood = _stack(parts["joint"], lead_shape, ()) - out.log_prior
        return out

    def _enumerated(self, sp: ScoringPass, args, kwargs, where: str, values=None, groups=None):
        """One pair's plain run with the discrete latents enumerated and summed out (no outer
        plates): ``(log p(z), log p(x, z))`` as 0-d tensors (or the named ``groups``)."""
        from .enumeration import enumerated_log_densities
        from .translate import translate_errors

        a = self.adapter
        groups = groups or a.enumerator._groups()
        with translate_errors(f"when evaluated one pair at a time ({where})", None, a._fails_on_its_own):
            dens = enumerated_log_densities(
                a._model, args, kwargs, lead_shape=(), values=values or {}, groups=groups,
                observed=a.observed_names if values else (),
                max_plate_nesting=a._table.max_plate_nesting, handlers=(sp,) if sp is not None else ())
        return tuple(dens.log_densities[g] for g in groups)

    def _run(self, sp: ScoringPass, args, kwargs, where: str, fn=None) -> None:
        a = self.adapter
        from .translate import LastSite, translate_errors

        last = LastSite()
        with translate_errors(f"when evaluated one pair at a time ({where})", last, a._fails_on_its_own):
            sp(last(fn or a.model))(*args, **kwargs)

    def sample_joint(self, num_samples: int) -> JointSamples:
        """N joint draws, one plain run of the model each."""
        a = self.adapter
        rows = a.joint_rows(num_samples)
        names = a.observed_names + a.latent_names
        values: dict[str, list] = {n: [] for n in names + a.discrete_names}
        lps: dict[str, list] = {}
        enumerated: dict[str, list] = {"prior": [], "joint": []}
        for i in range(num_samples):
            sp = ScoringPass(a.latent_names + a.discrete_names, a.observed_names, (), {},
                             score=a.densities, score_observed=a.likelihood)
            args, kwargs = self._pair_arguments(rows, i)
            where = f"drawing joint sample {i} of {num_samples}"
            with pyro.validation_enabled(False):
                self._run(sp, args, kwargs, where, fn=a._generative())
                if a.enumerator is not None:  # log p(z*) and log p(x, z*) with k summed out
                    given = {n: sp.values[n].detach() for n in names}
                    with torch.no_grad():
                        prior, joint = self._enumerated(None, args, kwargs, where, values=given)
                    enumerated["prior"].append(prior)
                    enumerated["joint"].append(joint)
            for n in values:
                values[n].append(sp.values[n].detach())
            for n, lp in sp.site_log_probs.items():
                lps.setdefault(n, []).append(lp.detach())
        from .scoring import check_finite_draws, check_finite_log_probs

        stacked = {n: _stack(v, (num_samples,), a.sites[n].local_shape) for n, v in values.items()
                   if n in names}
        discrete = {n: torch.stack(values[n]) for n in a.discrete_names} or None
        check_finite_draws(stacked, num_samples)
        site_lp = {n: torch.stack(v) for n, v in lps.items()}
        check_finite_log_probs(site_lp, num_samples)
        observed = {n: stacked[n] for n in a.observed_names}
        observed.update(rows)
        latent = {n: stacked[n] for n in a.latent_names}
        some = next(iter(stacked.values()))
        zeros = torch.zeros(num_samples, dtype=some.dtype if some.is_floating_point() else torch.get_default_dtype(),
                            device=some.device)
        log_prior = sum((site_lp[n] for n in a.latent_names), zeros) if a.densities else zeros
        log_lik = sum((site_lp[n] for n in a.scored_observed), zeros)
        log_joint = None
        if a.enumerator is not None:
            log_prior, log_joint = torch.stack(enumerated["prior"]), torch.stack(enumerated["joint"])
        return JointSamples(observed, latent, log_prior, log_lik, discrete, log_joint)

