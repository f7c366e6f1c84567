"""Scale-out on ``torch.distributed``: the N joint samples are sharded over the ranks.

When a process group is initialised (``torchrun``, SLURM + ``init_process_group``) with more than
one rank, :func:`pyromi.mutual_information`, :func:`pyromi.log_marginal`, :func:`pyromi.audit` and
the trainers' ``evaluate`` methods run **their own share of the samples on each rank** and
all-gather the per-sample terms, so that every rank returns the same estimate over all N samples.

Why every bound stays valid: each bound is a mean over samples of per-sample terms, each of which is
a valid (stochastic) bound term for its own sample -- IWAE's and AIS's terms depend only on that
sample's x, z* and chains. AIS kernels (pilot-tuned step sizes and masses) and the adaptive
schedule are tuned per block of samples from pilot chains that are not the evaluation chains, then
frozen -- exactly what a single process does when ``max_batch`` splits N into blocks; a rank is one
more block. Nothing is shared between ranks but the seed (broadcast when ``seed=None``) and, for
trained bounds, the parameters (identical by construction: data-parallel training). So the
gathered mean is the same kind of bound as a single-process run, with the same Monte Carlo error
for the same N.

* **Shares.** Rank r takes samples ``[start_r, stop_r)`` of ``N``: contiguous, sizes differing by at
  most one (the first ``N mod W`` ranks take one more), so no sample is dropped or counted twice.
* **Seeds.** Rank r draws from ``derived_seed(seed, "rank r of W")``: results are deterministic
  for a given seed and world size (not bitwise equal across world sizes: the draws differ).
* **Training** (critic trainers, :func:`pyromi.fit_proposal`): data-parallel as
  ``DistributedDataParallel`` does it -- parameters broadcast from rank 0 before the first step,
  each rank draws its own batch, gradients averaged by ``all_reduce`` after ``backward()``,
  then the same optimiser step everywhere (the effective batch is ``W * batch_size``). Pyro's
  optimisers step parameters that live in several modules and in the param store, which the DDP
  wrapper (one module, its own ``forward``) cannot hold; the arithmetic is DDP's.
* **Devices.** NCCL ranks run on ``cuda:LOCAL_RANK`` (set ``device=`` to override); gloo ranks on
  the CPU. A backend that cannot serve the model's device is an error that says so.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from ._rng import check_seed, derived_seed
from .errors import PyromiError

if TYPE_CHECKING:
    from .result import MIEstimate

__all__ = ["Context", "current", "local", "shares", "gather"]

_LOCAL = contextvars.ContextVar("pyromi_distributed_local", default=False)
#: (first global sample index, total N) of the share being computed, inside a sharded call
_SHARD = contextvars.ContextVar("pyromi_distributed_shard", default=None)


@dataclass(frozen=True)
class Context:
    """This process's place in the process group."""

    rank: int
    world_size: int
    backend: str
    local_rank: int


