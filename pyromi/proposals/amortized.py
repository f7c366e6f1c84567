"""AmortizedNormal: a diagonal Gaussian q(u | x) on the packed unconstrained latents, from an MLP.

``u ~ N(mu(x), diag(s(x)^2))``, ``z = T(u)`` with the adapter's bijection, so
``log q(z | x) = log N(u; mu(x), s(x)) - log |dT/du|``. It works for any set of continuous latent
sites (several sites, plates, constrained supports) and is trained by :class:`ProposalTrainer`,
which maximises ``E_{p(x, z)} log q(z | x)`` on freshly simulated pairs — the forward-KL fit
``KL(p(z|x) || q(z|x))`` that makes q cover the posterior, which is what importance sampling needs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import pyro
import torch
from torch import nn

from .._progress import ProgressBar, check_progress
from .._rng import RNGStream, check_seed, seeded
from .._state import entry_point
from ..distributed import DataParallel
from ..adapter import ModelAdapter
from ..errors import GuideError
from .base import Proposal, ProposalDraw

__all__ = ["AmortizedNormal", "ProposalTrainer", "fit_proposal"]

_LOG_2PI = math.log(2 * math.pi)


def check_optim(optim) -> None:
    """A ``TypeError`` naming ``optim=`` unless it is None or a Pyro optimiser (``PyroOptim``)."""
    if optim is None or isinstance(optim, pyro.optim.PyroOptim):
        return
    if isinstance(optim, (str, int, float)):
        got = f"{optim!r} ({type(optim).__name__})"
    elif isinstance(optim, type):
        got = f"the class {optim.__module__}.{optim.__qualname__}"
    else:
        got = f"a {type(optim).__module__}.{type(optim).__qualname__}"
    torch_optim = isinstance(optim, torch.optim.Optimizer) or (
        isinstance(optim, type) and issubclass(optim, torch.optim.Optimizer))
    if torch_optim:
        got += " (a torch optimiser: pyro.optim wraps it, e.g. pyro.optim.Adam for torch.optim.Adam)"
    raise TypeError(
        f"optim= must be a Pyro optimiser (a pyro.optim.PyroOptim) or None for the default, got "
        f"{got}; e.g. optim=pyro.optim.Adam({{\"lr\": 1e-3}})."
    )


def check_num_steps(num_steps) -> int:
    """``num_steps`` of ``.run()`` as an int >= 0, or a ``ValueError`` naming it."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 0:
        raise ValueError(f"num_steps must be an int >= 0, got {num_steps!r}")
    return int(num_steps)


