"""Crowd-label aggregation: the annotation table, vectorized aggregators and the CrowdEM callback.

See ``docs/crowd.md``. Aggregators (all torch, CPU or GPU, vectorized over the annotation list):
:class:`MajorityVote`, :class:`DawidSkene`, :class:`OneCoinDawidSkene`, :class:`MBEM`.
"""

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.callback import CrowdEM, soft_target_cross_entropy
from trinity_lightning.crowd.datamodule import CrowdDataModule, EpochSeededSampler, SimulatedCrowdDataModule
from trinity_lightning.crowd.dawid_skene import DawidSkene, OneCoinDawidSkene
from trinity_lightning.crowd.majority_vote import MajorityVote
from trinity_lightning.crowd.mbem import MBEM
from trinity_lightning.crowd.simulate import hammer_spammer_confusions, random_confusions, simulate_annotations
from trinity_lightning.crowd.table import AnnotationTable

__all__ = [
    "MBEM",
    "Aggregator",
    "AnnotationTable",
    "CrowdDataModule",
    "CrowdEM",
    "DawidSkene",
    "EpochSeededSampler",
    "MajorityVote",
    "OneCoinDawidSkene",
    "SimulatedCrowdDataModule",
    "hammer_spammer_confusions",
    "random_confusions",
    "simulate_annotations",
    "soft_target_cross_entropy",
]
