"""Active learning: the pool DataModule, query strategies, oracles and the campaign (see docs/active.md)."""

from trinity_lightning.active.callback import ActiveLearning
from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.oracles import Answers, FileOracle, Oracle, SimulatedOracle
from trinity_lightning.active.strategies import (
    BALD,
    MNLP,
    STRATEGIES,
    Entropy,
    LeastConfidence,
    Margin,
    QueryStrategy,
    RandomStrategy,
    get_strategy,
    register_strategy,
)

__all__ = [
    "BALD",
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
    "QueryStrategy",
    "RandomStrategy",
    "SimulatedOracle",
    "get_strategy",
    "register_strategy",
]
