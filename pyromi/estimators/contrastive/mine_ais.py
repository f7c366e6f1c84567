"""MINE-AIS: an energy-based critic trained by short-run HMC, evaluated by Multi-Sample AIS."""

from __future__ import annotations

import time

import pyro
import torch

from ..._progress import check_progress
from ..._state import entry_point
from ...adapter import JointSamples
from ...bounds.ais import ais_bound_terms
from ...critics import frozen
from ...distributed import sharded
from ...result import MIEstimate
from ...samplers.ais import AnnealingPath
from ...samplers.hmc import DensityTerms, hmc_step, tempered_state
from ..ais import ais_on_path, default_pilot_steps, sample_blocks
from .training import _CriticTrainer

__all__ = ["MINEAIS", "EnergyPath"]


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
    """MINE-AIS: energy-based posterior ``q_T(z|x) ∝ p(z) e^{T(x,z)}`` (Brekelmans et al. 2022,
    "Improving Mutual Information Estimation with Annealed and Energy-Based Bounds", ICLR).

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
        from ..ais import _check_args

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
