"""crowd-kit 1.4.x's Dawid-Skene tests (tests/aggregation/test_ds_aggregation.py), run against our
:class:`DawidSkene` / :class:`OneCoinDawidSkene` through :class:`CrowdKitView`. Each test keeps crowd-kit's
name and its expectation; the scenarios are restated, not copied. Differences are listed in docs/crowd.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from trinity_lightning.crowd import DawidSkene, OneCoinDawidSkene

from .adapter import CrowdKitView


def ds(*args, **kwargs) -> CrowdKitView:
    return CrowdKitView(DawidSkene(*args, **kwargs))


def hds(*args, **kwargs) -> CrowdKitView:
    return CrowdKitView(OneCoinDawidSkene(*args, **kwargs))


def _sorted(series: pd.Series) -> pd.Series:
    return series.sort_index()


# ---------------------------------------------------------------- initial error matrices (TestWorkerInitError)
@pytest.mark.parametrize(("n_iter", "tol", "strategy"), [(10, 0, "addition"), (10, 0, "assign"), (10, 0, None)])
def test_without_initial_error_on_toy_ysda(n_iter, tol, strategy, toy_answers_df, toy_ground_truth_df):
    model = ds(n_iter=n_iter, tol=tol, initial_error_strategy=strategy)
    assert_series_equal(_sorted(model.fit(toy_answers_df, initial_error=None).labels_), _sorted(toy_ground_truth_df))


@pytest.mark.parametrize(
    ("n_iter", "tol", "strategy"),
    [(10, 0, "addition"), (10, 0, "assign"), (100500, 1e-5, "addition"), (100500, 1e-5, "assign")],
)
def test_zero_error_addition_on_toy_ysda(
    n_iter, tol, strategy, toy_answers_df, toy_ground_truth_df, toy_worker_init_error_zero_df
):
    model = ds(n_iter=n_iter, tol=tol, initial_error_strategy=strategy)
    if strategy == "addition":
        labels = model.fit(toy_answers_df, initial_error=toy_worker_init_error_zero_df).labels_
        assert_series_equal(_sorted(labels), _sorted(toy_ground_truth_df))
    else:
        with pytest.raises(ValueError, match=r"The sum of each worker's error matrix in initial_error should be 1.0"):
            model.fit(toy_answers_df, initial_error=toy_worker_init_error_zero_df)


@pytest.mark.parametrize(
    ("n_iter", "tol", "strategy"),
    [(10, 0, "addition"), (10, 0, "assign"), (100500, 1e-5, "addition"), (100500, 1e-5, "assign")],
)
def test_zero_partial_error_on_toy_ysda(
    n_iter, tol, strategy, toy_answers_df, toy_ground_truth_df, toy_worker_init_error_zero_df
):
    partial = toy_worker_init_error_zero_df[:3]  # w1 and half of w2: the other workers have no matrix
    model = ds(n_iter=n_iter, tol=tol, initial_error_strategy=strategy)
    if strategy == "addition":
        labels = model.fit(toy_answers_df, initial_error=partial).labels_
        assert_series_equal(_sorted(labels), _sorted(toy_ground_truth_df))
    else:
        with pytest.raises(ValueError, match="initial_error: with initial_error_strategy='assign'"):
            model.fit(toy_answers_df, initial_error=partial)


@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0), (100500, 1e-5)])
def test_addition_consistency_on_toy_ysda(
    n_iter, tol, toy_answers_df, toy_ground_truth_df, toy_worker_init_error_zero_df
):
    errors = toy_worker_init_error_zero_df  # w2 is always right: an almost-perfect history keeps the answer
    errors.loc[("w2", "yes"), "no"], errors.loc[("w2", "yes"), "yes"] = 1, 99
    errors.loc[("w2", "no"), "yes"], errors.loc[("w2", "no"), "no"] = 1, 99
    labels = ds(n_iter=n_iter, tol=tol, initial_error_strategy="addition").fit(toy_answers_df, initial_error=errors)
    assert_series_equal(_sorted(labels.labels_), _sorted(toy_ground_truth_df))


@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0), (100500, 1e-5)])
def test_addition_desired_label_on_toy_ysda(n_iter, tol, toy_answers_df, toy_worker_init_error_zero_df):
    errors = toy_worker_init_error_zero_df  # histories that say every answer on t2 means "no"
    for worker, said in (("w1", "yes"), ("w2", "yes"), ("w3", "yes"), ("w4", "no"), ("w5", "no")):
        errors.loc[(worker, said), "no"] = 99
    model = ds(n_iter=n_iter, tol=tol, initial_error_strategy="addition").fit(toy_answers_df, initial_error=errors)
    assert model.labels_["t2"] == "no"


def test_addition_inner_state_on_toy_ysda(toy_answers_df, toy_worker_init_error_zero_df):
    errors = toy_worker_init_error_zero_df  # w2's counts at the start are (yes: 0.9 / 2.1, no: 1.4 / 0.6)
    errors.loc[("w2", "yes"), "no"], errors.loc[("w2", "yes"), "yes"] = 1.1, 0.9
    errors.loc[("w2", "no"), "yes"], errors.loc[("w2", "no"), "no"] = 0.4, 0.6
    model = ds(n_iter=0, tol=0.0, initial_error_strategy="addition").fit(toy_answers_df, initial_error=errors)
    for observed, true, expected in (("yes", "no", 0.5), ("yes", "yes", 0.75), ("no", "yes", 0.25), ("no", "no", 0.5)):
        assert np.isclose(model.errors_.loc["w2"].loc[observed, true], expected)


# ---------------------------------------------------------------- gold labels
@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0), (100500, 1e-5)])
def test_aggregate_ds_gold_on_toy_ysda(n_iter, tol, toy_answers_df, toy_ground_truth_df, toy_gold_df):
    labels = ds(n_iter=n_iter, tol=tol).fit(toy_answers_df, toy_gold_df).labels_
    assert_series_equal(_sorted(labels), _sorted(toy_ground_truth_df))


@pytest.mark.parametrize("n_iter", [0, 1, 2])
def test_ds_gold_probas_correction_with_iters(n_iter, toy_answers_df, toy_gold_df):
    model = ds(n_iter).fit(toy_answers_df, toy_gold_df)
    probas = model.probas_
    for task, label in toy_gold_df.items():
        assert np.isclose(probas.loc[task, label], 1.0, atol=1e-8)
    assert np.allclose(probas.sum(axis=1), 1.0, atol=1e-8)
    assert_series_equal(model.labels_[toy_gold_df.index], toy_gold_df, check_names=False, check_index=False)


# ---------------------------------------------------------------- plain fits
@pytest.mark.parametrize("make", [ds, hds], ids=["ds", "hds"])
@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0), (100500, 1e-5)])
def test_aggregate_on_toy_ysda(make, n_iter, tol, toy_answers_df, toy_ground_truth_df):
    assert_series_equal(_sorted(make(n_iter=n_iter, tol=tol).fit(toy_answers_df).labels_), _sorted(toy_ground_truth_df))


@pytest.mark.parametrize("make", [ds, hds], ids=["ds", "hds"])
@pytest.mark.parametrize(("n_iter", "tol"), [(10, 0), (100500, 1e-5)])
def test_aggregate_on_simple(make, n_iter, tol, simple_answers_df, simple_ground_truth):
    labels = make(n_iter=n_iter, tol=tol).fit(simple_answers_df).labels_
    assert_series_equal(_sorted(labels), _sorted(simple_ground_truth))


# ---------------------------------------------------------------- step by step (n_iter = 0 and 1)
STEP_DATA = """t1 w1 no|t1 w2 yes|t1 w4 yes|t1 w5 no|t2 w1 yes|t2 w2 yes|t2 w3 yes|t2 w4 no|t2 w5 no|
t3 w1 yes|t3 w2 no|t3 w3 no|t3 w4 yes|t3 w5 no|t4 w1 yes|t4 w2 yes|t4 w3 yes|t4 w4 yes|t4 w5 yes|
t5 w1 yes|t5 w2 no|t5 w3 no|t5 w4 no|t5 w5 no"""
STEPS = {  # crowd-kit's expected probas (no, yes), priors, labels and errors[(worker, said)] = (no, yes)
    0: {
        "probas": [(0.5, 0.5), (0.4, 0.6), (0.6, 0.4), (0.0, 1.0), (0.8, 0.2)],
        "priors": (0.46, 0.54),
        "labels": ["no", "yes", "no", "yes", "no"],
        "errors": {"w1": [(0.22, 0.19), (0.78, 0.81)], "w2": [(0.61, 0.22), (0.39, 0.78)],
                   "w3": [(0.78, 0.27), (0.22, 0.73)], "w4": [(0.52, 0.30), (0.48, 0.70)],
                   "w5": [(1.00, 0.63), (0.00, 0.37)]},
    },
    1: {
        "probas": [(0.35, 0.65), (0.26, 0.74), (0.87, 0.13), (0.00, 1.00), (0.95, 0.05)],
        "priors": (0.49, 0.51),
        "labels": ["yes", "yes", "no", "yes", "no"],
        "errors": {"w1": [(0.14, 0.25), (0.86, 0.75)], "w2": [(0.75, 0.07), (0.25, 0.93)],
                   "w3": [(0.87, 0.09), (0.13, 0.91)], "w4": [(0.50, 0.31), (0.50, 0.69)],
                   "w5": [(1.00, 0.61), (0.00, 0.39)]},
    },
}  # fmt: skip


@pytest.mark.parametrize("n_iter", [0, 1])
def test_dawid_skene_step_by_step(n_iter):
    rows = [row.split() for row in STEP_DATA.replace("\n", "").split("|")]
    data = pd.DataFrame(rows, columns=["task", "worker", "label"])
    want = STEPS[n_iter]
    model = ds(n_iter).fit(data)
    tasks = [f"t{i}" for i in range(1, 6)]
    probas = pd.DataFrame(want["probas"], index=tasks, columns=["no", "yes"])
    assert np.allclose(model.probas_.loc[tasks, ["no", "yes"]].to_numpy(), probas.to_numpy(), atol=0.005)
    assert np.allclose(model.priors_[["no", "yes"]].to_numpy(), want["priors"], atol=0.005)
    assert model.labels_[tasks].tolist() == want["labels"]
    for worker, (said_no, said_yes) in want["errors"].items():
        got = model.errors_.loc[worker]
        assert np.allclose(got.loc["no", ["no", "yes"]].to_numpy(), said_no, atol=0.005)
        assert np.allclose(got.loc["yes", ["no", "yes"]].to_numpy(), said_yes, atol=0.005)


def test_dawid_skene_on_empty_input():
    model = ds(10).fit(pd.DataFrame([], columns=["task", "worker", "label"]))
    assert_frame_equal(pd.DataFrame(), model.probas_)
    assert_frame_equal(pd.DataFrame(), model.errors_)
    assert_series_equal(pd.Series(dtype=float, name="prior"), model.priors_)
    assert_series_equal(pd.Series(dtype=float, name="agg_label"), model.labels_)


@pytest.mark.parametrize("overlap", [3, 300, 30000])
def test_dawid_skene_overlap(overlap):
    data = pd.DataFrame(
        [
            {"task": task, "worker": worker, "label": "yes" if (worker - task) % 3 else "no"}
            for worker in range(overlap)
            for task in range(3)
        ]
    )
    model = ds(20).fit(data)
    assert np.allclose(model.probas_.loc[[0, 1, 2], ["no", "yes"]].to_numpy(), [[1 / 3, 2 / 3]] * 3, atol=0.005)
    assert model.labels_.loc[[0, 1, 2]].tolist() == ["yes"] * 3
    assert np.allclose(model.priors_[["no", "yes"]].to_numpy(), [1 / 3, 2 / 3], atol=0.005)


@pytest.mark.parametrize("make", [ds, hds], ids=["ds", "hds"])
def test_on_bool_labels(make, data_with_bool_labels, bool_labels_ground_truth):
    assert_series_equal(bool_labels_ground_truth, make(20).fit(data_with_bool_labels).labels_, atol=0.005)
