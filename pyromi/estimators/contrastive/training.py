"""The critic-training loop shared by the known-marginal bounds (GIWAE, MINE, MINE-AIS).

Known-marginal lower bounds: critics trained on simulated pairs, evaluated on fresh pairs.

Only the prior p(z) has a usable density; x is only simulated (the adapter never scores
log p(x | z)). Trainers follow Pyro's SVI style: ``.step()`` takes one optimiser step on a fresh
batch of joint pairs and returns the current training objective (nats); ``.run(n)`` repeats it;
``.evaluate(...)`` returns an :class:`~pyromi.MIEstimate` (lower bound only) computed on fresh pairs
not used for training. A NaN/inf objective stops training with an error: a diverged run never
reports a number. ``.evaluate(seed=s, joint=batch)`` draws from a stream derived from ``s`` (as
:func:`pyromi.mutual_information` does), so a batch drawn with the same seed is never replayed as
negatives or chain starts.

Randomness. Each trainer owns a private random stream (:class:`pyromi._rng.RNGStream`) seeded by
its ``seed=``: it starts where ``seeded(seed)`` would (the same draws). ``.step()``, ``.run()``
and ``.evaluate()`` without a seed draw from that stream only: training and evaluation are a function of the seed and of the calls made,
whatever the caller did with torch's global RNG, which the trainer never reads or changes (an
unseeded ``.evaluate()`` after training therefore draws pairs no training step used).
``.run(n, seed=s)`` first restarts the stream from ``s`` (the draws of a new trainer built with
``seed=s``); ``seed=None`` continues it. A trainer built with ``seed=None`` seeds its stream with
one draw from the global RNG at construction. ``.evaluate(seed=s)`` draws from a stream of its
own; ``s`` equal to the training seed would start the evaluation pairs where the first training
batch started (the same z's when N equals the batch size), so use another seed, or none.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import pyro
import torch
from torch import nn

from ..._progress import ProgressBar, check_progress
from ..._rng import RNGStream, check_seed, derived_seed, seeded
from ..._state import entry_point
from ...adapter import JointSamples, ModelAdapter
from ...critics import check_critic_output, default_critic
from ...distributed import DataParallel
from ...proposals.amortized import check_num_steps, check_optim
from ...result import MIEstimate
from ..checks import check_finite_terms, loose_bound_advice

__all__ = ["_CriticTrainer", "_evaluation_seed"]


def _evaluation_seed(seed: int | None, joint: JointSamples | None) -> int | None:
    """The seed for an evaluation's own draws. With a given ``joint`` batch, draws seeded with
    ``seed`` itself would replay the stream that may have drawn that batch (negatives or chains equal
    to each sample's own z*, collapsing the bound to 0), so a derived seed is used, the same one as
    :func:`pyromi.mutual_information` uses with a given joint."""
    return seed if (joint is None or seed is None) else derived_seed(seed, "estimate")


class _CriticTrainer:
    """Shared machinery: the likelihood-free adapter, flattening, the critic, the training loop."""

    bound = "critic"

    def __init__(
        self,
        model: Callable,
        observed: str | Sequence[str],
        latent: str | Sequence[str] | None = None,
        *,
        critic: nn.Module | None = None,
        optim: pyro.optim.PyroOptim | None = None,
        batch_size: int = 256,
        model_args: tuple = (),
        model_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = 0,
        data_plate: str | bool | None = None,
        vectorize: bool | str = "auto",
    ) -> None:
        seed = check_seed(seed)
        check_optim(optim)
        if critic is not None and not isinstance(critic, nn.Module):
            raise TypeError(
                f"critic= must be a torch.nn.Module called as critic(x (N, Dx), z (K, N, Dz)) -> (K, N) "
                f"(e.g. pyromi.critics.ConcatCritic(x_dim, z_dim)) or None for the default, got "
                f"{type(critic).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2, got {batch_size!r}")
        self.adapter = ModelAdapter(
            model, observed, latent, model_args=model_args, model_kwargs=model_kwargs,
            device=device, dtype=dtype, seed=seed, likelihood=False, data_plate=data_plate,
            vectorize=vectorize,
        )
        a = self.adapter
        self.x_dim = sum(math.prod(a.sites[n].local_shape) for n in a.observed_names)
        self.z_dim = sum(math.prod(a.sites[n].local_shape) for n in a.latent_names)
        with seeded(seed, a.device):
            critic = critic if critic is not None else default_critic(self.x_dim, self.z_dim)
        self.critic = critic.to(device=a.device, dtype=a.dtype)
        self._critic_checked = False
        self.optim = optim if optim is not None else pyro.optim.Adam({"lr": 1e-3})
        self.batch_size = int(batch_size)
        self.seed = seed
        # all of the trainer's unseeded draws: a private stream that starts where seeded(seed) would
        # (under torch.distributed: a stream per rank, derived from the seed; gradients averaged)
        self._parallel = DataParallel(a.device)
        self._rng = RNGStream(self._parallel.seed(seed), a.device)
        self.history: list[float] = []

    # ------------------------------------------------------------------ helpers
    def _flat_x(self, observed: dict[str, torch.Tensor]) -> torch.Tensor:
        n = observed[self.adapter.observed_names[0]].shape[0]
        return torch.cat(
            [observed[k].reshape(n, -1).to(self.adapter.dtype) for k in self.adapter.observed_names], -1
        )

    def _flat_z(self, latent: dict[str, torch.Tensor]) -> torch.Tensor:
        a = self.adapter
        lead = latent[a.latent_names[0]].shape[:2]
        return torch.cat([latent[k].reshape(lead + (-1,)) for k in a.latent_names], -1)

    def score(self, observed: dict[str, torch.Tensor], latent: dict[str, torch.Tensor]) -> torch.Tensor:
        """Critic values ``T(x_i, z_ki)``, shape ``(K, N)``; latents ``(K, N) + site shape``."""
        z = self._flat_z(latent)
        x = self._flat_x(observed)
        if self._critic_checked:
            return check_critic_output(self.critic(x, z), z.shape[:2], self.critic)
        try:  # the first call: a critic that cannot be called as critic(x, z) is named as such
            t = self.critic(x, z)
        except TypeError as e:
            raise TypeError(
                f"critic= {type(self.critic).__name__} cannot be called as a critic: {e}. A critic is an "
                f"nn.Module called as critic(x (N, Dx), z (K, N, Dz)) -> (K, N), one score per "
                f"(particle, sample), with x and z the flattened observed and latent sites (here "
                f"Dx = {self.x_dim}, Dz = {self.z_dim}); e.g. pyromi.critics.ConcatCritic({self.x_dim}, "
                f"{self.z_dim}), or a module whose forward(self, x, z) takes both."
            ) from e
        t = check_critic_output(t, z.shape[:2], self.critic)
        self._critic_checked = True
        return t

    def parameters(self) -> list[torch.Tensor]:
        return [p for p in self.critic.parameters() if p.requires_grad]

    def _evaluation_rng(self, seed: int | None, joint: JointSamples | None):
        """Where an evaluation draws from: ``seed=None`` continues the trainer's own stream (pairs
        after every training batch: never one used in training); ``seed=s`` a stream of its own
        (:func:`_evaluation_seed`). Neither reads or changes torch's global RNG."""
        seed = check_seed(seed)
        if seed is None:
            return self._rng.active()
        return seeded(_evaluation_seed(seed, joint), self.adapter.device)

    def objective(self, joint: JointSamples) -> torch.Tensor:
        """The training objective on a batch (a differentiable scalar, nats)."""
        raise NotImplementedError

    @entry_point
    def step(self) -> float:
        """One optimiser step on a fresh batch of joint pairs; returns the objective (nats).

        The batch (and any negatives or chains) is drawn from the trainer's own random stream,
        not from torch's global RNG, which is left as it was."""
        with self._rng.active():
            return self._step()

    def _step(self) -> float:
        self._parallel.start(self.parameters())
        params = self.parameters()

        def local_step() -> float:
            with torch.no_grad(), pyro.validation_enabled(False):
                joint = self.adapter.sample_joint(self.batch_size)
            with pyro.validation_enabled(False):
                obj = self.objective(joint)
            if not bool(torch.isfinite(obj)):
                raise FloatingPointError(
                    f"{type(self).__name__} training diverged at step {len(self.history) + 1}: the "
                    "objective is NaN or infinite. Lower the learning rate, bound the critic's output "
                    "(e.g. a tanh head), or use a larger batch."
                )
            for p in params:
                p.grad = None
            (-obj).backward()
            return float(obj.detach())

        value = self._parallel.step(local_step)  # under torch.distributed: a failure stops every rank
        self._parallel.reduce(params)
        self.optim(params)
        value = self._parallel.objective(value)
        self.history.append(value)
        return value

    @entry_point
    def run(self, num_steps: int, *, seed: int | None = None,
            progress: bool | None = None) -> list[float]:
        """Take ``num_steps`` steps; returns this run's objective history.

        ``seed=s`` first restarts the trainer's random stream from ``s`` (the draws a new trainer
        built with ``seed=s`` would make); ``seed=None`` continues the trainer's stream. Either way
        torch's global RNG is neither read nor changed. ``progress``: a bar on stderr with the
        current objective (``None``, default: once the run has taken a few seconds; ``True``: from
        the start; ``False``: never)."""
        num_steps = check_num_steps(num_steps)
        seed = check_seed(seed)
        check_progress(progress)
        start = len(self.history)
        if seed is not None:
            self._rng.reset(self._parallel.seed(seed))
        with self._rng.active(), ProgressBar(num_steps, f"train {self.bound}", progress) as bar:
            for _ in range(num_steps):
                bar.update(1, postfix=f"objective {self._step():.4g}")
        return self.history[start:]

    def _estimate(self, lower: torch.Tensor, joint: JointSamples, k, settings, diagnostics):
        check_finite_terms(self.bound, {"lower": lower}, "")
        loose_bound_advice(self.bound, float(lower.mean()), None, diagnostics)
        return MIEstimate.from_terms(
            self.bound, lower, None, num_particles=k,
            settings={"train_steps": len(self.history), **settings},
            diagnostics={"training_history": list(self.history), **diagnostics},
            observed=tuple(self.adapter.observed_names), latent=tuple(self.adapter.latent_names),
        )
