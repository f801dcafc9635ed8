"""ActiveRelabelling's CROWDLAB quality tables: exposed after fit and written beside the labels file each round."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.active.test_relabel import _campaign_fit, _crowd_task
from trinity_lightning.active.relabel import ActiveRelabelling, CrowdOracle
from trinity_lightning.crowd.quality import annotators_path


def test_campaign_exposes_and_writes_crowdlab_tables(tmp_path):
    _, held = _crowd_task()
    oracle = CrowdOracle(held)
    oracle.query(0, list(range(20)))
    first = oracle.collect(0)
    annotations = {i: [(w, lab)] for i, lab, w in zip(first.indices, first.labels, first.workers)}
    campaign, dm = _campaign_fit(tmp_path, held, oracle, annotations, budget=40)
    tables = campaign.label_quality()
    items = tables.label_quality
    assert sorted(items.index) == sorted(i for i, v in campaign.annotations.items() if v)  # dataset indices
    assert (items["num_annotations"] == [len(campaign.annotations[i]) for i in items.index]).all()
    stats = tables.annotator_stats
    assert set(stats.index) == {"good", "noisy", "spam"}
    assert stats.index[-1] == "good"  # highest quality last
    assert stats.loc["spam", "annotator_quality"] < stats.loc["good", "annotator_quality"] - 0.1
    # written after the last round's answers, beside the labels file
    path = ActiveRelabelling.quality_path(dm)
    assert path == tmp_path / "labels.json.quality.csv"
    on_disk = pd.read_csv(path, index_col="item")
    pd.testing.assert_frame_equal(on_disk, items, check_exact=False, atol=1e-12, check_names=False)
    workers = pd.read_csv(annotators_path(path), index_col="worker")
    assert list(workers.index) == list(stats.index)


def test_label_quality_before_any_round_says_so():
    with pytest.raises(RuntimeError, match="no round has scored the items yet"):
        ActiveRelabelling(query_size=2).label_quality()
