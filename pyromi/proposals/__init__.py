"""Proposals q(z | x): the prior, Pyro guides, and pyromi's amortised Gaussian."""

from .amortized import AmortizedNormal, ProposalTrainer, fit_proposal
from .base import PriorProposal, Proposal, ProposalDraw
from .guide import GuideProposal, fit_autoguide

__all__ = [
    "AmortizedNormal",
    "GuideProposal",
    "PriorProposal",
    "Proposal",
    "ProposalDraw",
    "ProposalTrainer",
    "fit_autoguide",
    "fit_proposal",
]
