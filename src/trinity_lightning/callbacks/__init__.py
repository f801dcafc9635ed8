"""Every public Lightning callback of trinity-lightning, in one place.

Example:
    >>> from trinity_lightning.callbacks import CrowdEM, Tensorize
    >>> Tensorize.__module__.startswith("trinity_lightning.tensor")
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# callback name -> subpackage that defines it (filled as components land)
_CALLBACKS: dict[str, str] = {
    "ActiveLearning": "trinity_lightning.active",
    "ActiveRelabelling": "trinity_lightning.active",
    "CrowdEM": "trinity_lightning.crowd",
    "FlyLandings": "trinity_lightning.lander",
    "PartialFeedback": "trinity_lightning.active.partial_feedback",
    "RenderSamples": "trinity_lightning.nrm",
    "SpectralNormalization": "trinity_lightning.lander",
    "Tensorize": "trinity_lightning.tensor",
}

__all__ = sorted(_CALLBACKS)


def __getattr__(name: str) -> Any:
    module = _CALLBACKS.get(name)
    if module is None:
        raise AttributeError(f"module 'trinity_lightning.callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_CALLBACKS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from trinity_lightning.active import ActiveLearning
    from trinity_lightning.active.partial_feedback import PartialFeedback
    from trinity_lightning.crowd import CrowdEM
    from trinity_lightning.lander import FlyLandings, SpectralNormalization
    from trinity_lightning.nrm import RenderSamples
    from trinity_lightning.tensor import Tensorize
