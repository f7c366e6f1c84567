"""One rank of the two-process gloo run in ``tests/test_distributed.py`` (launched by ``torchrun``).

Calls pyromi exactly as a user's script would under ``torchrun --nproc_per_node=2`` and saves what
every call returned on this rank to ``<out>/rank<r>.pt`` for the test to compare across ranks.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

W = torch.tensor([[1.0, 0.5], [-0.3, 0.8], [0.2, -1.1]])
NOISE = 0.7


def model():
    import pyro
    import pyro.distributions as pdist

    z = pyro.sample("z", pdist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("x", pdist.Normal(z @ W.T, NOISE).to_event(1))


def window(x_obs=None):
    """x ~ Uniform(z - 1, z + 1): log p(x | z) = -inf wherever |x - z| >= 1."""
    import pyro
    import pyro.distributions as pdist

    z = pyro.sample("z", pdist.Normal(0.0, 1.0))
    pyro.sample("x", pdist.Uniform(z - 1.0, z + 1.0))


def regression(c, y=None):
    """A data-plate model with a covariate c (Pyro's regression idiom): sample i uses row i mod 4."""
    import pyro
    import pyro.distributions as pdist

    with pyro.plate("data", c.shape[0]):
        z = pyro.sample("z", pdist.Normal(torch.zeros(c.shape[0], 2), 1.0).to_event(1))
        return pyro.sample("y", pdist.Normal(z.sum(-1, keepdim=True) * c, 0.3).to_event(1), obs=y)


COVARIATE = torch.tensor([[0.01], [0.01], [3.0], [3.0]])


def summary(est):
    return {"lower": est.lower, "upper": est.upper, "lower_se": est.lower_se, "upper_se": est.upper_se,
            "point": est.point, "num_samples": est.num_samples,
            "terms": {k: v.clone() for k, v in est.terms.items()},
            "diagnostics": {k: v for k, v in est.diagnostics.items()},
            "settings": {k: v for k, v in est.settings.items() if k in ("seed", "distributed", "weights")}}


def main(out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    from pyromi import distributed, log_marginal, mutual_information
    from pyromi.audit import audit
    from pyromi.estimators.contrastive import GIWAE

    res = {}
    kw = dict(num_samples=37, progress=False)
    res["ais"] = summary(mutual_information(model, "x", bound="ais", num_particles=4, num_steps=30, seed=1, **kw))
    res["ais_again"] = summary(mutual_information(model, "x", bound="ais", num_particles=4, num_steps=30, seed=1, **kw))
    res["iwae"] = summary(mutual_information(model, "x", bound="iwae", num_particles=64, seed=2, **kw))
    res["iwae_seed_none"] = summary(mutual_information(model, "x", bound="iwae", num_particles=64, seed=None, **kw))
    res["infonce"] = summary(mutual_information(model, "x", bound="infonce", num_particles=16, train_steps=40,
                                                batch_size=64, seed=4, **kw))
    res["mist"] = summary(mutual_information(model, "x", bound="mist", num_samples=301, seed=3))
    # this rank's own share, computed single-process: the merged terms must contain it unchanged
    ctx = distributed.current()
    lo, hi = distributed.shares(37, ctx.world_size)[rank]
    with distributed.local():
        own = mutual_information(model, "x", bound="iwae", num_particles=64, num_samples=hi - lo,
                                 seed=distributed.rank_seed(2, ctx), progress=False)
    res["iwae_own_share"] = {"lo": lo, "hi": hi, "terms": own.terms}
    # data-parallel training: both ranks hold the same critic after training
    tr = GIWAE(model, "x", proposal="prior", num_particles=8, batch_size=32, seed=7)
    tr.run(25, progress=False)
    res["giwae_params"] = [p.detach().clone() for p in tr.parameters()]
    res["giwae_history"] = list(tr.history)
    res["giwae_eval"] = summary(tr.evaluate(21, seed=8))
    # log p(x) per observation, rows sharded
    gen = torch.Generator().manual_seed(11)
    z = torch.randn(11, 2, generator=gen)
    x = z @ W.T + NOISE * torch.randn(11, 3, generator=gen)
    lm = log_marginal(model, "x", x, latent_values=z, num_particles=4, num_steps=20, seed=5, progress=False)
    res["log_marginal"] = {"lower": lm.lower, "upper": lm.upper, "diagnostics": lm.diagnostics}
    # an error on one rank only (rank 1's rows lie outside the window) stops every rank
    bad = torch.tensor([0.1, 0.2, 0.3, 50.0, 60.0, 70.0])
    try:
        log_marginal(window, "x", bad, num_particles=2, num_steps=5, seed=6, progress=False)
        res["error"] = None
    except Exception as e:  # noqa: BLE001 - recorded for the test
        res["error"] = f"{type(e).__name__}: {e}"
    # covariate rows follow the global sample index (rank 1's samples are rows 2 and 3, not 0 and 1)
    res["dataplate"] = summary(mutual_information(regression, "y", bound="iwae", model_args=(COVARIATE,),
                                                  num_samples=4, num_particles=500, seed=0))
    # audit: the AIS part sharded, the report identical on both ranks
    rep = audit(model, "x", num_samples=10, num_particles=4, num_steps=20, seed=None)
    res["audit"] = {"mi": summary(rep.mi), "flags": rep.flags, "seed": rep.settings["seed"]}
    # the MIST set network's training, data-parallel: rank 0 writes the run, both hold the same weights
    from pyromi.mist import train as mist_train

    run = os.path.join(out, "mist-run")
    last = mist_train.train("tiny", run, overrides={"steps": 2, "eval_every": 2, "batch": 4, "val_n": (12,),
                                                    "val_reps": 1})
    res["mist_train_last"] = {k: v for k, v in last.items() if k != "elapsed_s"}  # val metrics of this rank's net
    res["mist_train_files"] = sorted(os.listdir(run))
    # every rank must pass the same data: a rank with its own shard is an error on every rank
    try:
        log_marginal(model, "x", torch.full((4, 3), float(rank)), num_particles=2, num_steps=5, seed=0,
                     progress=False)
        res["different_data"] = None
    except Exception as e:  # noqa: BLE001 - recorded for the test
        res["different_data"] = f"{type(e).__name__}: {e}"
    # a model that fails on rank 1 only, during training (after a few model calls) and in MIST's
    # simulation: every rank raises, nobody waits, and the next call works
    calls = {"n": 0, "limit": 12}

    def flaky():
        import pyro
        import pyro.distributions as pdist

        calls["n"] += 1
        if rank == 1 and calls["n"] > calls["limit"]:
            raise ValueError("boom on rank 1")
        z = pyro.sample("z", pdist.Normal(torch.zeros(2), 1.0).to_event(1))
        pyro.sample("x", pdist.Normal(z @ W.T, NOISE).to_event(1))

    for name, limit, kw in (("train_failure", 12, dict(bound="infonce", train_steps=30, batch_size=16, num_samples=8)),
                            ("mist_failure", 2, dict(bound="mist", num_samples=40))):
        calls["n"], calls["limit"] = 0, limit
        try:
            mutual_information(flaky, "x", seed=0, **kw)
            res[name] = None
        except Exception as e:  # noqa: BLE001 - recorded for the test
            res[name] = f"{type(e).__name__}: {e}"
    res["after_failures"] = summary(mutual_information(model, "x", bound="iwae", num_particles=8, num_samples=6,
                                                       seed=2, progress=False))
    torch.save(res, os.path.join(out, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
