"""``benchmarks/active_ner.py``: the dev-patience budget rule shared by every active-learning round and the
full-data reference, and the recorder that reads test once per point, at the best dev epoch's weights."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import active_ner  # noqa: E402


def test_patience_rule_stops_after_patience_epochs_without_a_strict_improvement() -> None:
    due = active_ner.patience_due
    # best 72.7 at index 2, then 2 epochs without a strict improvement (a tie is no improvement)
    assert due([70.0, 71.0, 72.7, 72.7, 72.0], steps=100, patience=2, max_epochs=30, min_steps=0)
    assert not due([70.0, 71.0, 72.7, 72.7], steps=100, patience=2, max_epochs=30, min_steps=0)
    # the old reference's dev curve: patience 2 would have stopped it at its 8th epoch (67.1), patience 3 goes on
    old_reference = [0.0, 45.7, 53.4, 61.0, 61.7, 67.1, 65.9, 65.2]
    assert due(old_reference, steps=999, patience=2, max_epochs=30, min_steps=0)
    assert not due(old_reference, steps=999, patience=3, max_epochs=30, min_steps=0)
    # at most max_epochs; never before min_steps optimizer steps
    assert due([1.0, 2.0, 3.0], steps=100, patience=3, max_epochs=3, min_steps=0)
    assert not due([5.0, 1.0, 1.0, 1.0, 1.0], steps=29, patience=3, max_epochs=3, min_steps=30)
    assert not due([], steps=100, patience=1, max_epochs=1, min_steps=0)


def test_dev_patience_reads_only_the_epochs_of_the_labelled_set_in_use() -> None:
    rows = [{"words": 10, "dev_f1": f} for f in (40.0, 50.0, 45.0)] + [{"words": 25, "dev_f1": f} for f in (30.0, 20.0)]
    rule = active_ner.DevPatience(SimpleNamespace(rows=rows), patience=2, max_epochs=20, min_steps=0)
    assert not rule.due(epochs=2, steps=50)  # the round at 25 words: best 30.0, one epoch without improvement
    rows.append({"words": 25, "dev_f1": 29.0})
    assert rule.due(epochs=3, steps=60)
    with pytest.raises(ValueError, match="patience"):
        active_ner.DevPatience(SimpleNamespace(rows=[]), patience=0, max_epochs=20, min_steps=0)


def test_the_full_reference_stops_by_the_same_rule() -> None:
    rows = [{"words": 100, "dev_f1": f} for f in (60.0, 70.0, 69.0)]
    rule = active_ner.DevPatience(SimpleNamespace(rows=rows), patience=2, max_epochs=20, min_steps=0)
    stop = rule.callback()
    trainer = SimpleNamespace(current_epoch=2, global_step=96, should_stop=False)
    stop.on_train_epoch_end(trainer, None)
    assert not trainer.should_stop
    rows.append({"words": 100, "dev_f1": 68.0})
    trainer.current_epoch = 3
    stop.on_train_epoch_end(trainer, None)
    assert trainer.should_stop


class _Weight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_recorder_scores_test_once_per_point_with_the_best_dev_weights_and_restores_the_current_ones() -> None:
    dm = SimpleNamespace(labelled_cost=10)
    record = active_ner._dev_test_recorder(dm)
    seen: list[float] = []

    def fake_test(module: nn.Module) -> float:  # "test F1" = the weight it is read at
        seen.append(float(module.w))
        return float(module.w)

    record._test_f1 = fake_test
    module = _Weight()
    trainer = SimpleNamespace(current_epoch=0, callback_metrics={})
    for epoch, (w, dev) in enumerate([(1.0, 0.50), (2.0, 0.60), (3.0, 0.55)]):  # point 1: best dev at w = 2
        module.w.data.fill_(w)
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val_f1": torch.tensor(dev)}
        record.on_validation_end(trainer, module)
    assert seen == []  # nothing read on test while the point trains
    dm.labelled_cost = 25  # the round queried: the next validation belongs to point 2
    module.w.data.fill_(4.0)
    trainer.current_epoch, trainer.callback_metrics = 3, {"val_f1": torch.tensor(0.40)}
    record.on_validation_end(trainer, module)
    assert seen == [2.0] and float(module.w) == 4.0  # point 1's best weights read once, training weights restored
    record.on_fit_end(trainer, module)
    assert seen == [2.0, 4.0]
    chosen = active_ner._selected(record.rows)
    assert [(r["words"], r["epoch"], r["test_f1"]) for r in chosen] == [(10, 1, 2.0), (25, 3, 4.0)]
    assert [r["test_f1"] for r in record.rows] == [None, 2.0, None, 4.0]
