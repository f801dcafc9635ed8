"""The benchmark's training recipe (issue 17, stop 14): early stopping on the free-running validation MSE with the
best weights restored, teacher forcing off, DLinear's published recipe, and the Forecaster's per-epoch lr decay."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from trinity_lightning.forecasting import (
    DLinear,
    Forecaster,
    RecurrentForecastNet,
    Repeat,
    TimeSeriesDataModule,
    collate_windows,
    evaluate,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import forecasting as bench


def _frame(kind: str, rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    if kind == "walk":  # the exchange rate's shape: Repeat is the best forecast
        return pd.DataFrame(rng.normal(size=(rows, 2)).cumsum(axis=0), columns=["a", "b"])
    t = np.arange(rows, dtype=float)
    return pd.DataFrame({"a": np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=rows), "b": np.cos(t / 7)})


def _dm(frame: pd.DataFrame, history: int, horizon: int, batch: int = 32) -> TimeSeriesDataModule:
    dm = TimeSeriesDataModule(frame, split=[0.7, 0.1, 0.2], history=history, horizon=horizon, batch_size=batch)
    dm.setup("fit")
    return dm


def test_fit_restores_the_best_validation_weights_and_trains_free_running():
    dm = _dm(_frame("sine", 400), history=24, horizon=12)
    net = RecurrentForecastNet(2, 0, "lstm", 4)
    # lr 1.0: validation jumps around, so the last weights are usually not the best ones
    model, record = bench.fit_forecaster(dm, net, seed=0, lr=1.0, max_steps=16, val_every=4, patience=2)
    assert model.hparams["teacher_forcing"] == 0.0  # the measured cause of the ETTh1 seed's drift
    values = [v for _, v in record["val_curve"]]
    assert len(values) >= 2 and record["best_val_mse"] == pytest.approx(min(values), abs=1e-5)
    assert record["best_step"] == record["val_curve"][values.index(min(values))][0]
    val = torch.utils.data.DataLoader(dm.windows("val"), batch_size=512, collate_fn=collate_windows)
    assert evaluate(model.network, val, 12).summary()["mse"] == pytest.approx(record["best_val_mse"], rel=1e-4)


def test_dlinear_with_a_published_recipe_learns_a_seasonal_series_in_three_epochs():
    # DLinear's published exchange-rate recipe at horizon 720 (lr 5e-3, batch 32, lr halved per epoch, early
    # stopping on validation) on a noisy daily sine: within 3 epochs it is near the noise floor (0.02 normalized).
    dm = _dm(_frame("sine", 700), history=96, horizon=24)
    recipe = {**bench.DLINEAR_EXCHANGE, **bench.DLINEAR_EXCHANGE["per_horizon"][720], "epochs": 3}
    assert (recipe["lr"], recipe["batch"], recipe["lr_decay"], recipe["patience"]) == (5e-3, 32, 0.5, 3)
    torch.manual_seed(0)
    model, record = bench.fit_forecaster(
        dm,
        DLinear(2, 96, 24),
        seed=0,
        lr=recipe["lr"],
        batch_size=recipe["batch"],
        lr_decay=recipe["lr_decay"],
        max_steps=recipe["epochs"] * -(-len(dm.train_dataset) // recipe["batch"]),
        val_every=10**9,
        patience=recipe["patience"],
    )
    test = dm.test_dataloader()
    ours = evaluate(model.network, test, 24).summary()["mse"]
    repeat = evaluate(Repeat(2), test, 24).summary()["mse"]
    assert len(record["val_curve"]) == 3  # once per epoch
    assert ours < 0.1 and ours < 0.2 * repeat, (ours, repeat)


def test_forecaster_lr_decay_halves_the_rate_each_epoch():
    import lightning.pytorch as pl

    with pytest.raises(ValueError, match="lr_decay"):
        Forecaster(lr_decay=0.0)
    dm = _dm(_frame("sine", 300), history=24, horizon=6, batch=64)
    model = Forecaster(network=DLinear(2, 24, 6), lr=1e-2, lr_decay=0.5)
    model.hparams.update(horizon=6)
    trainer = pl.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5**3)
    assert Forecaster(network=DLinear(2, 24, 6)).configure_optimizers().__class__.__name__ == "Adam"


def test_fit_records_train_vs_validation_curves_and_applies_instance_norm():
    from trinity_lightning.forecasting import InstanceNorm

    dm = _dm(_frame("walk", 400), history=24, horizon=12)
    model, record = bench.fit_forecaster(
        dm,
        RecurrentForecastNet(2, 0, "lstm", 4),
        seed=0,
        lr=1e-2,
        max_steps=8,
        val_every=4,
        patience=5,
        instance_norm="revin",
        train_probe_stride=4,
    )
    assert isinstance(model.network, InstanceNorm) and model.network.mode == "revin"
    # one (step, probe MSE on training windows, mean batch loss since the last validation) per validation
    assert [s for s, _, _ in record["train_curve"]] == [s for s, _ in record["val_curve"]] == [4, 8]
    assert all(p > 0 and b > 0 for _, p, b in record["train_curve"])
    probe = torch.utils.data.DataLoader(dm.windows("train", stride=4), batch_size=512, collate_fn=collate_windows)
    if record["best_step"] == 8:  # the probe at the last validation scored the weights that are kept
        assert evaluate(model.network, probe, 12).summary()["mse"] == pytest.approx(record["train_curve"][-1][1], 1e-4)


def test_fit_with_a_ridge_warm_started_highway_records_its_starting_validation_mse():
    from trinity_lightning.forecasting import Highway, RidgeLast

    dm = _dm(_frame("sine", 400), history=24, horizon=12)
    model, record = bench.fit_forecaster(
        dm, RecurrentForecastNet(2, 0, "lstm", 4), seed=0, lr=1e-2, max_steps=4, val_every=2, patience=5, highway=24
    )
    assert isinstance(model.network, Highway) and model.network.window == 24
    # the start is the ridge fit of the residual around the untrained network (Repeat: its head starts at zero) on
    # the training windows; on raw values, so unlike RidgeLast (values relative to the last one) it can use the level
    val = torch.utils.data.DataLoader(dm.windows("val"), batch_size=512, collate_fn=collate_windows)
    train = torch.utils.data.DataLoader(dm.windows("train"), batch_size=512, collate_fn=collate_windows)
    around_repeat = Highway(Repeat(2), 24, 12).fit_ridge(train)
    assert record["start_val_mse"] == pytest.approx(evaluate(around_repeat, val, 12).summary()["mse"], rel=1e-3)
    relative = evaluate(RidgeLast(2, 24, 12, alpha=1.0).fit(train), val, 12).summary()["mse"]
    assert record["start_val_mse"] < relative  # this sine has a fixed level: the raw values' ridge uses it
    assert record["start_val_mse"] < evaluate(Repeat(2), val, 12).summary()["mse"] / 2
    frozen, _ = bench.fit_forecaster(
        dm,
        RecurrentForecastNet(2, 0, "lstm", 4),
        0,
        1e-2,
        max_steps=2,
        val_every=2,
        patience=5,
        highway=24,
        highway_lr=0.0,
    )
    assert torch.allclose(
        frozen.network.linear.weight, around_repeat.linear.weight, atol=1e-4
    )  # frozen at the ridge fit


def test_selection_candidates_and_compact_curves():
    assert bench.parse_candidate("base") == {}
    assert bench.parse_candidate("hw=96+hwlr=0+norm=last+hist=336") == {
        "highway": 96,
        "highway_lr": 0.0,
        "instance_norm": "last",
        "history": 336,
    }
    assert bench.parse_candidate("norm=none+hw=0") == {"instance_norm": None, "highway": None}
    with pytest.raises(ValueError, match="unknown override 'lr=1'"):
        bench.parse_candidate("hw=96+lr=1")
    assert bench.significant({"a": [1.23456789, 2], "b": {"c": [0.000123456789]}}) == {
        "a": [1.23457, 2],
        "b": {"c": [0.000123457]},
    }


def test_channel_independent_candidates_build_one_shared_univariate_network():
    assert bench.parse_candidate("ci=1+dec=direct+norm=revin") == {
        "channel_independent": True,
        "decoder": "direct",
        "instance_norm": "revin",
    }
    with pytest.raises(ValueError, match="dec='tree'"):
        bench.parse_candidate("ci=1+dec=tree")
    cfg = {"rank": 2, "horizons": [12, 24], "channel_independent": True}
    net = bench.recurrent_net(cfg, "tlstm", 4, n_targets=7, n_covariates=0)
    assert (net.n_targets, net.decoder) == (1, "recurrent")
    direct = bench.recurrent_net({**cfg, "decoder": "direct"}, "lstm", 4, n_targets=7, n_covariates=0)
    assert (direct.n_targets, direct.decoder, direct.horizon) == (1, "direct", 24)
    # LSTM matched to the channel-independent TLSTM's (smaller) parameter count
    target = bench.count_parameters(net)
    hidden = bench.matched_hidden("lstm", 7, 0, target, cfg)
    lstm = bench.count_parameters(bench.recurrent_net(cfg, "lstm", hidden, 7, 0))
    assert abs(lstm - target) <= abs(
        bench.count_parameters(bench.recurrent_net(cfg, "lstm", hidden + 1, 7, 0)) - target
    )
    # fit_forecaster wraps the univariate network; the forecast covers every channel
    dm = _dm(_frame("sine", 300), history=16, horizon=8)
    model, record = bench.fit_forecaster(
        dm,
        bench.recurrent_net({"rank": 2, "channel_independent": True}, "lstm", 4, 2, 0),
        seed=0,
        lr=1e-2,
        max_steps=4,
        val_every=2,
        patience=2,
        channel_independent=True,
    )
    assert model.channel_independent_module is not None and len(record["val_curve"]) == 2
    val = torch.utils.data.DataLoader(dm.windows("val"), batch_size=512, collate_fn=collate_windows)
    assert evaluate(model.network, val, 8).compute()["mse"].shape == (8,)


def test_gated_highway_fit_offers_the_ridge_start_as_step_0_and_fits_on_every_window(tmp_path):
    import json

    from trinity_lightning.forecasting import Highway

    dm = TimeSeriesDataModule(
        _frame("sine", 400), split=[0.7, 0.1, 0.2], history=24, horizon=12, batch_size=32, train_stride=4
    )
    dm.setup("fit")
    kwargs = dict(seed=0, lr=1e-2, max_steps=4, val_every=2, patience=5, highway=24, highway_lr=0.0)
    model, record = bench.fit_forecaster(
        dm, RecurrentForecastNet(2, 0, "lstm", 4), highway_gate=True, highway_fit_stride=1, **kwargs
    )
    highway = model.network
    assert isinstance(highway, Highway) and highway.gate is not None
    # step 0 (the ridge forecast itself: the gate starts at 0) is the first point of the curve and a candidate
    assert record["val_curve"][0] == [0, pytest.approx(record["start_val_mse"], abs=1e-5)]
    assert record["best_val_mse"] <= record["start_val_mse"] + 1e-6
    assert "gate" in record and (record["best_step"] != 0 or record["gate"] == 0.0)
    # the map is the ridge of every training window (highway_fit_stride=1), not only the training batches' (every
    # 4th): frozen (highway_lr=0), it equals a fit on every window around a zero network
    every = torch.utils.data.DataLoader(dm.windows("train", stride=1), batch_size=512, collate_fn=collate_windows)
    strided = torch.utils.data.DataLoader(dm.windows("train"), batch_size=512, collate_fn=collate_windows)

    class Zeros(torch.nn.Module):
        def forward(self, history, future_covariates, horizon):
            return history.new_zeros(history.shape[0], horizon, 2)

    on_all = Highway(Zeros(), 24, 12).fit_ridge(every)
    on_strided = Highway(Zeros(), 24, 12).fit_ridge(strided)
    assert torch.allclose(highway.linear.weight, on_all.linear.weight, atol=1e-4)
    assert not torch.allclose(highway.linear.weight, on_strided.linear.weight, atol=1e-4)
    # beside_runs: single-seed run folders -> per-seed records with the test MSE, and a per-cell summary
    for seed, test in ((0, 0.5), (1, 0.7)):
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        section = {
            "recurrent_horizon": 12,
            "highway_recurrent": 24,
            "training": {"tlstm": {str(seed): {"best_val_mse": 1.0 + seed, "best_step": 25 * seed, "gate": 0.1}}},
            "models": {"tlstm": {"12": {"mse": test, "per_seed": [test]}}},
        }
        (folder / "forecasting.json").write_text(json.dumps({"details": {"sections": {"etth1": section}}}))
    out = bench.beside_runs([f"g={tmp_path / 's0'}", f"g={tmp_path / 's1'}"], "the rule")
    assert out["rule"] == "the rule" and out["runs"]["g"]["cells"]["tlstm"]["1"]["test_mse_12"] == 0.7
    assert out["summary"]["g"]["tlstm"] == {
        "seeds": ["0", "1"],
        "best_val_mse_mean": 1.5,
        "test_mse_mean": 0.6,
        "chosen_steps": [0, 25],
        "gates": [0.1, 0.1],
    }
    with pytest.raises(SystemExit, match="NAME=DIR"):
        bench.beside_runs(["no-equals-sign"], None)
