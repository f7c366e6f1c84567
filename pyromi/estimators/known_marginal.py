"""Known-marginal lower bounds: critics trained on simulated pairs, evaluated on fresh pairs.

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
import time
from collections.abc import Callable, Sequence

import pyro
import torch
from torch import nn

from .._state import warn as _warn
from .._progress import ProgressBar, check_progress
from .._rng import RNGStream, check_seed, derived_seed, seeded
from .._state import entry_point
from ..adapter import JointSamples, ModelAdapter
from ..bounds.ais import ais_bound_terms
from ..bounds.contrastive import giwae_terms, mine_dv, mine_f
from ..critics import check_critic_output, default_critic, frozen
from ..distributed import DataParallel, sharded
from ..errors import PyromiError
from ..proposals.amortized import AmortizedNormal, check_num_steps, check_optim
from ..proposals.base import Proposal
from ..proposals.guide import GuideProposal
from ..result import MIEstimate
from ..samplers.ais import AnnealingPath
from ..samplers.hmc import DensityTerms, hmc_step, tempered_state
from .checks import check_finite_terms, loose_bound_advice
from .ais import ais_on_path, default_pilot_steps, pareto_khat, sample_blocks

__all__ = ["GIWAE", "MINE", "MINEAIS", "EnergyPath"]


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


class GIWAE(_CriticTrainer):
    """GIWAE lower bound with a critic T and a proposal q(z|x) trained jointly.

    ``I_GIWAE = E[log q(z*|x) - log p(z*) + T(x, z*) - LME(T(x, z*), T(x, z_2), ..., T(x, z_K))]``
    with z_2..z_K ~ q(z|x) (bounds.md 2.5).

    Args:
        proposal: ``"amortized"`` (default) trains a fresh :class:`AmortizedNormal`; ``"prior"``
            gives InfoNCE (negatives from p(z), no BA term); an :class:`AmortizedNormal` is trained
            jointly; an amortised Pyro guide ``guide(x)`` (see :class:`GuideProposal`) is trained
            jointly when it is an ``nn.Module`` (e.g. a ``PyroModule``) and held fixed otherwise.
            Its draws must be reparameterised for q to learn from the contrastive term.
        critic: an ``nn.Module`` ``T(x, z)``; None builds a default concatenation critic;
            ``False`` fixes T = 0, which gives Barber-Agakov.
        num_particles: K (1 positive + K - 1 negatives) used in training.
    """

    bound = "giwae"

    def __init__(self, model, observed, latent=None, *, critic=None, proposal="amortized",
                 num_particles: int = 64, **kw) -> None:
        self._no_critic = critic is False
        super().__init__(model, observed, latent, critic=None if critic is False else critic, **kw)
        if self._no_critic:
            self.critic = _ZeroCritic()
        self._trainable_proposal: nn.Module | None = None
        if isinstance(proposal, str):
            if proposal == "prior":
                self.proposal = None
                self.bound = "infonce"
            elif proposal == "amortized":
                self.proposal = AmortizedNormal(self.adapter, seed=0)
                self._trainable_proposal = self.proposal
            else:
                raise ValueError(
                    f"proposal must be 'amortized', 'prior', an AmortizedNormal or an amortised "
                    f"guide, got {proposal!r}"
                )
        elif isinstance(proposal, AmortizedNormal):
            self.proposal = proposal.bind(self.adapter)
            self._trainable_proposal = self.proposal
        elif isinstance(proposal, Proposal):
            if not proposal.has_density:
                raise PyromiError(f"GIWAE needs a proposal with a density q(z|x); {proposal!r} has none")
            self.proposal = proposal.bind(self.adapter)
            guide = getattr(proposal, "guide", None)
            self._trainable_proposal = guide if isinstance(guide, nn.Module) else None
        elif callable(proposal) and not isinstance(proposal, type):
            self.proposal = GuideProposal(proposal).bind(self.adapter)
            self._trainable_proposal = proposal if isinstance(proposal, nn.Module) else None
        else:
            raise PyromiError(
                f"GIWAE needs a proposal with a density q(z|x): 'amortized', 'prior', an "
                f"AmortizedNormal or an amortised guide callable guide(x); got {type(proposal).__name__}"
            )
        if self._no_critic:
            self.bound = "ba"
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be an int >= 1, got {num_particles!r}")
        self.num_particles = num_particles

    def parameters(self):
        params = super().parameters()
        if self._trainable_proposal is not None:
            params += [p for p in self._trainable_proposal.parameters() if p.requires_grad]
        return params

    def _negatives(self, observed, k: int):
        """K - 1 negatives per x: reparameterised draws of q (or prior draws), ``(k, N) + shape``."""
        if k == 0:
            return None
        if self.proposal is None:
            return self.adapter.sample_prior(k, observed, score_prior=False).latent
        return self.proposal.sample(self.adapter, observed, k).evaluation.latent

    def terms(self, joint: JointSamples, num_particles: int) -> torch.Tensor:
        """Per-sample GIWAE terms on ``joint`` with K = ``num_particles`` (differentiable)."""
        obs = joint.observed
        z_star = {k: v.unsqueeze(0) for k, v in joint.latent.items()}
        if self.proposal is None:
            log_q_star = joint.log_prior
        else:
            log_q_star = self.proposal.log_prob(self.adapter, z_star, obs)[0]
        pos = self.score(obs, z_star)[0]
        neg_latent = self._negatives(obs, num_particles - 1)
        neg = pos.new_zeros((0, pos.shape[0])) if neg_latent is None else self.score(obs, neg_latent)
        return giwae_terms(log_q_star, joint.log_prior, pos, neg)

    def objective(self, joint):
        return self.terms(joint, self.num_particles).mean()

    @entry_point
    @sharded()
    def evaluate(self, num_samples: int = 1000, num_particles: int | None = None, *,
                 seed: int | None = None, joint: JointSamples | None = None) -> MIEstimate:
        """The bound on ``num_samples`` fresh joint pairs (not used in training), or on ``joint``."""
        k = num_particles or self.num_particles
        t0 = time.perf_counter()
        with self._evaluation_rng(seed, joint), torch.no_grad(), \
                pyro.validation_enabled(False):
            if joint is None:
                joint = self.adapter.sample_joint(num_samples)
            lower = self.terms(joint, k)
        return self._estimate(lower, joint, k, {"proposal": self.bound},
                              {"seconds": time.perf_counter() - t0, "log_K": math.log(k)})


class _ZeroCritic(nn.Module):
    def forward(self, x, z):
        return z.new_zeros(z.shape[:-1])


class MINE(_CriticTrainer):
    """MINE lower bounds: ``variant="dv"`` (Donsker-Varadhan) or ``"f"`` (NWJ / MINE-F).

    Product pairs pair each x with fresh prior draws z' ~ p(z). ``ema_rate`` (DV only) uses MINE's
    moving-average correction of the gradient of the log-partition term.
    """

    def __init__(self, model, observed, latent=None, *, variant: str = "dv",
                 ema_rate: float | None = None, num_particles: int = 1, **kw) -> None:
        super().__init__(model, observed, latent, **kw)
        if variant not in ("dv", "f"):
            raise ValueError(f"variant must be 'dv' or 'f', got {variant!r}")
        self.variant = variant
        self.bound = "mine_dv" if variant == "dv" else "mine_f"
        self.ema_rate = ema_rate
        self._ema = None
        self.num_particles = num_particles

    def scores(self, joint: JointSamples, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        obs = joint.observed
        pos = self.score(obs, {n: v.unsqueeze(0) for n, v in joint.latent.items()})[0]
        prior = self.adapter.sample_prior(k, obs, score_prior=False).latent
        return pos, self.score(obs, prior)

    def objective(self, joint):
        pos, neg = self.scores(joint, self.num_particles)
        if self.variant == "f":
            return mine_f(pos, neg)
        if self.ema_rate is None:
            return mine_dv(pos, neg)
        mean_exp = torch.exp(neg.double()).mean()
        self._ema = mean_exp.detach() if self._ema is None else (
            (1 - self.ema_rate) * self._ema + self.ema_rate * mean_exp.detach()
        )
        # gradient of log E e^T estimated with the moving average in the denominator (MINE)
        surrogate = pos.double().mean() - mean_exp / self._ema
        value = mine_dv(pos, neg).detach()
        return surrogate - surrogate.detach() + value

    @entry_point
    @sharded()
    def evaluate(self, num_samples: int = 1000, num_particles: int = 16, *,
                 seed: int | None = None, joint: JointSamples | None = None,
                 max_khat: float = 0.7) -> MIEstimate:
        """A valid lower bound on fresh pairs: N joint pairs (or ``joint``), each x with K fresh
        prior draws z' for the product of marginals.

        * MINE-F: per sample ``T(x_i, z_i*) - mean_k e^{T(x_i, z'_ik) - 1}``, unbiased for I_F(T).
        * MINE-DV: the log-partition ``log E_{p(x)p(z)} e^T`` is estimated on an *independent* set
          of N x K product pairs, giving the shift ``c = 1 - log Z``; then per sample
          ``T(x_i, z_i*) + c - mean_k e^{T(x_i, z'_ik) + c - 1}``, an unbiased estimate of the NWJ
          bound of the shifted critic ``T + c``, which is <= I_DV(T) <= I (equal to I_DV(T) at the
          exact c). The classic plug-in ``mean T(joint) - log mean e^T(product)`` is biased upward
          (it can exceed the truth), so it is only reported, as ``diagnostics["dv_plugin"]``.

        **Reliability check.** Both estimates hinge on a mean of ``e^T`` over product pairs, which
        is dominated by pairs of probability ~ e^-I: with M product pairs it is reliable only when
        the weights are not heavy-tailed and the value is below ~log M (McAllester & Stratos 2020:
        no sample-based lower bound certifies much more than log M). When the Pareto k-hat of the
        pooled product weights exceeds ``max_khat`` (PSIS's 0.7) or the value exceeds log M, a
        typical realisation can land far *above* the truth, so the DV/F number is not reported:
        ``lower`` is then the contrastive (InfoNCE) bound of the same critic with the same K
        negatives per x, ``T(x_i, z_i*) - LME(T(x_i, z_i*), T(x_i, z'_i1..K))`` (valid for any
        critic, at most log(K + 1)), with a warning; the DV/F estimate, k-hat and log M are in
        ``diagnostics`` (``"mine_value"``, ``"partition_khat"``, ``"log_product_pairs"``,
        ``"reported"``).
        """
        t0 = time.perf_counter()
        with self._evaluation_rng(seed, joint), torch.no_grad(), \
                pyro.validation_enabled(False):
            if joint is None:
                joint = self.adapter.sample_joint(num_samples)
            pos, neg = self.scores(joint, num_particles)
            if self.variant == "dv":
                other = self.adapter.sample_joint(joint.num_samples)
                _, neg_other = self.scores(other, num_particles)
        pos, neg = pos.double(), neg.double()
        diagnostics = {"seconds": 0.0}
        if self.variant == "f":
            lower = pos - torch.exp(neg - 1.0).mean(0)
        else:
            flat = neg_other.double().flatten()
            log_z = torch.logsumexp(flat, 0) - math.log(flat.numel())
            shift = 1.0 - log_z
            lower = pos + shift - torch.exp(neg + shift - 1.0).mean(0)
            diagnostics["dv_plugin"] = float(mine_dv(pos, neg))
            diagnostics["log_partition"] = float(log_z)
        # reliability of the product-pair means that the value hinges on (see the docstring)
        product_sets = [neg] if self.variant == "f" else [neg, neg_other.double()]
        khat = max(float(pareto_khat(t.flatten().unsqueeze(1))[0]) for t in product_sets)
        log_m = math.log(min(t.numel() for t in product_sets))
        value = float(lower.mean())
        diagnostics.update(mine_value=value, partition_khat=khat, log_product_pairs=log_m)
        heavy_tail = not khat <= max_khat
        unreliable = heavy_tail or value > log_m
        if unreliable:
            lower = giwae_terms(torch.zeros_like(pos), torch.zeros_like(pos), pos, neg)
        diagnostics["reported"] = "infonce_fallback" if unreliable else self.bound
        diagnostics["seconds"] = time.perf_counter() - t0
        est = self._estimate(lower, joint, num_particles, {"variant": self.variant}, diagnostics)
        msg = None
        if unreliable:
            why = (f"the Pareto k-hat of the product weights e^T is {khat:.2f} > {max_khat}" if heavy_tail else
                   f"it exceeds log M = {log_m:.2f}, the most that M = {math.exp(log_m):.0f} product pairs can certify")
            msg = (
                f"{self.bound}: the estimate {value:.4g} nats is unreliable ({why}): its mean of e^T over "
                "product pairs is dominated by rare pairs and can land far above the truth. Reporting "
                f"instead the contrastive (InfoNCE) bound of the same critic with K = {num_particles} "
                f"negatives, {est.lower:.4g} nats (valid, at most log(K + 1) = {math.log(num_particles + 1):.2f}). "
                "For a tight bound at high MI use bound='mine_ais' (a log-partition per x by annealed "
                "importance sampling) or bound='giwae'."
            )
        elif not est.lower_se < max(1.0, 0.5 * abs(est.lower)):
            msg = (
                f"the {self.bound} estimate {est.lower:.4g} nats has a standard error of "
                f"{est.lower_se:.3g}: a few product pairs (x, z') with a large e^T dominate it. The "
                "critic's log-partition log E_{p(x)p(z)} e^T needs about e^I samples to estimate, "
                "so at high MI this bound is unusable (though still valid). Use bound='mine_ais', "
                "which estimates a log-partition per x by annealed importance sampling."
            )
        if msg is not None:
            est.diagnostics["advice"] = msg
            _warn(msg)
        return est


class EnergyPath(AnnealingPath):
    """The path p(z) -> p(z) e^{T(x, z)} in the unconstrained space: base = log p(z) + log|J|,
    tilt = T(x, z(u)); its normaliser is Z_T(x) = E_{p(z)} e^{T(x, z)}."""

    def __init__(self, trainer: "_CriticTrainer", observed):
        super().__init__(trainer.adapter, observed, None)
        self.trainer = trainer

    def density_terms(self, u):
        ev = self.adapter.log_density_unconstrained(u, self.observed)
        return DensityTerms(ev.log_prior + ev.log_abs_det_jacobian, self.trainer.score(self.observed, ev.latent))


class MINEAIS(_CriticTrainer):
    """MINE-AIS: energy-based posterior ``q_T(z|x) ∝ p(z) e^{T(x,z)}`` (bounds.md 2.8).

    Training maximises ``I_EBM = E_joint T - E_x log Z_T(x)`` with the contrastive-divergence
    gradient ``E_joint grad T - E_x E_{q_T(z|x)} grad T``. Negatives are short-run vectorised HMC
    chains on ``p(z) e^T`` (the AIS engine's transition, in the unconstrained space):

    * ``negatives="data"`` (default): chains start at the positive z*, an exact posterior sample
      for its x (contrastive divergence; at the optimum q_T = p(z|x) they are already stationary);
    * ``negatives="prior"``: chains start at fresh prior draws (short-run MCMC; needs more
      ``mcmc_steps`` at high MI).

    The step size is adapted online toward acceptance 0.65 (a device tensor, no host sync); this
    only affects training. Evaluation is Multi-Sample AIS from p(z) to p(z) e^T with one backward
    chain from the true z*: ``T(x, z*) - LME(log w_bwd, log w_1..w_{K-1})``, a valid lower bound
    for any T, K and number of annealing steps.
    """

    bound = "mine_ais"

    def __init__(self, model, observed, latent=None, *, mcmc_steps: int = 10,
                 num_leapfrog: int = 5, negatives: str = "data", **kw) -> None:
        super().__init__(model, observed, latent, **kw)
        if negatives not in ("data", "prior"):
            raise ValueError(f"negatives must be 'data' (chains from z*) or 'prior', got {negatives!r}")
        if not isinstance(mcmc_steps, int) or mcmc_steps < 1:
            raise ValueError(f"mcmc_steps must be an int >= 1, got {mcmc_steps!r}")
        if not isinstance(num_leapfrog, int) or num_leapfrog < 1:
            raise ValueError(f"num_leapfrog must be an int >= 1, got {num_leapfrog!r}")
        self.mcmc_steps = mcmc_steps
        self.num_leapfrog = num_leapfrog
        self.negatives_from = negatives
        self._log_eps = torch.zeros((), dtype=self.adapter.dtype, device=self.adapter.device)

    def negatives(self, joint: JointSamples) -> dict[str, torch.Tensor]:
        """Short-run HMC draws from ``p(z) e^{T(x, z)}``, one per x (detached), ``(1, N) + shape``."""
        path = EnergyPath(self, joint.observed)
        with torch.no_grad():
            if self.negatives_from == "data":
                start = {k: v.unsqueeze(0) for k, v in joint.latent.items()}
            else:
                start = self.adapter.sample_prior(1, joint.observed, score_prior=False).latent
            u, _ = self.adapter.unconstrain(start, joint.observed)
        state = tempered_state(u, path.density_terms)
        one = torch.ones((), dtype=u.dtype, device=u.device)
        inv_mass = torch.ones_like(u[0])
        for _ in range(self.mcmc_steps):
            eps = self._log_eps.exp().expand(u.shape[:2])
            state, info = hmc_step(state, path.density_terms, one, eps, inv_mass, self.num_leapfrog)
            # training only: adapting online does not affect the validity of the evaluation
            acc = info.accept_prob.mean().to(self._log_eps.dtype)
            self._log_eps = (self._log_eps + 0.1 * (acc - 0.65)).clamp(-12.0, 3.0)
        return {k: v.detach() for k, v in self.adapter.constrain(state.u, joint.observed).items()}

    def objective(self, joint):
        obs = joint.observed
        pos = self.score(obs, {k: v.unsqueeze(0) for k, v in joint.latent.items()})
        neg = self.score(obs, self.negatives(joint))
        return pos.double().mean() - neg.double().mean()

    @entry_point
    @sharded()
    def evaluate(self, num_samples: int = 256, num_particles: int = 16, num_steps: int = 500, *,
                 schedule="adaptive", num_leapfrog: int = 10, seed: int | None = None,
                 joint: JointSamples | None = None, max_batch: int = 2**16,
                 progress: bool | None = None) -> MIEstimate:
        """Multi-Sample AIS lower bound on fresh joint pairs (or the given ``joint``).

        Per sample: ``T(x, z*) - LME(log w_bwd, log w_1, ..., log w_{K-1})`` with AIS from p(z) to
        p(z) e^{T(x, z)}; samples are processed in blocks of at most ``max_batch`` (chain, sample)
        pairs, each block with its own pilot-tuned, frozen kernels. ``progress``: the bar over the
        annealing transitions, passed to the AIS sampler (``True``: shown, ``False``: never,
        ``None``: the sampler's automatic choice).
        """
        check_progress(progress)
        from .ais import _check_args

        _check_args(num_particles, num_steps, num_leapfrog, schedule, 0.65)
        t0 = time.perf_counter()
        lower, acc, lw_f, lw_b = [], [], [], []
        with self._evaluation_rng(seed, joint), pyro.validation_enabled(False):
            if joint is None:
                with torch.no_grad():
                    joint = self.adapter.sample_joint(num_samples)
            n_chunk, blocks = sample_blocks(joint, num_particles, max_batch)
            # the critic is fixed during AIS; each parameter gets its own flag back afterwards
            with frozen(self.critic):
                for _, _, obs, z_star in blocks:
                    res, _ = ais_on_path(
                        EnergyPath(self, obs), z_star, num_steps, schedule,
                        num_particles=num_particles, num_leapfrog=num_leapfrog, target_accept=0.65,
                        pilot_steps=default_pilot_steps(num_steps),
                        pilot_chains=max(num_particles, 16), progress=progress,
                    )
                    with torch.no_grad():
                        t_star = self.score(obs, {k: v.unsqueeze(0) for k, v in z_star.items()})[0]
                    lo, _ = ais_bound_terms(t_star.double(), res.log_weights, res.log_weight_backward)
                    lower.append(lo)
                    acc.append(res.acceptance)
                    lw_f.append(res.log_weights)
                    lw_b.append(res.log_weight_backward)
        acceptance = torch.cat(acc, 1)
        return self._estimate(
            torch.cat(lower), joint, num_particles,
            {"num_steps": num_steps, "num_leapfrog": num_leapfrog, "sample_chunk": n_chunk,
             "schedule": schedule if isinstance(schedule, str) else "array"},
            {"seconds": time.perf_counter() - t0,
             "acceptance": acceptance,
             "acceptance_mean": float(acceptance.mean()) if num_steps > 1 else None,
             "log_weights": torch.cat(lw_f, 1),
             "log_weight_backward": torch.cat(lw_b)},
        )
