"""TimeSeriesDataModule: the standard protocol (Repeat reproduces the published numbers), lazy windows, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import require_dataset
from trinity_lightning.data import DataFormatError
from trinity_lightning.forecasting import (
    Repeat,
    SlidingWindows,
    TimeSeriesDataModule,
    WindowLoader,
    collate_windows,
    evaluate,
    split_borders,
)


def _repeat_mse_mae(dm: TimeSeriesDataModule) -> tuple[float, float]:
    dm.setup("test")
    summary = evaluate(Repeat(dm.n_targets), dm.test_dataloader(), dm.horizon).summary()
    return summary["mse"], summary["mae"]


def test_repeat_reproduces_the_published_etth1_96_number():
    require_dataset("ett")
    dm = TimeSeriesDataModule("ett/ETTh1.csv", history=96, horizon=96, split="ett_hour", eval_batch_size=512)
    mse, mae = _repeat_mse_mae(dm)
    assert mse == pytest.approx(1.295, abs=0.01)
    assert mae == pytest.approx(0.713, abs=0.01)
    assert len(dm.test_dataset) == 2880 - 96 + 1  # drop_last=False: every test window is scored


def test_repeat_reproduces_the_published_exchange_96_number():
    require_dataset("exchange_rate")
    dm = TimeSeriesDataModule(
        "exchange_rate/exchange_rate.txt.gz", history=96, horizon=96, split=[0.7, 0.1, 0.2], eval_batch_size=512
    )
    mse, mae = _repeat_mse_mae(dm)
    assert mse == pytest.approx(0.081, abs=0.002)
    assert mae == pytest.approx(0.196, abs=0.005)


def test_elecdemand_with_temperature_as_covariate():
    require_dataset("elecdemand_vic2014")
    dm = TimeSeriesDataModule(
        "elecdemand_vic2014/elecdemand.csv",
        targets=["Demand"],
        covariates=["Temperature"],
        history=48,
        horizon=48,
        split=[0.7, 0.1, 0.2],
    )
    dm.setup("fit")
    history, future_covariates, target = dm.train_dataset[0]
    assert history.shape == (48, 2) and future_covariates.shape == (48, 1) and target.shape == (48, 1)


def _frame(n: int = 120) -> pd.DataFrame:
    t = np.arange(n, dtype=float)
    return pd.DataFrame(
        {"date": pd.date_range("2021-01-01", periods=n, freq="h"), "y": np.sin(t / 4) + t / 50, "x": np.cos(t / 9)}
    )


def test_windows_are_views_of_one_series_and_memory_is_o_series():
    dm = TimeSeriesDataModule(_frame(), targets=["y"], covariates=["x"], history=12, horizon=6, split=[0.6, 0.2, 0.2])
    dm.setup("fit")
    assert dm.values is not None
    base = dm.values.untyped_storage().data_ptr()
    for i in (0, 5, len(dm.train_dataset) - 1):
        for part in dm.train_dataset[i]:
            assert part.untyped_storage().data_ptr() == base  # a view, never a copy
    history, future_covariates, target = dm.train_dataset[3]
    assert torch.equal(history[:, 0], dm.values[3:15, 0]) and torch.equal(target[:, 0], dm.values[15:21, 0])
    assert torch.equal(future_covariates[:, 0], dm.values[15:21, 1])


def test_normalization_is_fitted_on_the_train_rows_only():
    frame = _frame()
    frame.loc[80:, "y"] += 1000.0  # a shift after the train split must not leak into the scale
    dm = TimeSeriesDataModule(frame, targets=["y"], history=12, horizon=6, split=[0.6, 0.2, 0.2])
    dm.setup("fit")
    train = frame["y"].to_numpy()[:72]
    assert float(dm.target_mean[0]) == pytest.approx(train.mean(), rel=1e-5)
    assert float(dm.target_std[0]) == pytest.approx(train.std(), rel=1e-5)
    restored = dm.inverse_transform(dm.values[:, :1])
    assert torch.allclose(restored[:, 0].double(), torch.tensor(frame["y"].to_numpy()), rtol=1e-5)


def test_eval_loaders_keep_the_last_partial_batch():
    dm = TimeSeriesDataModule(_frame(), targets=["y"], history=12, horizon=6, split=[0.6, 0.2, 0.2], batch_size=5)
    dm.setup("test")
    loader = dm.test_dataloader()
    assert loader.drop_last is False and loader.batch_size == 5
    assert sum(len(batch[0]) for batch in loader) == len(dm.test_dataset) == 24 - 6 + 1


def test_split_borders_and_sliding_windows():
    assert split_borders(17420, "ett_hour") == (8640, 11520, 14400)
    assert split_borders(100, [60, 20, 20]) == (60, 80, 100)
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        split_borders(10, "nope")
    windows = SlidingWindows(torch.zeros(10, 1), 1, history=3, horizon=2, stride=2)
    assert len(windows) == 3
    with pytest.raises(IndexError, match="out of range"):
        windows[3]


def _write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "series.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("edit", "match", "line", "field"),
    [
        (lambda f: f.assign(y=f["y"].where(f.index != 7)), "missing value", 9, "y"),
        (lambda f: f.assign(date=f["date"].where(f.index != 10, f["date"][9])), "duplicated timestamp", 12, "date"),
        (lambda f: f.drop(index=20), "irregular spacing", 22, "date"),
        (lambda f: f.iloc[[*range(30), 31, 30, *range(32, len(f))]], "not increasing", 33, "date"),
        (lambda f: f.assign(y=f["y"].astype(object).where(f.index != 4, "high")), "non-numeric", 6, "y"),
    ],
    ids=["nan", "duplicate", "gap", "non-monotonic", "non-numeric"],
)
def test_bad_series_name_the_column_and_line(tmp_path, edit, match, line, field):
    path = _write(tmp_path, edit(_frame()))
    dm = TimeSeriesDataModule(path, targets=["y"], history=12, horizon=6, split=[0.6, 0.2, 0.2])
    with pytest.raises(DataFormatError, match=match) as info:
        dm.setup("fit")
    assert (info.value.line, info.value.field) == (line, field)
    assert str(path) in str(info.value)


def test_bad_arguments_have_clear_errors(tmp_path):
    path = _write(tmp_path, _frame())
    with pytest.raises(DataFormatError, match="column 'load' does not exist") as info:
        TimeSeriesDataModule(path, targets=["load"], history=12, horizon=6, split=[0.6, 0.2, 0.2]).setup("fit")
    assert info.value.field == "load"
    with pytest.raises(ValueError, match="horizon 30 is longer than the test split"):
        TimeSeriesDataModule(path, history=12, horizon=30, split=[0.7, 0.1, 0.2]).setup("fit")
    with pytest.raises(ValueError, match="shorter than history \\+ horizon"):
        TimeSeriesDataModule(path, history=100, horizon=30, split=[0.2, 0.2, 0.6]).setup("fit")
    with pytest.raises(ValueError, match="targets and covariates overlap"):
        TimeSeriesDataModule(path, targets=["y"], covariates=["y"], split=[0.6, 0.2, 0.2]).setup("fit")


def test_hugging_face_dataset_source():
    datasets = pytest.importorskip("datasets")
    frame = _frame()
    frame["date"] = frame["date"].astype(str)
    dm = TimeSeriesDataModule(
        datasets.Dataset.from_pandas(frame), targets=["y"], history=12, horizon=6, split=[0.6, 0.2, 0.2]
    )
    dm.setup("fit")
    assert dm.n_targets == 1 and len(dm.train_dataset) == 72 - 18 + 1


def _stacked(windows: SlidingWindows, index: list[int]) -> tuple[torch.Tensor, ...]:
    """The reference batch: every window taken on its own (``__getitem__``, views) and stacked."""
    return tuple(torch.stack(part) for part in zip(*(windows[i] for i in index)))


@pytest.mark.parametrize(
    ("shuffle", "drop_last", "stride", "workers"),
    [(True, False, 1, 0), (False, False, 1, 0), (True, True, 3, 0), (False, True, 2, 0), (True, False, 1, 1)],
    ids=["shuffle", "ordered", "drop-last-stride", "ordered-drop-last", "worker"],
)
def test_window_loader_yields_the_batches_of_a_plain_dataloader(shuffle, drop_last, stride, workers):
    """Same seed, same windows in the same batches, same values as a stock DataLoader that stacks single windows;
    every part contiguous (the layout of a pre-materialised windows tensor), covariates included."""
    series = torch.randn(200, 3)
    windows = SlidingWindows(series, n_targets=2, history=12, horizon=5, start=7, stop=190, stride=stride)
    kwargs = {"batch_size": 16, "shuffle": shuffle, "drop_last": drop_last}
    torch.manual_seed(0)
    plain = [tuple(part) for part in torch.utils.data.DataLoader(range(len(windows)), **kwargs)]
    torch.manual_seed(0)
    loader = WindowLoader(windows, collate_fn=collate_windows, num_workers=workers, **kwargs)
    batches = list(loader)
    assert len(batches) == len(plain) == len(loader)
    for batch, index in zip(batches, plain):
        expected = _stacked(windows, [int(i) for i in index])
        assert len(batch) == 3
        for got, want in zip(batch, expected):
            assert torch.equal(got, want) and got.is_contiguous()
    assert batches[0][1].shape == (16, 5, 1) and batches[0][2].shape == (16, 5, 2)


def test_datamodule_loaders_gather_batches_and_keep_memory_o_series():
    dm = TimeSeriesDataModule(
        _frame(400), targets=["y"], covariates=["x"], history=24, horizon=12, split=[0.6, 0.2, 0.2], batch_size=7
    )
    dm.setup("fit")
    assert dm.values is not None
    for loader, dataset in ((dm.train_dataloader(), dm.train_dataset), (dm.test_dataloader(), dm.test_dataset)):
        assert isinstance(loader, WindowLoader)
        # no tensor of the dataset owns memory of its own: every one is a view of the one series
        tensors = [v for v in vars(dataset).values() if isinstance(v, torch.Tensor)]
        assert len(tensors) >= 4
        assert {t.untyped_storage().data_ptr() for t in tensors} == {dm.values.untyped_storage().data_ptr()}
        seen = torch.cat([batch[0][:, 0, 0] for batch in loader])
        assert len(seen) == len(dataset)  # drop_last=False: every window, the last partial batch too
    torch.manual_seed(1)
    history, covariates, target = next(iter(dm.train_dataloader()))
    torch.manual_seed(1)
    index = next(iter(torch.utils.data.DataLoader(range(len(dm.train_dataset)), batch_size=7, shuffle=True)))
    assert torch.equal(history, _stacked(dm.train_dataset, index.tolist())[0])  # the batch a plain loader draws
    assert covariates.shape == (7, 12, 1) and target.shape == (7, 12, 1)
    assert len(dm.train_dataset) == 240 - 36 + 1
    with pytest.raises(IndexError, match=r"window index out of range \[0, 205\)"):
        dm.train_dataset.gather([0, 205])
    with pytest.raises(IndexError, match="out of range"):
        dm.train_dataset.gather([-1])


def test_lightning_can_inject_a_distributed_sampler_into_the_window_loader():
    """Lightning re-creates a DataLoader subclass around a DistributedSampler; the gathered path then yields exactly
    that rank's windows, in the sampler's order."""
    from lightning.pytorch.utilities.data import _update_dataloader

    windows = SlidingWindows(torch.randn(100, 2), 1, history=8, horizon=4)
    loader = WindowLoader(windows, batch_size=10, shuffle=True, collate_fn=collate_windows)
    sampler = torch.utils.data.DistributedSampler(windows, num_replicas=2, rank=1, shuffle=True, seed=3)
    injected = _update_dataloader(loader, sampler)
    assert isinstance(injected, WindowLoader) and injected.batch_size == 10 and len(injected) == 5
    got = torch.cat([batch[0] for batch in injected])
    assert torch.equal(got, torch.stack([windows[i][0] for i in list(sampler)]))
