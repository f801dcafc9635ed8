"""crowd-kit 1.4.x's M-MSR and KOS tests (tests/aggregation/test_classification_aggregation.py with data_mmsr.py,
and test_kos_aggregation.py), restated against our classes: M-MSR's labels, skills and scores on the toy and simple
tables are crowd-kit's pinned values (no crowd-kit needed); the same fits are also compared with crowd-kit itself
when it is installed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trinity_lightning.crowd import KOS, MMSR

from .adapter import CrowdKitView

# crowd-kit's pinned M-MSR results (data_mmsr.py)
TOY_LABELS = {"t1": "yes", "t2": "no", "t3": "no", "t4": "yes", "t5": "no"}
TOY_SKILLS = {"w1": -0.9486439852160969, "w2": 0.9764628672747041, "w3": 1.2428113335479982,
              "w4": 0.948643985216097, "w5": 0.9764628672747041}  # fmt: skip
TOY_SCORES = pd.DataFrame(
    [[0.014244720916141606, 0.9857552790838584], [0.6023983861841676, 0.3976016138158324],
     [1.0, 3.474074997309249e-17], [0.0, 1.0], [1.2968466945188564, -0.2968466945188564]],
    index=["t1", "t2", "t3", "t4", "t5"], columns=["no", "yes"],
)  # fmt: skip
_SIMPLE_SKILLS = {"0c3eb7d5fcc414db137c4180a654c06e": -0.6268515139467665,
                  "0f65edea0a6dc7b9acba1dea313bbb3d": 2.0131458750666567,
                  "a452e450f913cfa987cad58d50393718": 2.0131458750666567,
                  "b17c3301ad2ccbb798716fdd405d16e8": 2.0131458750666567,
                  "bde3b214b06c1efa6cb1bc6284dc72d2": 2.0131458750666567,
                  "e563e2fb32fce9f00123a65a1bc78c55": 1.8527467194291514}  # fmt: skip
_SIMPLE_SCORES = [
    ("ee4", [1.1843984510373275, 0.0, -0.18439845103732766]), ("ee8", [0.7652428480475112, 0.23475715195248875, 0.0]),
    ("eec", [0.0, 1.1158136796463138, -0.11581367964631392]), ("efb", [0.0, 0.0, 1.0]),
    ("efd", [0.6215252678195158, 0.5720046993399346, -0.19352996715945034]), ("f02", [0.0, 0.0, 1.0]),
    ("f03", [0.0, 1.0, 0.0]), ("f05", [0.0, 1.1843984510373275, -0.18439845103732766]), ("f07", [0.0, 0.0, 1.0]),
    ("f08", [0.0, 0.0, 1.0]),
]  # fmt: skip
SIMPLE_SCORES = pd.DataFrame(
    [row for _, row in _SIMPLE_SCORES],
    index=[f"1231239876--5fac0d234ffb2f3b00893{t}" for t, _ in _SIMPLE_SCORES],
    columns=["chicken", "goose", "parrot"],
)


def _scores(model: MMSR) -> pd.DataFrame:
    t = model.table_
    return pd.DataFrame(model.scores_.numpy(), index=t.item_ids, columns=t.classes)


@pytest.mark.parametrize("dataset", ["toy", "simple"])
def test_mmsr_predict_labels_skills_and_scores(request, dataset):
    answers = request.getfixturevalue(f"{dataset}_answers_df")
    if dataset == "toy":
        labels, skills, scores = pd.Series(TOY_LABELS), pd.Series(TOY_SKILLS), TOY_SCORES
    else:
        labels = request.getfixturevalue("simple_ground_truth")
        skills, scores = pd.Series(_SIMPLE_SKILLS), SIMPLE_SCORES
    view = CrowdKitView(MMSR()).fit(answers)
    pd.testing.assert_series_equal(view.labels_.sort_index(), labels.sort_index(), check_names=False)
    np.testing.assert_allclose(view.skills_.loc[skills.index].to_numpy(), skills.to_numpy(), rtol=1e-5)
    got = _scores(view.model).loc[scores.index, scores.columns].to_numpy()
    np.testing.assert_allclose(got, scores.to_numpy(), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("dataset", ["toy", "simple"])
def test_mmsr_equals_crowdkit_itself(request, dataset):
    ck = pytest.importorskip("crowdkit.aggregation")
    answers = request.getfixturevalue(f"{dataset}_answers_df")
    theirs = ck.MMSR()
    theirs.fit_predict_score(answers)
    ours = CrowdKitView(MMSR()).fit(answers)
    pd.testing.assert_series_equal(ours.labels_.sort_index(), theirs.labels_.sort_index(), check_names=False)
    skills = theirs.skills_.sort_index()
    np.testing.assert_allclose(ours.skills_.loc[skills.index].to_numpy(), skills.to_numpy(), rtol=1e-8)
    scores = theirs.scores_.fillna(0.0)
    got = _scores(ours.model).loc[scores.index, list(scores.columns)].to_numpy()
    np.testing.assert_allclose(got, scores.to_numpy(dtype=float), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("n_iter", [10, 100])
def test_aggregate_kos_on_data_with_bool_labels(n_iter, data_with_bool_labels, bool_labels_ground_truth):
    kos = CrowdKitView(KOS(n_iter=n_iter)).fit(data_with_bool_labels)
    pd.testing.assert_series_equal(kos.labels_.sort_index(), bool_labels_ground_truth, check_names=False)


def test_kos_on_empty_input():
    kos = CrowdKitView(KOS(n_iter=10)).fit(pd.DataFrame([], columns=["task", "worker", "label"]))
    assert len(kos.labels_) == 0 and kos.model.scores_.shape == (0,)


def test_kos_not_binary_data(simple_answers_df):
    with pytest.raises(ValueError, match=r"annotations: KOS is for binary labels \(2 classes\); the table has 3"):
        KOS(n_iter=10).fit(simple_answers_df)


def test_kos_equals_crowdkit_itself(toy_answers_df, data_with_bool_labels):
    ck = pytest.importorskip("crowdkit.aggregation")
    for answers in (toy_answers_df, data_with_bool_labels):
        theirs = ck.KOS(n_iter=100).fit_predict(answers)
        ours = CrowdKitView(KOS(n_iter=100)).fit(answers).labels_
        assert (ours.loc[theirs.index].astype(str) == theirs.astype(str)).all()
