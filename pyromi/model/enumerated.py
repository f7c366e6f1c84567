"""The adapter's enumerated density passes: discrete latents summed out in every pass.

With discrete latents k (marked for parallel enumeration) and continuous latents z, every density
pass returns ``log p(z) = log sum_k p(k, z)`` and ``log p(x | z) = log p(x, z) - log p(z)`` (the
contractions of :mod:`pyromi.model.enumeration`), so HMC moves only z; the joint draws keep the true
k* for ``log p(x | k*, z*)``. The bounds are then on ``I(x; {k, z})``.
"""

from __future__ import annotations

import pyro
import torch

from ..errors import PyromiError
from .enumeration import discrete_latent_sites, enumerated_log_densities
from .scoring import ScoringPass

__all__ = ["Enumerator"]


class Enumerator:
    """Enumerated scoring passes for a :class:`~pyromi.model.ModelAdapter` with discrete latents."""

    def __init__(self, adapter, table) -> None:
        # raises a SiteError naming a discrete latent not marked for parallel enumeration
        discrete_latent_sites(adapter._prototype, table.latent + table.discrete)
        self.adapter = adapter
        self.discrete = list(table.discrete)

    def _groups(self) -> dict[str, list[str]]:
        a = self.adapter
        prior = a.latent_names + self.discrete
        return {"prior": prior, "joint": prior + a.scored_observed}

    def score(self, lead_shape, observed, latent=None, unconstrained=None, record_unconstrained=False,
              score_prior=True, constant_names=(), score=True):
        """The adapter's scoring pass with the discrete latents enumerated and summed out: the
        returned pass carries ``log_prior`` and ``log_likelihood`` ``(C, N)``."""
        a = self.adapter
        sp = ScoringPass(a.latent_names, a.scored_observed, lead_shape, observed, latent=latent,
                         unconstrained=unconstrained, record_unconstrained=record_unconstrained,
                         score=False)
        args, kwargs = a.arguments(observed, lead_shape[1])
        stage = f"in an enumerated model pass over {lead_shape[0]} x {lead_shape[1]} (particle, sample) pairs"
        try:
            dens = enumerated_log_densities(
                a._model, args, kwargs, lead_shape=tuple(lead_shape), values={}, groups=self._groups(),
                max_plate_nesting=a.max_plate_nesting, handlers=(sp,), data_plate=self._data_plate())
        except PyromiError:
            raise
        except Exception:
            with a._translate_errors(stage):
                raise
        sp.log_prior = dens.log_densities["prior"]
        sp.log_likelihood = dens.log_densities["joint"] - sp.log_prior
        sp.site_log_probs = dict(dens.site_log_probs)
        for name, nan in dens.site_nan.items():
            if name not in sp.site_log_probs:  # depends on k: only its NaN pattern is known
                sp.site_log_probs[name] = torch.where(nan, torch.nan, 0.0).to(sp.log_prior.dtype)
        sp.batch_shapes = {}
        return sp

    def log_prior_at(self, latent, observed, num_samples: int) -> torch.Tensor:
        """``log p(z_i*)`` with the discrete latents summed out, for N joint draws, shape ``(N,)``."""
        return self._at(latent, observed, num_samples, "prior")

    def log_joint_at(self, latent, observed, num_samples: int) -> torch.Tensor:
        """``log p(x_i, z_i*)`` with the discrete latents summed out, shape ``(N,)``."""
        return self._at(latent, observed, num_samples, "joint")

    def _at(self, latent, observed, num_samples: int, group: str) -> torch.Tensor:
        a = self.adapter
        args, kwargs = a.arguments(observed, num_samples)
        values = dict(latent)
        values.update({n: observed[n] for n in a.observed_names})
        with pyro.validation_enabled(False):
            dens = enumerated_log_densities(
                a._model, args, kwargs, lead_shape=(num_samples,), values=values,
                groups={group: self._groups()[group]}, observed=a.observed_names,
                max_plate_nesting=a.max_plate_nesting, data_plate=self._data_plate())
        return dens.log_densities[group]

    def _data_plate(self) -> str | None:
        return None if self.adapter.data_plate is None else self.adapter.data_plate.name
