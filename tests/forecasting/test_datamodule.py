"""TimeSeriesDataModule: the standard protocol (Repeat reproduces the published numbers), lazy windows, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import require_dataset
from trinity_lightning.data import DataFormatError
from trinity_lightning.forecasting import Repeat, SlidingWindows, TimeSeriesDataModule, evaluate, split_borders


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
