"""User API: ``mutual_information(model, observed="x", bound=...)``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import pyro
import torch
from pyro.infer.autoguide import AutoGuide

from ._rng import seeded
from .adapter import JointSamples, ModelAdapter
from .errors import GuideError, PyromiError
from .estimators.importance import importance_mi
from .proposals.base import PriorProposal, Proposal
from .proposals.guide import GuideProposal, fit_autoguide
from .result import MIEstimate

__all__ = ["mutual_information", "BOUNDS"]

#: bound name -> (status, description)
BOUNDS = {
    "iwae": ("available", "IWAE sandwich: lower and upper bounds from a proposal q(z|x)"),
    "ba": ("available", "Barber-Agakov lower bound E[log q(z|x) - log p(z)]"),
    "ais": ("planned", "Multi-Sample AIS sandwich bounds (issue 3)"),
    "giwae": ("planned", "GIWAE lower bound (issue 4)"),
    "infonce": ("planned", "InfoNCE lower bound (issue 4)"),
    "mine_dv": ("planned", "MINE Donsker-Varadhan lower bound (issue 4)"),
    "mine_f": ("planned", "MINE-F / NWJ lower bound (issue 4)"),
    "mine_ais": ("planned", "MINE-AIS energy-based lower bound (issue 4)"),
    "mist": ("planned", "MIST learned estimator for samples only (issue 5)"),
}


def _resolve_proposal(
    guide,
    adapter: ModelAdapter,
    joint: JointSamples,
    guide_steps: int,
) -> Proposal:
    if guide is None:
        return PriorProposal()
    if isinstance(guide, Proposal):
        return guide.bind(adapter)
    if isinstance(guide, type) and issubclass(guide, AutoGuide):
        if guide_steps < 1:
            raise GuideError("guide_steps must be >= 1 to fit an autoguide class")
        built = guide(adapter.conditioned_model(joint))
        return GuideProposal(fit_autoguide(adapter, joint, built, num_steps=guide_steps)).bind(adapter)
    if isinstance(guide, str):
        raise GuideError(
            f"guide={guide!r}: pass a guide object (an amortised guide callable, "
            "pyromi.AmortizedNormal, or an AutoNormal instance/class), not a string."
        )
    return GuideProposal(guide).bind(adapter)


def mutual_information(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    bound: str = "iwae",
    guide=None,
    num_samples: int = 256,
    num_particles: int = 1000,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    joint: JointSamples | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    max_batch: int = 2**18,
    guide_steps: int = 1000,
    seed: int | None = None,
    progress: bool = False,
) -> MIEstimate:
    """Bounds on the mutual information I(x; z) of a Pyro model, in nats.

    The model is read as ``p(x, z) = p(z) p(x | z)``: ``observed`` names the sites x, ``latent`` the
    sites z (default: every other stochastic site). N joint pairs ``(x_i, z_i*) ~ p(x, z)`` are drawn
    from the model, and each bound is the average of per-sample terms over them.

    Args:
        model: a Pyro model callable; observed sites are sampled generatively.
        observed: observed site name(s).
        latent: latent site name(s); default all other sample sites.
        bound: ``"iwae"`` (two-sided sandwich) or ``"ba"`` (Barber-Agakov lower bound).
            ``"ais"``, ``"giwae"``, ``"infonce"``, ``"mine_*"`` and ``"mist"`` are planned and raise
            ``NotImplementedError``.
        guide: the proposal q(z | x). ``None`` uses the prior p(z). Otherwise a
            :class:`pyromi.AmortizedNormal` (trained with :func:`pyromi.fit_proposal`), an amortised
            guide callable ``guide(x, *model_args, **model_kwargs)``, an ``AutoNormal`` instance built
            on ``ModelAdapter.conditioned_model(joint)`` (pass ``joint=`` too), or the ``AutoNormal``
            class itself, which pyromi builds on the evaluation batch and fits by SVI for
            ``guide_steps`` steps (the fit uses x only, so the bounds stay valid).
        num_samples: N, the number of joint draws.
        num_particles: K, proposal draws per sample (``iwae``); the lower bound uses z* plus K-1.
        model_args, model_kwargs: passed to the model (and to guides).
        joint: pre-drawn :class:`~pyromi.adapter.JointSamples` to evaluate instead of fresh draws
            (reuse one batch across bounds, or pair with a site-wise guide).
        device, dtype: where and in which dtype the model runs; default: the model's own.
            Log-weights are always accumulated in float64.
        max_batch: most (particle, sample) pairs per model pass; bounds memory for any K.
        seed: seeds joint draws and proposals; the same seed gives the same numbers.
        progress: show a progress bar.

    Returns:
        :class:`~pyromi.MIEstimate` with ``lower``/``upper`` in nats, their standard errors over the
        N draws, per-sample terms and diagnostics.
    """
    if bound not in BOUNDS:
        known = ", ".join(repr(b) for b in BOUNDS)
        raise ValueError(f"unknown bound={bound!r}; choose one of {known}")
    status, what = BOUNDS[bound]
    if status != "available":
        raise NotImplementedError(
            f"bound={bound!r} ({what}) is not implemented yet; available now: 'iwae', 'ba'."
        )
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples (N) must be a positive int, got {num_samples!r}")
    if not isinstance(num_particles, int) or isinstance(num_particles, bool) or num_particles < 1:
        raise ValueError(f"num_particles (K) must be a positive int, got {num_particles!r}")
    adapter = ModelAdapter(
        model,
        observed,
        latent,
        model_args=model_args,
        model_kwargs=model_kwargs,
        device=device,
        dtype=dtype,
    )
    with seeded(seed, adapter.device):
        if joint is None:
            with torch.no_grad():
                joint = adapter.sample_joint(num_samples)
        else:
            _check_joint(joint, adapter)
        proposal = _resolve_proposal(guide, adapter, joint, guide_steps)
        if bound == "ba" and isinstance(proposal, PriorProposal):
            warnings.warn(
                "bound='ba' with the prior as proposal is identically 0; pass guide= "
                "(e.g. a trained pyromi.AmortizedNormal) for an informative lower bound.",
                stacklevel=2,
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
    est.settings.update(seed=seed, guide_steps=guide_steps if isinstance(guide, type) else None)
    return est


def _check_joint(joint: JointSamples, adapter: ModelAdapter) -> None:
    if not isinstance(joint, JointSamples):
        raise PyromiError(f"joint= must be JointSamples from ModelAdapter.sample_joint, got {type(joint).__name__}")
    if set(joint.observed) != set(adapter.observed_names) or set(joint.latent) != set(adapter.latent_names):
        raise PyromiError(
            f"joint= holds sites observed={list(joint.observed)}, latent={list(joint.latent)} but the "
            f"estimate uses observed={adapter.observed_names}, latent={adapter.latent_names}."
        )
    for name, v in {**joint.observed, **joint.latent}.items():
        expected = adapter.sites[name].local_shape
        if v.shape[1:] != expected or v.shape[0] != joint.num_samples:
            raise PyromiError(
                f"joint= site '{name}' has shape {tuple(v.shape)}, expected (N,) + {tuple(expected)}"
            )
        if v.device != adapter.device and adapter.device.type != v.device.type:
            raise PyromiError(f"joint= site '{name}' is on {v.device}, the model on {adapter.device}")
