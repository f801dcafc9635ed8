"""Crowd-label aggregation: the annotation table, vectorized aggregators and the CrowdEM callback.

See ``docs/crowd.md``. Aggregators (all torch, CPU or GPU, vectorized over the annotation list):
:class:`MajorityVote`, :class:`DawidSkene`, :class:`OneCoinDawidSkene`, :class:`MBEM`, :class:`MMSR`,
:class:`KOS` and the rest of ``__all__``.

Names are loaded on first use: the aggregators, the table and the simulation import without
Lightning (``trinity crowd aggregate`` starts fast); only :class:`CrowdEM`, the DataModules and
:func:`soft_target_cross_entropy` need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trinity_lightning._lazy import lazy_exports

if TYPE_CHECKING:
    from trinity_lightning.crowd.base import Aggregator
    from trinity_lightning.crowd.callback import CrowdEM, soft_target_cross_entropy
    from trinity_lightning.crowd.datamodule import CrowdDataModule, EpochSeededSampler, SimulatedCrowdDataModule
    from trinity_lightning.crowd.dawid_skene import DawidSkene, OneCoinDawidSkene
    from trinity_lightning.crowd.glad import GLAD
    from trinity_lightning.crowd.kos import KOS
    from trinity_lightning.crowd.mace import MACE
    from trinity_lightning.crowd.majority_vote import MajorityVote
    from trinity_lightning.crowd.mbem import MBEM
    from trinity_lightning.crowd.mmsr import MMSR
    from trinity_lightning.crowd.quality import LabelQuality, annotator_quality, consensus_quality, label_quality
    from trinity_lightning.crowd.simulate import hammer_spammer_confusions, random_confusions, simulate_annotations
    from trinity_lightning.crowd.skills import GoldMajorityVote, Wawa, ZeroBasedSkill
    from trinity_lightning.crowd.table import AnnotationTable

# every name is imported on first access: ``trinity crowd --help`` needs neither torch nor Lightning, and
# only CrowdEM and the DataModules need Lightning
_LAZY = {
    "Aggregator": "trinity_lightning.crowd.base",
    "DawidSkene": "trinity_lightning.crowd.dawid_skene",
    "OneCoinDawidSkene": "trinity_lightning.crowd.dawid_skene",
    "MajorityVote": "trinity_lightning.crowd.majority_vote",
    "MBEM": "trinity_lightning.crowd.mbem",
    "MACE": "trinity_lightning.crowd.mace",
    "GLAD": "trinity_lightning.crowd.glad",
    "MMSR": "trinity_lightning.crowd.mmsr",
    "KOS": "trinity_lightning.crowd.kos",
    "consensus_quality": "trinity_lightning.crowd.quality",
    "annotator_quality": "trinity_lightning.crowd.quality",
    "label_quality": "trinity_lightning.crowd.quality",
    "LabelQuality": "trinity_lightning.crowd.quality",
    "GoldMajorityVote": "trinity_lightning.crowd.skills",
    "Wawa": "trinity_lightning.crowd.skills",
    "ZeroBasedSkill": "trinity_lightning.crowd.skills",
    "hammer_spammer_confusions": "trinity_lightning.crowd.simulate",
    "random_confusions": "trinity_lightning.crowd.simulate",
    "simulate_annotations": "trinity_lightning.crowd.simulate",
    "AnnotationTable": "trinity_lightning.crowd.table",
    "CrowdEM": "trinity_lightning.crowd.callback",
    "soft_target_cross_entropy": "trinity_lightning.crowd.callback",
    "CrowdDataModule": "trinity_lightning.crowd.datamodule",
    "EpochSeededSampler": "trinity_lightning.crowd.datamodule",
    "SimulatedCrowdDataModule": "trinity_lightning.crowd.datamodule",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "GLAD",
    "KOS",
    "MACE",
    "MBEM",
    "MMSR",
    "Aggregator",
    "AnnotationTable",
    "CrowdDataModule",
    "CrowdEM",
    "DawidSkene",
    "EpochSeededSampler",
    "GoldMajorityVote",
    "LabelQuality",
    "MajorityVote",
    "OneCoinDawidSkene",
    "SimulatedCrowdDataModule",
    "Wawa",
    "ZeroBasedSkill",
    "annotator_quality",
    "consensus_quality",
    "hammer_spammer_confusions",
    "label_quality",
    "random_confusions",
    "simulate_annotations",
    "soft_target_cross_entropy",
]
