"""The README's commands and code are the ones that work."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
CI = pathlib.Path(__file__).resolve().parents[1] / ".ci" / "run"


def test_setup_command_runs_the_same_test_command_as_ci():
    text = README.read_text()
    marker = text.split("<!-- ci:test-command -->")[1].splitlines()[1]
    cmd = re.search(r"`(python -m pytest[^`]*)`", marker).group(1)
    setup = [line for line in text.splitlines() if 'pip install -e ".[test]"' in line]
    assert setup and setup[0].rstrip().endswith(cmd)
    assert "ci:test-command" in CI.read_text()


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    ns: dict = {}
    for block in blocks[:2]:
        exec(compile(block, "README.md", "exec"), ns)
    est = ns["est"]
    assert est.lower <= est.upper and est.units == "nats"
