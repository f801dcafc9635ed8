"""Neural Lander: Lipschitz-bounded residual dynamics, a landing simulator and stable learned controllers.

Example:
    >>> from trinity_lightning.lander import LipschitzMLP
    >>> LipschitzMLP(3, 1, hidden=(8,), layer_bound=1.0).enforced_bound()
    1.0
"""

from __future__ import annotations

from trinity_lightning.lander.callback import SpectralNormalization
from trinity_lightning.lander.lipschitz import (
    LipschitzMLP,
    certified_bound,
    empirical_lipschitz,
    layer_norm,
    spectral_normalize,
)

__all__ = [
    "LipschitzMLP",
    "SpectralNormalization",
    "certified_bound",
    "empirical_lipschitz",
    "layer_norm",
    "spectral_normalize",
]
