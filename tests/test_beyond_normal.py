"""benchmarks/beyond_normal.py: the Beyond Normal (bmi) task definitions in numpy.

CCA tolerance: for a Gaussian task with canonical correlations rho_i the plug-in (CCA) MI from n
samples has the delta-method standard error ``se = sqrt(sum_i rho_i^2 / n)`` (a sample canonical
correlation has variance ``(1 - rho^2)^2 / n``, and ``d/drho [-1/2 log(1 - rho^2)] = rho / (1 -
rho^2)``) and the leading bias ``dx dy / (2 n)`` (``2 n I_hat ~ chi^2_{dx dy}`` under independence).
A check passes when ``|I_hat - bias - I| <= Z se`` with ``Z = 4``. Seeds are fixed.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from pyromi.baselines import cca_mi

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "beyond_normal.py"


sys.path.insert(0, str(_PATH.parent))
import beyond_normal as bn  # noqa: E402  (benchmarks/beyond_normal.py)
TASKS = bn.TASKS
Z = 4.0


def test_task_list_nonempty_and_filtered():
    assert len(TASKS) == 39
    assert "multinormal-dense-50-50-0.5" in bn.SKIPPED
    for name, t in TASKS.items():
        assert name == t.name
        assert 1 <= t.dx <= bn.MAX_DIM and 1 <= t.dy <= bn.MAX_DIM


def test_truths_finite_nonnegative():
    for t in TASKS.values():
        assert math.isfinite(t.mi) and t.mi >= 0.0, t.name


def test_closed_forms():
    assert TASKS["1v1-normal-0.75"].mi == pytest.approx(-0.5 * math.log(1 - 0.75**2), abs=1e-12)
    assert TASKS["1v1-additive-0.1"].mi == pytest.approx(0.1 - math.log(0.2), abs=1e-12)
    assert TASKS["1v1-additive-0.75"].mi == pytest.approx(1 / 3, abs=1e-12)
    for d in (2, 3, 5, 25):
        r = d / (d + 1)  # the single canonical correlation of the equicorrelated (0.5) task
        assert TASKS[f"multinormal-dense-{d}-{d}-0.5"].mi == pytest.approx(-0.5 * math.log(1 - r * r), abs=1e-10)
        assert TASKS[f"multinormal-sparse-{d}-{d}-2-2.0"].mi == pytest.approx(-math.log(1 - 0.8**2), abs=1e-10)
    for t in TASKS.values():
        if t.canonical_correlations is not None:
            rho = np.asarray(t.canonical_correlations)
            assert t.mi == pytest.approx(float(-0.5 * np.log1p(-rho * rho).sum()), abs=1e-10), t.name


@pytest.mark.parametrize("name", list(TASKS))
def test_sample_shapes(name):
    t = TASKS[name]
    x, y = t.sample(64, np.random.default_rng(0))
    assert x.shape == (64, t.dx) and y.shape == (64, t.dy)
    assert x.dtype == np.float64 and y.dtype == np.float64
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
    x2, _ = t.sample(64, 0)  # an int seed works and is the same stream
    np.testing.assert_array_equal(x, x2)


def test_rank_equivalent_tasks_share_base():
    expected = {
        "1v1-normal-0.75": [
            "1v1-normal-0.75",
            "normal_cdf-1v1-normal-0.75",
            "1v1-bimodal-0.75",
            "wiggly-1v1-normal-0.75",
            "half_cube-1v1-normal-0.75",
        ],
        "student-identity-1-1-1": ["student-identity-1-1-1", "asinh-student-identity-1-1-1"],
        "student-identity-2-2-1": ["student-identity-2-2-1", "asinh-student-identity-2-2-1"],
        "student-identity-5-5-2": ["student-identity-5-5-2", "asinh-student-identity-5-5-2"],
    }
    for d in (3, 5, 25):
        b = f"multinormal-sparse-{d}-{d}-2-2.0"
        expected[b] = [b, f"normal_cdf-{b}", f"half_cube-{b}"]
    for base, names in expected.items():
        assert sorted(t.name for t in TASKS.values() if t.base == base) == sorted(names), base
    # Mixing maps form classes of their own.
    for t in TASKS.values():
        if t.name.startswith(("spiral-", "swissroll_x-")):
            assert t.base == t.name
            assert sum(u.base == t.base for u in TASKS.values()) == 1


def test_same_base_means_same_ranks_dims_and_truth():
    """One seed: every column of a task has the ranks of the same column of its base task."""
    for t in TASKS.values():
        b = TASKS[t.base]
        assert (t.dx, t.dy, t.mi) == (b.dx, b.dy, b.mi), t.name
        if b is t:
            continue
        x, y = t.sample(300, 7)
        bx, by = b.sample(300, 7)
        for a, c in ((x, bx), (y, by)):
            np.testing.assert_array_equal(np.argsort(a, axis=0), np.argsort(c, axis=0), err_msg=t.name)


def test_unique_by_rank():
    uniq = bn.unique_by_rank(TASKS)
    bases = {t.base for t in TASKS.values()}
    assert len(uniq) == len(bases) == 25
    assert {t.base for t in uniq.values()} == bases
    for t in uniq.values():
        assert t.is_base, t.name  # every class here contains its untransformed task
    # Without the untransformed task the first listed one is kept.
    sub = [TASKS["half_cube-1v1-normal-0.75"], TASKS["normal_cdf-1v1-normal-0.75"]]
    assert list(bn.unique_by_rank(sub)) == ["half_cube-1v1-normal-0.75"]
    sub.append(TASKS["1v1-normal-0.75"])
    assert list(bn.unique_by_rank(sub)) == ["1v1-normal-0.75"]


@pytest.mark.parametrize(
    "name", ["1v1-normal-0.75", "multinormal-sparse-3-3-2-2.0", "multinormal-dense-5-5-0.5"]
)
def test_cca_matches_truth(name):
    t = TASKS[name]
    n = 20_000
    x, y = t.sample(n, np.random.default_rng(12345))
    est = cca_mi(x, y)
    se, bias = bn.cca_se_and_bias(t.canonical_correlations, n, t.dx, t.dy)
    assert abs(est - bias - t.mi) <= Z * se, (est, bias, t.mi, se)
