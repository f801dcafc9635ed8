"""SegmentRecurrentNet (SegRNN's segment recurrence and parallel decoding around any package cell) and
``Forecaster(decoder="segment")`` (issue 17, stop 24)."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch

from trinity_lightning.forecasting import Forecaster, SegmentRecurrentNet, TimeSeriesDataModule

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import forecasting as bench

OPTIONS = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


@pytest.mark.parametrize("cell", ["tlstm", "ttrnn", "lstm", "mlstm"])
def test_every_cell_reads_segments_and_an_untrained_network_repeats_the_last_value(cell):
    net = SegmentRecurrentNet(3, 0, cell, hidden_size=8, rank=2, horizon=30, segment_length=12)
    history = torch.randn(5, 48, 3)
    out = net(history, history[:, :30, 3:], 30)
    assert out.shape == (5, 30, 3)
    assert torch.equal(out, history[:, -1:].expand(5, 30, 3))  # the head starts at zero: Repeat
    assert net.out_segments == 3  # ceil(30 / 12): the last segment is cropped
    assert net(history, history[:, :0, 3:], 7).shape == (5, 7, 3)  # any shorter horizon


def test_segments_channels_and_the_history_remainder():
    torch.manual_seed(0)
    net = SegmentRecurrentNet(2, 0, "lstm", hidden_size=6, horizon=8, segment_length=4, channel_embedding=False)
    torch.nn.init.normal_(net.head[1].weight)
    net.eval()
    history = torch.randn(3, 18, 2)
    # 18 steps at segment length 4: the last 16 are read; what is older than them changes nothing
    changed = history.clone()
    changed[:, :2] += 100.0
    assert torch.allclose(net(history, history[:, :0], 8), net(changed, changed[:, :0], 8))
    # shared weights, no channel embedding: swapping the channels swaps the forecast
    swapped = net(history.flip(-1), history[:, :0], 8)
    assert torch.allclose(swapped, net(history, history[:, :0], 8).flip(-1), atol=1e-6)
    # a level shift of the history shifts the forecast (it is a change from the last value)
    assert torch.allclose(net(history + 5.0, history[:, :0], 8), net(history, history[:, :0], 8) + 5.0, atol=1e-5)
    # with channel embeddings the channels are told apart
    with_ids = SegmentRecurrentNet(2, 0, "lstm", hidden_size=6, horizon=8, segment_length=4).eval()
    torch.nn.init.normal_(with_ids.head[1].weight)
    same = torch.randn(1, 16, 1).expand(1, 16, 2)
    out = with_ids(same, same[:, :0], 8)
    assert not torch.allclose(out[..., 0], out[..., 1])


def test_covariates_enter_the_segments_and_the_decoder():
    torch.manual_seed(0)
    net = SegmentRecurrentNet(1, 2, "tlstm", hidden_size=8, rank=2, horizon=10, segment_length=5).eval()
    torch.nn.init.normal_(net.head[1].weight)
    history, future = torch.randn(4, 20, 3), torch.randn(4, 10, 2)
    base = net(history, future, 10)
    other_future = future.clone()
    other_future[:, 5:] += 1.0  # only the second output segment's covariates change
    moved = net(history, other_future, 10)
    assert torch.allclose(base[:, :5], moved[:, :5]) and not torch.allclose(base[:, 5:], moved[:, 5:])
    other_past = history.clone()
    other_past[:, :, 1:] += 1.0
    assert not torch.allclose(net(other_past, future, 10), base)
    assert net(history, future[:, :7], 7).shape == (4, 7, 1)  # a short future is zero-padded to whole segments


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="segment_length: expected a positive integer"):
        SegmentRecurrentNet(2, segment_length=0)
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer"):
        SegmentRecurrentNet(2, hidden_size=0)
    with pytest.raises(ValueError, match="dropout: expected a probability"):
        SegmentRecurrentNet(2, dropout=1.0)
    with pytest.raises(ValueError, match="cell: got 'gru'"):
        SegmentRecurrentNet(2, cell="gru")
    net = SegmentRecurrentNet(2, 1, "lstm", hidden_size=4, horizon=12, segment_length=6)
    with pytest.raises(ValueError, match=r"history: expected \(batch, time, 3\)"):
        net(torch.randn(2, 12, 2), torch.randn(2, 12, 1), 12)
    with pytest.raises(ValueError, match="shorter than one segment"):
        net(torch.randn(2, 4, 3), torch.randn(2, 12, 1), 12)
    with pytest.raises(ValueError, match="horizon 13 is longer than the network's 12"):
        net(torch.randn(2, 12, 3), torch.randn(2, 13, 1), 13)
    with pytest.raises(ValueError, match="future_covariates: expected"):
        net(torch.randn(2, 12, 3), torch.randn(2, 12, 2), 12)
    with pytest.raises(ValueError, match="decoder: got 'tree'"):
        Forecaster(decoder="tree")


def _seasonal(rows: int = 900) -> pd.DataFrame:
    t = np.arange(rows, dtype=float)
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "date": pd.date_range("2021-01-01", periods=rows, freq="h"),
            "load": 5 + np.sin(2 * np.pi * t / 24) + 0.05 * rng.normal(size=rows),
            "OT": np.cos(2 * np.pi * t / 24) + 0.05 * rng.normal(size=rows),
        }
    )


def test_segment_forecaster_learns_a_daily_cycle_beyond_repeat_and_resumes_from_a_checkpoint(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = TimeSeriesDataModule(_seasonal(), history=48, horizon=24, split=[0.7, 0.1, 0.2], batch_size=32)
    pl.seed_everything(0, verbose=False)
    model = Forecaster(cell="tlstm", hidden_size=16, rank=2, decoder="segment", segment_length=12, lr=1e-2)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(max_epochs=4, callbacks=[ckpt], **OPTIONS)
    trainer.fit(model, datamodule=dm)
    assert isinstance(model.network, SegmentRecurrentNet)
    test = pl.Trainer(**OPTIONS).test(model, datamodule=dm, verbose=False)[0]
    dm.setup("test")
    history, future, target = next(iter(dm.test_dataloader()))
    repeat = float(((history[:, -1:, :2] - target) ** 2).mean())
    assert test["test_mse"] < 0.25 * repeat  # the cycle is learnt: Repeat is far off half a day later
    preds = torch.cat(pl.Trainer(**OPTIONS).predict(model, datamodule=dm))
    assert 3.5 < float(preds[..., 0].mean()) < 6.5  # original units
    loaded = Forecaster.load_from_checkpoint(tmp_path / "last.ckpt")
    assert isinstance(loaded.network, SegmentRecurrentNet) and loaded.hparams["segment_length"] == 12
    model.eval()
    assert torch.allclose(loaded.eval()(history, future), model(history, future), atol=1e-6)
    resumed = Forecaster(cell="tlstm", hidden_size=16, rank=2, decoder="segment", segment_length=12, lr=1e-2)
    again = pl.Trainer(max_epochs=5, enable_checkpointing=False, **OPTIONS)
    again.fit(resumed, datamodule=dm, ckpt_path=str(tmp_path / "last.ckpt"))
    assert again.current_epoch == 5 and again.global_step > trainer.global_step


def test_the_benchmark_segrnn_recipe_builds_matched_networks_and_trains_by_epochs():
    cfg = {**bench.FULL["etth1"], **bench.SEGRNN_ETTH1, "recurrent_horizon": 720}
    tlstm = bench.recurrent_net(cfg, "tlstm", 64, 7, 0)
    assert isinstance(tlstm, SegmentRecurrentNet) and tlstm.out_segments == 30 and tlstm.segment_length == 24
    target = bench.count_parameters(tlstm)
    hidden = bench.matched_hidden("lstm", 7, 0, target, cfg)
    assert abs(bench.count_parameters(bench.recurrent_net(cfg, "lstm", hidden, 7, 0)) - target) < 0.03 * target
    dm = TimeSeriesDataModule(_seasonal(400), history=24, horizon=12, split=[0.7, 0.1, 0.2], batch_size=32)
    dm.setup("fit")
    small = {**bench.SEGRNN_QUICK, "segment_length": 6, "recurrent_epochs": 2, "recurrent_horizon": 12}
    net = bench.recurrent_net(small, "lstm", 4, 2, 0)
    _, record = bench.fit_with_config(dm, net, 0, {**bench.FULL["etth1"], **small}, None, 0)
    per_epoch = -(-len(dm.windows("train")) // 64)
    assert record["steps"] == 2 * per_epoch and [s for s, _ in record["val_curve"]] == [per_epoch, 2 * per_epoch]


def test_ett_recipe_runs_the_segment_decoder_through_the_cli(tmp_path):
    from tests.forecasting.test_module import _tiny_recipe
    from trinity_lightning.cli import run_lightning

    frame = _seasonal(600).drop(columns=["load"]).assign(a=np.sin(np.arange(600) / 6))
    frame.to_csv(tmp_path / "tiny.csv", index=False)
    data = {"source": str(tmp_path / "tiny.csv"), "split": [0.6, 0.2, 0.2], "history": 48, "horizon": 24}
    config = _tiny_recipe("forecast_ett.yaml", tmp_path, data)
    cli = run_lightning(["fit", "--config", str(config), "--model.decoder", "segment", "--model.segment_length", "12"])
    assert isinstance(cli.model.network, SegmentRecurrentNet) and cli.model.network.segment_length == 12
    assert torch.isfinite(cli.trainer.callback_metrics["val_mse"])


def test_a_users_own_lightning_module_trains_the_segment_network_with_its_own_metric_names():
    """Not our Forecaster: a LightningModule as a user writes one, its own loss and metric names, torchmetrics on
    ``y``, fed by TimeSeriesDataModule's loaders (history, future covariates, target)."""
    import torchmetrics

    class DemandModel(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = SegmentRecurrentNet(
                n_targets=2, cell="tlstm", hidden_size=16, rank=2, horizon=24, segment_length=12
            )
            self.val_mae = torchmetrics.MeanAbsoluteError()

        def training_step(self, batch, batch_idx):
            x, future, y = batch
            loss = torch.nn.functional.l1_loss(self.net(x, future, y.shape[1]), y)
            self.log("my/train_l1", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, future, y = batch
            self.val_mae(self.net(x, future, y.shape[1]), y)
            self.log("my/val_mae", self.val_mae)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    dm = TimeSeriesDataModule(_seasonal(), history=48, horizon=24, split=[0.7, 0.1, 0.2], batch_size=32)
    pl.seed_everything(0, verbose=False)
    model = DemandModel()
    trainer = pl.Trainer(max_epochs=3, **OPTIONS)
    before = trainer.validate(model, datamodule=dm, verbose=False)[0]["my/val_mae"]  # Repeat at initialisation
    trainer.fit(model, datamodule=dm)
    after = float(trainer.callback_metrics["my/val_mae"])
    assert "my/train_l1" in trainer.callback_metrics and after < 0.5 * before


def test_forecasts_are_contiguous_so_torchmetrics_can_view_them():
    from trinity_lightning.forecasting import ChannelIndependent, RecurrentForecastNet

    history = torch.randn(3, 24, 2)
    segment = SegmentRecurrentNet(2, 0, "lstm", hidden_size=4, horizon=12, segment_length=12)
    wrapped = ChannelIndependent(RecurrentForecastNet(1, 0, "lstm", 4))
    for net in (segment, wrapped):
        assert net(history, history[:, :12, 2:], 12).is_contiguous()
