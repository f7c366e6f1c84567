"""AIS bounds on log p(x) for given observations: :func:`log_marginal` (the terms behind the
:func:`~pyromi.api.density.ais_mi` sandwich, on data instead of simulated pairs)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from .._rng import check_seed, seeded
from .._state import entry_point
from .. import distributed
from ..errors import DensityError, GuideError, PyromiError
from ..estimators.ais import ais_block, default_pilot_steps, divergence_fraction
from ..estimators.checks import divergence_advice
from ..model import ModelAdapter
from ..model.sites import OBS_WARNING
from ..proposals.base import PriorProposal
from ..result import LogMarginalEstimate
from .common import ModelSpec, reparam_model, resolve_proposal

__all__ = ["log_marginal", "takes_data", "check_data_argument", "data_argument_observations", "as_site_dict"]


@entry_point
def log_marginal(
    model: Callable,
    observed: str | Sequence[str],
    data,
    latent: str | Sequence[str] | None = None,
    *,
    latent_values=None,
    start=None,
    num_particles: int = 16,
    num_steps: int = 1000,
    schedule="adaptive",
    num_leapfrog: int = 10,
    target_accept: float = 0.65,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool = True,
    reparam: str | None = None,
    data_plate: str | bool | None = None,
    vectorize: bool | str = "auto",
) -> LogMarginalEstimate:
    """AIS bounds on ``log p(x_i)`` (nats) for given observations ``data``.

    Args:
        data: the observed values: a tensor ``(N,) + site shape`` for one observed site (a single
            observation without the leading N is accepted), or a dict of them. For a model that
            takes its data as an argument (``model(x)`` with ``obs=x`` inside
            ``pyro.plate("data", x.shape[0])``, as Pyro's VAE example) and no ``model_args``, the
            tensor ``data`` is that argument, and the bounds are on each data point's
            ``log p(x_i)``.
        data_plate, vectorize: as in :func:`mutual_information`.
        latent_values: optional exact posterior samples z* for each x (a tensor or dict), e.g. the
            latents that simulated x. Only then is an upper bound on log p(x) available.
        start: pi_0, the prior (None) or a proposal q(z|x) such as a trained AmortizedNormal.
        reparam: ``"auto"``: anneal in the non-centred form of the funnel sites (as in
            :func:`mutual_information`; p(x) is unchanged). ``latent_values`` stay keyed by the
            original site names and are mapped to the new sites.

    The other arguments are as in :func:`pyromi.mutual_information` with ``bound="ais"``.
    """
    check_seed(seed)
    ctx = distributed.current()
    if ctx is not None:
        distributed.check_same_call("log_marginal", dict(
            model=model, observed=observed, data=data, latent=latent, latent_values=latent_values,
            start=start, num_particles=num_particles, num_steps=num_steps, schedule=schedule,
            num_leapfrog=num_leapfrog, target_accept=target_accept, model_args=model_args,
            model_kwargs=model_kwargs, seed=seed, reparam=reparam, data_plate=data_plate), ctx)
        device = distributed.check_device(device, ctx)
        progress = progress and ctx.rank == 0  # one bar (rank 0's) per job
    return _log_marginal(model, observed, data, latent, latent_values=latent_values, start=start,
                         num_particles=num_particles, num_steps=num_steps, schedule=schedule,
                         num_leapfrog=num_leapfrog, target_accept=target_accept, model_args=model_args,
                         model_kwargs=model_kwargs, device=device, dtype=dtype, seed=seed,
                         progress=progress, reparam=reparam, data_plate=data_plate, vectorize=vectorize,
                         ctx=ctx)


def _log_marginal_setup(model, observed, data, latent, *, latent_values, start, model_args, model_kwargs,
                        device, dtype, reparam, data_plate, vectorize):
    """The adapter and the observations (and exact latents) of :func:`log_marginal`, validated."""
    data_argument = (isinstance(data, torch.Tensor) and not model_args and latent_values is None
                     and takes_data(model))
    if data_argument:  # model(x) with obs=x (Pyro's VAE example): the data are its argument
        model_args = (check_data_argument(data),)
    original_model = model
    spec = ModelSpec(model, observed, latent, model_args, model_kwargs, device, dtype, data_plate, vectorize)
    spec, reparam_info = reparam_model(reparam, spec, start=start)
    if reparam_info is not None and reparam_info.renamed and latent_values is not None:
        latent_values = _reparam_values(original_model, reparam_info, latent_values, model_args,
                                        model_kwargs)
    with warnings.catch_warnings():
        if data_argument:
            warnings.filterwarnings("ignore", message=OBS_WARNING)
        adapter = spec.adapter()
    if data_argument:
        obs = data_argument_observations(adapter)
    else:
        obs = as_site_dict(data, adapter.observed_names, adapter, "data")
    lat = None
    if latent_values is not None:
        lat = as_site_dict(latent_values, adapter.latent_names, adapter, "latent_values")
        n_obs, n_lat = next(iter(obs.values())).shape[0], next(iter(lat.values())).shape[0]
        if n_obs != n_lat:
            raise PyromiError(f"data has {n_obs} observations but latent_values has {n_lat}")
    if isinstance(start, type):
        raise GuideError(
            "log_marginal(start=...) needs a proposal object (a trained pyromi.AmortizedNormal or an "
            "amortised guide callable), not a class: there is no batch to fit an autoguide on."
        )
    return adapter, obs, lat, reparam_info


def _log_marginal(model, observed, data, latent, *, latent_values, start, num_particles, num_steps,
                  schedule, num_leapfrog, target_accept, model_args, model_kwargs, device, dtype, seed,
                  progress, reparam, data_plate, vectorize, ctx) -> LogMarginalEstimate:
    """:func:`log_marginal` after its arguments are checked (``ctx``: the process group, if any).
    The set-up has no collective, and under a process group a failure in it on any rank stops
    every rank before the first one."""
    def prepare():
        return _log_marginal_setup(model, observed, data, latent, latent_values=latent_values, start=start,
                                   model_args=model_args, model_kwargs=model_kwargs, device=device,
                                   dtype=dtype, reparam=reparam, data_plate=data_plate, vectorize=vectorize)

    adapter, obs, lat, reparam_info = prepare() if ctx is None else distributed.checked(prepare, ctx)
    if ctx is not None:  # each rank bounds its share of the observations (rows), then all gather
        n_rows = next(iter(obs.values())).shape[0]
        if n_rows < ctx.world_size:
            raise PyromiError(f"log_marginal: {n_rows} observation(s) over {ctx.world_size} ranks; pass at "
                              f"least {ctx.world_size} (one per rank), or run it in one process.")
        run_seed = distributed.base_seed(seed, ctx)
        lo, hi = distributed.shares(n_rows, ctx.world_size)[ctx.rank]
        obs = {k: v[lo:hi] for k, v in obs.items()}
        lat = None if lat is None else {k: v[lo:hi] for k, v in lat.items()}
        seed = distributed.rank_seed(run_seed, ctx)

    def compute():
        with seeded(seed, adapter.device):
            proposal = None if start is None else resolve_proposal(start, adapter, None, 0)
            if isinstance(proposal, PriorProposal):
                proposal = None
            from ..estimators.ais import _check_args

            _check_args(num_particles, num_steps, num_leapfrog, schedule, target_accept)
            res, tables = ais_block(
                adapter, obs, lat, proposal, num_steps, schedule, num_particles=num_particles,
                num_leapfrog=num_leapfrog, target_accept=target_accept,
                pilot_steps=default_pilot_steps(num_steps),
                pilot_chains=max(num_particles, 16), progress=progress,
            )
        from ..ops import logmeanexp

        lower = logmeanexp(res.log_weights, 0)
        upper = None
        if res.log_weight_backward is not None:
            lw = torch.cat([res.log_weight_backward.unsqueeze(0), res.log_weights[: num_particles - 1]])
            upper = logmeanexp(lw, 0)
        for side, t in (("lower", lower), ("upper", upper)):
            if t is not None and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise DensityError(
                    f"log_marginal: the {side} bound on log p(x) is not finite for {bad} of {t.numel()} "
                    "observations: every chain ended where p(x | z) = 0 (or a log-weight was NaN). Start "
                    "from a proposal that covers the posterior (start=AmortizedNormal(...)) or use more "
                    "chains (num_particles=)."
                )
        diagnostics = {
            "log_weights": res.log_weights,
            "acceptance": res.acceptance,
            "step_size": tables.step_size,
            "betas": tables.betas,
            "divergences": int(res.divergences.sum()),
            "divergence_fraction": divergence_fraction(
                int(res.divergences.sum()), num_particles + (lat is not None), lower.numel(), num_steps),
            "reparam": None if reparam_info is None else reparam_info.summary(),
        }
        return lower, upper, diagnostics

    if ctx is None:
        lower, upper, diagnostics = compute()
    else:
        with distributed.local():
            parts = distributed.run_everywhere(compute, ctx)
        sizes = [p[0].numel() for p in parts]
        lower = torch.cat([p[0] for p in parts])
        upper = None if parts[0][1] is None else torch.cat([p[1] for p in parts])
        diagnostics, per_rank = distributed.merge_diagnostics([p[2] for p in parts], sizes)
        diagnostics["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend, "seed": run_seed,
                                      "samples_per_rank": sizes, "per_rank_keys": per_rank}
    divergence_advice("log_marginal", adapter, diagnostics)
    return LogMarginalEstimate(lower, upper, num_particles, num_steps, diagnostics)


def _reparam_values(model, info, values, model_args, model_kwargs) -> dict:
    """``latent_values=`` of the original sites, mapped to the sites of the reparameterised model."""
    from ..model.reparam import to_reparam_values

    if not isinstance(values, dict):
        raise PyromiError(
            "with reparam='auto', latent_values= must be a dict keyed by the original latent site "
            f"names ({', '.join(repr(n) for n in info.renamed)} are reparameterised)"
        )
    missing = [n for n in info.renamed if n not in values]
    if missing:
        raise PyromiError(f"latent_values= lacks site(s) {missing}")
    tensors = {k: torch.as_tensor(v) for k, v in values.items()}
    return to_reparam_values(model, info, tensors, model_args, model_kwargs)


def check_finite_rows(values: dict, argname: str) -> None:
    """A :class:`DensityError` naming the site and rows where ``values[name]`` ``(N, ...)`` is NaN
    or infinite: a log density at a non-finite observation is meaningless."""
    for name, v in values.items():
        if v.is_floating_point():
            bad = ~torch.isfinite(v.reshape(v.shape[0], -1)).all(-1)
            if bool(bad.any()):
                rows = bad.nonzero().flatten()[:5].tolist()
                raise DensityError(
                    f"{argname}= site '{name}' has NaN or infinite values in {int(bad.sum())} of "
                    f"{v.shape[0]} rows (first rows {rows}); remove or impute them: a log density "
                    "at a non-finite observation is meaningless."
                )


def takes_data(model: Callable) -> bool:
    """True if ``model`` has a required positional parameter (``model(x)``)."""
    import inspect

    try:
        params = inspect.signature(model).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in params)


def check_data_argument(data) -> torch.Tensor:
    """``data=`` passed as the model's argument: a non-empty tensor (a ``TypeError`` or a
    :class:`PyromiError` naming ``data=`` otherwise)."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(
            f"data= is passed as the model's argument (model(x)); it must be a tensor, got "
            f"{type(data).__name__}."
        )
    if data.dim() == 0 or data.shape[0] == 0:
        raise PyromiError(
            f"data= holds no data points (shape {tuple(data.shape)}); pass at least one row."
        )
    return data


