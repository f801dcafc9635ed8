"""Crowd-label aggregation: the annotation table, vectorized aggregators and the CrowdEM callback.

See ``docs/crowd.md``. Aggregators (all torch, CPU or GPU, vectorized over the annotation list):
:class:`MajorityVote`, :class:`DawidSkene`, :class:`OneCoinDawidSkene`, :class:`MBEM`.
"""

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.dawid_skene import DawidSkene, OneCoinDawidSkene
from trinity_lightning.crowd.majority_vote import MajorityVote
from trinity_lightning.crowd.mbem import MBEM
from trinity_lightning.crowd.table import AnnotationTable

__all__ = [
    "MBEM",
    "Aggregator",
    "AnnotationTable",
    "DawidSkene",
    "MajorityVote",
    "OneCoinDawidSkene",
]
