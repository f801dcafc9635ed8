"""Forecaster: recipes run through ``trinity fit``; decoders, teacher forcing, metrics, original units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from trinity_lightning.cli import run_lightning
from trinity_lightning.forecasting import (
    DLinear,
    Forecaster,
    GenzDataModule,
    HorizonMetrics,
    RecurrentForecastNet,
    RidgeLast,
    TimeSeriesDataModule,
    evaluate,
    genz_dynamics,
)

ROOT = Path(__file__).resolve().parents[2]


def _tiny_recipe(name: str, tmp_path: Path, data: dict) -> Path:
    recipe = yaml.safe_load((ROOT / "recipes" / name).read_text())
    recipe["trainer"].update(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    recipe["model"]["init_args"].update(hidden_size=4, rank=2)
    recipe["data"]["init_args"].update(data)
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    return config


def test_genz_recipe_fits_through_the_cli(tmp_path):
    config = _tiny_recipe("forecast_genz.yaml", tmp_path, {"n_sequences": 80, "history": 6, "horizon": 4})
    cli = run_lightning(["fit", "--config", str(config)])
    assert isinstance(cli.model, Forecaster) and isinstance(cli.datamodule, GenzDataModule)
    assert cli.model.hparams["cell"] == "tlstm" and cli.model.horizon == 4
    assert {"train_loss", "val_mse"} <= set(cli.trainer.callback_metrics)


def test_ett_recipe_fits_through_the_cli(tmp_path):
    t = np.arange(600, dtype=float)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=600, freq="h"), "OT": np.sin(t / 6)})
    frame.to_csv(tmp_path / "tiny.csv", index=False)
    data = {"source": str(tmp_path / "tiny.csv"), "split": [0.6, 0.2, 0.2], "history": 12, "horizon": 6}
    config = _tiny_recipe("forecast_ett.yaml", tmp_path, data)
    recipe = yaml.safe_load((ROOT / "recipes" / "forecast_ett.yaml").read_text())
    assert (
        recipe["data"]["init_args"]["source"] == "ett/ETTh1.csv" and recipe["data"]["init_args"]["split"] == "ett_hour"
    )
    cli = run_lightning(["fit", "--config", str(config)])
    assert isinstance(cli.datamodule, TimeSeriesDataModule)
    assert torch.isfinite(cli.trainer.callback_metrics["val_mse"])


def _sine_datamodule(**kwargs) -> TimeSeriesDataModule:
    t = np.arange(400, dtype=float)
    frame = pd.DataFrame({"y": 10 + 3 * np.sin(t / 5), "x": np.cos(t / 5)})
    return TimeSeriesDataModule(frame, targets=["y"], covariates=["x"], split=[0.6, 0.2, 0.2], **kwargs)


@pytest.mark.slow  # ~10 s idle, over a minute on a loaded 2-core box
@pytest.mark.parametrize("decoder", ["recurrent", "direct"])
def test_forecaster_learns_a_sine_and_predicts_in_original_units(decoder):
    import lightning.pytorch as pl

    pl.seed_everything(0, verbose=False)
    dm = _sine_datamodule(history=16, horizon=8, batch_size=32)
    model = Forecaster(cell="tlstm", hidden_size=8, rank=2, decoder=decoder, lr=1e-2, report_horizons=[4])
    trainer = pl.Trainer(
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
    )
    trainer.fit(model, datamodule=dm)
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert {"test_mse", "test_mae", "test_rmse", "test_mse@4"} <= set(metrics)
    assert metrics["test_rmse"] == pytest.approx(metrics["test_mse"] ** 0.5, rel=1e-5)
    repeat = evaluate(
        __import__("trinity_lightning.forecasting", fromlist=["Repeat"]).Repeat(1), dm.test_dataloader(), 8
    )
    assert metrics["test_mse"] < 0.5 * repeat.summary()["mse"]  # learnt the oscillation
    assert model.test_curves["mse"].shape == (8,)
    preds = torch.cat(trainer.predict(model, datamodule=dm))
    assert preds.shape == (len(dm.test_dataset), 8, 1)
    assert 6.0 < float(preds.mean()) < 14.0  # original units (the series is 10 +- 3), not normalized


def test_an_untrained_forecaster_is_repeat_in_original_units():
    import lightning.pytorch as pl

    dm = _sine_datamodule(history=16, horizon=8, batch_size=64)
    model = Forecaster(cell="tlstm", hidden_size=4, rank=2)  # zero-initialised head: forecasts the last value
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    preds = torch.cat(trainer.predict(model, datamodule=dm))
    test = dm.test_dataset
    raw = torch.from_numpy(dm.prepare_series().values)
    expected = torch.stack([raw[test.start + i + 15, :1] for i in range(len(test))])
    assert preds.shape == (len(test), 8, 1)
    assert torch.allclose(preds, expected.unsqueeze(1).expand(-1, 8, -1), atol=1e-4)


def test_teacher_forcing_schedule_and_truth_feeding():
    model = Forecaster(
        cell="lstm", hidden_size=4, horizon=5, n_targets=1, teacher_forcing=0.8, teacher_forcing_epochs=4
    )
    assert model.teacher_forcing_probability() == 0.0  # no trainer attached: inference never uses the truth
    model._trainer = type("T", (), {"current_epoch": 2})()  # type: ignore[assignment]
    assert model.teacher_forcing_probability() == pytest.approx(0.4)
    net = RecurrentForecastNet(1, 0, "ttrnn", 4, lags=2, order=2, rank=2)
    torch.nn.init.normal_(net.head.weight)
    history, empty, target = torch.randn(2, 6, 1), torch.zeros(2, 5, 0), torch.randn(2, 5, 1)
    free = net(history, empty, 5)
    forced = net(history, empty, 5, target=target, teacher_forcing=1.0)
    assert torch.allclose(free[:, 0], forced[:, 0]) and not torch.allclose(free[:, 1:], forced[:, 1:])


def test_horizon_metrics_match_a_direct_computation():
    preds, target = torch.randn(7, 4, 3), torch.randn(7, 4, 3)
    metrics = HorizonMetrics(4)
    metrics.update(preds[:3], target[:3])
    metrics.update(preds[3:], target[3:])
    curves = metrics.compute()
    assert torch.allclose(curves["mse"], ((preds - target) ** 2).mean(dim=(0, 2)), atol=1e-6)
    assert torch.allclose(curves["mae"], (preds - target).abs().mean(dim=(0, 2)), atol=1e-6)
    assert metrics.summary(2)["mse"] == pytest.approx(float(((preds - target)[:, :2] ** 2).mean()), rel=1e-5)


def test_ridge_and_dlinear_baselines():
    dm = _sine_datamodule(history=24, horizon=6)
    dm.setup("fit")
    ridge = RidgeLast(1, lags=24, horizon=6, alpha=1e-4).fit(dm.train_dataloader())
    assert evaluate(ridge, dm.test_dataloader(), 6).summary()["mse"] < 1e-3  # a sine is linear in its past
    with pytest.raises(ValueError, match="longer than the fitted horizon"):
        ridge(torch.zeros(1, 24, 2), torch.zeros(1, 7, 1), 7)
    linear = DLinear(1, history=24, horizon=6)
    assert linear(torch.ones(2, 24, 2), torch.zeros(2, 6, 1), 6).allclose(torch.ones(2, 6, 1), atol=1e-5)


def test_genz_dynamics_and_bad_arguments():
    x = genz_dynamics(3, 10, family="product_peak", c=1.0, seed=1)
    assert torch.allclose(x[:, 1], 1.0 / (1.0 + (x[:, 0] - 0.5) ** 2), atol=1e-6)
    with pytest.raises(ValueError, match="family: got 'nope'"):
        genz_dynamics(3, 10, family="nope")
    with pytest.raises(ValueError, match="cell: got 'gru'"):
        Forecaster(cell="gru", horizon=3, n_targets=1)
    with pytest.raises(ValueError, match="decoder='direct' needs horizon"):
        RecurrentForecastNet(1, decoder="direct")


@pytest.mark.parametrize("mode", ["revin", "last"])
def test_instance_norm_makes_any_network_shift_equivariant_and_denormalises(mode):
    from trinity_lightning.forecasting import InstanceNorm

    torch.manual_seed(0)
    net = RecurrentForecastNet(2, 1, "tlstm", 4, rank=2)
    torch.nn.init.normal_(net.head.weight, std=0.5)
    wrapped = InstanceNorm(net, mode)
    history, future, target = torch.randn(3, 12, 3), torch.randn(3, 5, 1), torch.randn(3, 5, 2)
    shift, scale = torch.tensor([5.0, -3.0, 20.0]), torch.tensor([2.0, 0.5, 3.0]) if mode == "revin" else 1.0
    out = wrapped(history, future, 5)
    moved = wrapped(history * scale + shift, future * scale[2:] + shift[2:] if mode == "revin" else future + 20, 5)
    # a level shift (and, with revin, a scale) of the window moves the forecast with it; the bare network does not
    assert torch.allclose(moved, out * scale[:2] + shift[:2] if mode == "revin" else out + shift[:2], atol=1e-4)
    assert not torch.allclose(net(history + shift, future + 20, 5), net(history, future, 5) + shift[:2], atol=1e-2)
    # the target fed back for teacher forcing is normalised like the history's targets
    forced = wrapped(history, future, 5, target=target, teacher_forcing=1.0)
    forced_moved = wrapped(history + shift, future + shift[2:], 5, target=target + shift[:2], teacher_forcing=1.0)
    assert torch.allclose(forced_moved, forced + shift[:2], atol=1e-4)
    # an untrained recurrent forecaster (zero head) stays the Repeat forecast in the caller's units
    torch.nn.init.zeros_(net.head.weight)
    assert torch.allclose(wrapped(history, future, 5), history[:, -1:, :2].expand(-1, 5, -1), atol=1e-5)


def test_forecaster_instance_norm_option_wraps_built_and_given_networks():
    import lightning.pytorch as pl

    from trinity_lightning.forecasting import InstanceNorm

    built = Forecaster(cell="lstm", hidden_size=4, horizon=6, n_targets=1, instance_norm="revin")
    assert isinstance(built.network, InstanceNorm) and isinstance(built.network.network, RecurrentForecastNet)
    given = Forecaster(network=DLinear(1, 16, 8), instance_norm="last")
    assert isinstance(given.network, InstanceNorm) and given.network.mode == "last"
    assert not isinstance(Forecaster(network=DLinear(1, 16, 8)).network, InstanceNorm)  # off by default
    with pytest.raises(ValueError, match="instance_norm"):
        Forecaster(cell="lstm", instance_norm="batch")
    # it trains through Lightning (the recurrent decoder receives the normalised target) and predicts original units
    pl.seed_everything(0, verbose=False)
    dm = _sine_datamodule(history=16, horizon=8, batch_size=32)
    model = Forecaster(cell="tlstm", hidden_size=4, rank=2, instance_norm="revin", teacher_forcing=0.5)
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(model, datamodule=dm)
    assert isinstance(model.network, InstanceNorm)
    preds = torch.cat(trainer.predict(model, datamodule=dm))
    assert preds.shape == (len(dm.test_dataset), 8, 1) and 6.0 < float(preds.mean()) < 14.0


class _Zero(torch.nn.Module):
    """A network whose forecast is zero (the recurrent output switched off)."""

    def forward(self, history, future_covariates, horizon, *args, **kwargs):
        n_targets = history.shape[-1] - future_covariates.shape[-1]
        return history.new_zeros(history.shape[0], horizon, n_targets)


def test_highway_adds_a_channel_shared_linear_map_of_the_last_window():
    from trinity_lightning.forecasting import Highway

    torch.manual_seed(0)
    history, future = torch.randn(3, 10, 3), torch.randn(3, 5, 1)  # 2 targets, 1 covariate
    net = RecurrentForecastNet(2, 1, "tlstm", 4, rank=2)
    torch.nn.init.normal_(net.head.weight, std=0.5)
    highway = Highway(net, window=4, horizon=5)
    # the map starts at zero: the forecast is the network's own
    assert torch.allclose(highway(history, future, 5), net(history, future, 5))
    torch.nn.init.normal_(highway.linear.weight)
    torch.nn.init.normal_(highway.linear.bias)
    # with the recurrent output zeroed the forecast equals the linear map of each target's last 4 values
    zeroed = Highway(_Zero(), window=4, horizon=5)
    zeroed.linear.load_state_dict(highway.linear.state_dict())
    w, b = highway.linear.weight, highway.linear.bias
    expected = torch.einsum("btc,ht->bhc", history[:, -4:, :2], w) + b.view(1, 5, 1)
    assert torch.allclose(zeroed(history, future, 5), expected, atol=1e-5)
    assert torch.allclose(zeroed(history, future, 3), expected[:, :3], atol=1e-5)  # shorter horizons: the first steps
    # with the recurrent output on, the network's forecast plus the same map; teacher-forcing arguments pass through
    assert torch.allclose(highway(history, future, 5), net(history, future, 5) + expected, atol=1e-5)
    target = torch.randn(3, 5, 2)
    forced = highway(history, future, 5, target=target, teacher_forcing=1.0)
    assert torch.allclose(forced, net(history, future, 5, target=target, teacher_forcing=1.0) + expected, atol=1e-5)
    with pytest.raises(ValueError, match="window=12"):
        Highway(net, window=12, horizon=5)(history, future, 5)
    with pytest.raises(ValueError, match="longer than the highway"):
        highway(history, torch.randn(3, 6, 1), 6)
    with pytest.raises(ValueError, match="at least 1"):
        Highway(net, window=0, horizon=5)


def test_highway_fit_ridge_is_the_closed_form_ridge_of_the_residual():
    from trinity_lightning.forecasting import Highway, Repeat

    t = torch.arange(60.0)
    windows = [(t[i : i + 8].view(1, 8, 1), t[:0].view(1, 0, 0), t[i + 8 : i + 12].view(1, 4, 1)) for i in range(40)]
    # a linear trend: around Repeat the residual is exactly (1, 2, 3, 4) for every window; around zero it is a linear
    # function of the last values, which the ridge recovers (tiny penalty)
    for base in (Repeat(1), _Zero()):
        highway = Highway(base, window=4, horizon=4).fit_ridge(windows, alpha=1e-6)
        forecast = highway(t[50:58].view(1, 8, 1), t[:0].view(1, 0, 0), 4).flatten()
        assert torch.allclose(forecast, torch.tensor([58.0, 59.0, 60.0, 61.0]), atol=1e-2)
    # the same windows as RidgeLast around Repeat, and the same forecast at the same penalty
    around_repeat = Highway(Repeat(1), window=4, horizon=4).fit_ridge(windows, alpha=1e-6)
    ridge = RidgeLast(1, lags=4, horizon=4, alpha=1e-6).fit(windows)
    probe = (torch.randn(2, 8, 1), torch.zeros(2, 4, 0))
    assert torch.allclose(around_repeat(*probe, 4), ridge(*probe, 4), atol=1e-3)
    with pytest.raises(ValueError, match="no training windows"):
        Highway(Repeat(1), window=4, horizon=4).fit_ridge([])


def test_highway_gate_starts_from_exactly_the_ridge_forecast_and_lets_the_network_in_by_training():
    import lightning.pytorch as pl

    from trinity_lightning.forecasting import Highway

    torch.manual_seed(0)
    t = torch.arange(80.0) / 10
    series = torch.sin(t).view(-1, 1)
    windows = [
        (series[i : i + 12].view(1, 12, 1), series[:0].view(1, 0, 0), series[i + 12 : i + 16].view(1, 4, 1))
        for i in range(50)
    ]
    net = RecurrentForecastNet(1, 0, "tlstm", 4, rank=2, decoder="direct", horizon=4)
    torch.nn.init.normal_(net.head.weight, std=1.0)  # an untrained network with a large, input-dependent output
    ridge = RidgeLast(1, lags=6, horizon=4, alpha=1e-6).fit(windows)  # a tiny penalty: the same function class
    gated = Highway(net, window=6, horizon=4, gate=True).fit_ridge(windows, alpha=1e-6)
    plain = Highway(net, window=6, horizon=4).fit_ridge(windows, alpha=1e-6)
    probe = (torch.stack([series[55 + i : 67 + i] for i in range(5)]), torch.zeros(5, 4, 0))  # sine windows
    # the gate starts at 0: the forecast is the ridge fit (RidgeLast's, which parametrises the same linear model
    # relative to the last value), and the network's part is exactly zero; without the gate the untrained output
    # stays in
    assert float(gated.gate) == 0.0 and torch.equal(gated.network_forecast(*probe, 4), torch.zeros(5, 4, 1))
    assert torch.allclose(gated(*probe, 4), gated.linear_forecast(*probe, 4))
    assert torch.allclose(gated(*probe, 4), ridge(*probe, 4), atol=1e-3)
    assert not torch.allclose(plain(*probe, 4), ridge(*probe, 4), atol=1e-2)
    # Forecaster(highway_gate=True) builds it; the gate trains (the network's gradient is zero only at step 0)
    model = Forecaster(
        cell="tlstm",
        hidden_size=4,
        rank=2,
        decoder="direct",
        horizon=4,
        n_targets=1,
        highway=6,
        highway_gate=True,
        highway_lr=0.0,
        lr=1e-2,
    )
    assert isinstance(model.network, Highway) and model.network.gate is not None
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_steps=5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        limit_val_batches=0,
    )
    trainer.fit(
        model, train_dataloaders=torch.utils.data.DataLoader([(h[0], c[0], y[0]) for h, c, y in windows], batch_size=10)
    )
    assert float(model.network.gate) != 0.0
    assert torch.count_nonzero(model.network.linear.weight) == 0  # highway_lr=0: the map stays where it was
    # a checkpoint round trip keeps the gate
    again = Forecaster(**model.hparams)
    again.load_state_dict(model.state_dict())
    assert float(again.network.gate) == float(model.network.gate)
    with pytest.raises(ValueError, match="highway_gate: needs highway"):
        Forecaster(cell="lstm", hidden_size=4, horizon=4, n_targets=1, highway_gate=True)
    with pytest.raises(ValueError, match="highway_gate: expected True or False"):
        Forecaster(cell="lstm", hidden_size=4, horizon=4, n_targets=1, highway=6, highway_gate=1)  # type: ignore[arg-type]


def test_forecaster_highway_option_wraps_built_and_given_networks_inside_instance_norm():
    import lightning.pytorch as pl

    from trinity_lightning.forecasting import Highway, InstanceNorm, Repeat

    built = Forecaster(cell="lstm", hidden_size=4, horizon=6, n_targets=1, highway=8)
    assert isinstance(built.network, Highway) and isinstance(built.network.network, RecurrentForecastNet)
    assert built.highway_module is built.network and built.network.linear.out_features == 6
    given = Forecaster(network=Repeat(1), horizon=6, highway=8, instance_norm="last")
    assert isinstance(given.network, InstanceNorm) and isinstance(given.network.network, Highway)
    assert isinstance(given.highway_module.network, Repeat)
    assert Forecaster(network=Repeat(1), horizon=6).highway_module is None  # off by default
    with pytest.raises(ValueError, match="needs horizon"):
        Forecaster(network=Repeat(1), highway=8)
    with pytest.raises(ValueError, match="no highway"):
        Forecaster(network=Repeat(1), horizon=6).fit_highway([])
    # fit_highway in the instance-normalised units: around Repeat on a trend, the forecast continues it whatever
    # the window's level
    t = torch.arange(200.0)
    windows = [(t[i : i + 8].view(1, 8, 1), t[:0].view(1, 0, 0), t[i + 8 : i + 14].view(1, 6, 1)) for i in range(30)]
    given.fit_highway(windows, alpha=1e-6)
    far = given(t[150:158].view(1, 8, 1), t[:0].view(1, 0, 0), 6).flatten()
    assert torch.allclose(far, t[158:164], atol=1e-2)
    # a built recurrent network with a highway trains through Lightning (teacher forcing reaches the cell)
    pl.seed_everything(0, verbose=False)
    dm = _sine_datamodule(history=16, horizon=8, batch_size=32)
    model = Forecaster(cell="tlstm", hidden_size=4, rank=2, highway=16, teacher_forcing=0.5)
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    dm.setup("fit")
    trainer.fit(model, datamodule=dm)
    assert isinstance(model.network, Highway) and model.network.linear.weight.abs().sum() > 0


def test_forecaster_highway_lr_freezes_or_slows_the_map():
    import lightning.pytorch as pl

    from trinity_lightning.forecasting import Highway

    dm = _sine_datamodule(history=16, horizon=8, batch_size=32)
    dm.setup("fit")
    maps = {}
    for highway_lr in (0.0, 1e-3, None):
        pl.seed_everything(0, verbose=False)
        model = Forecaster(cell="lstm", hidden_size=4, highway=16, highway_lr=highway_lr, lr=1e-2)
        trainer = pl.Trainer(
            max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        )
        trainer.fit(model, datamodule=dm)
        assert isinstance(model.network, Highway)
        groups = trainer.optimizers[0].param_groups
        maps[highway_lr] = model.network.linear.weight.detach().abs().max().item()
        # the recurrent part trains in every case
        assert model.network.network.head.weight.abs().sum() > 0
        if highway_lr == 1e-3:
            assert [g["lr"] for g in groups] == [1e-2, 1e-3]
    assert maps[0.0] == 0.0  # frozen at its (zero) start
    assert 0 < maps[1e-3] < maps[None]  # a smaller step than the network's lr
    with pytest.raises(ValueError, match="highway_lr"):
        Forecaster(cell="lstm", highway=4, highway_lr=-1.0)


@pytest.mark.parametrize("window", [0, -3, 2.5, True])
def test_forecaster_rejects_a_highway_window_that_is_not_a_positive_int_at_construction(window):
    with pytest.raises(ValueError, match=r"highway: expected None or a window of at least 1 step"):
        Forecaster(highway=window)


class _Wide(torch.nn.Module):
    """A network that forecasts two channels whatever it is given (not a univariate network)."""

    def forward(self, history, future_covariates, horizon, *args, **kwargs):
        return history.new_zeros(history.shape[0], horizon, 2)


def test_channel_independent_round_trips_shapes_and_equals_the_shared_network_run_per_channel():
    from trinity_lightning.forecasting import ChannelIndependent

    torch.manual_seed(0)
    history, future, target = torch.randn(3, 10, 4), torch.randn(3, 5, 1), torch.randn(3, 5, 3)  # 3 targets, 1 cov
    net = RecurrentForecastNet(1, 1, "tlstm", 4, rank=2)  # one target + the covariate, shared by the channels
    torch.nn.init.normal_(net.head.weight, std=0.5)
    wrapped = ChannelIndependent(net)
    out = wrapped(history, future, 5)
    assert out.shape == (3, 5, 3)
    for c in range(3):  # channel c's forecast is the shared network on channel c and the covariate alone
        alone = net(torch.cat([history[..., c : c + 1], history[..., 3:]], dim=-1), future, 5)
        assert torch.allclose(out[..., c : c + 1], alone, atol=1e-6)
    # permuting the target channels permutes the forecast (no channel mixes into another's)
    perm = [2, 0, 1]
    moved = wrapped(torch.cat([history[..., perm], history[..., 3:]], dim=-1), future, 5)
    assert torch.allclose(moved, out[..., perm], atol=1e-6)
    # teacher forcing: each channel's own truth is fed back (p = 1: always)
    forced = wrapped(history, future, 5, target=target, teacher_forcing=1.0)
    for c in range(3):
        alone = net(
            torch.cat([history[..., c : c + 1], history[..., 3:]], dim=-1),
            future,
            5,
            target=target[..., c : c + 1],
            teacher_forcing=1.0,
        )
        assert torch.allclose(forced[..., c : c + 1], alone, atol=1e-6)
    # covariates dropped: each target from its own past alone, through a network without covariates
    solo = RecurrentForecastNet(1, 0, "lstm", 4)
    torch.nn.init.normal_(solo.head.weight, std=0.5)
    dropped = ChannelIndependent(solo, covariates="drop")(history, future, 5)
    assert torch.allclose(dropped[..., 1:2], solo(history[..., 1:2], future[..., :0], 5), atol=1e-6)
    with pytest.raises(ValueError, match="channel_covariates: got 'mean'"):
        ChannelIndependent(net, covariates="mean")
    with pytest.raises(ValueError, match=r"must forecast one channel.*\(9, 5, 1\); got \(9, 5, 2\)"):
        ChannelIndependent(_Wide())(history, future, 5)
    with pytest.raises(ValueError, match="no target column left"):
        wrapped(history[..., :1], torch.randn(3, 5, 1), 5)
    with pytest.raises(ValueError, match=r"expected history \(batch, time, channels\)"):
        wrapped(history[0], future, 5)


def test_forecaster_channel_independent_option_nests_inside_highway_and_instance_norm():
    from trinity_lightning.forecasting import ChannelIndependent, Highway, InstanceNorm, Repeat

    built = Forecaster(cell="tlstm", hidden_size=4, rank=2, horizon=6, n_targets=3, channel_independent=True, highway=8)
    assert isinstance(built.network, Highway) and isinstance(built.network.network, ChannelIndependent)
    inner = built.network.network.network
    assert isinstance(inner, RecurrentForecastNet) and (inner.n_targets, inner.n_covariates) == (1, 0)
    assert built.channel_independent_module is built.network.network
    # the shared network's size does not grow with the number of channels
    seven = Forecaster(cell="tlstm", hidden_size=4, rank=2, horizon=6, n_targets=7, channel_independent=True)
    assert (
        seven.num_parameters()
        == Forecaster(
            cell="tlstm", hidden_size=4, rank=2, horizon=6, n_targets=1, channel_independent=True
        ).num_parameters()
    )
    assert (
        seven.num_parameters()
        < Forecaster(cell="tlstm", hidden_size=4, rank=2, horizon=6, n_targets=7).num_parameters()
    )
    dropped = Forecaster(
        cell="lstm",
        hidden_size=4,
        horizon=6,
        n_targets=2,
        n_covariates=3,
        channel_independent=True,
        channel_covariates="drop",
    )
    assert dropped.channel_independent_module.network.n_covariates == 0
    kept = Forecaster(cell="lstm", hidden_size=4, horizon=6, n_targets=2, n_covariates=3, channel_independent=True)
    assert kept.channel_independent_module.network.n_covariates == 3
    # RevIN outside: per-channel normalisation, then channel independence; a per-channel level shift moves the
    # forecast with it
    revin = Forecaster(
        cell="tlstm", hidden_size=4, rank=2, horizon=5, n_targets=3, channel_independent=True, instance_norm="revin"
    )
    assert isinstance(revin.network, InstanceNorm) and isinstance(revin.network.network, ChannelIndependent)
    torch.nn.init.normal_(revin.channel_independent_module.network.head.weight, std=0.5)
    history, shift = torch.randn(2, 10, 3), torch.tensor([4.0, -2.0, 9.0])
    assert torch.allclose(
        revin(history + shift, torch.zeros(2, 5, 0), 5), revin(history, torch.zeros(2, 5, 0), 5) + shift, atol=1e-4
    )
    given = Forecaster(network=Repeat(1), horizon=6, channel_independent=True)
    assert isinstance(given.network, ChannelIndependent) and given.highway_module is None
    assert Forecaster(cell="lstm", horizon=6, n_targets=2).channel_independent_module is None  # off by default
    with pytest.raises(ValueError, match="channel_independent: expected True or False"):
        Forecaster(cell="lstm", channel_independent="yes")
    with pytest.raises(ValueError, match="channel_covariates: got 'sum'"):
        Forecaster(cell="lstm", channel_independent=True, channel_covariates="sum")


def test_channel_independent_forecaster_trains_checkpoints_and_resumes(tmp_path):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from trinity_lightning.forecasting import ChannelIndependent, InstanceNorm

    t = np.arange(400, dtype=float)
    frame = pd.DataFrame({"a": 10 + 3 * np.sin(t / 5), "b": np.cos(t / 7), "x": np.sin(t / 11)})
    dm = TimeSeriesDataModule(
        frame, targets=["a", "b"], covariates=["x"], split=[0.6, 0.2, 0.2], history=16, horizon=8, batch_size=32
    )
    pl.seed_everything(0, verbose=False)
    model = Forecaster(
        cell="tlstm", hidden_size=4, rank=2, channel_independent=True, instance_norm="revin", teacher_forcing=0.5
    )
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    options = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
    pl.Trainer(max_steps=3, callbacks=[ckpt], **options).fit(model, datamodule=dm)
    assert isinstance(model.network, InstanceNorm) and isinstance(model.network.network, ChannelIndependent)
    assert model.channel_independent_module.network.head.weight.abs().sum() > 0  # trained, teacher forcing reached
    last = tmp_path / "last.ckpt"
    loaded = Forecaster.load_from_checkpoint(last)
    assert loaded.hparams["channel_independent"] and loaded.channel_independent_module is not None
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    model.eval()
    assert torch.allclose(loaded.eval()(*batch[:2]), model(*batch[:2]), atol=1e-6)  # same weights, same wrappers
    preds = torch.cat(pl.Trainer(**options).predict(loaded, datamodule=dm))
    assert preds.shape == (len(dm.test_dataset), 8, 2) and 6.0 < float(preds[..., 0].mean()) < 14.0
    # resume: the step counter continues from the checkpoint
    resumed = Forecaster(cell="tlstm", hidden_size=4, rank=2, channel_independent=True, instance_norm="revin")
    trainer = pl.Trainer(max_steps=5, enable_checkpointing=False, **options)
    trainer.fit(resumed, datamodule=dm, ckpt_path=str(last))
    assert trainer.global_step == 5 and resumed.channel_independent_module is not None


def test_ett_recipe_exposes_channel_independence_through_the_cli(tmp_path):
    from trinity_lightning.forecasting import ChannelIndependent

    recipe = yaml.safe_load((ROOT / "recipes" / "forecast_ett.yaml").read_text())
    assert recipe["model"]["init_args"]["channel_independent"] is False  # documented, off by default
    assert recipe["model"]["init_args"]["channel_covariates"] == "append"
    t = np.arange(600, dtype=float)
    frame = pd.DataFrame(
        {"date": pd.date_range("2020-01-01", periods=600, freq="h"), "a": np.sin(t / 6), "OT": np.cos(t / 6)}
    )
    frame.to_csv(tmp_path / "tiny.csv", index=False)
    data = {"source": str(tmp_path / "tiny.csv"), "split": [0.6, 0.2, 0.2], "history": 12, "horizon": 6}
    config = _tiny_recipe("forecast_ett.yaml", tmp_path, data)
    cli = run_lightning(["fit", "--config", str(config), "--model.channel_independent", "true"])
    assert cli.model.hparams["channel_independent"] is True
    assert isinstance(cli.model.channel_independent_module, ChannelIndependent)
    assert torch.isfinite(cli.trainer.callback_metrics["val_mse"])
