"""CROWDLAB quality tables (``crowd.label_quality``): cleanlab parity on the shared crowd sets, then behaviour."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import require_dataset
from trinity_lightning.crowd import DawidSkene, MajorityVote, label_quality
from trinity_lightning.data import data_root


def _softmax(n: int, k: int, seed: int = 0) -> np.ndarray:
    """A fixed random model: softmax of N(0, 2^2) logits."""
    logits = np.random.default_rng(seed).normal(size=(n, k)) * 2
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def _shared(name: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    require_dataset(name)
    answers = pd.read_csv(data_root() / name / "answers.csv")
    return answers, answers.pivot(index="task", columns="worker", values="label"), int(answers["label"].max()) + 1


@pytest.mark.parametrize(("name", "calibrate"), [("crowd_dog", False), ("crowd_temp", False), ("crowd_dog", True)])
def test_tables_equal_cleanlab_on_a_shared_crowd_set(name, calibrate):
    multiannotator = pytest.importorskip("cleanlab.multiannotator", reason="cleanlab (test-only) is not installed")
    _, wide, k = _shared(name)
    probs = _softmax(len(wide), k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = multiannotator.get_label_quality_multiannotator(
            wide, probs.copy(), calibrate_probs=calibrate, return_weights=True, verbose=False
        )
    ours = label_quality(wide, probs, layout="wide", calibrate=calibrate, compat=True)
    items, want = ours.label_quality, expected["label_quality"]
    assert list(items.columns) == list(want.columns) and (items.index == want.index).all()
    assert (items["consensus_label"].to_numpy() == want["consensus_label"].to_numpy()).all()
    assert (items["num_annotations"].to_numpy() == want["num_annotations"].to_numpy()).all()
    for column in ("consensus_quality_score", "annotator_agreement"):
        np.testing.assert_allclose(items[column], want[column], atol=1e-10, rtol=0)
    stats, want_stats = ours.annotator_stats, expected["annotator_stats"]
    assert list(stats.columns) == list(want_stats.columns)
    assert list(stats.index) == list(want_stats.index)  # the same order: lowest quality first
    for column in ("annotator_quality", "agreement_with_consensus"):
        np.testing.assert_allclose(stats[column], want_stats[column], atol=1e-10, rtol=0)
    for column in ("worst_class", "num_examples_labeled"):
        assert (stats[column].to_numpy() == want_stats[column].to_numpy()).all(), column
    detailed, want_detailed = ours["detailed_label_quality"], expected["detailed_label_quality"]
    assert list(detailed.columns) == list(want_detailed.columns)
    np.testing.assert_allclose(detailed.to_numpy(), want_detailed.to_numpy(), atol=1e-10, rtol=0)  # NaN = NaN
    assert ours.model_weight == pytest.approx(expected["model_weight"], abs=1e-10)
    np.testing.assert_allclose(ours.annotator_weight, expected["annotator_weight"], atol=1e-10, rtol=0)


def test_long_table_with_a_frame_of_probabilities_gives_the_wide_result():
    answers, wide, k = _shared("crowd_temp")
    probs = _softmax(len(wide), k, seed=3)
    from_wide = label_quality(wide, probs, layout="wide")
    # the long table, shuffled; the probabilities found by item id; classes declared as in the wide matrix
    shuffled = answers.sample(frac=1.0, random_state=0)
    from_long = label_quality(shuffled, pd.DataFrame(probs, index=wide.index), classes=list(range(k)))
    pd.testing.assert_frame_equal(from_long.label_quality, from_wide.label_quality, check_exact=False, atol=1e-12)
    pd.testing.assert_frame_equal(
        from_long.annotator_stats.sort_index(), from_wide.annotator_stats.sort_index(), check_exact=False, atol=1e-12
    )
    assert from_long.label_quality.index.name == "item" and from_long.annotator_stats.index.name == "worker"


def _crowd_with_a_spammer(seed: int = 0, n: int = 200, k: int = 3):
    """5 annotators right 80% of the time and one who answers at random, 3 labels per item."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    rows = []
    for i in range(n):
        for w in rng.choice(6, size=3, replace=False):
            worker = "spammer" if w == 5 else f"good{w}"
            right = w != 5 and rng.random() < 0.8
            label = truth[i] if right else rng.integers(0, k)
            rows.append((f"item{i:03d}", worker, ["cat", "dog", "fox"][label]))
    return pd.DataFrame(rows, columns=["task", "worker", "label"]), truth


