"""Sandwich bounds on I(x; z | c) with nuisance latents psi marginalised (nested Multi-Sample AIS).

Sites: x observed, z the target latents, c the given (conditioning) sites, psi every other latent
(nuisance). With ``Z_F = p(x, c)`` (AIS over (z, psi) from their prior to p(z, psi | x, c)) and
``Z_A = p(x, z, c)`` (AIS over psi alone, z held at z*, from p(psi | z*, c) to p(psi | x, z*, c)):

    I(x; z | c) = E[log p(x | z, c) - log p(x | c)] = E[log Z_A - log Z_F - log p(z* | c*)]

over joint draws (x, c*, z*, psi*) ~ p. Each log-normaliser has a Multi-Sample AIS sandwich
(Grosse et al. 2015, BDMC; Brekelmans et al. 2022, Multi-Sample AIS, eqs. for the coupled bounds):
K forward chains give ``LB = LME_k log w_k`` (E[LB] <= log Z); one backward chain from an exact
posterior draw plus K - 1 forward chains give ``UB = LME(log w_bwd, log w_1..K-1)`` (E[UB] >= log Z).
The draw (z*, psi*) is exact for p(z, psi | x, c), and psi* is exact for p(psi | x, z*, c), so

    lower_i = LB_A,i - log p(z*_i | c*_i) - UB_F,i,     upper_i = UB_A,i - log p(z*_i | c*_i) - LB_F,i

are per-sample terms of a lower and an upper bound. With no nuisance, ``log Z_A`` is the exact
``log p(x, z*, c*)`` and the construction is ``bound="ais"``'s. T = 1 makes every AIS run importance
sampling from the prior (the IWAE version).

``log p(z* | c*)`` is exact (the z sites' own log densities) when no z site's density depends on
psi. When one does (a nuisance upstream of the target, e.g. the top layer of a hierarchical model
when auditing a lower one), ``Z_B = p(z*, c*)`` gets its own sandwich: AIS over psi in the model
with the observations hidden (x is a leaf, summed out by simulation), from p(psi) to
p(psi | z*, c*), whose exact posterior draw is psi* again; then
``lower_i = LB_A - (UB_B - log p(c*)) - UB_F`` and ``upper_i = UB_A - (LB_B - log p(c*)) - LB_F``.
The given sites' densities must depend on neither z nor psi (then ``p(c*)`` is exact and cancels).
Dependence is detected numerically (the site's log density at every sample with the other latents
permuted across samples); a given site that depends on the latents is a
:class:`~pyromi.errors.SiteError` naming it.
"""

from __future__ import annotations

import time

import pyro
import torch

from ..adapter import JointSamples, ModelAdapter
from ..errors import SiteError
from ..ops import logmeanexp
from ..result import MIEstimate
from .ais import _check_args, ais_block, default_pilot_steps, divergence_fraction, ess_fraction, sample_blocks
from .checks import check_finite_terms, loose_bound_advice

__all__ = ["nuisance_ais_mi", "check_site_independence"]


def _site_log_probs(adapter: ModelAdapter, latent: dict, observed: dict, names) -> torch.Tensor:
    with torch.no_grad(), pyro.validation_enabled(False):
        ev = adapter.log_density({k: v.unsqueeze(0) for k, v in latent.items()}, observed)
    return sum(ev.site_log_probs[n][0].double() for n in names)


def depends_on(adapter: ModelAdapter, joint: JointSamples, sites, of) -> bool:
    """Whether the log density of ``sites`` (observed or latent sites of ``adapter``) changes when
    the latent sites ``of`` are permuted across the samples of ``joint`` (their values kept, each
    sample given another sample's)."""
    if not sites or not of or joint.num_samples < 2:
        return False
    base = _site_log_probs(adapter, joint.latent, joint.observed, sites)
    perm = torch.roll(torch.arange(joint.num_samples, device=base.device), 1)
    moved = {k: (v[perm] if k in of else v) for k, v in joint.latent.items()}
    try:
        other = _site_log_probs(adapter, moved, joint.observed, sites)
    except Exception:  # noqa: BLE001 - the permuted values are outside a support that depends on them
        return True
    same = torch.isclose(base, other, rtol=1e-5, atol=1e-6) | (torch.isinf(base) & (base == other))
    return not bool(same.all())


def check_site_independence(adapter: ModelAdapter, joint: JointSamples, sites, of, role: str) -> None:
    """A :class:`SiteError` naming the sites if :func:`depends_on`."""
    if depends_on(adapter, joint, sites, of):
        raise SiteError(
            f"the density of {role} site(s) {list(sites)} depends on the latent site(s) {list(of)} "
            f"(it changed when their values were exchanged between draws, e.g. a parent of "
            f"'{sites[0]}'). {_ADVICE[role]}"
        )


