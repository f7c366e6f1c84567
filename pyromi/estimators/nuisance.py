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
The given sites' densities must depend on neither z nor psi nor x (then ``p(c*)`` is exact and
cancels; a given site drawn after x would turn the construction into I((x, c); z)). Dependence is
detected numerically: the site's log density at every sample with the values of the other sites
exchanged between samples (a discrete site moved to the next value of its support); a given site
that depends on them is a :class:`~pyromi.errors.SiteError` naming it, the sites it depends on,
and the fix.

Enumerated discrete targets k (``infer={"enumerate": "parallel"}``) are summed out of the AIS runs
over (z, psi) (so ``Z_F`` is still p(x, c)), held at their draws k* (``joint.discrete``) as observed
values in ``Z_A`` and ``Z_B``, and ``log p(k* | ...)`` is their own log density at the draw. With
no continuous latent left at all (only enumerated targets, no nuisance) both normalisers are
exact and so is the estimate, up to Monte Carlo over the draws.
"""

from __future__ import annotations

import time

import pyro
import torch

from .._rng import derived_seed, seeded
from ..adapter import JointSamples, ModelAdapter
from ..errors import SiteError
from ..ops import logmeanexp
from ..result import MIEstimate
from .ais import _check_args, ais_block, default_pilot_steps, divergence_fraction, ess_fraction, sample_blocks
from .checks import check_finite_terms, loose_bound_advice

__all__ = ["nuisance_ais_mi", "check_site_independence", "dependence", "depends_on", "site_roles"]


def _star_values(joint: JointSamples) -> dict[str, torch.Tensor]:
    """Every latent value of the N joint draws: the continuous ones and the enumerated discrete
    ones (``joint.discrete``; an enumerated target k lives there, not in ``joint.latent``)."""
    return {**joint.latent, **(joint.discrete or {})}


def _site_log_probs(adapter: ModelAdapter, values: dict, observed: dict, names) -> torch.Tensor:
    """``sum_s log p(s | parents)`` over the named sites at each of N joint values, ``(N,)`` float64
    (discrete sites included: nothing is enumerated, every value is given)."""
    with torch.no_grad(), pyro.validation_enabled(False):
        lps = adapter.site_log_probs_at(values, observed, list(names))
    return sum(lps[n] for n in names)


def _moved(adapter: ModelAdapter, name: str, v: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Site ``name``'s N values, each replaced by another: a discrete site with a finite support
    takes the next value of its support (a permutation could leave every value in place when all
    N draws agree, e.g. a Bernoulli with p near 1); any other site (a one-hot one too, whose
    elements are not values of its support) another sample's value."""
    site = adapter._prototype.nodes.get(name)
    fn = None if site is None else site["fn"]
    if fn is not None and getattr(fn, "has_enumerate_support", False) and not fn.event_dim:
        try:
            support = torch.unique(fn.enumerate_support(expand=False).reshape(-1).to(v.device, v.dtype))
            if support.numel() >= 2:
                idx = torch.searchsorted(support, v.contiguous()).clamp(max=support.numel() - 1)
                return support[(idx + 1) % support.numel()]
        except Exception:  # noqa: BLE001 - a support that cannot be listed here: permute instead
            pass
    return v[perm]


