"""Checks every bound passes before it is returned: finite terms, and a word on loose numbers.

A bound's per-sample terms must all be finite: a NaN is an error of the model or the proposal, and an
infinite term (every proposal draw or chain of a sample at zero density) makes the mean meaningless,
so both raise :class:`~pyromi.errors.DensityError` with the reason and the fix instead of being
averaged. A finite bound that says little gets a warning (kept in ``diagnostics["advice"]``):

* a sandwich wider than ``WIDE_SANDWICH`` (10%) of its midpoint;
* a negative lower bound: valid, since I(x; z) >= 0, but it carries no information.
"""

from __future__ import annotations


import torch

from .._state import warn
from ..errors import DensityError, PyromiWarning

__all__ = ["WIDE_SANDWICH", "CRITIC_BOUNDS", "check_finite_terms", "loose_bound_advice"]

WIDE_SANDWICH = 0.1  # relative width above which the result says so


def check_finite_terms(bound: str, terms: dict[str, torch.Tensor | None], fix: str) -> None:
    """Raise :class:`DensityError` if a per-sample term ``(N,)`` is NaN or infinite.

    ``fix`` says what to change when a term is infinite (a proposal or chains that miss the support
    of p(x | z) for some sample).
    """
    for side, t in terms.items():
        if t is None:
            continue
        finite = torch.isfinite(t)
        if bool(finite.all()):
            continue
        nan = int(torch.isnan(t).sum())
        inf = int((~finite).sum()) - nan
        n = t.numel()
        if nan:
            raise DensityError(
                f"bound={bound!r}: the {side} bound is NaN for {nan} of {n} samples: a log density "
                "or log-weight was NaN (a model or proposal that returns NaN on part of the latent "
                "space). Check the model's distribution parameters where the latents can go."
            )
        raise DensityError(
            f"bound={bound!r}: the {side} bound is infinite for {inf} of {n} samples: for those "
            "samples every proposal draw (or every annealing chain) landed where p(x | z) = 0, so "
            f"log p(x) has no finite estimate. {fix}"
        )


#: bounds whose looseness comes from a trained critic T(x, z) (no proposal q(z|x) of their own)
CRITIC_BOUNDS = frozenset({"infonce", "mine_dv", "mine_f", "mine_ais"})


def _negative_advice(bound: str) -> str:
    """What to change when ``bound``'s lower bound is negative: it depends on what the bound has."""
    if bound in CRITIC_BOUNDS:
        return ("The critic T(x, z) is poorly trained: train it longer (train_steps=, or more "
                ".step() calls), use a bigger critic (critic=), or more negatives (num_particles=).")
    if bound == "giwae":
        return ("The critic T(x, z) and the proposal q(z|x) are poorly trained: train them longer "
                "(train_steps=, or more .step() calls), use a bigger critic (critic=), or more "
                "negatives (num_particles=).")
    if bound == "ais":
        return ("The annealing chains are far from the posterior: increase num_steps, start from a "
                "trained proposal (start=AmortizedNormal(...)), or use more chains (num_particles=).")
    return ("The proposal q(z|x) matches the posterior badly (a poorly fitted guide); train it "
            "longer, or use bound='ais'.")


def _wide_advice(bound: str, lower: float, upper: float, rel: float) -> str:
    if bound == "ais":  # wording matched by tests and filtered by pyromi.audit: keep it
        return (
            f"the AIS sandwich is wide: [{lower:.3f}, {upper:.3f}] nats "
            f"({100 * rel:.0f}% of its midpoint). Increase num_steps, or start from a trained "
            "proposal (start=AmortizedNormal(...)), or use more chains."
        )
    return (
        f"the {bound} sandwich is wide: [{lower:.4g}, {upper:.4g}] nats ({100 * rel:.0f}% of "
        "its midpoint). Use a trained proposal (guide=AmortizedNormal(...) fitted with "
        "fit_proposal), bound='ais' or more particles."
    )


def loose_bound_advice(bound: str, lower: float | None, upper: float | None,
                       diagnostics: dict, stacklevel: int = 3) -> None:
    """Warn (and record ``diagnostics["advice"]``) when the result says little; see module doc.

    Both notes can fire together (a wide sandwich whose lower bound is also negative): the wide
    note comes first, then the negative-bound note; the advice names what ``bound`` can change
    (a critic, a proposal, or annealing chains)."""
    notes = []
    if lower is not None and upper is not None:
        rel = (upper - lower) / max(abs(0.5 * (upper + lower)), 1e-12)
        diagnostics.setdefault("relative_width", rel)
        wide = rel > WIDE_SANDWICH
        diagnostics.setdefault("wide_sandwich", wide)
        if wide:
            notes.append(_wide_advice(bound, lower, upper, rel))
    if lower is not None and lower < 0:
        notes.append(
            f"the {bound} lower bound is negative ({lower:.4g} nats): it is valid but says nothing, "
            f"since I(x; z) >= 0. {_negative_advice(bound)}"
        )
    if notes:
        msg = " ".join(notes)
        diagnostics["advice"] = msg
        warn(msg, PyromiWarning)