class AmortizedNormal(Proposal, nn.Module):
    """Amortised diagonal-Gaussian proposal in the unconstrained latent space.

    Args:
        model: the Pyro model (or a :class:`ModelAdapter` for it).
        observed: observed site name(s); ``latent``, ``model_args``, ``model_kwargs`` as for
            :class:`ModelAdapter`.
        hidden: widths of the MLP's hidden layers.
        num_init_samples: joint draws used to standardise inputs and outputs at construction.
        seed: seed for the initialisation draws and weights.
    """

    name = "AmortizedNormal"

    def __init__(
        self,
        model: Callable | ModelAdapter,
        observed: str | Sequence[str] | None = None,
        latent: str | Sequence[str] | None = None,
        *,
        hidden: Sequence[int] = (128, 128),
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        num_init_samples: int = 1024,
        seed: int | None = 0,
    ) -> None:
        nn.Module.__init__(self)
        if isinstance(model, ModelAdapter):
            adapter = model
        else:
            if observed is None:
                raise GuideError("AmortizedNormal needs observed= (the observed site names)")
            adapter = ModelAdapter(
                model, observed, latent, model_args=model_args, model_kwargs=model_kwargs, seed=seed
            )
        self.adapter = adapter
        self.observed_names = list(adapter.observed_names)
        self.latent_names = list(adapter.latent_names)
        self.latent_dim = adapter.latent_dim
        self.input_dim = sum(math.prod(adapter.sites[n].local_shape) for n in self.observed_names)
        dtype, device = adapter.dtype, adapter.device
        with seeded(seed, device):
            joint = adapter.sample_joint(num_init_samples)
            x = self._flatten(joint.observed).to(dtype)
            u, _ = adapter.unconstrain({k: v.unsqueeze(0) for k, v in joint.latent.items()}, joint.observed)
            u = u[0]
            layers: list[nn.Module] = []
            width = self.input_dim
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ELU()]
                width = h
            layers.append(nn.Linear(width, 2 * self.latent_dim))
            self.net = nn.Sequential(*layers).to(device=device, dtype=dtype)
            with torch.no_grad():  # start at the prior's spread: loc = mean(u), scale = std(u)
                self.net[-1].weight.mul_(0.01)
                self.net[-1].bias.zero_()
        self.register_buffer("x_mean", x.mean(0))
        self.register_buffer("x_std", x.std(0).clamp_min(1e-6))
        self.register_buffer("u_mean", u.mean(0).to(dtype))
        self.register_buffer("u_std", u.std(0).clamp_min(1e-6).to(dtype))

    # ------------------------------------------------------------------ the network
    def _flatten(self, observed: dict[str, torch.Tensor]) -> torch.Tensor:
        n = observed[self.observed_names[0]].shape[0]
        return torch.cat([observed[k].reshape(n, -1) for k in self.observed_names], dim=-1)

    def forward(self, observed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of q(u | x), each ``(N, D)``."""
        x = (self._flatten(observed).to(self.x_mean.dtype) - self.x_mean) / self.x_std
        out = self.net(x)
        loc_raw, scale_raw = out[..., : self.latent_dim], out[..., self.latent_dim :]
        loc = self.u_mean + self.u_std * loc_raw
        scale = self.u_std * nn.functional.softplus(scale_raw + math.log(math.e - 1)) + 1e-6
        return loc, scale

    @staticmethod
    def _log_normal(u: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``log N(u; loc, diag(scale^2))`` summed over the last dimension."""
        zs = (u - loc) / scale
        return (-0.5 * zs**2 - scale.log() - 0.5 * _LOG_2PI).sum(-1)

    # ------------------------------------------------------------------ Proposal interface
    def bind(self, adapter: ModelAdapter) -> "AmortizedNormal":
        if adapter.latent_names != self.latent_names or adapter.latent_dim != self.latent_dim:
            raise GuideError(
                f"this AmortizedNormal was built for latent sites {self.latent_names} "
                f"(dimension {self.latent_dim}) but the estimate uses {adapter.latent_names} "
                f"(dimension {adapter.latent_dim}). Build it with the same observed=/latent=."
            )
        if adapter.observed_names != self.observed_names:
            raise GuideError(
                f"this AmortizedNormal reads observed sites {self.observed_names} but the estimate "
                f"uses {adapter.observed_names}."
            )
        if self.x_mean.device != adapter.device:
            raise GuideError(
                f"AmortizedNormal is on {self.x_mean.device} but the model on {adapter.device}; "
                f"call proposal.to('{adapter.device}')."
            )
        return self

    def sample(self, adapter, observed, num_particles):
        loc, scale = self(observed)
        eps = torch.randn((num_particles,) + loc.shape, dtype=loc.dtype, device=loc.device)
        u = loc + scale * eps
        ev = adapter.log_density_unconstrained(u, observed)
        log_q = self._log_normal(u, loc, scale).double() - ev.log_abs_det_jacobian.double()
        return ProposalDraw.from_log_q(log_q, ev)

    def sample_sites(self, adapter, observed, num_particles):
        """Draws as in :meth:`sample`, with the density split by latent site: returns the model's
        evaluation and ``{site: log q_s(z_s | x)}`` ``(K, N)`` float64, where
        ``log q_s = log N(u_s; loc_s, scale_s) - log|J_s|`` on the site's slice ``u_s`` of the
        unconstrained vector (q factorises over sites; the per-site terms sum to the total log q)."""
        loc, scale = self(observed)
        u = loc + scale * torch.randn((num_particles,) + loc.shape, dtype=loc.dtype, device=loc.device)
        ev = adapter.log_density_unconstrained(u, observed)
        ladj = ev.site_log_abs_det_jacobian or {}
        site_log_q = {}
        for name in adapter.latent_names:
            a, b = adapter._offsets[name]
            lq = self._log_normal(u[..., a:b], loc[..., a:b], scale[..., a:b]).double()
            site_log_q[name] = lq - ladj[name].double() if name in ladj else lq
        return ev, site_log_q

    def sample_unconstrained(self, adapter, observed, num_particles):
        with torch.no_grad():
            loc, scale = self(observed)
        eps = torch.randn((num_particles,) + loc.shape, dtype=loc.dtype, device=loc.device)
        return loc + scale * eps

    def log_prob_unconstrained(self, adapter, u, observed, evaluation):
        """``log N(u; mu(x), s(x))``: the Gaussian lives on the unconstrained space already."""
        with torch.no_grad():
            loc, scale = self(observed)
        return self._log_normal(u, loc, scale)

    def log_prob(self, adapter, latent, observed, evaluation=None):
        u, ev = adapter.unconstrain(latent, observed)
        loc, scale = self(observed)
        return self._log_normal(u, loc, scale).double() - ev.log_abs_det_jacobian.double()

    def __repr__(self) -> str:
        return (
            f"AmortizedNormal(latent={self.latent_names}, latent_dim={self.latent_dim}, "
            f"input_dim={self.input_dim})"
        )


class ProposalTrainer:
    """Fit an :class:`AmortizedNormal` by maximising ``E_{p(x,z)} log q(z | x)``, Pyro-SVI style.

    Each :meth:`step` draws a fresh batch of joint pairs ``(x, z*)`` from the model, takes one
    optimiser step on ``-mean log q(z* | x)`` and returns that loss (nats). Fresh pairs every step
    mean there is no over-fitting to an evaluation batch, and q never sees the pairs the bounds are
    evaluated on.

    Args:
        proposal: the AmortizedNormal to train (updated in place).
        optim: a Pyro optimiser (``pyro.optim.Adam({"lr": 1e-3})`` by default).
        batch_size: joint pairs per step.
        seed: seeds the trainer's own random stream (see below); None seeds it with one draw from
            torch's global RNG at construction.

    Randomness: every :meth:`step` / :meth:`run` draws from the trainer's private stream, which
    starts where ``seeded(seed)`` would, never from torch's global RNG, which is left untouched:
    training is a function of the seed and the steps taken. ``run(n, seed=s)`` restarts the stream
    from ``s`` first. (Evaluate on pairs drawn with another seed: a batch drawn with
    ``seeded(seed)`` is the first training batch when the sizes match.)
    """

    def __init__(
        self,
        proposal: AmortizedNormal,
        optim: pyro.optim.PyroOptim | None = None,
        batch_size: int = 256,
        *,
        seed: int | None = 0,
    ) -> None:
        if not isinstance(proposal, AmortizedNormal):
            raise TypeError(
                f"ProposalTrainer trains an AmortizedNormal proposal, got {type(proposal).__name__}; "
                "build one with pyromi.AmortizedNormal(model, observed=...)"
            )
        check_optim(optim)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        seed = check_seed(seed)
        self.proposal = proposal
        self.optim = optim if optim is not None else pyro.optim.Adam({"lr": 1e-3})
        self.batch_size = int(batch_size)
        self.seed = seed
        self._parallel = DataParallel(proposal.adapter.device)  # torch.distributed: data-parallel
        self._rng = RNGStream(self._parallel.seed(seed), proposal.adapter.device)
        self.history: list[float] = []

    def loss(self, observed, latent) -> torch.Tensor:
        """``-mean_i log q(z_i* | x_i)`` in nats."""
        adapter = self.proposal.adapter
        u, ev = adapter.unconstrain({k: v.unsqueeze(0) for k, v in latent.items()}, observed)
        loc, scale = self.proposal(observed)
        log_q = self.proposal._log_normal(u[0].detach(), loc, scale) - ev.log_abs_det_jacobian[0]
        return -log_q.mean()

    @entry_point
    def step(self) -> float:
        """One optimiser step on a fresh batch; returns the loss ``-mean log q(z*|x)`` (nats).

        The batch is drawn from the trainer's own random stream; torch's global RNG is untouched."""
        with self._rng.active():
            return self._step()

    def _step(self) -> float:
        adapter = self.proposal.adapter
        params = [p for p in self.proposal.parameters() if p.requires_grad]
        self._parallel.start(params)

        def local_step() -> float:
            with torch.no_grad(), pyro.validation_enabled(False):
                joint = adapter.sample_joint(self.batch_size)
            with pyro.validation_enabled(False):
                loss = self.loss(joint.observed, joint.latent)
            if not bool(torch.isfinite(loss)):
                raise FloatingPointError(
                    "AmortizedNormal training diverged (loss is NaN/inf); lower the learning rate"
                )
            for p in params:
                p.grad = None
            loss.backward()
            return float(loss.detach())

        value = self._parallel.step(local_step)  # under torch.distributed: a failure stops every rank
        self._parallel.reduce(params)
        self.optim(params)
        value = self._parallel.objective(value)
        self.history.append(value)
        return value

    @entry_point
    def run(self, num_steps: int, *, seed: int | None = None,
            progress: bool | None = None) -> list[float]:
        """Take ``num_steps`` steps; returns the loss history of this run.

        ``seed=s`` first restarts the trainer's stream from ``s`` (the draws of a new trainer built
        with ``seed=s``); ``seed=None`` continues it. The global RNG is neither read nor changed.
        ``progress``: a bar on stderr with the current loss (``None``, default: once the run has
        taken a few seconds; ``True``: from the start; ``False``: never)."""
        num_steps = check_num_steps(num_steps)
        seed = check_seed(seed)
        check_progress(progress)
        start = len(self.history)
        if seed is not None:
            self._rng.reset(self._parallel.seed(seed))
        with self._rng.active(), ProgressBar(num_steps, "fit q(z|x)", progress) as bar:
            for _ in range(num_steps):
                bar.update(1, postfix=f"loss {self._step():.4g}")
        return self.history[start:]


@entry_point
def fit_proposal(
    proposal: AmortizedNormal,
    num_steps: int = 2000,
    *,
    optim: pyro.optim.PyroOptim | None = None,
    batch_size: int = 256,
    seed: int | None = None,
    progress: bool | None = None,
) -> AmortizedNormal:
    """Train ``proposal`` for ``num_steps`` steps of :class:`ProposalTrainer`; returns it.

    ``seed=s`` makes the fit a function of ``s`` (a private stream; the global RNG is untouched);
    ``seed=None`` seeds that stream with one draw from torch's global RNG. ``progress``: see
    :meth:`ProposalTrainer.run` (default: a bar once the fit has taken a few seconds)."""
    ProposalTrainer(proposal, optim=optim, batch_size=batch_size, seed=seed).run(
        num_steps, progress=progress
    )
    return proposal
