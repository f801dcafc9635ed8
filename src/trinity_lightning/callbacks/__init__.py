"""Every public Lightning callback of trinity-lightning, in one place.

Example:
    >>> from trinity_lightning import callbacks
"""

from __future__ import annotations

import importlib
from typing import Any

# callback name -> subpackage that defines it (filled as components land)
_CALLBACKS: dict[str, str] = {}

__all__ = sorted(_CALLBACKS)


def __getattr__(name: str) -> Any:
    module = _CALLBACKS.get(name)
    if module is None:
        raise AttributeError(f"module 'trinity_lightning.callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
