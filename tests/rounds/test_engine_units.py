"""predict_pool, budgets and stopping, the curve writer, RNG capture: the round engine's pieces on their own."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from trinity_lightning.rounds import (
    AtLeast,
    MaxRounds,
    MetricPlateau,
    Schedule,
    capture_rng,
    predict_pool,
    resolve_budget,
    restore_rng,
    write_curve,
)
from trinity_lightning.rounds.schedule import check_budget, stop_reason


def _loader(data):
    return lambda idx: [data[torch.as_tensor(idx[i : i + 3])] for i in range(0, len(idx), 3)]


def test_predict_pool_full_topk_and_mode_restored():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    data = torch.randn(10, 3)
    net.train()
    probs = predict_pool(net, [9, 2, 5, 0], _loader(data))
    assert net.training  # restored
    assert torch.allclose(probs, torch.softmax(net.eval()(data[[9, 2, 5, 0]]), -1))  # eval mode: no dropout
    net.train()
    score = lambda model, x: model(x)[:, 0]  # noqa: E731
    top = predict_pool(net, range(10), _loader(data), score, top_k=3)
    expected = net.eval()(data)[:, 0].argsort(descending=True)[:3].tolist()
    assert top.indices == expected

    def broken(model, x):
        assert not model.training
        raise RuntimeError("bad batch")

    net.train()
    with pytest.raises(RuntimeError, match="bad batch"):
        predict_pool(net, range(10), _loader(data), broken)
    assert net.training  # restored on error too
    with pytest.raises(ValueError, match="yielded 9 items for 10"):
        predict_pool(net, range(10), lambda idx: [data[:9]])


def test_budgets_schedule_and_stopping():
    assert resolve_budget(0.25, 50905) == 12727 and resolve_budget(8145, 50905) == 8145
    for bad in (0, -1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="budget: expected a positive count or a fraction"):
            check_budget(bad, "budget")
    assert Schedule(2, 5).due(2, 5) and not Schedule(2, 5).due(2, 4)
    with pytest.raises(ValueError, match="epochs_per_round"):
        Schedule(0)
    rows = [{"round": r, "labelled": 10 * r, "val_acc": a} for r, a in enumerate([0.5, 0.6, 0.6, 0.6])]
    assert stop_reason([MaxRounds(5), AtLeast("labelled", 40)], rows) is None
    assert stop_reason([MaxRounds(3)], rows) == "MaxRounds(rounds=3)"
    assert MetricPlateau("val_acc", patience=2).should_stop(rows)
    assert not MetricPlateau("val_acc", patience=2, mode="min").should_stop(rows[:2])


def test_curve_writer_is_atomic_and_keeps_every_column(tmp_path):
    path = tmp_path / "curve.csv"
    write_curve(path, [{"round": 0, "val/acc": 0.5}, {"round": 1, "val/acc": 0.7, "extra": 3}])
    assert list(csv.DictReader(path.open())) == [
        {"round": "0", "val/acc": "0.5", "extra": ""},
        {"round": "1", "val/acc": "0.7", "extra": "3"},
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["curve.csv"]  # no temp file left


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    state = capture_rng()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))  # noqa: NPY002
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected  # noqa: NPY002


def test_active_learning_budget_as_a_fraction(tmp_path):
    """Issue 14 item 22: budgets as fractions of the pool's total cost, not counts tuned to one corpus."""
    from trinity_lightning.active import ActiveLearning

    from ..active._helpers import datamodule, mlp
    from .test_user_module import _trainer

    al = ActiveLearning("entropy", query_size=0.05, budget=0.15)  # 12 and 36 of 240 examples
    _trainer(tmp_path, al).fit(mlp(), datamodule=datamodule())
    assert [row["labelled"] for row in al.curve] == [12, 24, 36]


def test_predict_pool_runs_under_the_trainers_precision_plugin():
    import lightning.pytorch as pl

    trainer = pl.Trainer(accelerator="cpu", precision="bf16-mixed", logger=False, enable_progress_bar=False)
    net = nn.Linear(3, 2)
    seen = []

    def forward(model, x):
        out = model(x)
        seen.append(out.dtype)
        return out.float()

    data = torch.randn(6, 3)
    out = predict_pool(net, range(6), _loader(data), forward, trainer=trainer)
    assert seen == [torch.bfloat16, torch.bfloat16] and out.dtype == torch.float32 and out.shape == (6, 2)
