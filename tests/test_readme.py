"""The README's commands and code are the ones that work.

Every ```python block of README.md runs, in order, in one namespace (a block may use what an
earlier one defined), as a reader would paste them into one session. By default the sizes are
shrunk so that the whole README runs in seconds: each ``num_samples=``, ``num_particles=``,
``num_steps=`` and ``train_steps=`` keyword, ``range(n)`` loop and ``fit_proposal(q, n)`` step
count above the caps in ``QUICK_CAPS`` is lowered to the cap; nothing else in the text changes.
``PYROMI_README_QUICK=0`` runs the blocks exactly as printed (minutes).

Printed outputs quoted in the README (``print(est)  # I(x; z) in [...]``) are checked against the
actual output wherever the code runs as printed: all of them with ``PYROMI_README_QUICK=0``;
otherwise the prints whose block, up to the print, the shrinking left unchanged.
"""

import contextlib
import io
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"

#: size keyword or call -> the largest value kept in quick mode
QUICK_CAPS = {
    r"(num_samples=)(\d+)": 32,
    r"(num_particles=)(\d+)": 16,
    r"(num_steps=)(\d+)": 20,
    r"(train_steps=)(\d+)": 20,
    r"(range\()(\d+)(?=\))": 20,
    r"(fit_proposal\(\w+, )(\d+)": 20,
}


def quick() -> bool:
    return os.environ.get("PYROMI_README_QUICK", "1") != "0"


def shrink(code: str) -> str:
    """``code`` with every size above its cap in ``QUICK_CAPS`` lowered to the cap."""
    for pattern, cap in QUICK_CAPS.items():
        code = re.sub(pattern, lambda m: m.group(1) + str(min(int(m.group(2)), cap)), code)
    return code


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def quoted_outputs(block: str, ran: str | None = None) -> list[str]:
    """The outputs a block quotes for its ``print`` calls: the comment after ``print(...)`` on the
    same line or on the next line, when it starts like a printed estimate (``I(``), up to a gap of
    three spaces (which separates a remark, e.g. ``closed form: 18.689``). With ``ran`` (the code
    that was run), only the prints whose lines up to them ran as printed."""
    lines = block.splitlines()
    ran_lines = lines if ran is None else ran.splitlines()
    quoted = []
    for i, line in enumerate(lines):
        if not line.startswith("print(") or ran_lines[: i + 1] != lines[: i + 1]:
            continue
        m = re.search(r"\)\s+#\s+(I\(.*)$", line)
        if m is None and i + 1 < len(lines):
            m = re.match(r"#\s+(I\(.*)$", lines[i + 1])
        if m is not None:
            quoted.append(re.split(r" {3,}", m.group(1).strip())[0])
    return quoted


def run_blocks(blocks: list[str], label: str, ns: dict, shrunk: bool) -> int:
    """Run ``blocks`` in order in ``ns`` (shrunk when ``shrunk``); every quoted output of a print that
    ran as printed must be what it prints. Returns how many quoted outputs were checked."""
    checked = 0
    for i, block in enumerate(blocks):
        code = shrink(block) if shrunk else block
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{label} python block {i + 1}", "exec"), ns)
        printed = out.getvalue().splitlines()
        for expected in quoted_outputs(block, code):  # the prints that ran as printed
            assert any(line.startswith(expected) for line in printed), (i + 1, expected, printed)
            checked += 1
    return checked


def test_setup_command_runs_the_same_test_command_as_ci():
    text = README.read_text()
    marker = text.split("<!-- ci:test-command -->")[1].splitlines()[1]
    cmd = re.search(r"`(python -m pytest[^`]*)`", marker).group(1)
    setup = [line for line in text.splitlines() if 'pip install -e ".[test]"' in line]
    assert setup and setup[0].rstrip().endswith(cmd)
    assert "ci:test-command" in CI.read_text()


def test_shrink_lowers_sizes_only():
    code = ('f(num_samples=256, num_particles=8, num_steps=1000, train_steps=2000, seed=0)\n'
            'fit_proposal(q, 2000, optim=o)\nfor i in range(2000):\n    pass\nrange(5)\n')
    assert shrink(code) == ('f(num_samples=32, num_particles=8, num_steps=20, train_steps=20, seed=0)\n'
                            'fit_proposal(q, 20, optim=o)\nfor i in range(20):\n    pass\nrange(5)\n')
    block = ('print(est)   # I(x; z) in [1, 2] nats    closed form: 3\nprint(r)  # a table\n'
             'f(num_steps=1000)\nprint(e)\n# I(x; y) ~= 0.9 nats\n')
    assert quoted_outputs(block) == ["I(x; z) in [1, 2] nats", "I(x; y) ~= 0.9 nats"]
    assert quoted_outputs(block, shrink(block)) == ["I(x; z) in [1, 2] nats"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_readme_python_blocks_run():
    """Every block runs after the ones before it; the quoted outputs are what the code prints."""
    import matplotlib

    matplotlib.use("Agg")  # report.plot() and friends, without a display
    blocks = python_blocks()
    assert len(blocks) >= 3  # the first examples; the rest live in docs/ (tests/test_docs.py runs them)
    ns: dict = {"__name__": "__readme__"}
    checked = run_blocks(blocks, "README.md", ns, quick())
    assert checked >= (1 if quick() else 3)
    est = ns["est"]
    assert est.lower <= est.upper and est.units == "nats"


def test_submodules_named_in_the_readme_are_reachable_after_import_pyromi():
    """`import pyromi` is enough for pyromi.mist, pyromi.audit, pyromi.plots, ... (imported on
    first access, so `import pyromi` does not pay for them); dir(pyromi) lists them."""
    code = (
        "import sys, pyromi\n"
        "lazy = ['audit', 'baselines', 'critics', 'mist', 'models', 'plots']\n"
        "assert 'pyromi.plots' not in sys.modules and 'pyromi.mist' not in sys.modules\n"
        "assert set(lazy) <= set(dir(pyromi))\n"
        "assert callable(pyromi.mist.estimate) and callable(pyromi.audit.audit)\n"
        "assert callable(pyromi.plots.plot_sandwiches) and pyromi.models.LinearGaussian\n"
        "assert pyromi.critics.ConcatCritic and callable(pyromi.baselines.ksg_mi)\n"
        "try:\n    pyromi.no_such_thing\nexcept AttributeError as e:\n"
        "    assert \"has no attribute 'no_such_thing'\" in str(e)\nelse:\n    raise SystemExit(1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    readme = README.read_text()
    for name in ("pyromi.mist", "pyromi.audit", "pyromi.plots", "pyromi.critics"):
        assert f"`{name}" in readme or f"{name}." in readme, name
