"""A new user's review: trainers' own random streams, arguments named in errors, bound-aware
advice, numpy seeds, and a README whose printed numbers are the ones it prints."""

import math
import pathlib
import re
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import pyromi
import pyromi.critics
from pyromi import AmortizedNormal, ProposalTrainer, fit_proposal, mutual_information
from pyromi._rng import check_seed, seeded
from pyromi.estimators.checks import loose_bound_advice
from pyromi.estimators.contrastive import GIWAE, MINE, MINEAIS
from pyromi.samplers.schedules import anneal_schedule

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def gauss2d():
    z = pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(z, 0.5).to_event(1))


def _critic_trainer(kind, seed=0):
    kw = dict(observed="x", seed=seed, batch_size=16)
    if kind == "mine_ais":
        return MINEAIS(gauss2d, mcmc_steps=2, num_leapfrog=2, **kw)
    if kind == "giwae":
        return GIWAE(gauss2d, num_particles=4, **kw)
    if kind == "infonce":
        return GIWAE(gauss2d, proposal="prior", num_particles=4, **kw)
    if kind == "mine_dv":
        return MINE(gauss2d, variant="dv", num_particles=4, **kw)
    if kind == "proposal":
        with seeded(0):
            q = AmortizedNormal(gauss2d, observed="x", hidden=(8,), num_init_samples=64)
        return ProposalTrainer(q, batch_size=16, seed=seed)
    raise AssertionError(kind)


TRAINERS = ["mine_ais", "giwae", "infonce", "mine_dv", "proposal"]


# ------------------------------------------------------------------ 1. trainers' own RNG streams
@pytest.mark.parametrize("kind", TRAINERS)
def test_training_does_not_depend_on_or_touch_the_global_rng(kind):
    """Same seed, different global RNG states: the same losses; and step()/run() leave the global
    state as they found it (before: step() drew from and advanced the global generator)."""
    runs = []
    for global_seed in (1, 2):
        tr = _critic_trainer(kind)
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        losses = [tr.step(), tr.step()] + tr.run(2)
        assert torch.equal(torch.get_rng_state(), state), "training changed the global RNG state"
        if kind != "proposal":  # an unseeded evaluation continues the trainer's stream too
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = tr.evaluate(8, 2, 3) if kind == "mine_ais" else tr.evaluate(16, 4)
            assert torch.equal(torch.get_rng_state(), state), "evaluate() changed the global RNG"
            losses.append(est.lower)
        runs.append(losses)
    assert runs[0] == runs[1]
    assert all(math.isfinite(v) for v in runs[0])


def _same_start(kind, seed):
    """A trainer whose initial weights do not depend on ``seed`` (only its stream does)."""
    if kind == "proposal":
        return _critic_trainer(kind, seed=seed)
    with seeded(0):
        critic = pyromi.critics.ConcatCritic(2, 2, hidden=(8,))
    return MINE(gauss2d, "x", critic=critic, variant="dv", num_particles=4, batch_size=16, seed=seed)


@pytest.mark.parametrize("kind", ["mine_dv", "proposal"])
def test_run_seed_restarts_the_trainers_stream(kind):
    fresh = _same_start(kind, seed=5).run(3)
    # run(seed=5) on a seed-0 trainer draws what a seed-5 trainer draws
    assert _same_start(kind, seed=0).run(3, seed=5) == fresh
    assert _same_start(kind, seed=0).run(3) != fresh
    # and run(seed=None) continues the stream: two runs of 2 equal one run of 4
    d, e = _same_start(kind, seed=7), _same_start(kind, seed=7)
    assert d.run(2) + d.run(2) == e.run(4)


def test_trainer_with_seed_none_is_reproducible_from_the_global_state_at_construction():
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        tr = MINE(gauss2d, "x", seed=None, batch_size=16)
        torch.manual_seed(99)  # what happens to the global RNG later does not matter
        losses.append(tr.run(2))
    assert losses[0] == losses[1]


def test_rng_stream_is_reentrant_and_restores_the_global_state():
    from pyromi._rng import RNGStream

    s = RNGStream(11)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    with s.active():
        a = torch.rand(3)
        with s.active():  # nested: continues the same draws
            b = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), before)
    with seeded(11):
        ref = torch.rand(6)
    assert torch.equal(torch.cat([a, b]), ref)
    with s.active():
        c = torch.rand(3)
    assert not torch.equal(c, a)  # the stream moved on


