"""Lazy public names for a package: ``__getattr__``/``__dir__`` that import a name's module on first access."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps a public name to the
    module that defines it; the value is cached in the package's namespace once imported.

    Example:
        >>> getattr_, dir_ = lazy_exports("trinity_lightning.crowd", {"MBEM": "trinity_lightning.crowd.mbem"})
        >>> getattr_("MBEM").__name__, "MBEM" in dir_()
        ('MBEM', True)
    """

    def get(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def names() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return get, names
