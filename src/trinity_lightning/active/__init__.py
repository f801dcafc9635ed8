"""Active learning: the pool DataModule, query heuristics, oracles and the campaign (see docs/active.md).

The campaign is a policy on the round engine (:mod:`trinity_lightning.rounds`).
"""

from trinity_lightning.active.callback import ActiveLearning
from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.oracles import Answers, FileOracle, Oracle, Query, SimulatedOracle
from trinity_lightning.active.strategies import (
    BALD,
    HEURISTICS,
    MNLP,
    STRATEGIES,
    Entropy,
    LeastConfidence,
    Margin,
    QueryStrategy,
    RandomStrategy,
    get_heuristic,
    get_strategy,
    register_heuristic,
    register_strategy,
)

__all__ = [
    "BALD",
    "HEURISTICS",
    "MNLP",
    "STRATEGIES",
    "ActiveLearning",
    "ActiveLearningDataModule",
    "Answers",
    "Entropy",
    "FileOracle",
    "LeastConfidence",
    "Margin",
    "Oracle",
    "Query",
    "QueryStrategy",
    "RandomStrategy",
    "SimulatedOracle",
    "get_heuristic",
    "get_strategy",
    "register_heuristic",
    "register_strategy",
]