def test_fit_proposal_seed_is_reproducible_and_leaves_the_global_rng():
    def fitted(global_seed):
        with seeded(0):
            q = AmortizedNormal(gauss2d, observed="x", hidden=(8,), num_init_samples=64)
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        fit_proposal(q, 3, batch_size=16, seed=4)
        assert torch.equal(torch.get_rng_state(), state)
        return torch.cat([p.detach().flatten() for p in q.parameters()])

    assert torch.equal(fitted(1), fitted(2))


# ------------------------------------------------------------------ 2. arguments named in errors
def test_optim_that_is_not_a_pyro_optimiser_is_named():
    with seeded(0):
        q = AmortizedNormal(gauss2d, observed="x", hidden=(8,), num_init_samples=64)
    pat = r"optim= must be a Pyro optimiser.*pyro\.optim\.Adam\(\{\"lr\": 1e-3\}\)"
    with pytest.raises(TypeError, match=pat):
        fit_proposal(q, 10, optim="adam")
    with pytest.raises(TypeError, match=pat):
        ProposalTrainer(q, optim=torch.optim.Adam)
    with pytest.raises(TypeError, match=pat):
        mutual_information(gauss2d, "x", bound="ba", optim="adam", train_steps=2, num_samples=8)
    with pytest.raises(TypeError, match=pat):
        MINE(gauss2d, "x", optim=torch.optim.Adam(nn.Linear(1, 1).parameters()))
    MINE(gauss2d, "x", optim=pyro.optim.ClippedAdam({"lr": 1e-3}), batch_size=8).step()  # accepted


def test_critic_with_the_wrong_signature_is_named():
    pat = r"critic= Linear cannot be called.*critic\(x \(N, Dx\), z \(K, N, Dz\)\) -> \(K, N\)"
    with pytest.raises(TypeError, match=pat):
        mutual_information(gauss2d, "x", bound="infonce", critic=nn.Linear(2, 1), train_steps=2,
                           num_samples=8, num_particles=2)
    with pytest.raises(TypeError, match=pat):
        MINE(gauss2d, "x", critic=nn.Linear(2, 1), batch_size=8).evaluate(8, 2, seed=0)
    with pytest.raises(TypeError, match=r"critic= must be a torch\.nn\.Module"):
        MINE(gauss2d, "x", critic=lambda x, z: z.sum(-1))


def test_schedule_that_is_not_numbers_is_named():
    with pytest.raises(TypeError, match=r"schedule= must be .*too many dimensions 'str'"):
        anneal_schedule(["a"] * 11, 10)
    with pytest.raises(TypeError, match=r"schedule="):
        mutual_information(gauss2d, "x", bound="ais", schedule=["a"] * 11, num_steps=10,
                           num_samples=4, num_particles=2, progress=False)
    for short in ([], [0.5]):  # no num_steps to suggest: T >= 1 needs two betas
        with pytest.raises(ValueError, match=r"must hold T \+ 1 = 11 betas") as info:
            anneal_schedule(short, 10)
        assert "num_steps=" not in str(info.value).split("for num_steps=10")[1]
    with pytest.raises(ValueError, match=r"got 3; or pass num_steps=2\."):
        anneal_schedule([0.0, 0.5, 1.0], 10)


# ------------------------------------------------------------------ 3. advice that fits the bound
class AntiCritic(nn.Module):
    """T(x, z) = -log p(x | z) of gauss2d: ranks the true z* last, so InfoNCE is negative."""

    def forward(self, x, z):
        return -dist.Normal(z, 0.5).log_prob(x).sum(-1)


def test_negative_critic_bound_blames_the_critic_not_a_proposal():
    nce = GIWAE(gauss2d, "x", critic=AntiCritic(), proposal="prior", num_particles=8)
    with pytest.warns(UserWarning, match="infonce lower bound is negative") as rec:
        est = nce.evaluate(64, seed=0)
    msg = str(rec[0].message)
    assert est.lower < 0 and est.diagnostics["advice"] == msg
    assert "critic" in msg and "proposal q(z|x)" not in msg
    for bound in ("mine_dv", "mine_f", "mine_ais"):
        d = {}
        with pytest.warns(UserWarning, match="critic T"):
            loose_bound_advice(bound, -0.3, None, d)
        assert "proposal q(z|x)" not in d["advice"]
    d = {}
    with pytest.warns(UserWarning, match="proposal q"):
        loose_bound_advice("ba", -0.3, None, d)


