"""Pyro guides as proposals q(z | x).

Two kinds of guide give a per-observation density ``log q(z | x_i)``:

* **amortised guides**: any callable ``guide(x, *model_args, **model_kwargs)`` that samples every
  latent site from a density computed from ``x`` (the observed value, a tensor of shape
  ``(N,) + local_shape``, or a dict of them when there are several observed sites). It is called
  under pyromi's plates, so it must broadcast over leading dimensions, like a model.
* **site-wise autoguides**: :class:`pyro.infer.autoguide.AutoNormal` built on
  :meth:`ModelAdapter.conditioned_model` (the model under pyromi's sample plate, conditioned on the
  N evaluation observations), so that each observation has its own local parameters.

Packed guides (``AutoDiagonalNormal``, ``AutoMultivariateNormal``, flows, ...) put all N
observations' latents into one vector with one joint ``log q``; they cannot give per-x densities
and are rejected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoContinuous, AutoGuide, AutoNormal
from pyro.poutine.util import site_is_subsample

from .._state import entry_point
from ..adapter import PARTICLE_PLATE, SAMPLE_PLATE, ModelAdapter, JointSamples, _sum_trailing
from ..errors import GuideError
from .base import Proposal, ProposalDraw

__all__ = ["GuideProposal", "fit_autoguide"]


@contextlib.contextmanager
def _translate_guide_errors(stage: str, adapter: ModelAdapter):
    try:
        yield
    except GuideError:
        raise
    except Exception as e:
        msg = str(e).split("\nTrace Shapes:")[0].replace("\n", " ").rstrip(".")
        shapes = ", ".join(
            f"'{n}': (C, N) + {tuple(adapter.sites[n].local_shape)}" for n in adapter.latent_names
        )
        raise GuideError(
            f"the guide failed when {stage}: {type(e).__name__}: {msg}. A proposal guide is called "
            "under pyromi's (particle, sample) plates and must sample every latent site with the "
            f"model's shapes ({shapes}), broadcasting over leading dimensions."
        ) from e


def _guide_x(adapter: ModelAdapter, observed: dict[str, torch.Tensor]):
    if len(adapter.observed_names) == 1:
        return observed[adapter.observed_names[0]]
    return dict(observed)


class GuideProposal(Proposal):
    """A Pyro guide used as the proposal q(z | x) (see the module docstring for the protocols)."""

    def __init__(self, guide: Callable) -> None:
        if isinstance(guide, AutoContinuous):
            raise GuideError(
                f"{type(guide).__name__} packs the latents of all N observations into one vector "
                "and gives one joint log q for the whole batch, not log q(z | x_i) per "
                "observation, so it cannot serve as a per-sample proposal. Use AutoNormal built on "
                "adapter.conditioned_model(joint), pyromi.AmortizedNormal, or an amortised guide "
                "guide(x) that samples each latent site."
            )
        if isinstance(guide, AutoGuide) and not isinstance(guide, AutoNormal):
            raise GuideError(
                f"{type(guide).__name__} is not supported as a proposal: pyromi needs a density "
                "q(z | x_i) per observation. Use AutoNormal (site-wise), pyromi.AmortizedNormal, or "
                "an amortised guide guide(x)."
            )
        if not callable(guide):
            raise GuideError(f"guide must be callable, got {type(guide).__name__}")
        self.guide = guide
        self.sitewise = isinstance(guide, AutoNormal)
        self.name = type(guide).__name__ if self.sitewise else getattr(guide, "__name__", "guide")

    # ------------------------------------------------------------------ helpers
    def _check_sitewise(self, adapter: ModelAdapter, num_samples: int) -> None:
        proto = self.guide.prototype_trace
        if proto is None:
            raise GuideError(
                "the AutoNormal guide has not been run yet. Build it on "
                "adapter.conditioned_model(joint), train it (SVI or pyromi.fit_autoguide) and pass "
                "the same joint samples with joint=."
            )
        sizes = [
            f.size
            for site in proto.nodes.values()
            if site["type"] == "sample"
            for f in site["cond_indep_stack"]
            if f.name == SAMPLE_PLATE
        ]
        if adapter.data_plate is not None:
            sizes = sizes or [f.size for site in proto.nodes.values() if site["type"] == "sample"
                              for f in site["cond_indep_stack"] if f.name == adapter.data_plate.name]
        if not sizes:
            raise GuideError(
                "the AutoNormal guide was built on the model itself, so its q(z) does not depend "
                "on x. Build it on adapter.conditioned_model(joint) (the model under pyromi's "
                "sample plate), or use pyromi.AmortizedNormal."
            )
        if sizes[0] != num_samples:
            raise GuideError(
                f"the AutoNormal guide was built for {sizes[0]} observations but {num_samples} are "
                "being evaluated. Pass the joint samples it was built on with joint=."
            )

    def _trace(
        self,
        adapter: ModelAdapter,
        observed: dict[str, torch.Tensor],
        num_particles: int,
        num_samples: int,
        data: dict[str, torch.Tensor] | None = None,
    ) -> poutine.Trace:
        guide = self.guide if data is None else poutine.condition(self.guide, data=data)
        stage = "drawing proposals" if data is None else "scoring the true latents z*"
        with poutine.block(), _translate_guide_errors(stage, adapter):
            if self.sitewise:
                self._check_sitewise(adapter, num_samples)
                with pyro.plate(PARTICLE_PLATE, num_particles, dim=-2 - adapter.max_plate_nesting):
                    tr = poutine.trace(guide).get_trace(*adapter.model_args, **adapter.model_kwargs)
            elif adapter.data_plate is not None:
                # a guide written like the model, guide(x) with the same data plate: called with
                # the model's arguments for these samples (the data argument rebuilt from x)
                args, kwargs = adapter.arguments(observed, num_samples)
                with adapter._plates(num_particles, num_samples):
                    tr = poutine.trace(guide).get_trace(*args, **kwargs)
            else:
                with adapter._plates(num_particles, num_samples):
                    tr = poutine.trace(guide).get_trace(
                        _guide_x(adapter, observed), *adapter.model_args, **adapter.model_kwargs
                    )
            tr.compute_log_prob()
        return tr

    def _log_q(self, tr: poutine.Trace, adapter: ModelAdapter, k: int, n: int) -> torch.Tensor:
        log_q = torch.zeros((k, n), dtype=torch.float64, device=adapter.device)
        if not self.sitewise:
            latent = set(adapter.latent_names)
            extra = [name for name, site in tr.nodes.items()
                     if site["type"] == "sample" and not site_is_subsample(site)
                     and name not in latent and not site["is_observed"]]
            if extra:
                raise GuideError(
                    f"the guide samples site(s) {extra} that are not latent sites of the model "
                    f"({adapter.latent_names}). q(z | x) must be a density of the latents alone: "
                    "an extra sample site would add its own log density to log q and bias both "
                    "bounds. Remove it from the guide (compute auxiliary values without "
                    "pyro.sample), or add it to the model's latent sites."
                )
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            lp = _sum_trailing(site["log_prob"], 2)
            if lp.dim() == 2 and lp.shape[1] == 1 and n > 1:
                raise GuideError(
                    f"guide site '{name}' has a log density of shape {tuple(lp.shape)}: one value "
                    "for all observations, not log q(z | x_i) per observation. Sample it inside "
                    "the batch (amortise it on x, or use AutoNormal on adapter.conditioned_model)."
                )
            log_q = log_q + lp.double()
        return log_q

    # ------------------------------------------------------------------ Proposal interface
    def sample(self, adapter, observed, num_particles):
        n = next(iter(observed.values())).shape[0]
        tr = self._trace(adapter, observed, num_particles, n)
        latent = {}
        for name in adapter.latent_names:
            if name not in tr.nodes:
                raise GuideError(
                    f"the guide does not sample latent site '{name}'; a proposal must sample every "
                    f"latent site ({adapter.latent_names}) under the same name."
                )
            v = tr.nodes[name]["value"]
            expected = (num_particles, n) + adapter.sites[name].local_shape
            if v.shape != expected:
                raise GuideError(
                    f"guide site '{name}' has shape {tuple(v.shape)} under pyromi's plates, "
                    f"expected {expected} ((particles, samples) + the model's site shape). Match the "
                    "model's event shape (.to_event) and broadcast over leading dimensions."
                )
            latent[name] = v
        log_q = self._log_q(tr, adapter, num_particles, n)
        ev = adapter.log_density(latent, observed)
        return ProposalDraw.from_log_q(log_q, ev)

    def log_prob(self, adapter, latent, observed, evaluation=None, *, check: bool = True):
        k, n = next(iter(latent.values())).shape[:2]
        if self.sitewise:
            self._check_sitewise(adapter, n)
            proto = self.guide.prototype_trace
            data = {
                f"{name}_unconstrained": biject_to(proto.nodes[name]["fn"].support).inv(v)
                for name, v in latent.items()
            }
        else:
            data = latent
        tr = self._trace(adapter, observed, k, n, data=data)
        log_q = self._log_q(tr, adapter, k, n)
        if check and not bool(torch.isfinite(log_q).all()):
            raise GuideError(
                "the guide gives log q(z | x) = -inf or NaN at the true latent values z*. Its latent "
                "sites must be sampled from distributions with a density on the whole support "
                "(not a Delta of auxiliary variables), so that q can score any z."
            )
        return log_q

    def log_prob_unconstrained(self, adapter, u, observed, evaluation):
        # no finiteness check here: it would synchronise with the device inside annealing loops
        log_q = self.log_prob(adapter, evaluation.latent, observed, evaluation, check=False)
        return log_q + evaluation.log_abs_det_jacobian

    def __repr__(self) -> str:
        return f"GuideProposal({self.name})"


@entry_point
def fit_autoguide(
    adapter: ModelAdapter,
    joint: JointSamples,
    guide: AutoNormal | None = None,
    *,
    num_steps: int = 1000,
    optim: pyro.optim.PyroOptim | None = None,
    num_particles: int = 1,
    seed: int | None = None,
    progress: bool | None = None,
) -> AutoNormal:
    """Fit a site-wise AutoNormal to the N evaluation observations by maximising the ELBO.

    The guide is built on ``adapter.conditioned_model(joint)`` (one set of local parameters per
    observation) and trained with ``SVI(Trace_ELBO)``. Training uses only x, never z*, so the
    resulting proposal keeps every bound valid. Returns the trained guide. ``progress``: a bar on
    stderr (``None``, default: once the fit has taken a few seconds; ``True``; ``False``).
    """
    from .._progress import ProgressBar, check_progress
    from .._rng import seeded

    check_progress(progress)

    model = adapter.conditioned_model(joint)
    if guide is None:
        guide = AutoNormal(model)
    optim = optim or pyro.optim.Adam({"lr": 0.02})
    elbo = pyro.infer.Trace_ELBO(
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
        max_plate_nesting=adapter.max_plate_nesting + 1,
    )
    with seeded(seed, adapter.device):
        svi = pyro.infer.SVI(model, guide, optim, elbo)
        with pyro.validation_enabled(False), ProgressBar(num_steps, "fit AutoNormal", progress) as bar:
            for _ in range(num_steps):
                loss = svi.step(*adapter.model_args, **adapter.model_kwargs)
                bar.update(1, postfix=f"-ELBO {loss:.4g}")
    return guide
