"""Density evaluation: one model pass that sets site values and returns every site's log density.

:class:`ScoringPass` is the one evaluator behind joint draws and density passes: it sets observed
values, latent values (constrained, or ``T(u)`` for unconstrained ``u``), scores the sites, and
returns per-site terms in the evaluation itself (no side channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from pyro.distributions.transforms import biject_to
from pyro.distributions.util import scale_and_mask, sum_rightmost
from pyro.poutine.messenger import Messenger

from ..errors import DensityError

__all__ = ["JointSamples", "ModelEvaluation", "ScoringPass", "UnconditionSites", "AsEvents", "sum_trailing", "total"]


class JointSamples(NamedTuple):
    """N joint draws ``(x_i, z_i*) ~ p(x, z)`` with their log densities.

    ``observed[name]`` and ``latent[name]`` have shape ``(N,) + local_shape``; ``log_prior`` is
    ``log p(z_i*)`` and ``log_likelihood`` is ``log p(x_i | z_i*)``, both of shape ``(N,)``, in nats.
    With discrete latents summed out by enumeration, ``latent`` holds the continuous latents z*,
    ``discrete`` the discrete draws k*, ``log_likelihood`` is ``log p(x_i | k_i*, z_i*)`` and
    ``log_prior`` is ``log p(z_i*)`` with k summed out. ``observed`` may also carry the rows of the
    model's data arguments (keys starting with ``_pm_arg``) under a data plate.
    """

    observed: dict[str, torch.Tensor]
    latent: dict[str, torch.Tensor]
    log_prior: torch.Tensor
    log_likelihood: torch.Tensor
    discrete: dict[str, torch.Tensor] | None = None
    #: ``log p(x_i, z_i*)`` with discrete latents summed out (None: ``log_prior + log_likelihood``)
    log_joint: torch.Tensor | None = None

    @property
    def num_samples(self) -> int:
        return self.log_prior.shape[0]

    def rows(self, start: int, stop: int) -> "JointSamples":
        """Samples ``[start, stop)`` (every per-sample field sliced along its first axis)."""
        def cut(d):
            return None if d is None else {k: v[start:stop] for k, v in d.items()}

        return JointSamples(cut(self.observed), cut(self.latent), self.log_prior[start:stop],
                            self.log_likelihood[start:stop], cut(self.discrete),
                            None if self.log_joint is None else self.log_joint[start:stop])

    @property
    def log_density_star(self) -> torch.Tensor:
        """``log p(x_i, z_i*)``, shape ``(N,)``, float64: the joint density at each draw's continuous
        z* (with discrete latents summed out)."""
        if self.log_joint is None:
            return self.log_prior.double() + self.log_likelihood.double()
        return self.log_joint.double()


class ModelEvaluation(NamedTuple):
    """Log densities of C particles for each of N samples, each of shape ``(C, N)`` (nats).

    ``log_prior = log p(z)`` (None where it was not needed), ``log_likelihood = log p(x | z)``
    and, for evaluations in the unconstrained space, ``log_abs_det_jacobian = log |dT(u)/du|``
    (zeros otherwise). ``latent`` holds the constrained latent values, ``(C, N) + local_shape``.
    """

    latent: dict[str, torch.Tensor]
    log_prior: torch.Tensor | None
    log_likelihood: torch.Tensor
    log_abs_det_jacobian: torch.Tensor
    #: per-site log densities ``(C, N)`` of the scored sites (latent: ``log p(z_s | parents)``)
    site_log_probs: dict[str, torch.Tensor] | None = None
    #: per-site ``log|dT_s/du_s|`` ``(C, N)`` of the unconstrained latent sites (identity: absent)
    site_log_abs_det_jacobian: dict[str, torch.Tensor] | None = None
    #: bool ``(C, N)``: some ``z = T(u)`` is not representable (non-finite, or rounded onto the
    #: boundary of its support, e.g. ``exp(-100) = 0`` in float32): a float artefact of a far
    #: ``u``, not a value of the model (None where not computed)
    saturated: torch.Tensor | None = None


def sum_trailing(t: torch.Tensor, lead: int) -> torch.Tensor:
    """Sum all dimensions after the first ``lead`` ones."""
    if t.dim() <= lead:
        return t
    return t.reshape(t.shape[:lead] + (-1,)).sum(-1)


def total(site_lp: dict, names: Sequence[str], lead_shape, like: torch.Tensor) -> torch.Tensor:
    """Sum of the per-site log densities of ``names``; zeros of ``lead_shape`` when none is scored."""
    if names:
        return sum(site_lp[n] for n in names)
    return torch.zeros(lead_shape, dtype=like.dtype, device=like.device)


def is_identity(transform) -> bool:
    """True for the identity bijection of real supports (possibly wrapped in IndependentTransform)."""
    while isinstance(transform, torch.distributions.transforms.IndependentTransform):
        transform = transform.base_transform
    return transform is torch.distributions.transforms.identity_transform or (
        isinstance(transform, torch.distributions.transforms.ComposeTransform) and not transform.parts
    )


class AsEvents(Messenger):
    """Read the rightmost ``k`` batch dimensions of the named sites as event dimensions
    (``fn.to_event(k)``): the same values and the same summed log density, with pyromi's outer
    plates placed left of them."""

    def __init__(self, events: dict[str, int]):
        super().__init__()
        self.events = dict(events)

    def _process_message(self, msg) -> None:
        k = self.events.get(msg["name"]) if msg["type"] == "sample" else None
        if k:
            fn = msg["fn"]
            k = min(k, len(fn.batch_shape))
            if k:
                msg["fn"] = fn.to_event(k)


class UnconditionSites(Messenger):
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


class ScoringPass(Messenger):
    """One model pass without building a trace: set site values, accumulate log densities.

    Observed sites take ``observed`` values; latent sites take constrained ``latent`` values, or
    ``T(u)`` for ``unconstrained`` values (``T = biject_to(support)`` chosen at run time, so
    latent-dependent supports are handled, with ``log|dT/du|`` accumulated), or are sampled by the
    model itself (``latent`` and ``unconstrained`` without the site). Log densities are summed over
    every dimension after the first ``lead`` ones (2 under pyromi's plates: ``(C, N)``; 0 in a
    plain single-pair run) and expanded to ``lead_shape``. With ``record_unconstrained`` the pass
    also records ``u = T^{-1}(z)`` and ``log|dT/du|`` at z.  What is scored:
    (``score=False``: none; ``score_prior=False``: no latent site; ``score_observed=False``: no
    observed site; values are recorded either way); sites in ``constant_names`` are scored into
    ``constant_log_probs``.
    """

    def __init__(
        self,
        latent_names: Sequence[str],
        observed_names: Sequence[str],
        lead_shape: tuple[int, ...],
        observed: dict[str, torch.Tensor],
        latent: dict[str, torch.Tensor] | None = None,
        unconstrained: dict[str, torch.Tensor] | None = None,
        record_unconstrained: bool = False,
        score_prior: bool = True,
        constant_names: Sequence[str] = (),
        score: bool = True,
        score_observed: bool = True,
    ):
        super().__init__()
        self.lead = len(lead_shape)
        self.constant_names = set(constant_names)
        self.batch_shapes: dict[str, torch.Size] = {}
        self.constant_log_probs: dict[str, torch.Tensor] = {}
        self.latent_names = set(latent_names)
        self.observed_names = set(observed_names)
        self.lead_shape = tuple(lead_shape)
        self.observed = observed
        self.latent = latent or {}
        self.unconstrained_in = unconstrained or {}
        self.record = record_unconstrained
        self.score_prior = score_prior
        self.score = score
        self.score_observed = score_observed
        self.values: dict[str, torch.Tensor] = {}
        self.unconstrained: dict[str, torch.Tensor] = {}
        self.site_log_probs: dict[str, torch.Tensor] = {}
        self.site_ladj: dict[str, torch.Tensor] = {}
        self.log_abs_det_jacobian: torch.Tensor | float = 0.0
        self.saturated: torch.Tensor | None = None

    def _add_ladj(self, name, transform, u, value, event_dim) -> None:
        if is_identity(transform):
            return
        ladj = transform.log_abs_det_jacobian(u, value)
        ladj = sum_trailing(sum_rightmost(ladj, ladj.dim() - (value.dim() - event_dim)), self.lead)
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
            self._mark_saturated(fn, msg["value"])
            msg["done"] = True
        elif name in self.latent:
            msg["value"] = self.latent[name]
            msg["done"] = True

    def _postprocess_message(self, msg) -> None:
        if msg["type"] != "sample":
            return
        name = msg["name"]
        if name in self.constant_names:
            if self.score:
                lp = scale_and_mask(msg["fn"].log_prob(msg["value"]), msg["scale"], msg["mask"])
                self.constant_log_probs[name] = sum_trailing(lp, self.lead).expand(self.lead_shape)
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
        else:
            self.values[name] = value
            if not self.score_observed:
                return
        if not self.score:
            return
        lp = scale_and_mask(fn.log_prob(value), msg["scale"], msg["mask"])
        self.site_log_probs[name] = sum_trailing(lp, self.lead).expand(self.lead_shape)

    def _mark_saturated(self, fn, value: torch.Tensor) -> None:
        if not self.lead:
            return
        with torch.no_grad():
            bad = ~torch.isfinite(value)
            if fn.event_dim:
                bad = bad.reshape(bad.shape[:bad.dim() - fn.event_dim] + (-1,)).any(-1)
            try:
                bad = bad | ~fn.support.check(value)
            except Exception:  # noqa: BLE001 - a support without a usable check: finiteness only
                pass
            bad = bad.reshape(bad.shape[:self.lead] + (-1,)).any(-1) if bad.dim() > self.lead else bad
            bad = bad.expand(self.lead_shape)
            self.saturated = bad if self.saturated is None else self.saturated | bad

    def log_densities(self, names: Sequence[str]) -> torch.Tensor:
        return sum(self.site_log_probs[n] for n in names)


def check_finite_draws(values: dict[str, torch.Tensor], num_samples: int) -> None:
    """Simulated site values must be finite: a :class:`DensityError` naming the site otherwise."""
    for name, value in values.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value.reshape(num_samples, -1))).any(-1).sum())
            raise DensityError(
                f"site '{name}' is NaN or infinite in {bad} of {num_samples} joint draws (its "
                "simulated values): its distribution's parameters are not finite for some values "
                "of the sites before it (e.g. a location computed as NaN, an overflow in exp). "
                "Make them finite for every value the latents can take."
            )


def check_finite_log_probs(site_lp: dict[str, torch.Tensor], num_samples: int) -> None:
    """Joint draws' log densities must be finite: a :class:`DensityError` naming the site."""
    for name, lp in site_lp.items():
        if not bool(torch.isfinite(lp).all()):
            count = int((~torch.isfinite(lp)).sum())
            raise DensityError(
                f"log density of site '{name}' is NaN or infinite at {count} of {num_samples} joint "
                "draws. Check its parameters (e.g. a scale that can reach 0, a support the "
                "drawn values can leave, overflow in exp); pyromi never averages non-finite terms."
            )
