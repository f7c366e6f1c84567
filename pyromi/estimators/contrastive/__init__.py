"""Known-marginal lower bounds: critics trained on simulated pairs, evaluated on fresh pairs.

Only the prior p(z) has a usable density; x is only simulated. One module per algorithm:
:mod:`.training` (the shared critic-training loop), :mod:`.giwae` (GIWAE, InfoNCE, Barber-Agakov),
:mod:`.mine` (MINE-DV, MINE-F), :mod:`.mine_ais` (MINE-AIS).
"""

from .giwae import GIWAE
from .mine import MINE
from .mine_ais import MINEAIS, EnergyPath

__all__ = ["GIWAE", "MINE", "MINEAIS", "EnergyPath"]