def dependence(adapter: ModelAdapter, joint: JointSamples, sites, of) -> dict[str, list[str]]:
    """``{site: [the sites of ``of`` it depends on]}`` for each of ``sites`` whose log density
    changes when the values of sites of ``of`` are exchanged between the samples of ``joint``
    (each sample given another sample's value; a discrete site the next value of its support).
    ``sites``: sites of ``adapter`` (latent, discrete or observed); ``of``: latent, discrete or
    observed sites of ``adapter``. Sites that depend on none are absent (``{}``: no dependence)."""
    sites, of = list(sites), list(of)
    if not sites or not of:
        return {}
    if joint.num_samples < 2:  # one draw cannot be exchanged with another: draw a few more
        with seeded(derived_seed(0, "dependence check"), adapter.device), torch.no_grad():
            joint = adapter.sample_joint(8)
    values = _star_values(joint)
    with torch.no_grad(), pyro.validation_enabled(False):
        base = adapter.site_log_probs_at(values, joint.observed, sites)
    perm = torch.roll(torch.arange(joint.num_samples, device=next(iter(base.values())).device), 1)

    def changed(names) -> set[str]:
        vals = {k: (_moved(adapter, k, v, perm) if k in names else v) for k, v in values.items()}
        obs = {k: (_moved(adapter, k, v, perm) if k in names else v) for k, v in joint.observed.items()}
        try:
            with torch.no_grad(), pyro.validation_enabled(False):
                other = adapter.site_log_probs_at(vals, obs, sites)
        except Exception:  # noqa: BLE001 - the moved values are outside a support that depends on them
            return set(sites)
        out = set()
        for n in sites:
            a, b = base[n], other[n]
            same = torch.isclose(a, b, rtol=1e-5, atol=1e-6) | (torch.isinf(a) & (a == b))
            if not bool(same.all()):
                out.add(n)
        return out

    hit = changed(of)
    if not hit:
        return {}
    if len(of) == 1:
        return {n: list(of) for n in sites if n in hit}
    parents: dict[str, list[str]] = {n: [] for n in sites if n in hit}
    for o in of:  # which of them: one at a time
        for n in changed([o]) & hit:
            parents[n].append(o)
    for n, ps in parents.items():
        if not ps:  # seen only when they all move together: name them all
            ps.extend(of)
    return parents


def depends_on(adapter: ModelAdapter, joint: JointSamples, sites, of) -> bool:
    """Whether the log density of ``sites`` (observed, latent or enumerated discrete sites of
    ``adapter``) changes when the sites ``of`` are exchanged across the samples of ``joint``
    (:func:`dependence`)."""
    return bool(dependence(adapter, joint, sites, of))


def check_site_independence(adapter: ModelAdapter, joint: JointSamples, sites, of, role: str,
                            nuisance=()) -> None:
    """A :class:`SiteError` naming each site of ``sites`` whose density depends on sites of ``of``,
    those sites, and the fix (:func:`dependence`). ``nuisance``: the nuisance sites among ``of``
    (a given site's nuisance parents may be given too)."""
    found = dependence(adapter, joint, sites, of)
    if not found:
        return
    what = "; ".join(f"{role} site '{n}' depends on {_kinds(adapter, ps)}" for n, ps in found.items())
    if role == "target":
        raise SiteError(
            f"{what} (its log density changed when their values were exchanged between draws). "
            "log p(z* | c*) then needs its own AIS sandwich over the nuisance (a model without x); "
            "pass marginal= (mutual_information builds it)."
        )
    fixes = []
    for n, ps in found.items():
        if any(p in adapter.observed_names for p in ps):
            fixes.append(f"'{n}' is drawn after the observations: drop it from given= (or add it to "
                         "observed=, then the MI is about it too)")
            continue
        fix = f"list '{n}' in latent= instead of given= (the MI is then about it too)"
        up = [p for p in ps if p in set(nuisance)]
        if up:
            fix += f", or add {', '.join(map(repr, up))} to given= as well (conditioning on its parents too)"
        fixes.append(fix)
    raise SiteError(
        f"{what} (its log density changed when their values were exchanged between draws). "
        "I(x; z | c) holds the given sites c as context, drawn before the latents and the "
        "observations, so their densities may depend on other given sites only. Fix: "
        + "; ".join(fixes) + "; or drop given=."
    )


