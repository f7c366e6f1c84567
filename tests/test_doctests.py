"""The examples in the public docstrings run (small sizes), so they cannot rot."""

import doctest
import importlib
import warnings

import pytest

MODULES = ["pyromi.api", "pyromi.api.density", "pyromi.api.learned", "pyromi.oed", "pyromi.models.linear_gaussian"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name} has no docstring example"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # loose-bound advice at these small sizes
        for t in tests:
            runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