def current() -> Context | None:
    """The process group when pyromi should shard (initialised, more than one rank, and not inside
    :func:`local`); else None."""
    if _LOCAL.get():
        return None
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    w = dist.get_world_size()
    if w < 2:
        return None
    return Context(dist.get_rank(), w, str(dist.get_backend()), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


@contextlib.contextmanager
def local() -> Iterator[None]:
    """Inside the block pyromi runs single-process (a rank computing its own share)."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


@contextlib.contextmanager
def shard(start: int, total: int) -> Iterator[None]:
    """Inside the block, the samples being drawn are samples ``start, start + 1, ...`` of ``total``
    (a data plate's covariate rows follow the global index: sample i uses row i mod B)."""
    token = _SHARD.set((int(start), int(total)))
    try:
        yield
    finally:
        _SHARD.reset(token)


def current_shard() -> tuple[int, int] | None:
    """``(start, total)`` inside :func:`shard`, else None."""
    return _SHARD.get()


def shares(n: int, world_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each rank's contiguous share of ``n`` items (sizes differ by at most 1)."""
    base, extra = divmod(n, world_size)
    out, a = [], 0
    for r in range(world_size):
        b = a + base + (r < extra)
        out.append((a, b))
        a = b
    return out


def gather(obj, ctx: Context) -> list:
    """``obj`` from every rank, in rank order (``all_gather_object``; CPU tensors travel pickled)."""
    out = [None] * ctx.world_size
    torch.distributed.all_gather_object(out, obj)
    return out


def base_seed(seed, ctx: Context) -> int:
    """The run's seed on every rank: ``seed``, or for ``None`` one draw of rank 0's global RNG,
    broadcast."""
    seed = check_seed(seed)
    if seed is None:
        box = [int(torch.randint(0, 2**62, ()).item()) if ctx.rank == 0 else None]
        torch.distributed.broadcast_object_list(box, src=0)
        seed = box[0]
    return seed


def rank_seed(seed: int, ctx: Context) -> int:
    """The seed of this rank's share: a stream of its own, fixed by ``seed`` and the world size."""
    return derived_seed(seed, f"rank {ctx.rank} of {ctx.world_size}")


def check_device(device, ctx: Context):
    """The device this rank runs on: NCCL needs CUDA (default ``cuda:LOCAL_RANK``), gloo runs CPU
    ranks. A mismatch is a :class:`PyromiError` that names the fix."""
    dev = None if device is None else torch.device(device)
    if ctx.backend == "nccl":
        if dev is None or (dev.type == "cuda" and dev.index is None):
            if not torch.cuda.is_available():
                raise PyromiError(
                    f"rank {ctx.rank}: the process group uses backend 'nccl', which needs one CUDA GPU "
                    "per rank, but CUDA is not available here. Initialise it with backend='gloo' for "
                    "CPU ranks (torch.distributed.init_process_group('gloo'))."
                )
            torch.cuda.set_device(ctx.local_rank)  # NCCL's object collectives use the current device
            return torch.device("cuda", ctx.local_rank)
        if dev.type != "cuda":
            raise PyromiError(
                f"rank {ctx.rank}: device={str(dev)!r} with backend 'nccl': NCCL moves CUDA tensors only. "
                "Pass device='cuda' (each rank then uses cuda:LOCAL_RANK), or initialise the process "
                "group with backend='gloo' for CPU ranks."
            )
        return dev
    if dev is not None and dev.type == "cuda":
        raise PyromiError(
            f"rank {ctx.rank}: device={str(dev)!r} with backend {ctx.backend!r}: use backend='nccl' for "
            "GPU ranks (one GPU per rank, cuda:LOCAL_RANK), or run the model on the CPU (device='cpu')."
        )
    return dev


# ---------------------------------------------------------------------------- merging estimates
#: per-sample diagnostics and the axis that runs over samples
SAMPLE_AXIS = {
    "ess_fraction": 0, "pareto_k": 0, "bdmc_gap": 0, "log_weight_backward": 0,
    "acceptance": 1, "acceptance_backward": 1, "step_size": 1, "log_weight_increment_var": 1,
    "log_weights": 1, "ess_fraction_conditional": 0, "log_p_target": 0,
}
#: diagnostics recomputed from merged per-sample tensors
_RECOMPUTED = {
    "ess_fraction_mean": ("ess_fraction", torch.mean),
    "ess_fraction_min": ("ess_fraction", torch.min),
    "bdmc_gap_mean": ("bdmc_gap", torch.mean),
    "acceptance_mean": ("acceptance", torch.mean),
}
#: scalar diagnostics that are means over the rank's samples: merged as the sample-weighted mean
_SAMPLE_MEANS = {"posterior_sample_weight_mean", "ba_lower", "divergence_fraction", "mine_value",
                 "dv_plugin", "log_partition"}
_SUMS = {"divergences", "model_passes"}
#: a per-sample table with more rows than one ((K, N) log-weights, (T, N) step sizes) is gathered
#: only while its gathered size stays below this many elements (2**24 float64 = 128 MiB); larger
#: ones stay on their rank (their summaries are still merged), so that at scale only O(N) terms move
MAX_GATHER_ELEMENTS = 2**24
_MAXIMA = {"seconds", "partition_khat"}


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and bool(torch.equal(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable values are different
        return False


def merge_values(key: str, values: list, sizes: list[int], merged: dict, per_rank: list[str]):
    """One diagnostics entry over the ranks (see the module docstring); ``per_rank`` collects the
    keys kept as a list of per-rank values."""
    if all(v is None for v in values):
        return None
    if key in SAMPLE_AXIS and all(isinstance(v, torch.Tensor) for v in values):
        return torch.cat(values, SAMPLE_AXIS[key])
    if key == "betas" and all(isinstance(v, torch.Tensor) for v in values):
        blocks = torch.cat([v if v.dim() == 2 else v.unsqueeze(0) for v in values])
        return blocks[0] if blocks.shape[0] == 1 else blocks
    if key in _RECOMPUTED and merged.get(_RECOMPUTED[key][0]) is not None:
        return float(_RECOMPUTED[key][1](merged[_RECOMPUTED[key][0]].double()))
    if key == "ess_fraction_min" and all(isinstance(v, (int, float)) for v in values):
        return min(values)
    if key in _RECOMPUTED and all(isinstance(v, (int, float)) for v in values):  # its table stayed on the ranks
        return sum(v * n for v, n in zip(values, sizes)) / sum(sizes)
    if key in _SUMS:
        return sum(values)
    if key in _MAXIMA:
        return max(values)
    if key in _SAMPLE_MEANS and all(isinstance(v, (int, float)) for v in values):
        return sum(v * n for v, n in zip(values, sizes)) / sum(sizes)
    if key == "training_history":  # data-parallel training: the objective of the global batch
        return [sum(t) / len(t) for t in zip(*values)]
    if all(_equal(values[0], v) for v in values[1:]):
        return values[0]
    if all(isinstance(v, bool) for v in values):
        return any(values)
    if all(isinstance(v, str) for v in values):
        return " ".join(dict.fromkeys(values))
    if all(isinstance(v, list) for v in values):
        return list(dict.fromkeys(x for v in values for x in v))
    per_rank.append(key)
    return list(values)


def trim_for_gather(diagnostics: dict, n_local: int, n_total: int) -> list[str]:
    """Drop (in place) the per-sample tables whose gathered size would pass
    :data:`MAX_GATHER_ELEMENTS`; returns their keys. The decision depends only on shapes that every
    rank shares and on N, so all ranks drop the same keys."""
    dropped = []
    for k, v in list(diagnostics.items()):
        if k in SAMPLE_AXIS and isinstance(v, torch.Tensor) and v.dim() >= 2 and n_local > 0:
            if v.numel() // n_local * n_total > MAX_GATHER_ELEMENTS:
                diagnostics[k] = None
                dropped.append(k)
    return dropped


def merge_diagnostics(parts: list[dict], sizes: list[int], skip=()) -> tuple[dict, list[str]]:
    """The ranks' diagnostics dicts merged key by key (:func:`merge_values`; per-sample tensors
    first, so that their summaries can be recomputed from them), and the keys kept per rank."""
    per_rank: list[str] = []
    merged: dict = {}
    keys = list(dict.fromkeys(k for p in parts for k in p))
    for k in sorted(keys, key=lambda k: k not in SAMPLE_AXIS):
        if k not in skip:
            merged[k] = merge_values(k, [p.get(k) for p in parts], sizes, merged, per_rank)
    return merged, per_rank


def merge_estimates(parts: list, ctx: Context, seed, run_seed: int) -> "MIEstimate":
    """One :class:`~pyromi.MIEstimate` over all samples from the ranks' estimates (rank order):
    terms concatenated, bounds and standard errors recomputed, diagnostics merged
    (:func:`merge_values`). ``settings["seed"]`` is the caller's ``seed``; ``settings["distributed"]``
    records the world, the seed the ranks' seeds were derived from and each rank's sample count."""
    from .estimators.ais import WIDE_SANDWICH
    from .result import MIEstimate

    p0 = parts[0]
    sizes = [p.num_samples for p in parts]
    terms = {k: torch.cat([p.terms[k] for p in parts]) for k in p0.terms}
    # the sandwich's relative width is recomputed from the merged bounds below
    diagnostics, per_rank = merge_diagnostics([p.diagnostics for p in parts], sizes,
                                              skip=("relative_width", "wide_sandwich"))
    settings: dict = {}
    skeys = list(dict.fromkeys(k for p in parts for k in p.settings))
    for k in skeys:
        vals = [p.settings.get(k) for p in parts]
        settings[k] = vals[0] if all(_equal(vals[0], v) for v in vals[1:]) else vals
    settings["seed"] = seed
    settings["distributed"] = {"world_size": ctx.world_size, "backend": ctx.backend, "seed": run_seed,
                               "samples_per_rank": sizes, "per_rank_keys": per_rank,
                               "not_gathered": settings.pop("_not_gathered", [])}
    est = MIEstimate.from_terms(
        p0.bound, terms.get("lower"), terms.get("upper"), num_particles=p0.num_particles,
        settings=settings, diagnostics=diagnostics, observed=p0.observed, latent=p0.latent,
    )
    if est.lower is not None and est.upper is not None and any("relative_width" in p.diagnostics for p in parts):
        rel = (est.upper - est.lower) / max(abs(0.5 * (est.upper + est.lower)), 1e-12)
        diagnostics.update(relative_width=rel, wide_sandwich=rel > WIDE_SANDWICH)
    return replace(est, units=p0.units)


# ---------------------------------------------------------------------------- the sharded call
def sharded(*, samples: str = "num_samples", joint: str = "joint", seed: str = "seed",
            when: Callable[[dict], bool] | None = None):
    """Decorate ``fn(..., num_samples=, joint=, seed=)`` (a function or an ``evaluate`` method) so
    that under a process group each rank runs its share of the samples (``num_samples`` split by
    :func:`shares`, or its rows of ``joint``) with its own seed (:func:`rank_seed`) inside
    :func:`local`, and every rank returns :func:`merge_estimates` of all shares. ``when(arguments)``
    may decline (the call then runs as written on every rank)."""

    def deco(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            ctx = current()
            if ctx is None:
                return fn(*args, **kwargs)
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            a = bound.arguments
            check_same_call(fn.__qualname__, {k: v for k, v in a.items() if k != "self"}, ctx)
            if "device" in a:
                a["device"] = check_device(a["device"], ctx)
            if when is not None and not when(a):
                return fn(*bound.args, **bound.kwargs)
            user_seed = a.get(seed)
            s = base_seed(user_seed, ctx)
            j = a.get(joint)
            if j is not None:
                lo, hi = shares(j.num_samples, ctx.world_size)[ctx.rank]
                a[joint] = j.rows(lo, hi)
            else:
                n = a[samples]
                if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                    return fn(*args, **kwargs)  # its own validation names the argument
                if n < ctx.world_size:
                    raise PyromiError(
                        f"{samples}={n} over {ctx.world_size} ranks: each rank needs at least one "
                        f"sample; pass {samples} >= {ctx.world_size} (the world size)."
                    )
                lo, hi = shares(n, ctx.world_size)[ctx.rank]
                a[samples] = hi - lo
            a[seed] = rank_seed(s, ctx)
            if ctx.rank != 0 and "progress" in a:
                a["progress"] = False  # one bar (rank 0's) per job
            n_total = j.num_samples if j is not None else n

            def compute():
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    est = fn(*bound.args, **bound.kwargs)
                est.settings["_not_gathered"] = trim_for_gather(est.diagnostics, est.num_samples, n_total)
                # the share's own loose-bound advice is recomputed on the merged estimate; any other
                # warning is passed on once, whichever rank raised it
                advice = est.diagnostics.pop("advice", None)
                others = [(w.category, str(w.message)) for w in caught if str(w.message) != advice]
                return est, others

            with local(), shard(lo, n_total):
                parts = run_everywhere(compute, ctx)
            for category, message in dict.fromkeys(w for _, ws in parts for w in ws):
                warnings.warn(message, category, stacklevel=3)
            est = merge_estimates([p for p, _ in parts], ctx, user_seed, s)
            if est.point is None and (est.lower is not None or est.upper is not None):
                from .estimators.checks import loose_bound_advice

                loose_bound_advice(est.bound, est.lower, est.upper, est.diagnostics, stacklevel=4)
            return est

        wrapper.__wrapped_unsharded__ = fn
        return wrapper

    return deco


def _fingerprint(v, depth: int = 0):
    """A comparable summary of an argument: tensors by shape, dtype and a hash of their values;
    containers element by element; callables and other objects by their type and name."""
    if isinstance(v, torch.Tensor):
        t = v.detach().to("cpu").contiguous()
        digest = hashlib.sha1(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        return ("tensor", tuple(t.shape), str(t.dtype), digest.hexdigest()[:16])
    if isinstance(v, (bool, int, float, str, type(None))):
        return v
    if depth < 3 and isinstance(v, (list, tuple)):
        return tuple(_fingerprint(x, depth + 1) for x in v)
    if depth < 3 and isinstance(v, dict):
        return tuple(sorted((str(k), _fingerprint(x, depth + 1)) for k, x in v.items()))
    if depth < 3 and hasattr(v, "_fields"):  # NamedTuples such as JointSamples
        return tuple(_fingerprint(x, depth + 1) for x in v)
    return (type(v).__qualname__, getattr(v, "__qualname__", None))


def check_same_call(name: str, arguments: dict, ctx: Context) -> None:
    """Every rank must make the same call -- same arguments, same data: pyromi shards the samples
    itself, and a rank that passed its own data or settings would be silently mixed into (or
    overridden by) the others. A :class:`PyromiError` naming the arguments that differ."""
    mine = {k: _fingerprint(v) for k, v in arguments.items()}
    everyone = gather(mine, ctx)
    differ = sorted({k for other in everyone for k in set(other) | set(mine) if other.get(k) != everyone[0].get(k)})
    if differ:
        raise PyromiError(
            f"{name} under torch.distributed: the ranks passed different {', '.join(a + '=' for a in differ)} "
            f"(or data in them). Every rank must make the same call with the same arguments and the whole "
            "data set: pyromi gives each rank its own share of the samples (or rows) itself."
        )


def _attempt(compute: Callable):
    """``(compute(), None)``, or ``(None, the exception)``: to be re-raised on every rank."""
    try:
        return compute(), None
    except Exception as e:  # noqa: BLE001 - re-raised by _stop_together, on every rank
        return None, e


def _stop_together(err: Exception | None, messages: list, ctx: Context) -> None:
    """Raise on every rank if any failed: the failing rank its own exception, the others a
    :class:`PyromiError` quoting the first failure (``messages``: one per rank, None if it did not fail)."""
    if err is not None:
        raise err
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if failed:
        r, m = failed[0]
        raise PyromiError(f"rank {r} of {ctx.world_size} failed, so this rank stops too: {m}")


def _message(err: Exception | None) -> str | None:
    return None if err is None else f"{type(err).__name__}: {err}"


def checked(compute: Callable, ctx: Context):
    """``compute()`` with a failure on any rank raised on every rank (an all-reduced flag, then the
    messages): for work that precedes collectives that a failed rank would never reach."""
    out, err = _attempt(compute)
    flag = torch.tensor([0 if err is None else 1], dtype=torch.int64)
    torch.distributed.all_reduce(flag)
    if int(flag[0]):
        _stop_together(err, gather(_message(err), ctx), ctx)
    return out


def run_everywhere(compute: Callable, ctx: Context) -> list:
    """``compute()`` on this rank, gathered from all ranks (one collective: each rank's result and
    failure travel together). If any rank raised, every rank raises (see :func:`checked`), so no
    rank waits forever in a collective that a failed rank never reaches."""
    part, err = _attempt(compute)
    results = gather((part, _message(err)), ctx)
    _stop_together(err, [m for _, m in results], ctx)
    return [p for p, _ in results]


# ---------------------------------------------------------------------------- training
def broadcast_parameters(params, ctx: Context) -> None:
    """Every rank's parameters set to rank 0's (DDP's start)."""
    for p in params:
        torch.distributed.broadcast(p.data, src=0)


def average_gradients(params, ctx: Context) -> None:
    """Each gradient replaced by its mean over the ranks (DDP's all-reduce)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.SUM)
        p.grad.div_(ctx.world_size)


class DataParallel:
    """A trainer's data parallelism (DDP's arithmetic, see the module docstring): built in the
    trainer's constructor, it is inert without a process group. ``seed(s)``: this rank's stream;
    ``start(params)``: rank 0's parameters everywhere (once); ``reduce(params)``: gradients
    averaged over ranks; ``objective(v)``: the mean over ranks of a step's objective (the global
    batch's), so every rank records the same history."""

    def __init__(self, device=None) -> None:
        self.ctx = current()
        self._started = False
        if self.ctx is not None:
            check_device(device, self.ctx)

    def seed(self, seed):
        if self.ctx is None:
            return seed
        return rank_seed(base_seed(seed, self.ctx), self.ctx)

    def start(self, params) -> None:
        if self.ctx is not None and not self._started:
            broadcast_parameters(params, self.ctx)
        self._started = True

    def reduce(self, params) -> None:
        if self.ctx is not None:
            average_gradients(params, self.ctx)

    def step(self, compute: Callable):
        """``compute()`` (a step's sampling, objective and backward), with a failure on any rank
        raised on every rank before the gradients are reduced (:func:`checked`)."""
        return compute() if self.ctx is None else checked(compute, self.ctx)

    def objective(self, value: float) -> float:
        if self.ctx is None:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return float(t[0]) / self.ctx.world_size