def _kinds(adapter: ModelAdapter, names) -> str:
    observed = [n for n in names if n in adapter.observed_names]
    latent = [n for n in names if n not in observed]
    parts = []
    if latent:
        parts.append(f"the latent site{'s' if len(latent) > 1 else ''} {', '.join(map(repr, latent))}")
    if observed:
        parts.append(f"the observed site{'s' if len(observed) > 1 else ''} {', '.join(map(repr, observed))}")
    return " and ".join(parts)


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
    target, given, nuisance = list(target), list(given), list(nuisance)
    x_names = [n for n in full.observed_names if n not in given]
    if marginal is None:
        check_site_independence(full, joint, target, nuisance, "target")
    # c drawn first and held as context: its density may depend on other given sites only
    check_site_independence(full, joint, given, target + nuisance + x_names, "given", nuisance=nuisance)
    star = _star_values(joint)  # z* (an enumerated discrete target k* too) and psi*
    log_p_given = _site_log_probs(full, star, joint.observed, given) if given else 0.0  # log p(c*)
    if marginal is None:  # log p(z* | c*), exact: no target density depends on the nuisance
        log_p_target = _site_log_probs(full, star, joint.observed, target)
    log_joint_star = None
    if conditional is None:  # no nuisance: log Z_A = log p(x, z*, c*) exactly
        log_joint_star = (
            _site_log_probs(full, star, joint.observed, full.latent_names + full.discrete_names + full.observed_names)
            if full.discrete_names else joint.log_density_star  # (that one has k summed out, not at k*)
        )
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

    def exact(tag: str, value: torch.Tensor) -> None:
        rec["lb_" + tag].append(value.double())
        rec["ub_" + tag].append(value.double())

    def shaped(adapter: ModelAdapter, a: int, b: int, names) -> dict:
        """Draws [a:b] of the named sites (z* and c* as observed values, psi* as the backward
        chain's start) in ``adapter``'s own site shapes: the model without x (``marginal``) may
        have fewer plates than the full model, hence other left padding of the same values."""
        return {n: (star[n] if n in star else joint.observed[n])[a:b].reshape(
            (b - a,) + tuple(adapter.sites[n].local_shape)) for n in names}

    for a, b, obs, lat in blocks:
        if full.latent_names:  # Z_F = p(x, c*): AIS over (z, psi) (enumerated targets summed out)
            run("f", full, obs, lat)
        else:  # every target discrete and enumerated, no nuisance: p(x, c*) exactly
            exact("f", joint.log_density_star[a:b])
        if marginal is not None:  # Z_B = p(z*, c*): AIS over the nuisance in the model without x
            rows = {k: v for k, v in obs.items() if k not in full.observed_names}  # data-plate covariates
            run("b", marginal, {**rows, **shaped(marginal, a, b, marginal.observed_names)},
                shaped(marginal, a, b, marginal.latent_names))
        if conditional is None:  # no nuisance: log Z_A = log p(x, z*, c*) exactly
            exact("a", log_joint_star[a:b])
        else:  # Z_A = p(x, z*, c*): AIS over psi with z held at z*
            run("a", conditional, {**obs, **shaped(conditional, a, b, target)},
                shaped(conditional, a, b, conditional.latent_names))
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
    runs = bool(full.latent_names) + (conditional is not None) + (marginal is not None)
    acc = torch.cat([x.flatten() for x in rec["acc"]]) if T > 1 and rec["acc"] else None
    diagnostics = {
        "ess_fraction": cat.get("ess_f"),
        "ess_fraction_mean": float(cat["ess_f"].mean()) if "ess_f" in cat else None,
        "log_p_target": log_p_target_record,
        "divergences": n_div,
        "divergence_fraction": divergence_fraction(n_div, runs * (K + 1), joint.num_samples, T),
        "acceptance_mean": None if acc is None or acc.numel() == 0 else float(acc.double().mean()),
        "seconds": time.perf_counter() - t0,
    }
    if "ess_a" in cat:
        diagnostics["ess_fraction_conditional"] = cat["ess_a"]
    est_lower, est_upper = float(lower.mean()), float(upper.mean())
    loose_bound_advice(bound, est_lower, est_upper, diagnostics, nested=True)
    settings = {"num_steps": T, "schedule": schedule if isinstance(schedule, str) else "array",
                "num_leapfrog": num_leapfrog, "target_accept": target_accept,
                "target": list(target), "nuisance": list(nuisance), "given": list(given),
                "method": "nested Multi-Sample AIS" if runs else "exact (enumerated targets, no nuisance)",
                "target_marginal": "exact" if marginal is None else (
                    f"{'AIS' if bound == 'ais' else bound.upper()} sandwich (nuisance upstream of the target)"),
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
    given_names = as_names(given, "given") if given is not None else []
    held: list[str] = []
    try:
        probe = ModelAdapter(model, observed, None, **common)
    except SiteError as e:
        if not given_names or "depends on the observed" not in str(e):
            raise
        # a given site drawn after x (as a latent its density depends on x): probe it held as
        # context, so that the nested bound's check names it and the fix
        try:
            probe = ModelAdapter(model, as_names(observed, "observed") + given_names, None,
                                 context=given_names, **common)
        except SiteError:
            raise e from None
        held = list(given_names)
    others = list(probe.latent_names) + list(getattr(probe, "discrete_names", ()) or ()) + held
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

