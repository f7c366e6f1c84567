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


def test_demo_command_line():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # small tensors: one thread (see conftest)
    out = subprocess.run([sys.executable, "-m", "pyromi", "demo", "-N", "64", "-K", "200",
                          "--train-steps", "300"], capture_output=True, text=True, timeout=300,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert "closed-form I(x; z)" in out.stdout
    row = next(line for line in out.stdout.splitlines() if line.startswith("iwae, AmortizedNormal"))
    lo, hi = map(float, re.findall(r"\d+\.\d+", row)[:2])
    assert lo <= hi
    assert "NO" not in row


def test_cli_help_mentions_units():
    out = subprocess.run([sys.executable, "-m", "pyromi", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "nats" in out.stdout