@pytest.mark.parametrize("model", ["pred_probs", "dawid_skene", "frequencies"])
def test_the_spammer_gets_the_lowest_quality_with_or_without_a_model(model):
    answers, truth = _crowd_with_a_spammer()
    if model == "pred_probs":
        noisy = np.eye(3)[truth] * 0.6 + _softmax(len(truth), 3, seed=5) * 0.4
        result = label_quality(answers, noisy)
        assert result.probabilities_from == "pred_probs"
    else:
        result = label_quality(answers, aggregator="dawid_skene" if model == "dawid_skene" else None)
        assert result.probabilities_from == ("DawidSkene" if model == "dawid_skene" else "label_frequencies")
    stats = result.annotator_stats
    assert stats.index[0] == "spammer"
    assert stats["annotator_quality"].is_monotonic_increasing
    assert stats.loc["spammer", "annotator_quality"] < stats.drop("spammer")["annotator_quality"].min() - 0.1
    assert stats.loc["spammer", "agreement_with_consensus"] < 0.6
    # the consensus recovers the truth and the least trusted items are the wrong ones more often
    items = result.label_quality
    right = items["consensus_label"].to_numpy() == np.array(["cat", "dog", "fox"])[truth]
    assert right.mean() > 0.85
    worst = items.sort_values("consensus_quality_score").index[:20]
    if not right.all():
        assert (~right[items.index.get_indexer(worst)]).mean() > (~right).mean()


def test_tables_are_sortable_and_indexed_by_the_users_ids():
    answers, _ = _crowd_with_a_spammer(seed=1, n=40)
    result = label_quality(answers)
    items = result.label_quality
    assert list(items.index) == sorted(answers["task"].unique())  # the table's item order
    assert set(items["consensus_label"]) <= {"cat", "dog", "fox"}
    assert set(result.annotator_stats["worst_class"]) <= {"cat", "dog", "fox"}
    for column in items.columns:  # any column sorts
        ordered = items.sort_values(column)
        assert ordered[column].is_monotonic_increasing and len(ordered) == 40
    per_label = result.annotation_quality
    assert list(per_label.columns) == ["item", "worker", "label", "label_quality"] and len(per_label) == len(answers)
    assert per_label.sort_values("label_quality")["label_quality"].between(0, 1).all()
    # a label's quality is its item's posterior probability of that label: the consensus label's is the item's score
    merged = per_label.merge(items, left_on="item", right_index=True)
    agree = merged[merged["label"] == merged["consensus_label"]]
    np.testing.assert_allclose(agree["label_quality"], agree["consensus_quality_score"], atol=1e-12)
    with pytest.raises(KeyError, match="'nope': expected one of"):
        result["nope"]


def test_a_fitted_aggregator_is_reused_and_single_labels_are_scored_by_the_model():
    frame = pd.DataFrame(
        {"task": [1, 1, 1, 2, 2, 2, 3], "worker": ["a", "b", "c"] * 2 + ["a"], "label": [0, 0, 1] * 2 + [1]}
    )
    ds = DawidSkene().fit(frame)
    result = label_quality(ds)
    assert result.probabilities_from == "DawidSkene" and len(result.label_quality) == 3
    # every item labelled once: the consensus is the label, its score the model's probability, no annotator quality
    single = label_quality({"task": [1, 2], "worker": ["a", "b"], "label": [0, 1]}, [[0.3, 0.7], [0.1, 0.9]])
    assert single.label_quality["consensus_label"].tolist() == [0, 1]
    np.testing.assert_allclose(single.label_quality["consensus_quality_score"], [0.3, 0.9])
    assert single.annotator_stats["annotator_quality"].isna().all()
    # an aggregator instance is fitted on the annotations and its posterior plays the model
    assert label_quality(frame, aggregator=MajorityVote()).probabilities_from == "MajorityVote"
    with pytest.raises(TypeError, match="aggregator: expected a name, an Aggregator or None, got int"):
        label_quality(frame, aggregator=3)  # type: ignore[arg-type]


def test_worst_class_ties_follow_cleanlab():
    multiannotator = pytest.importorskip("cleanlab.multiannotator", reason="cleanlab (test-only) is not installed")
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=(60, 4)).astype(float)
    labels[rng.random((60, 4)) < 0.3] = np.nan
    labels[np.isnan(labels).sum(axis=1) == 4, 0] = 1.0
    probs = _softmax(60, 3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = multiannotator.get_label_quality_multiannotator(labels, probs, verbose=False)["annotator_stats"]
    ours = label_quality(labels, probs).annotator_stats.reindex(expected.index)
    assert ours["worst_class"].tolist() == expected["worst_class"].tolist()
    np.testing.assert_allclose(ours["annotator_quality"], expected["annotator_quality"], atol=1e-10)


def test_bad_input_names_the_argument():
    frame = {"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": ["x", "y", "x", "x"]}
    with pytest.raises(ValueError, match=r"pred_probs: expected shape \(2, 2\)"):
        label_quality(frame, np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="pred_probs: probabilities must be finite"):
        label_quality(frame, [[math.nan, 1.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"pred_probs: no row for items \[2\]"):
        label_quality(frame, pd.DataFrame([[0.5, 0.5]], index=[1]))
    with pytest.raises(ValueError, match="classes: CROWDLAB needs at least 2 classes"):
        label_quality({"task": [1, 2], "worker": ["a", "b"], "label": ["x", "x"]})
    with pytest.raises(ValueError, match="aggregator: 'nope' is not a registered aggregator"):
        label_quality(frame, aggregator="nope")
    with pytest.raises(ValueError, match="layout: expected 'long' or 'wide'"):
        label_quality(frame, layout="tall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="item: not used with cleanlab's"):
        label_quality(np.array([[0.0, 1.0]]), item="task")
    assert torch.get_num_threads() >= 1
