"""Progress bars: one convention (``progress=None`` automatic, ``True``, ``False``) on every long loop,
on stderr, never in the numbers, closed when the loop raises."""

from __future__ import annotations

import pyro
import pytest
import torch

from pyromi import GIWAE, AmortizedNormal, ProposalTrainer, fit_autoguide, fit_proposal
from pyromi import _progress
from pyromi._rng import seeded
from pyromi.adapter import ModelAdapter
from pyromi.estimators.importance import importance_mi
from pyromi.proposals import PriorProposal


class FakeBar:
    """Stands in for tqdm: records what the helper asks of it."""

    made: list["FakeBar"] = []

    def __init__(self, **kwargs):
        self.kwargs, self.n, self.closed, self.postfix = kwargs, kwargs.get("initial", 0), False, None
        FakeBar.made.append(self)

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, s, refresh=True):
        self.postfix = s

    def refresh(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    FakeBar.made = []
    monkeypatch.setattr(_progress, "_tqdm", FakeBar)
    monkeypatch.setattr(_progress, "_interactive", lambda: True)  # as on a terminal
    return FakeBar.made


def test_automatic_bars_stay_off_when_stderr_is_not_a_terminal(monkeypatch):
    """Notebooks run headless, logs and CI: no automatic bar (it would print every update)."""
    FakeBar.made = []
    monkeypatch.setattr(_progress, "_tqdm", FakeBar)
    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)
    monkeypatch.setattr(_progress, "_interactive", lambda: False)
    with _progress.ProgressBar(5, "x", None) as bar:
        for _ in range(5):
            bar.update(1)
    assert FakeBar.made == []
    with _progress.ProgressBar(5, "x", True) as bar:  # asked for: shown anyway
        bar.update(1)
    assert len(FakeBar.made) == 1


def test_modes(bars, monkeypatch):
    with _progress.ProgressBar(5, "a", False) as bar:
        for _ in range(5):
            bar.update()
    with _progress.ProgressBar(5, "b", None) as bar:  # fast: no bar
        for _ in range(5):
            bar.update()
    assert bars == []
    with _progress.ProgressBar(5, "c", True) as bar:
        for _ in range(5):
            bar.update(postfix="loss 1")
    assert len(bars) == 1 and bars[0].n == 5 and bars[0].postfix == "loss 1" and bars[0].closed
    assert bars[0].kwargs["leave"] is False and bars[0].kwargs["desc"] == "c"
    # automatic: the bar appears once AUTO_DELAY has passed, counting the steps already done
    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)
    with _progress.ProgressBar(5, "d", None) as bar:
        bar.update(2)
        bar.update(1)
    assert len(bars) == 2 and bars[1].kwargs["initial"] == 2 and bars[1].n == 3 and bars[1].closed
    with pytest.raises(TypeError, match=r"progress= must be True .* got 'yes'"):
        _progress.ProgressBar(5, "e", "yes")


def test_bar_is_closed_when_the_loop_raises(bars, toy32):
    q = AmortizedNormal(toy32.model, "x", seed=0)
    trainer = ProposalTrainer(q, batch_size=8, seed=0)
    calls = []

    def failing_step():
        calls.append(1)
        if len(calls) == 3:
            raise FloatingPointError("boom")
        return 1.0

    trainer._step = failing_step
    with pytest.raises(FloatingPointError):
        trainer.run(10, progress=True)
    assert len(bars) == 1 and bars[0].closed and bars[0].n == 2


def test_trainers_show_a_bar_by_default_on_long_runs_only(bars, monkeypatch, toy32):
    """Default (progress=None): nothing on a short run; a bar with the objective once the run is
    long (AUTO_DELAY set to 0 here); progress=False never; the numbers do not depend on the bar."""
    q1 = AmortizedNormal(toy32.model, "x", seed=0)
    h1 = ProposalTrainer(q1, batch_size=8, seed=0).run(3)
    g = GIWAE(toy32.model, "x", num_particles=4, batch_size=8, seed=0)
    g.run(2)
    assert bars == []
    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)
    q2 = AmortizedNormal(toy32.model, "x", seed=0)
    h2 = ProposalTrainer(q2, batch_size=8, seed=0).run(3)
    assert h2 == h1
    assert bars[-1].kwargs["desc"] == "fit q(z|x)" and bars[-1].n == 3 and bars[-1].closed
    assert bars[-1].postfix == f"loss {h2[-1]:.4g}"
    GIWAE(toy32.model, "x", num_particles=4, batch_size=8, seed=0).run(2)
    assert bars[-1].kwargs["desc"] == "train giwae" and bars[-1].n == 2
    assert bars[-1].postfix.startswith("objective ")
    fit_proposal(AmortizedNormal(toy32.model, "x", seed=0), 2, batch_size=8, seed=0)
    assert bars[-1].kwargs["desc"] == "fit q(z|x)"
    n = len(bars)
    fit_proposal(AmortizedNormal(toy32.model, "x", seed=0), 2, batch_size=8, seed=0, progress=False)
    assert len(bars) == n


@pytest.mark.filterwarnings("ignore:the iwae sandwich is wide")
def test_importance_and_autoguide_bars(bars, monkeypatch, toy32):
    adapter = ModelAdapter(toy32.model, "x")
    with seeded(0):
        joint = adapter.sample_joint(8)
    prior = PriorProposal().bind(adapter)
    with seeded(1):
        quiet = importance_mi(adapter, prior, joint, num_particles=40, max_batch=80)
    assert bars == []
    monkeypatch.setattr(_progress, "AUTO_DELAY", 0.0)
    with seeded(1):
        shown = importance_mi(adapter, prior, joint, num_particles=40, max_batch=80)
    assert torch.equal(quiet.terms["lower"], shown.terms["lower"])
    assert bars[-1].kwargs["desc"] == "iwae K=40" and bars[-1].n == shown.diagnostics["model_passes"] == 4
    with pytest.raises(TypeError, match="progress="):
        importance_mi(adapter, prior, joint, num_particles=4, progress=1)
    pyro.clear_param_store()
    fit_autoguide(adapter, joint, num_steps=2, seed=0)
    assert bars[-1].kwargs["desc"] == "fit AutoNormal" and bars[-1].n == 2
    assert bars[-1].postfix.startswith("-ELBO ")


def test_a_real_bar_goes_to_stderr(capsys, toy32):
    fit_proposal(AmortizedNormal(toy32.model, "x", seed=0), 2, batch_size=8, seed=0, progress=True)
    cap = capsys.readouterr()
    assert cap.out == "" and "fit q(z|x)" in cap.err
