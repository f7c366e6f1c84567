"""Bijections for supports that torch's ``biject_to`` registry lacks.

pyromi maps every latent site to an unconstrained space with ``T = biject_to(support)``. Torch
registers no bijection for :class:`~torch.distributions.constraints.MixtureSameFamilyConstraint`, the
support of ``dist.MixtureSameFamily`` (the standard way to write a marginalised discrete mixture
indicator in a Pyro model). A mixture's support *is* its components' support, so the bijection is the
component support's bijection. Registering it in torch's registry (as Pyro registers its own
constraints) also lets Pyro's autoguides (``AutoNormal``) handle mixture priors; the registration only
adds a case that raised ``NotImplementedError`` before and leaves every other constraint alone.
"""

from __future__ import annotations

from torch.distributions import biject_to, constraints, transform_to

__all__ = ["register_mixture_bijections"]

_MIXTURE = getattr(constraints, "MixtureSameFamilyConstraint", None)


def _component_bijection(constraint):
    return biject_to(constraint.base_constraint)


def _component_transform(constraint):
    return transform_to(constraint.base_constraint)


def register_mixture_bijections() -> None:
    """Register ``biject_to`` / ``transform_to`` for mixture supports (idempotent)."""
    if _MIXTURE is None:  # older torch: MixtureSameFamily.support is the component support itself
        return
    if _MIXTURE not in biject_to._registry:
        biject_to.register(_MIXTURE, _component_bijection)
    if _MIXTURE not in transform_to._registry:
        transform_to.register(_MIXTURE, _component_transform)


register_mixture_bijections()
