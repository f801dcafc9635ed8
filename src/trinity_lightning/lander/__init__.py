"""Neural Lander: Lipschitz-bounded residual dynamics, a landing simulator and stable learned controllers.

Example:
    >>> from trinity_lightning.lander import LipschitzMLP
    >>> LipschitzMLP(3, 1, hidden=(8,), layer_bound=1.0).enforced_bound()
    1.0
"""

from __future__ import annotations

from trinity_lightning.lander.callback import SpectralNormalization
from trinity_lightning.lander.controllers import (
    AnalyticGroundEffect,
    FixedPointError,
    OracleResidual,
    TrackingController,
    fly,
    landing_error,
)
from trinity_lightning.lander.datamodule import LandingDataModule, collect_flights
from trinity_lightning.lander.evaluation import FlyLandings, compare_controllers, landing_starts, plot_landings
from trinity_lightning.lander.lipschitz import (
    LipschitzMLP,
    certified_bound,
    empirical_lipschitz,
    layer_norm,
    spectral_normalize,
)
from trinity_lightning.lander.module import ResidualDynamicsModule
from trinity_lightning.lander.simulator import (
    PlanarQuadrotor,
    QuadrotorParams,
    SmoothReference,
    VerticalQuadrotor,
    make_simulator,
)

__all__ = [
    "AnalyticGroundEffect",
    "FixedPointError",
    "FlyLandings",
    "LandingDataModule",
    "LipschitzMLP",
    "OracleResidual",
    "PlanarQuadrotor",
    "QuadrotorParams",
    "ResidualDynamicsModule",
    "SmoothReference",
    "SpectralNormalization",
    "TrackingController",
    "VerticalQuadrotor",
    "certified_bound",
    "collect_flights",
    "compare_controllers",
    "empirical_lipschitz",
    "fly",
    "landing_error",
    "landing_starts",
    "layer_norm",
    "make_simulator",
    "plot_landings",
    "spectral_normalize",
]
