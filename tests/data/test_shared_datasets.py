"""The shared real datasets load with the counts their SOURCE.txt states (skipped when absent)."""

from __future__ import annotations

from tests.conftest import require_dataset
from trinity_lightning.data import crowd_datasets, load_conll2003, load_crowd, load_fashion_mnist, load_mnist


def test_mnist_and_fashion_counts():
    require_dataset("mnist")
    test = load_mnist("test")
    assert test.images.shape == (10000, 28, 28) and test.labels.max() == 9
    require_dataset("fashion_mnist")
    assert load_fashion_mnist("test").images.shape == (10000, 28, 28)


def test_conll_counts():
    require_dataset("conll2003")
    assert len(load_conll2003("dev")) == 3250


def test_crowd_discovery():
    require_dataset("crowd_rte")
    names = crowd_datasets()
    assert {"crowd_rte", "crowd_temp", "crowd_bluebirds", "crowd_dog"} <= set(names)
    answers, gold = load_crowd("crowd_rte")
    assert list(answers.columns) == ["task", "worker", "label"] and len(answers) == 8000 and len(gold) == 800
