"""Degenerate tables for every registered aggregator (issue 22, "Bad input"): a single worker, workers who share
no item, one class (K = 1). Each either raises an error naming ``annotations`` (or the class) and the offending
value, or returns the documented result (docs/crowd.md, "Degenerate tables")."""

from __future__ import annotations

import pytest

from trinity_lightning.crowd.registry import AGGREGATORS, get_aggregator

TABLES = {
    "single_worker": {"task": [1, 2, 3, 4], "worker": ["a"] * 4, "label": ["x", "y", "x", "y"]},
    "no_overlap": {"task": [1, 2, 3, 4], "worker": ["a", "a", "b", "b"], "label": ["x", "y", "x", "y"]},
    "one_class": {"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": ["x"] * 4},
}
NEEDS_TWO_CLASSES = "needs at least 2 classes, but the table has one, 'x'"
# (method, table) -> error message; every other pair returns each item's own labels (one vote, or one class)
ERRORS = {
    ("kos", "single_worker"): "annotations: KOS passes messages between workers who share an item, but no item",
    ("kos", "no_overlap"): "annotations: KOS passes messages between workers who share an item, but no item",
    ("kos", "one_class"): r"annotations: KOS is for binary labels \(2 classes\); the table has 1: \['x'\]",
    ("mmsr", "single_worker"): "annotations: M-MSR .* no two of the 1 worker\\(s\\) share an item .*'a'",
    ("mmsr", "no_overlap"): "annotations: M-MSR .* no two of the 2 worker\\(s\\) share an item .*'a'",
    ("mmsr", "one_class"): "annotations: M-MSR needs at least 2 distinct labels .* every annotation is 'x'",
    ("dawid_skene", "one_class"): NEEDS_TWO_CLASSES,
    ("ds", "one_class"): NEEDS_TWO_CLASSES,
    ("one_coin", "one_class"): NEEDS_TWO_CLASSES,
    ("glad", "one_class"): NEEDS_TWO_CLASSES,
}
METHODS = sorted(set(AGGREGATORS) - {"mbem"})  # MBEM needs a model's predictions (tests/crowd/test_aggregators.py)


@pytest.mark.parametrize("table", sorted(TABLES))
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_tables_raise_a_named_error_or_return_the_documented_result(method, table):
    frame = TABLES[table]
    model = get_aggregator(method)
    fit = (lambda: model.fit(frame, {1: "x", 3: "x"})) if "gold" in method else (lambda: model.fit(frame))
    if (method, table) in ERRORS:
        with pytest.raises(ValueError, match=ERRORS[(method, table)]):
            fit()
        return
    fit()
    expected = ["x", "y", "x", "y"] if table != "one_class" else ["x", "x"]
    assert list(model.table_.decode_labels(model.labels_)) == expected


def test_every_method_is_covered():
    assert {m for m, _ in ERRORS} <= set(METHODS) and {"mmsr", "kos", "mv", "ds", "glad", "mace", "wawa"} <= set(
        METHODS
    )
