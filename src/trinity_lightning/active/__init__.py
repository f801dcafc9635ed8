"""Active learning: the pool DataModule, query strategies, oracles and the campaign (see docs/active.md)."""

from trinity_lightning.active.datamodule import ActiveLearningDataModule
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
    "ActiveLearningDataModule",
    "Entropy",
    "LeastConfidence",
    "Margin",
    "QueryStrategy",
    "RandomStrategy",
    "get_strategy",
    "register_strategy",
]
