"""The slow path: AIS driven by Pyro's own ``HMC``/``NUTS`` kernel objects, chain by chain.

For models or checks where the vectorised kernel of :mod:`pyromi.samplers.hmc` is not wanted. Each
chain of each sample gets its own kernel object of the user's kernel class; at every level its
``potential_fn`` is set to the tempered energy ``-(base + beta * tilt)``, its step size and diagonal
inverse mass to the frozen tables, its cache cleared, and one ``kernel.sample`` transition taken.
Adaptation is off, so the kernels are fixed before the run, as the bounds require. Python loops
over samples, chains and temperatures make this hundreds of times slower than the vectorised path
(see ``benchmarks/bench_ais.py``); it exists to cross-check that path and as a fallback.
"""

from __future__ import annotations

import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc import HMC, NUTS

from ..errors import PyromiError
from .ais import AISResult, AnnealingPath, KernelTables

__all__ = ["run_ais_with_kernel"]


def _fresh_kernel(kernel, potential_fn):
    if isinstance(kernel, NUTS):
        return NUTS(potential_fn=potential_fn, step_size=kernel.step_size, adapt_step_size=False,
                    adapt_mass_matrix=False, max_tree_depth=kernel._max_tree_depth)
    if isinstance(kernel, HMC):
        return HMC(potential_fn=potential_fn, step_size=kernel.step_size, num_steps=kernel.num_steps,
                   adapt_step_size=False, adapt_mass_matrix=False)
    raise PyromiError(
        f"kernel= must be a pyro.infer.mcmc.HMC or NUTS object, got {type(kernel).__name__}"
    )


def run_ais_with_kernel(
    path: AnnealingPath,
    tables: KernelTables,
    num_chains: int,
    kernel,
    u_star: torch.Tensor | None = None,
) -> AISResult:
    """The same forward/backward AIS as :func:`pyromi.samplers.ais.run_ais`, one chain at a time."""
    adapter = path.adapter
    betas = tables.betas.double()
    T = betas.numel() - 1
    dbeta = betas.diff()
    n_samples = path.num_samples
    u0 = path.sample_start(num_chains)
    if u_star is not None:
        u0 = torch.cat([u0, u_star.unsqueeze(0).to(u0)], 0)
    C, D = u0.shape[0], u0.shape[-1]
    num_leapfrog = kernel.num_steps if not isinstance(kernel, NUTS) else None
    log_w = torch.zeros((C, n_samples), dtype=torch.float64, device=u0.device)
    acc = torch.zeros((max(T - 1, 0), n_samples), dtype=torch.float64, device=u0.device)
    divergences = torch.zeros(n_samples, dtype=torch.int64, device=u0.device)
    with pyro.validation_enabled(False), poutine.block():
        for n in range(n_samples):
            sub = AnnealingPath(adapter, {k: v[n : n + 1] for k, v in path.observed.items()}, path.start)

            def terms(u):
                return sub.density_terms(u.reshape(1, 1, D))

            for c in range(C):
                backward = u_star is not None and c == C - 1
                beta_box = [0.0]

                def potential(params):
                    t = terms(params["u"])
                    return -(t.base + beta_box[0] * t.tilt)[0, 0]

                k = _fresh_kernel(kernel, potential)
                k.initial_params = {"u": u0[c, n]}
                k.setup(warmup_steps=0)
                u = u0[c, n]
                for i in range(1, T + 1):
                    with torch.no_grad():
                        tilt = terms(u).tilt[0, 0].double()
                    log_w[c, n] += dbeta[(T + 1 - i if backward else i) - 1] * tilt
                    if i < T:
                        level = T - i if backward else i
                        beta_box[0] = float(betas[level])
                        eps = float(tables.step_size[level, n])
                        k._adapter.step_size = eps  # HMC reads the step size from its adapter
                        if not isinstance(k, NUTS):  # keep L leapfrog steps at every step size
                            k.trajectory_length = eps * num_leapfrog * (1 + 1e-9)
                        k.mass_matrix_adapter.inverse_mass_matrix = {("u",): tables.inv_mass[level, n]}
                        k.clear_cache()
                        before = k._accept_cnt
                        u = k.sample({"u": u})["u"]
                        if not backward:
                            acc[i - 1, n] += float(k._accept_cnt - before) / num_chains
                divergences[n] += len(k.diagnostics()["divergences"])
                k.cleanup()
    return AISResult(
        log_weights=log_w[:num_chains],
        log_weight_backward=log_w[-1] if u_star is not None else None,
        acceptance=acc.to(adapter.dtype),
        acceptance_backward=None,
        divergences=divergences,
        log_weight_increment_var=torch.zeros((T, n_samples), dtype=torch.float64),
    )