def weak():
    z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
    pyro.sample("x", dist.Normal(0.05 * z, 1.0).to_event(1))


def test_ais_wide_and_negative_gives_both_notes():
    """Before, a wide AIS sandwich silenced the negative-lower-bound note."""
    both = 0
    for seed in range(6):
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            est = mutual_information(weak, "x", bound="ais", num_samples=8, num_particles=2,
                                     num_steps=2, seed=seed, progress=False)
        text = " ".join(str(w.message) for w in rec)
        if est.diagnostics["wide_sandwich"]:
            assert text.startswith("the AIS sandwich is wide")  # wording kept (tests, audit filter)
        if est.lower < 0:
            assert "the ais lower bound is negative" in text
            assert "proposal q(z|x) matches" not in text
        if est.diagnostics["wide_sandwich"] and est.lower < 0:
            both += 1
            assert est.diagnostics["advice"] == text
    assert both >= 1  # seed 2 gives [-0.014, -0.008]


def test_mist_minimum_n_message_says_ten():
    from pyromi import mist

    for n in (0, 1, 5):
        with pytest.raises(pyromi.PyromiError, match=rf"n={n} rows; MIST was trained for n >= 10"):
            mist.estimate(np.zeros((n, 2)), np.zeros((n, 2)))


# ------------------------------------------------------------------ 4. numpy integer seeds
@pytest.mark.filterwarnings("ignore:the iwae sandwich is wide")
def test_numpy_integer_seeds_are_accepted():
    assert check_seed(np.int64(3)) == 3 and type(check_seed(np.int64(3))) is int
    assert check_seed(np.uint8(7)) == 7
    for bad, exc in ((True, TypeError), (3.0, TypeError), (np.float64(3), TypeError),
                     (-1, ValueError), (np.int64(-1), ValueError), (2**63, ValueError)):
        with pytest.raises(exc, match="seed="):
            check_seed(bad)
    kw = dict(bound="iwae", num_samples=16, num_particles=8)
    a = mutual_information(gauss2d, "x", seed=np.int64(3), **kw)
    b = mutual_information(gauss2d, "x", seed=3, **kw)
    assert torch.equal(a.terms["lower"], b.terms["lower"])
    assert MINE(gauss2d, "x", seed=np.int64(3), batch_size=8).run(2) == \
        MINE(gauss2d, "x", seed=3, batch_size=8).run(2)


# ------------------------------------------------------------------ 5. README and CLI help
def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_first_example_prints_what_it_says():
    block = _blocks()[0]
    assert block.index("torch.manual_seed(0)") < block.index("W = torch.randn(20, 5)")
    claimed = re.search(r"print\(est\)\s*# (I\(x; z\) in .*\))", block).group(1)
    torch.manual_seed(123)  # whatever the state before, the block seeds W itself
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(block, "README.md", "exec"), ns)
    assert str(ns["est"]) == claimed
    # the closed form quoted under the second example is this W's
    W = ns["W"]
    closed = 0.5 * torch.logdet(torch.eye(5) + W.T @ W / 0.1**2).item()
    assert f"closed form: {closed:.3f}" in _blocks()[1]


def test_readme_ais_snippet_imports_what_it_uses():
    ais = next(b for b in _blocks() if "pyromi.log_marginal" in b)
    assert "import pyromi" in ais.split("pyromi.log_marginal")[0]
    assert "x_obs =" in ais.split("pyromi.log_marginal")[0]


def test_cli_help_says_bits_only_where_bits_exists():
    from pyromi.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    demo_help = sub.choices["demo"].format_help()
    assert "--bits" in demo_help and "nats" in demo_help  # demo accepts --bits (tests/test_cli.py)
    assert "--bits converts" not in parser.format_help()
    assert "--bits converts" in sub.choices["estimate"].format_help()
    assert "not a numpy" in " ".join(sub.choices["estimate"].format_help().split())
