"""The small tables of crowd-kit's test suite (tests/conftest.py of crowd-kit 1.4.x), restated as data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

# toy YSDA: (worker, task, label)
TOY = """w1 t1 no|w1 t2 yes|w1 t3 yes|w1 t4 yes|w1 t5 yes|w2 t1 yes|w2 t2 yes|w2 t3 no|w2 t4 yes|w2 t5 no|
w3 t2 yes|w3 t3 no|w3 t4 yes|w3 t5 no|w4 t1 yes|w4 t2 no|w4 t3 yes|w4 t4 yes|w4 t5 no|
w5 t1 no|w5 t2 no|w5 t3 no|w5 t4 yes|w5 t5 no"""

# "simple": 6 workers (a fraudster who always says parrot, a careless one), 10 tasks, 3 classes
_W = {
    "g1": "bde3b214b06c1efa6cb1bc6284dc72d2",
    "g2": "b17c3301ad2ccbb798716fdd405d16e8",
    "g3": "a452e450f913cfa987cad58d50393718",
    "g4": "0f65edea0a6dc7b9acba1dea313bbb3d",
    "fraud": "0c3eb7d5fcc414db137c4180a654c06e",
    "careless": "e563e2fb32fce9f00123a65a1bc78c55",
}
SIMPLE = """g1 eec goose|g1 efb parrot|g1 f03 goose|g1 f05 goose|g1 f02 parrot|g1 f08 parrot|
g2 efb parrot|g2 ee8 chicken|g2 f07 parrot|g2 efd chicken|g2 ee4 chicken|g2 f03 goose|
g3 ee8 chicken|g3 eec goose|g3 f05 goose|g3 f02 parrot|g3 f08 parrot|
g4 eec goose|g4 ee8 chicken|g4 f03 goose|g4 ee4 chicken|
fraud eec parrot|fraud efb parrot|fraud f07 parrot|fraud efd parrot|fraud ee4 parrot|fraud f05 parrot|
careless efb parrot|careless ee8 goose|careless f02 parrot|careless f08 parrot|careless f07 parrot|careless efd goose"""
SIMPLE_TRUTH = {
    "eec": "goose", "f03": "goose", "f05": "goose", "efb": "parrot", "f02": "parrot", "f08": "parrot",
    "f07": "parrot", "ee8": "chicken", "efd": "chicken", "ee4": "chicken",
}  # fmt: skip


def _task(short: str) -> str:
    return f"1231239876--5fac0d234ffb2f3b00893{short}"


def _rows(text: str) -> list[list[str]]:
    return [row.split() for row in text.replace("\n", "").split("|")]


@pytest.fixture
def toy_answers_df() -> pd.DataFrame:
    return pd.DataFrame(_rows(TOY), columns=["worker", "task", "label"])


@pytest.fixture
def toy_ground_truth_df() -> pd.Series:
    return pd.Series(["yes", "yes", "no", "yes", "no"], pd.Index([f"t{i}" for i in range(1, 6)], name="task"),
                     name="agg_label")  # fmt: skip


@pytest.fixture
def toy_gold_df() -> pd.Series:
    return pd.Series({"t1": "yes", "t2": "yes"})


@pytest.fixture
def toy_worker_init_error_zero_df() -> pd.DataFrame:
    index = pd.MultiIndex.from_product([[f"w{i}" for i in range(1, 6)], ["yes", "no"]], names=["worker", "label"])
    return pd.DataFrame(np.zeros((len(index), 2)), index=index, columns=["no", "yes"])


@pytest.fixture
def simple_answers_df() -> pd.DataFrame:
    rows = [[_W[w], _task(t), label] for w, t, label in _rows(SIMPLE)]
    return pd.DataFrame(rows, columns=["worker", "task", "label"])


@pytest.fixture
def simple_ground_truth() -> pd.Series:
    truth = pd.Series({_task(t): label for t, label in SIMPLE_TRUTH.items()}, name="agg_label")
    truth.index.name = "task"
    return truth


@pytest.fixture
def simple_gold_df() -> pd.Series:
    gold = pd.Series({_task("eec"): "goose", _task("efb"): "parrot", _task("ee8"): "chicken"})
    gold.index.name = "task"
    return gold


@pytest.fixture
def data_with_bool_labels() -> pd.DataFrame:
    rows = [["w1", "t1", True], ["w1", "t2", True], ["w2", "t1", True], ["w2", "t2", True],
            ["w3", "t1", False], ["w3", "t2", False]]  # fmt: skip
    return pd.DataFrame(rows, columns=["worker", "task", "label"])


@pytest.fixture
def bool_labels_ground_truth() -> pd.Series:
    return pd.Series([True, True], index=pd.Index(["t1", "t2"], name="task"), name="agg_label")
