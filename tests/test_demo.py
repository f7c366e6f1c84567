"""The README's main job: `python -m pyromi demo` prints bounds that bracket the truth."""

import os
import re
import subprocess
import sys

from pyromi._rng import seeded
from pyromi.adapter import ModelAdapter
from pyromi.demo import run_demo
from pyromi.models import LinearGaussian

from .conftest import assert_lower_bound, assert_upper_bound


def test_demo_function_brackets_the_truth():
    lines = []
    res = run_demo(num_samples=128, num_particles=500, train_steps=500, seed=0, print_fn=lines.append)
    truth, oracle = res["truth"], res["oracle"]
    assert abs(truth - 14.275) < 1e-3
    est = res["iwae, AmortizedNormal q(z|x)"]
    lg = LinearGaussian.toy()
    with seeded(1):  # the demo's batch: seed + 1
        joint = ModelAdapter(lg.model, "x").sample_joint(128)
    oracle_terms = lg.oracle(joint.observed["x"], joint.latent["z"])
    assert float(oracle_terms.mean()) == oracle
    assert_lower_bound(est.terms["lower"], oracle_terms)
    assert_upper_bound(est.terms["upper"], oracle_terms)
    assert est.upper - est.lower < 0.1
    assert est.lower - 3 * est.lower_se <= truth <= est.upper + 3 * est.upper_se
    ais = res["ais, prior start, T=300"]
    assert_lower_bound(ais.terms["lower"], oracle_terms)
    assert_upper_bound(ais.terms["upper"], oracle_terms)
    assert ais.upper - ais.lower < 1.0
    prior = res["iwae, prior proposal"]
    assert prior.lower <= 6.2147 + 1e-9  # log 500 cap
    assert any("14.275" in line for line in lines)


def _row(stdout: str, label: str) -> tuple[float, float, float, float]:
    """(lower, se, upper, se) of the demo table's row ``label``."""
    row = next(line for line in stdout.splitlines() if line.startswith(label))
    assert "NO" not in row, row
    return tuple(map(float, re.findall(r"-?\d+\.\d+", row[len(label):])[:4]))


def test_demo_command_line():
    """The printed sandwiches bracket the printed truth within 3 printed standard errors (+ the
    0.0005 of 3-decimal rounding), and each is narrower than 3 (se_lower + se_upper): a lower bound
    above the truth, an upper bound below it, swapped sides or a runaway side fail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # small tensors: one thread (see conftest)
    out = subprocess.run([sys.executable, "-m", "pyromi", "demo", "-N", "64", "-K", "200",
                          "--train-steps", "300"], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr
    truth = float(re.search(r"closed-form I\(x; z\) = .* = (\d+\.\d+) nats", out.stdout).group(1))
    assert truth == 14.275
    for label in ("iwae, AmortizedNormal q(z|x)", "ais, prior start, T=300"):
        lo, lo_se, hi, hi_se = _row(out.stdout, label)
        assert 0 < lo_se < 1 and 0 < hi_se < 1, (label, lo_se, hi_se)  # N = 64 draws of terms of s.d. ~2
        assert lo <= truth + 3 * lo_se + 5e-4, (label, lo, lo_se)
        assert hi >= truth - 3 * hi_se - 5e-4, (label, hi, hi_se)
        assert lo <= hi <= lo + 3 * (lo_se + hi_se), (label, lo, hi)
    prior = next(line for line in out.stdout.splitlines() if line.startswith("iwae, prior proposal"))
    assert float(re.findall(r"\d+\.\d+", prior[len("iwae, prior proposal"):])[0]) <= 5.2983 + 5e-4  # log K cap
    # warnings reach the terminal as single lines, not as source excerpts
    assert "warning: the iwae sandwich is wide" in out.stderr and "UserWarning" not in out.stderr


def test_run_demo_rejects_bad_arguments_before_any_work():
    import pytest
    import torch

    from pyromi.errors import DeviceError, PyromiError

    fast = dict(num_particles=2, train_steps=1, ais_steps=1, print_fn=lambda *a: None)
    with pytest.raises(PyromiError, match=r"num_samples must be an int >= 2 \(standard errors need two draws\), got 1"):
        run_demo(num_samples=1, **fast)
    with pytest.raises(PyromiError, match="ais_steps must be an int >= 1"):
        run_demo(num_samples=4, **{**fast, "ais_steps": 0})
    with pytest.raises(DeviceError, match="not a device torch knows"):
        run_demo(num_samples=4, device="gpu", **fast)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available on this machine"):
            run_demo(num_samples=4, device="cuda", **fast)


def test_cli_help_mentions_units():
    out = subprocess.run([sys.executable, "-m", "pyromi", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "nats" in out.stdout