_ADVICE = {
    "target": ("log p(z* | c*) then needs its own AIS sandwich over the nuisance (a model without x); "
               "pass marginal= (mutual_information builds it)."),
    "given": ("I(x; z | c) is computed with c drawn first and held as context, which needs c's density "
              "free of the latents; list the site in latent= instead, or condition on its parents too."),
}


def _block_bounds(lw: torch.Tensor, lw_b: torch.Tensor | None, K: int):
    lower = logmeanexp(lw, 0)
    upper = None if lw_b is None else logmeanexp(torch.cat([lw_b.unsqueeze(0).double(), lw[: K - 1].double()]), 0)
    return lower, upper


def nuisance_ais_mi(
    full: ModelAdapter,
    conditional: ModelAdapter | None,
    joint: JointSamples,
    *,
    marginal: ModelAdapter | None = None,
    target,
    given,
    nuisance,
    bound: str = "ais",
    num_particles: int = 16,
    num_steps: int = 1000,
    schedule="adaptive",
    num_leapfrog: int = 10,
    target_accept: float = 0.65,
    max_batch: int = 2**16,
    progress: bool = False,
) -> MIEstimate:
    """The sandwich of the module docstring on the N draws of ``joint`` (sampled by ``full``, whose
    observed sites are x and c and whose latents are z and psi); ``conditional`` has z among its
    observed sites and psi as latents (None when there is no nuisance). Nats."""
    _check_args(num_particles, num_steps, num_leapfrog, schedule, target_accept)
    t0 = time.perf_counter()
    K, T = num_particles, num_steps
    if marginal is None:
        check_site_independence(full, joint, list(target), list(nuisance), "target")
    check_site_independence(full, joint, list(given), list(target) + list(nuisance), "given")
    log_p_given = _site_log_probs(full, joint.latent, joint.observed, given) if given else 0.0  # log p(c*)
    if marginal is None:  # log p(z* | c*), exact: no target density depends on the nuisance
        log_p_target = _site_log_probs(full, joint.latent, joint.observed, target)
    kw = dict(num_particles=K, num_leapfrog=num_leapfrog, target_accept=target_accept,
              pilot_steps=default_pilot_steps(T), pilot_chains=max(K, 16), progress=progress)
    _, blocks = sample_blocks(joint, K, max_batch)
    rec: dict[str, list] = {k: [] for k in ("lb_f", "ub_f", "lb_a", "ub_a", "lb_b", "ub_b", "ess_f", "ess_a",
                                            "ess_b", "div", "acc")}
    def run(tag: str, adapter: ModelAdapter, observed: dict, latent: dict) -> None:
        """One AIS sandwich on a log-normaliser; its bounds, ESS, divergences, acceptance recorded."""
        res, _ = ais_block(adapter, observed, latent, None, T, schedule, **kw)
        lb, ub = _block_bounds(res.log_weights, res.log_weight_backward, K)
        rec["lb_" + tag].append(lb)
        rec["ub_" + tag].append(ub)
        rec["ess_" + tag].append(ess_fraction(res.log_weights))
        rec["div"].append(int(res.divergences.sum()))
        rec["acc"].append(res.acceptance)

    for a, b, obs, lat in blocks:
        run("f", full, obs, lat)  # Z_F = p(x, c*): AIS over (z, psi)
        if marginal is not None:  # Z_B = p(z*, c*): AIS over the nuisance in the model without x
            run("b", marginal, {n: lat[n] if n in lat else obs[n] for n in marginal.observed_names},
                {n: lat[n] for n in marginal.latent_names})
        if conditional is None:  # no nuisance: log Z_A = log p(x, z*, c*) exactly
            exact = joint.log_density_star[a:b]
            rec["lb_a"].append(exact)
            rec["ub_a"].append(exact)
        else:  # Z_A = p(x, z*, c*): AIS over psi with z held at z*
            run("a", conditional, {**obs, **{n: lat[n] for n in target}}, {n: lat[n] for n in nuisance})
    cat = {k: torch.cat(v) for k, v in rec.items() if k not in ("div", "acc") and v}
    if marginal is None:
        lower = cat["lb_a"] - log_p_target - cat["ub_f"]
        upper = cat["ub_a"] - log_p_target - cat["lb_f"]
        log_p_target_record = log_p_target
    else:  # log p(z* | c*) = log Z_B - log p(c*), bounded on each side by the B sandwich
        lower = cat["lb_a"] - (cat["ub_b"] - log_p_given) - cat["ub_f"]
        upper = cat["ub_a"] - (cat["lb_b"] - log_p_given) - cat["lb_f"]
        log_p_target_record = 0.5 * (cat["lb_b"] + cat["ub_b"]) - log_p_given
    check_finite_terms(
        bound, {"lower": lower, "upper": upper},
        "A chain ended where the model's density is 0: use more chains (num_particles=) or more "
        "annealing steps (num_steps=).",
    )
    n_div = sum(rec["div"])
    runs = 1 + (conditional is not None) + (marginal is not None)
    acc = torch.cat([x.flatten() for x in rec["acc"]]) if T > 1 else None
    diagnostics = {
        "ess_fraction": cat["ess_f"],
        "ess_fraction_mean": float(cat["ess_f"].mean()),
        "log_p_target": log_p_target_record,
        "divergences": n_div,
        "divergence_fraction": divergence_fraction(n_div, runs * (K + 1), joint.num_samples, T),
        "acceptance_mean": None if acc is None or acc.numel() == 0 else float(acc.double().mean()),
        "seconds": time.perf_counter() - t0,
    }
    if "ess_a" in cat:
        diagnostics["ess_fraction_conditional"] = cat["ess_a"]
    est_lower, est_upper = float(lower.mean()), float(upper.mean())
    loose_bound_advice(bound, est_lower, est_upper, diagnostics)
    settings = {"num_steps": T, "schedule": schedule if isinstance(schedule, str) else "array",
                "num_leapfrog": num_leapfrog, "target_accept": target_accept,
                "nuisance": list(nuisance), "given": list(given), "method": "nested Multi-Sample AIS",
                "target_marginal": "exact" if marginal is None else "AIS sandwich (nuisance upstream of the target)",
                "device": str(full.device), "dtype": str(full.dtype)}
    return MIEstimate.from_terms(bound, lower, upper, num_particles=K, settings=settings,
                                 diagnostics=diagnostics, observed=tuple(n for n in full.observed_names
                                                                         if n not in given),
                                 latent=tuple(target))


