"""pyromi: mutual-information bounds for Pyro models.

``mutual_information(model, observed="x", bound="iwae")`` returns an :class:`MIEstimate` with lower
and upper bounds on I(x; z) in nats. See the README for the methods and their guarantees.
"""

from .adapter import JointSamples, ModelAdapter
from .api import (BOUNDS, METHODS, ais_mi, ba_mi, giwae_mi, infonce_mi, iwae_mi, log_marginal, mine_ais_mi,
                  mine_mi, mist_mi, mutual_information)
from .estimators.contrastive import GIWAE, MINE, MINEAIS
from .errors import (
    DensityError,
    DeviceError,
    GuideError,
    ModelError,
    OptionError,
    PyromiError,
    PyromiWarning,
    ResourceError,
    SiteError,
    VectorizationError,
)
from .proposals import (
    AmortizedNormal,
    GuideProposal,
    PriorProposal,
    ProposalTrainer,
    fit_autoguide,
    fit_proposal,
)
from .result import LearnedEstimate, LogMarginalEstimate, MIEstimate

__version__ = "0.1.0"

#: public submodules imported on first access (``pyromi.audit``, ``pyromi.plots``, ...): ``import
#: pyromi`` stays fast, and ``pyromi.mist.estimate(...)`` works without ``import pyromi.mist``
_SUBMODULES = ("audit", "baselines", "critics", "mist", "models", "oed", "plots")


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")  # also binds it as an attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))

__all__ = [
    "AmortizedNormal",
    "GIWAE",
    "MINE",
    "MINEAIS",
    "BOUNDS",
    "METHODS",
    "LearnedEstimate",
    "OptionError",
    "ais_mi",
    "ba_mi",
    "giwae_mi",
    "infonce_mi",
    "iwae_mi",
    "mine_ais_mi",
    "mine_mi",
    "mist_mi",
    "DensityError",
    "DeviceError",
    "GuideError",
    "GuideProposal",
    "ModelError",
    "ResourceError",
    "JointSamples",
    "LogMarginalEstimate",
    "MIEstimate",
    "ModelAdapter",
    "PriorProposal",
    "ProposalTrainer",
    "PyromiError",
    "PyromiWarning",
    "SiteError",
    "VectorizationError",
    "fit_autoguide",
    "fit_proposal",
    "log_marginal",
    "mutual_information",
]
