"""Seeding that does not disturb the caller's global random state."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator

import torch


MAX_SEED = 2**63 - 1


def check_seed(seed) -> int | None:
    """The seed as a Python int (or None); a ``TypeError``/``ValueError`` naming ``seed=`` unless it
    is None or an integer (``int``, ``numpy.int64``, any ``numbers.Integral`` but ``bool``) in
    [0, 2**63)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed= must be an int in [0, 2**63) or None, got {seed!r} ({type(seed).__name__})")
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed= must be an int in [0, 2**63) or None, got {seed}")
    return seed


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for a second, independent stream of ``seed`` (a fixed mix of the seed and a label)."""
    import hashlib

    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & MAX_SEED


def _cuda_devices(device: torch.device | None) -> list[int]:
    if device is not None and device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's RNG seeded by ``seed`` and restore the caller's RNG state afterwards.

    ``seed=None`` leaves the global state alone (draws continue from it). Pyro samples through torch's
    global generator, so this makes model draws, proposals and chains reproducible.
    """
    if seed is None:
        yield
        return
    seed = check_seed(seed)
    with torch.random.fork_rng(devices=_cuda_devices(device)):
        torch.manual_seed(seed)
        yield


class RNGStream:
    """A private random stream: torch's CPU generator state (and, for a CUDA ``device``, that
    device's generator state), seeded from ``seed``.

    ``with stream.active():`` installs the stream's state as torch's global state (Pyro samples
    through the global generator), runs the block, saves the advanced state back into the stream
    and restores the caller's global state. Draws inside the block are therefore a function of the
    seed and of the blocks run before on this stream only, never of the caller's global RNG, which
    they leave untouched. Re-entrant: a nested ``active()`` of the same stream continues the outer
    block's draws.

    ``seed=None`` seeds the stream with a value drawn once from torch's global generator at
    construction (so ``torch.manual_seed`` before construction still makes it reproducible).
    """

    def __init__(self, seed: int | None, device: torch.device | None = None) -> None:
        seed = check_seed(seed)
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        self._devices = _cuda_devices(device)
        self._depth = 0
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Restart the stream from ``seed`` (as if newly built with it)."""
        seed = check_seed(seed)
        if seed is None:
            raise TypeError("RNGStream.reset needs an int seed, got None")
        if self._depth:
            raise RuntimeError("cannot reset an RNGStream while it is active")
        self.seed = seed
        # fresh generators: the same states as torch.manual_seed(seed) gives, without touching any
        # global generator (torch.manual_seed would also reseed every other CUDA device)
        self._cpu_state = torch.Generator().manual_seed(seed).get_state()
        self._cuda_states = [
            torch.Generator(device=f"cuda:{d}").manual_seed(seed).get_state() for d in self._devices
        ]

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Run the block drawing from this stream; the global RNG state is restored afterwards."""
        if self._depth:  # nested: the outer block has installed (and will save) the state
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with torch.random.fork_rng(devices=self._devices):
            torch.set_rng_state(self._cpu_state)
            for d, s in zip(self._devices, self._cuda_states):
                torch.cuda.set_rng_state(s, d)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                self._cpu_state = torch.get_rng_state()
                self._cuda_states = [torch.cuda.get_rng_state(d) for d in self._devices]
