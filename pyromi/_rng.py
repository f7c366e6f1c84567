"""Seeding that does not disturb the caller's global random state."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


MAX_SEED = 2**63 - 1


def check_seed(seed) -> None:
    """Raise a ``TypeError``/``ValueError`` naming ``seed=`` unless it is None or an int in [0, 2**63)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed= must be an int in [0, 2**63) or None, got {seed!r} ({type(seed).__name__})")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed= must be an int in [0, 2**63) or None, got {seed}")


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for a second, independent stream of ``seed`` (a fixed mix of the seed and a label)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & MAX_SEED


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's RNG seeded by ``seed`` and restore the caller's RNG state afterwards.

    ``seed=None`` leaves the global state alone (draws continue from it). Pyro samples through torch's
    global generator, so this makes model draws, proposals and chains reproducible.
    """
    if seed is None:
        yield
        return
    check_seed(seed)
    devices = []
    if device is not None and device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