def site_roles(model, observed, latent, given, *, model_args=(), model_kwargs=None, device=None, dtype=None,
               data_plate=None, vectorize="auto") -> tuple[list[str], list[str], list[str]]:
    """``(target, given, nuisance)`` site names: ``given`` and ``latent`` as named (``latent=None``:
    every site neither observed nor given), nuisance every other sample site."""
    from ..model.sites import as_names

    common = dict(model_args=model_args, model_kwargs=model_kwargs, device=device, dtype=dtype,
                  data_plate=data_plate, vectorize=vectorize)
    if latent is not None and given is None:
        # every site listed (the common case): no nuisance, and the adapter's own errors about the
        # named sites (unknown, fixed by obs=, ...) are the ones to show
        try:
            named = ModelAdapter(model, observed, latent, **common)
            return list(named.latent_names), [], []
        except SiteError as e:
            if "are neither observed nor latent" not in str(e):
                raise
    probe = ModelAdapter(model, observed, None, **common)
    others = list(probe.latent_names) + list(getattr(probe, "discrete_names", ()) or ())
    given_names = as_names(given, "given") if given is not None else []
    unknown = [n for n in given_names if n not in others]
    if unknown:
        raise SiteError(
            f"given= names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not a latent sample "
            f"site of the model (latent sites: {others}; observed: {list(probe.observed_names)})."
        )
    if latent is None:
        target = [n for n in others if n not in given_names]
    else:
        target = as_names(latent, "latent")
        both = [n for n in target if n in given_names]
        if both:
            raise SiteError(f"site(s) {both} are both latent= and given=; a site is one or the other.")
        unknown = [n for n in target if n not in others]
        if unknown:
            raise SiteError(f"latent= names {unknown}, not latent sample sites of the model (latent sites: {others}).")
    if not target:
        raise SiteError("no target latent site is left: name at least one in latent= that is not given=.")
    nuisance = [n for n in others if n not in target and n not in given_names]
    discrete = [n for n in nuisance if n in set(getattr(probe, "discrete_names", ()) or ())]
    if discrete:
        raise SiteError(
            f"discrete latent site(s) {discrete} would be nuisance sites: the nested bounds anneal "
            f"continuous latents only. Add them to latent= (I(x; {', '.join(target + discrete)})), hold "
            "them as context with given=, or sum them out inside the model."
        )
    return target, given_names, nuisance

