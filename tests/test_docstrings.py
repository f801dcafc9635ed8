"""Docstring examples are documentation that must run: every ``>>>`` example in the package is a doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import trinity_lightning

# Modules whose import has side effects unsuitable for a doctest run.
_SKIP = {"trinity_lightning.__main__"}


def _modules() -> list[str]:
    names = [trinity_lightning.__name__]
    for info in pkgutil.walk_packages(trinity_lightning.__path__, prefix="trinity_lightning."):
        if info.name not in _SKIP:
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
