"""The examples in the pure core's docstrings (and the worker's input check and bundles) are run, so they stay true."""
import doctest
import importlib
import pkgutil

import pytest

import callqa.core


def with_examples():
    for info in pkgutil.iter_modules(callqa.core.__path__, "callqa.core."):
        module = importlib.import_module(info.name)
        if any(t.examples for t in doctest.DocTestFinder().find(module)):
            yield info.name
    yield "streams.continuity"
    yield "streams.app"
    yield "bench.workdir"


@pytest.mark.parametrize("name", sorted(with_examples()))
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
