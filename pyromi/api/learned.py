"""The learned estimate from samples alone: :func:`mist_mi` (MIST on joint draws of the model)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import pyro
import torch

from .._rng import check_seed, seeded
from .._state import entry_point
from .. import distributed
from ..errors import PyromiError
from ..result import LearnedEstimate
from .common import ModelSpec, check_int, record_model_layout

__all__ = ["mist_mi"]


def _as_written(arguments: dict) -> bool:
    """MIST shards its simulation itself and reads the gathered sample once."""
    return False


@entry_point
@distributed.sharded(when=_as_written)
def mist_mi(
    model: Callable,
    observed: str | Sequence[str],
    latent: str | Sequence[str] | None = None,
    *,
    num_samples: int = 256,
    level: float = 0.9,
    weights=None,
    calibration: str | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> LearnedEstimate:
    """MIST on N joint draws of the model: no density is evaluated, not even p(z).

    The observed sites are flattened and concatenated into x ``(N, dx)``, the latent sites into
    z ``(N, dz)``; the result is MIST's median and its ``level`` interval of I(x; z), in nats: a
    learned estimate with a calibrated predictive interval, **not** bounds
    (:class:`~pyromi.LearnedEstimate`). Unlisted sites are simply not part of z.

    Args:
        level: the nominal coverage of the returned interval (default 0.9).
        weights, calibration: the weights (a name such as ``"mist-medium"`` or a
            :class:`pyromi.mist.Pretrained`; default the shipped ``mist-hybrid``) and the interval
            rule (``"pooled"`` or ``"family_robust"``; default the weights' recorded rule), as in
            :func:`pyromi.mist.estimate`.
        progress: accepted as by every method; MIST shows no bar (an estimate takes milliseconds).

    The other arguments are as in :func:`pyromi.mutual_information`.

    Example:
        >>> import pyro, pyro.distributions as dist, pyromi
        >>> def simulator():                    # no density is evaluated: samples only
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(z, 0.5))
        >>> est = pyromi.mist_mi(simulator, "x", num_samples=500, seed=0)
        >>> type(est).__name__, est.level, est.lower <= est.point <= est.upper
        ('LearnedEstimate', 0.9, True)
    """
    from .. import mist

    check_seed(seed)
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress= must be True, False or None, got {progress!r}")
    num_samples = check_int("num_samples", num_samples, 1)
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level= must be a number in (0, 1), got {level!r}")
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)
    weights = mist._resolve(weights, "weights")
    weights.rule(calibration)  # a bad calibration= fails before the model runs
    ctx = distributed.current()
    draw_seed, share, first = seed, num_samples, 0
    if ctx is not None:  # each rank simulates its share; every rank reads the gathered sample
        if num_samples < ctx.world_size:
            raise PyromiError(f"num_samples={num_samples} over {ctx.world_size} ranks: pass num_samples >= "
                              f"{ctx.world_size} (the world size), one sample per rank at least.")
        run_seed = distributed.base_seed(seed, ctx)
        lo, hi = distributed.shares(num_samples, ctx.world_size)[ctx.rank]
        draw_seed, share, first = distributed.rank_seed(run_seed, ctx), hi - lo, lo

    def simulate():
        adapter = spec.adapter(densities=False)
        with seeded(draw_seed, adapter.device), torch.no_grad(), pyro.validation_enabled(False), \
                distributed.shard(first, num_samples):
            joint = adapter.sample_joint(share)
        n = joint.num_samples
        x = torch.cat([joint.observed[k].reshape(n, -1) for k in adapter.observed_names], -1)
        z = torch.cat([joint.latent[k].reshape(n, -1) for k in adapter.latent_names], -1)
        return x.double().cpu(), z.double().cpu(), adapter

    if ctx is None:
        x, z, adapter = simulate()
    else:  # every rank builds and simulates inside the guard: a failure anywhere stops all ranks
        built = {}

        def simulate_share():  # the samples travel between ranks; each keeps its own adapter
            x, z, built["adapter"] = simulate()
            return x, z

        parts = distributed.run_everywhere(simulate_share, ctx)
        x, z = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        adapter = built["adapter"]
    est = mist.estimate(x, z, level=level, seed=seed, model=weights, calibration=calibration,
                        observed=tuple(adapter.observed_names), latent=tuple(adapter.latent_names))
    est.settings.update(seed=seed, source="pyro model", device=str(adapter.device))
    if ctx is not None:  # the slowest rank's time, so that every rank returns the same record
        est.diagnostics["milliseconds"] = max(distributed.gather(est.diagnostics["milliseconds"], ctx))
        est.settings["distributed"] = {
            "world_size": ctx.world_size, "backend": ctx.backend, "seed": run_seed,
            "samples_per_rank": [b - a for a, b in distributed.shares(num_samples, ctx.world_size)]}
    return record_model_layout(est, adapter)
