"""Lower bounds that need p(z) but never log p(x | z): :func:`ba_mi`, :func:`giwae_mi`,
:func:`infonce_mi`, :func:`mine_mi` and :func:`mine_ais_mi`.

x is only simulated. A critic T(x, z) (and/or a proposal q(z | x)) is trained on ``train_steps``
fresh simulated batches, then the bound is evaluated on N fresh joint pairs (or on ``joint=``):
every evaluated bound is valid for any critic, so training can only make it tighter. The trainer
objects (:class:`pyromi.GIWAE`, :class:`pyromi.MINE`, :class:`pyromi.MINEAIS`) give
``.step()``/``.run()`` control and the training history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .._rng import check_seed, derived_seed, seeded
from .._state import entry_point
from .. import distributed
from ..model import JointSamples
from ..result import MIEstimate
from .common import ModelSpec, check_int, check_joint, check_rows_balanced, record_model_layout, reparam_model, \
    reparam_result

__all__ = ["ba_mi", "giwae_mi", "infonce_mi", "mine_mi", "mine_ais_mi"]


def _as_written(arguments: dict) -> bool:
    """Trained bounds are not sharded as a call: training is data-parallel and the trainer's
    ``evaluate`` shards the evaluation itself (the wrapper still checks every rank makes the
    same call on the same device)."""
    return False


def _ba_sharded(arguments: dict) -> bool:
    """BA with a given proposal (or joint batch) is a per-sample density bound, sharded as a call."""
    return arguments.get("guide") is not None or arguments.get("joint") is not None


@entry_point
@distributed.sharded(when=_ba_sharded)
def ba_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    guide=None,
    num_samples: int = 256,
    train_steps: int = 2000,
    optim=None,
    batch_size: int = 256,
    guide_steps: int = 1000,
    joint: JointSamples | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """Barber-Agakov lower bound ``I_BA = E[log q(z* | x) - log p(z*)]`` (nats) on the N joint draws.

    Args:
        guide: the variational posterior q(z | x), as :func:`~pyromi.api.density.iwae_mi` takes it
            (an autoguide class is fitted by SVI for ``guide_steps``). None trains a fresh
            :class:`pyromi.AmortizedNormal` by maximising ``E log q(z* | x)`` on ``train_steps``
            batches of ``batch_size`` simulated pairs (``optim``: a Pyro optimiser, default Adam
            1e-3), then evaluates on N fresh pairs.

    The other arguments are as in :func:`pyromi.mutual_information`.
    """
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)
    if guide is not None or joint is not None:
        for name, value, default in (("train_steps", train_steps, 2000), ("optim", optim, None),
                                     ("batch_size", batch_size, 256)):
            if value is not default and value != default:
                from ..errors import OptionError

                raise OptionError(
                    f"bound='ba' with {'guide=' if guide is not None else 'joint='} evaluates the given "
                    f"proposal and trains nothing, so {name}= is unused: remove it, or pass guide=None "
                    "(and no joint=) to train a proposal."
                )
        from .density import _density_mi

        return _density_mi(spec, "ba", guide=guide, num_samples=num_samples, num_particles=1,
                           guide_steps=guide_steps, joint=joint, max_batch=2**18, max_memory=None, seed=seed,
                           progress=progress, reparam=reparam)
    if guide_steps != 1000:
        from ..errors import OptionError

        raise OptionError("guide_steps= fits an autoguide class passed as guide=; with guide=None bound='ba' "
                          "trains an AmortizedNormal for train_steps= steps instead.")

    def build(model, observed, latent, kw):
        from ..estimators.contrastive import GIWAE

        kw.pop("critic")  # GIWAE with T = 0: trains q(z|x) by maximising E log q(z*|x)
        kw.pop("num_particles")
        return GIWAE(model, observed, latent, critic=False, proposal="amortized", num_particles=1, **kw)

    return _trained_mi(spec, "ba", build, critic=None, num_samples=num_samples, num_particles=1,
                       train_steps=train_steps, optim=optim, batch_size=batch_size, joint=joint, seed=seed,
                       progress=progress, reparam=reparam)


@entry_point
@distributed.sharded(when=_as_written)
def giwae_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    guide=None,
    critic=None,
    num_samples: int = 256,
    num_particles: int = 64,
    train_steps: int = 2000,
    optim=None,
    batch_size: int = 256,
    joint: JointSamples | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """GIWAE lower bound ``E[log q(z*|x) - log p(z*) + T(x, z*) - log((1/K) sum_k e^{T(x, z_k)})]``
    with z_1 = z* and z_2..z_K ~ q(z | x) (Brekelmans et al. 2022), critic and proposal trained
    jointly.

    Args:
        guide: q(z | x): None trains a fresh :class:`pyromi.AmortizedNormal`; an
            :class:`AmortizedNormal` or an amortised guide ``guide(x)`` (trained jointly when an
            ``nn.Module``).
        critic: ``T(x, z)``, an ``nn.Module`` called as ``critic(x (N, Dx), z (K, N, Dz)) -> (K, N)``;
            default a concatenation MLP.
        num_particles: K (the positive and K - 1 contrastive draws), default 64.
        train_steps, optim, batch_size: training steps on fresh simulated pairs, a Pyro optimiser
            (default Adam, lr 1e-3) and pairs per step.

    The other arguments are as in :func:`pyromi.mutual_information`.
    """
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)

    def build(model, observed, latent, kw):
        from ..estimators.contrastive import GIWAE

        return GIWAE(model, observed, latent, proposal=guide if guide is not None else "amortized",
                     num_particles=kw.pop("num_particles"), **kw)

    return _trained_mi(spec, "giwae", build, critic=critic, num_samples=num_samples, num_particles=num_particles,
                       train_steps=train_steps, optim=optim, batch_size=batch_size, joint=joint, seed=seed,
                       progress=progress, reparam=reparam, guide=guide)


@entry_point
@distributed.sharded(when=_as_written)
def infonce_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    critic=None,
    num_samples: int = 256,
    num_particles: int = 64,
    train_steps: int = 2000,
    optim=None,
    batch_size: int = 256,
    joint: JointSamples | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """InfoNCE lower bound ``E[T(x, z*) - log((1/K) sum_k e^{T(x, z_k)})]`` with z_1 = z* and
    z_2..z_K ~ p(z): GIWAE with the prior as proposal (van den Oord et al. 2018; Poole et al. 2019).
    It is at most log K, so K must exceed e^I for the bound to reach I.

    Args:
        critic, num_particles, train_steps, optim, batch_size: as in :func:`giwae_mi`.

    The other arguments are as in :func:`pyromi.mutual_information`.
    """
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)

    def build(model, observed, latent, kw):
        from ..estimators.contrastive import GIWAE

        return GIWAE(model, observed, latent, proposal="prior", num_particles=kw.pop("num_particles"), **kw)

    return _trained_mi(spec, "infonce", build, critic=critic, num_samples=num_samples,
                       num_particles=num_particles, train_steps=train_steps, optim=optim, batch_size=batch_size,
                       joint=joint, seed=seed, progress=progress, reparam=reparam)


@entry_point
@distributed.sharded(when=_as_written)
def mine_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    variant: str = "dv",
    critic=None,
    num_samples: int = 256,
    num_particles: int = 16,
    train_steps: int = 2000,
    optim=None,
    batch_size: int = 256,
    joint: JointSamples | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """MINE lower bounds with a trained critic T: ``variant="dv"`` (Donsker-Varadhan,
    ``E_p(x,z) T - log E_p(x)p(z) e^T``) or ``"f"`` (NWJ / MINE-F, ``E_p(x,z) T - E_p(x)p(z) e^{T-1}``).
    The partition term is estimated from ``num_particles`` product-of-marginals draws per x; where
    that estimate is unreliable the critic's InfoNCE bound is reported instead (``diagnostics``
    say so). Other arguments as in :func:`giwae_mi`."""
    if variant not in ("dv", "f"):
        raise ValueError(f"variant= must be 'dv' or 'f', got {variant!r}")
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)

    def build(model, observed, latent, kw):
        from ..estimators.contrastive import MINE

        kw.pop("num_particles")
        return MINE(model, observed, latent, variant=variant, **kw)

    return _trained_mi(spec, "mine_" + variant, build, critic=critic, num_samples=num_samples,
                       num_particles=num_particles, train_steps=train_steps, optim=optim, batch_size=batch_size,
                       joint=joint, seed=seed, progress=progress, reparam=reparam)


@entry_point
@distributed.sharded(when=_as_written)
def mine_ais_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    critic=None,
    num_samples: int = 256,
    num_particles: int = 16,
    num_steps: int = 1000,
    schedule="adaptive",
    num_leapfrog: int = 10,
    train_steps: int = 2000,
    optim=None,
    batch_size: int = 256,
    joint: JointSamples | None = None,
    max_batch: int = 2**16,
    seed: int | None = None,
    progress: bool | None = None,
    reparam: str | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> MIEstimate:
    """MINE-AIS: an energy-based posterior ``q_T(z|x) ∝ p(z) e^{T(x,z)}`` trained by contrastive
    divergence with short-run HMC, evaluated by Multi-Sample AIS from p(z) to q_T with one backward
    chain from z*: ``E[T(x, z*) - LME(log w_bwd, log w_1..w_{K-1})]``, a valid lower bound for any T.

    Args:
        num_particles, num_steps, schedule, num_leapfrog, max_batch: the evaluation's AIS (K
            chains, T transitions, betas, leapfrog steps, chain-sample pairs per block).

    The other arguments are as in :func:`giwae_mi`.
    """
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)
    max_batch = check_int("max_batch", max_batch, 1)

    def build(model, observed, latent, kw):
        from ..estimators.contrastive import MINEAIS

        kw.pop("num_particles")
        return MINEAIS(model, observed, latent, **kw)

    return _trained_mi(spec, "mine_ais", build, critic=critic, num_samples=num_samples,
                       num_particles=num_particles, train_steps=train_steps, optim=optim, batch_size=batch_size,
                       joint=joint, seed=seed, progress=progress, reparam=reparam,
                       evaluation=dict(num_steps=num_steps, schedule=schedule, num_leapfrog=num_leapfrog,
                                       max_batch=max_batch))


def _trained_mi(spec: ModelSpec, bound: str, build, *, critic, num_samples, num_particles, train_steps, optim,
                batch_size, joint, seed, progress, reparam, guide=None, evaluation=None) -> MIEstimate:
    """Build the trainer (``build(model, observed, latent, keywords)``), train it on fresh simulated
    pairs, evaluate on N fresh pairs (or ``joint``)."""
    check_seed(seed)
    num_samples = check_int("num_samples", num_samples, 1)
    num_particles = check_int("num_particles", num_particles, 1)
    if not isinstance(train_steps, int) or isinstance(train_steps, bool) or train_steps < 0:
        raise ValueError(f"train_steps must be an int >= 0, got {train_steps!r}")
    spec, reparam_info = reparam_model(reparam, spec, guide=guide, joint=joint)
    # the trainer's own stream: the seed's (None: one draw of the global RNG); with a given joint
    # batch a derived one, so that no training batch replays a batch drawn with the same seed
    train_seed = seed if (joint is None or seed is None) else derived_seed(seed, "train")
    kw = dict(critic=critic, optim=optim, batch_size=batch_size, model_args=spec.model_args,
              model_kwargs=spec.model_kwargs, device=spec.device, dtype=spec.dtype, seed=train_seed,
              num_particles=num_particles)
    if spec.data_plate is not None or spec.vectorize != "auto":
        kw.update(data_plate=spec.data_plate, vectorize=spec.vectorize)
    # a given joint batch is evaluated with the derived stream; training keeps the seed's own
    # stream, and fresh evaluation pairs continue it after training
    eval_seed = seed if joint is not None else None
    ctx = distributed.current()
    if ctx is not None and joint is None and seed is not None:
        # the sharded evaluation's streams derive from a seed of the call's own, so that the
        # recorded seed reproduces the run (one process continues the trainer's stream instead)
        eval_seed = derived_seed(seed, "evaluation")
    if ctx is not None and ctx.rank != 0:
        progress = False  # one bar (rank 0's) per job

    def make():
        return build(spec.model, spec.observed, spec.latent, dict(kw))

    with seeded(seed):
        # under torch.distributed a rank whose model fails while being probed stops every rank
        trainer = make() if ctx is None else distributed.checked(make, ctx)
        if joint is not None:
            check_joint(joint, trainer.adapter)
        trainer.run(train_steps, progress=progress)
        if joint is None:
            check_rows_balanced(trainer.adapter, num_samples)
        if evaluation is not None:  # MINE-AIS: evaluated by Multi-Sample AIS
            est = trainer.evaluate(num_samples, num_particles, evaluation["num_steps"],
                                   schedule=evaluation["schedule"], num_leapfrog=evaluation["num_leapfrog"],
                                   joint=joint, progress=progress, max_batch=evaluation["max_batch"],
                                   seed=eval_seed)
        else:
            est = trainer.evaluate(num_samples, num_particles, joint=joint, seed=eval_seed)
    est.settings["seed"] = seed
    return reparam_result(reparam_info, record_model_layout(est, trainer.adapter))
