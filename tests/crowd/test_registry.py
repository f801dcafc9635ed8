"""Aggregators by name: one registry for the CLI, the DataModule's ``init`` and ``get_aggregator`` (issue 13)."""

from __future__ import annotations

import pytest
import torch

from trinity_lightning.crowd import (
    GLAD,
    KOS,
    MACE,
    MMSR,
    CrowdDataModule,
    DawidSkene,
    GoldMajorityVote,
    MajorityVote,
    OneCoinDawidSkene,
    Wawa,
    ZeroBasedSkill,
)
from trinity_lightning.crowd.mbem import MBEM
from trinity_lightning.crowd.registry import AGGREGATORS, ANNOTATION_ONLY, get_aggregator


def test_every_name_builds_its_class_with_checked_arguments():
    expected = {"majority_vote": MajorityVote, "mv": MajorityVote, "dawid_skene": DawidSkene, "ds": DawidSkene}
    expected |= {"one_coin": OneCoinDawidSkene, "mbem": MBEM, "wawa": Wawa, "mace": MACE, "glad": GLAD}
    expected |= {"zero_based_skill": ZeroBasedSkill, "zbs": ZeroBasedSkill}
    expected |= {"gold_majority_vote": GoldMajorityVote, "gold_mv": GoldMajorityVote, "mmsr": MMSR, "kos": KOS}
    assert set(AGGREGATORS) == set(expected) and set(ANNOTATION_ONLY) < set(AGGREGATORS)
    for name, cls in expected.items():
        assert type(get_aggregator(name)) is cls
    assert get_aggregator("ds", n_iter=7, tol=0.0).n_iter == 7
    with pytest.raises(ValueError, match=r"method: 'dawid' is not a registered aggregator. Available names: \["):
        get_aggregator("dawid")
    with pytest.raises(ValueError, match=r"method: the aggregator 'mv' does not take \['n_iter'\]"):
        get_aggregator("mv", n_iter=3)


def test_the_datamodule_starts_from_any_annotation_only_aggregator():
    x = torch.randn(4, 3)
    table = {"task": [0, 0, 1, 2, 3, 3], "worker": ["a", "b", "a", "b", "a", "b"], "label": [1, 1, 0, 1, 0, 0]}
    dm = CrowdDataModule(x, table, init="one_coin")
    dm.setup("fit")
    assert isinstance(dm.aggregator, OneCoinDawidSkene) and dm.targets.shape == (4, 2)
    with pytest.raises(ValueError, match=r"init: expected .*annotation-only aggregators? \['majority_vote'"):
        CrowdDataModule(x, table, init="mbem")  # type: ignore[arg-type]
