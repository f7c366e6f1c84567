"""pyromi: mutual-information bounds for Pyro models.

``mutual_information(model, observed="x", bound="iwae")`` returns an :class:`MIEstimate` with lower
and upper bounds on I(x; z) in nats. See the README for the methods and their guarantees.
"""

from .adapter import JointSamples, ModelAdapter
from .api import BOUNDS, log_marginal, mutual_information
from .estimators.known_marginal import GIWAE, MINE, MINEAIS
from .errors import (
    DensityError,
    DeviceError,
    GuideError,
    ModelError,
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
from .result import LogMarginalEstimate, MIEstimate

__version__ = "0.1.0"

__all__ = [
    "AmortizedNormal",
    "GIWAE",
    "MINE",
    "MINEAIS",
    "BOUNDS",
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
