"""crowd-kit 1.4.x's GLAD tests (tests/aggregation/test_glad_aggregation.py), restated against our ``GLAD`` in both
modes (the default converged fit and ``crowdkit_compat=True``): accuracy 1.0 on the toy and simple tables at
``(n_iter, tol)`` = ``(100, 0)`` and ``(100500, 1e-5)``, and the first E-step's posteriors on one task of the simple
table (crowd-kit's pinned values). Not ported: ``test_glad_derivative`` checks crowd-kit's private ``_gradient_Q``
against finite differences; ours is covered by ``tests/crowd/test_glad.py`` (the fit ends at a stationary point
of an independently written log posterior, by autograd).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trinity_lightning.crowd import GLAD

from .adapter import CrowdKitView

MODES = [pytest.param(False, id="default"), pytest.param(True, id="crowdkit_compat")]
SINGLE_TASK = "1231239876--5fac0d234ffb2f3b00893eec"


def _accuracy(predicted: pd.Series, truth: pd.Series) -> float:
    return float((predicted.reindex(truth.index) == truth).mean())


@pytest.mark.parametrize("compat", MODES)
@pytest.mark.parametrize(("n_iter", "tol"), [(100, 0.0), (100500, 1e-5)])
def test_aggregate_glad_on_toy_ysda(compat, n_iter, tol, toy_answers_df, toy_ground_truth_df):
    predicted = CrowdKitView(GLAD(n_iter=n_iter, tol=tol, crowdkit_compat=compat)).fit_predict(toy_answers_df)
    assert _accuracy(predicted, toy_ground_truth_df) == 1.0


@pytest.mark.parametrize("compat", MODES)
@pytest.mark.parametrize(("n_iter", "tol"), [(100, 0.0), (100500, 1e-5)])
def test_aggregate_glad_on_simple(compat, n_iter, tol, simple_answers_df, simple_ground_truth):
    predicted = CrowdKitView(GLAD(n_iter=n_iter, tol=tol, crowdkit_compat=compat)).fit_predict(simple_answers_df)
    assert _accuracy(predicted, simple_ground_truth) == 1.0


@pytest.mark.parametrize("compat", MODES)
def test_glad_e_step(compat, simple_answers_df):
    """The E-step at the start (alpha = beta = 1, uniform prior): ``n_iter=0`` leaves exactly that posterior."""
    single = simple_answers_df[simple_answers_df["task"] == SINGLE_TASK]
    probas = CrowdKitView(GLAD(n_iter=0, crowdkit_compat=compat)).fit(single).probas_
    used = probas.loc[:, probas.columns.isin(single["label"])]
    assert np.allclose(used.to_numpy(), [[0.995664, 0.004336]], atol=1e-6)
