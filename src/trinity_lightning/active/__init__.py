"""Active learning: the pool DataModule, query heuristics, oracles and the campaign (see docs/active.md).

The campaign is a policy on the round engine (:mod:`trinity_lightning.rounds`).
"""

from trinity_lightning.active.batch import (
    BADGE,
    EPIG,
    BatchBALD,
    Coreset,
    EmbeddingKMeans,
    InformationDensity,
    PoolQueryStrategy,
)
from trinity_lightning.active.callback import ActiveLearning
from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.oracles import Answers, FileOracle, Oracle, Query, SimulatedOracle
from trinity_lightning.active.relabel import ActiveLab, ActiveRelabelling, CrowdOracle, activelab_scores
from trinity_lightning.active.strategies import (
    BALD,
    HEURISTICS,
    MNLP,
    STRATEGIES,
    Entropy,
    ExpectedGradientLength,
    KLDisagreement,
    LeastConfidence,
    Margin,
    QueryStrategy,
    RandomStrategy,
    StochasticBatch,
    VoteEntropy,
    get_heuristic,
    get_strategy,
    register_heuristic,
    register_strategy,
)

__all__ = [
    "BADGE",
    "BALD",
    "EPIG",
    "HEURISTICS",
    "MNLP",
    "STRATEGIES",
    "ActiveLab",
    "ActiveLearning",
    "ActiveLearningDataModule",
    "ActiveRelabelling",
    "Answers",
    "BatchBALD",
    "Coreset",
    "CrowdOracle",
    "EmbeddingKMeans",
    "Entropy",
    "ExpectedGradientLength",
    "FileOracle",
    "InformationDensity",
    "KLDisagreement",
    "LeastConfidence",
    "Margin",
    "Oracle",
    "PoolQueryStrategy",
    "Query",
    "QueryStrategy",
    "RandomStrategy",
    "SimulatedOracle",
    "StochasticBatch",
    "VoteEntropy",
    "activelab_scores",
    "get_heuristic",
    "get_strategy",
    "register_heuristic",
    "register_strategy",
]
