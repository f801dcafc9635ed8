"""crowd-kit 1.4.x's classification tests for the aggregators we share (tests/aggregation/test_majority_vote.py,
test_classification_aggregation.py): the majority-vote skill scenarios restated, and labels / probabilities /
skills of MajorityVote, Wawa, ZeroBasedSkill and GoldMajorityVote on crowd-kit's toy and simple tables compared
with crowd-kit itself (its expected tables are crowd-kit's own output; skipped when crowd-kit is absent).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trinity_lightning.crowd import GoldMajorityVote, MajorityVote, Wawa, ZeroBasedSkill

from .adapter import CrowdKitView, patch_crowdkit_check_is_fitted

FRAUD = "0c3eb7d5fcc414db137c4180a654c06e"


def _mv_skills(answers: pd.DataFrame) -> pd.Series:
    return CrowdKitView(MajorityVote(tie_break="smallest")).fit(answers).skills_


def test_majority_vote_with_skills(simple_answers_df):
    skills = _mv_skills(simple_answers_df)
    mv = CrowdKitView(MajorityVote(tie_break="smallest")).fit(simple_answers_df, skills=skills)
    pd.testing.assert_series_equal(mv.skills_, skills)


def test_majority_vote_with_missing_skills_value(simple_answers_df):
    skills = _mv_skills(simple_answers_df).drop(FRAUD)
    mv = CrowdKitView(MajorityVote(on_missing_skill="value", default_skill=1000000)).fit(simple_answers_df, skills)
    for task in simple_answers_df.loc[simple_answers_df["worker"] == FRAUD, "task"]:
        assert mv.labels_[task] == "parrot"


def test_majority_vote_with_missing_skills_error(simple_answers_df):
    skills = _mv_skills(simple_answers_df).drop(FRAUD)
    with pytest.raises(ValueError, match=f"skills: no \\(finite\\) skill for worker '{FRAUD}'"):
        CrowdKitView(MajorityVote(on_missing_skill="error")).fit(simple_answers_df, skills)


def test_majority_vote_with_missing_skills_ignore(simple_answers_df):
    skills = _mv_skills(simple_answers_df).drop(FRAUD)
    mv = CrowdKitView(MajorityVote(on_missing_skill="ignore")).fit(simple_answers_df, skills)
    assert FRAUD not in mv.skills_.dropna().index


def test_majority_vote_with_missing_skills_ignore_all(simple_answers_df):
    with pytest.raises(ValueError, match="skills: every vote on item"):
        CrowdKitView(MajorityVote(on_missing_skill="ignore")).fit(simple_answers_df, skills=pd.Series([], dtype=float))


# ---------------------------------------------------------------- against crowd-kit itself
def _crowdkit(name: str, answers: pd.DataFrame, gold: pd.Series):
    ck = pytest.importorskip("crowdkit.aggregation")
    patch_crowdkit_check_is_fitted()
    model = getattr(ck, name)()
    if name == "GoldMajorityVote":
        model.fit(answers, gold)
        model.predict_proba(answers)
    else:
        model.fit_predict_proba(answers)
    return model


OURS = {
    "MajorityVote": lambda: MajorityVote(tie_break="smallest"),
    "Wawa": Wawa,
    "ZeroBasedSkill": ZeroBasedSkill,
    "GoldMajorityVote": GoldMajorityVote,
}


TIE = pytest.mark.xfail(
    strict=True,
    reason="tie rule: on task ...efd chicken/goose/parrot tie 1-1-1; crowd-kit takes the first column of its vote "
    "table ('goose'), ours the smallest class ('chicken'); Wawa's skills inherit that vote (listed in docs/crowd.md)",
)
CASES = [
    pytest.param(
        name, dataset, marks=TIE if (name, dataset) in {("MajorityVote", "simple"), ("Wawa", "simple")} else ()
    )
    for name in OURS
    for dataset in ("toy", "simple")
]


@pytest.mark.parametrize(("name", "dataset"), CASES)
def test_fit_predict_classification_aggregations_methods(request, name, dataset):
    answers = request.getfixturevalue(f"{dataset}_answers_df")
    gold = request.getfixturevalue(f"{dataset}_gold_df")
    ck = _crowdkit(name, answers, gold)
    ours = CrowdKitView(OURS[name]())
    ours.fit(answers, gold) if name == "GoldMajorityVote" else ours.fit(answers)
    pd.testing.assert_series_equal(ours.labels_.sort_index(), ck.labels_.sort_index(), check_names=False)
    columns = list(ck.probas_.columns)
    np.testing.assert_allclose(
        ours.probas_.loc[ck.probas_.index, columns].to_numpy(), ck.probas_.to_numpy(dtype=float), rtol=1e-5
    )
    skills = ck.skills_.sort_index()
    np.testing.assert_allclose(ours.skills_.loc[skills.index].to_numpy(), skills.to_numpy(dtype=float), rtol=1e-5)