def data_argument_observations(adapter: ModelAdapter) -> dict:
    """The observations of a model run on its data argument (its own ``obs=`` values), checked."""
    obs = adapter.data_observations()
    check_finite_rows(obs, "data")
    return obs


def as_site_dict(values, names: list[str], adapter: ModelAdapter, argname: str) -> dict:
    if isinstance(values, dict):
        missing = [n for n in names if n not in values]
        if missing:
            raise PyromiError(f"{argname}= lacks site(s) {missing}")
        values = {n: values[n] for n in names}
    else:
        if len(names) != 1:
            raise PyromiError(f"{argname}= must be a dict keyed by site name for sites {names}")
        values = {names[0]: values}
    out = {}
    for name, v in values.items():
        try:
            v = torch.as_tensor(v, device=adapter.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"{argname}= site '{name}': cannot make a numeric tensor of {type(v).__name__} ({e})"
            ) from None
        if v.dtype == torch.bool or v.is_complex():
            raise TypeError(f"{argname}= site '{name}' has dtype {v.dtype}; pass real numbers")
        if v.is_floating_point():
            v = v.to(adapter.dtype) if name in adapter.latent_names else v
        local = adapter.sites[name].local_shape
        if v.shape == local or (v.dim() == len(local) and v.shape == local):
            v = v.unsqueeze(0)
        if v.shape[1:] != local:
            raise PyromiError(
                f"{argname}= site '{name}' has shape {tuple(v.shape)}; expected (N,) + {tuple(local)}"
            )
        if v.shape[0] == 0:
            raise PyromiError(
                f"{argname}= site '{name}' holds no rows (shape {tuple(v.shape)}); pass at least one "
                "observation."
            )
        out[name] = v
    check_finite_rows(out, argname)
    n = {k: t.shape[0] for k, t in out.items()}
    if len(set(n.values())) > 1:
        raise PyromiError(f"{argname}= sites hold different numbers of rows: {n}")
    return out
