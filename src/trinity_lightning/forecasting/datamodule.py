"""Multivariate time series for forecasting: reading and validating a series, time-ordered splits, train-only
normalization and lazy sliding windows.

A window is ``(history, future_covariates, target)``: ``history`` is ``(history, n_targets + n_covariates)`` (the
targets first, then the exogenous covariates), ``future_covariates`` is ``(horizon, n_covariates)`` (known future
inputs such as a temperature forecast) and ``target`` is ``(horizon, n_targets)``. Each is a *view* of the one
normalized series tensor, so the windows cost no memory of their own: memory stays O(series), not O(windows). The
loaders (:class:`WindowLoader`) gather a whole batch with one ``index_select`` per part
(:meth:`SlidingWindows.gather`) and yield the batches a plain ``DataLoader`` with the same arguments would.

Example:
    >>> import numpy as np
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=200, freq="h"),
    ...                       "load": np.sin(np.arange(200) / 5.0), "temp": np.cos(np.arange(200) / 7.0)})
    >>> dm = TimeSeriesDataModule(frame, targets=["load"], covariates=["temp"], history=24, horizon=12,
    ...                           split=(0.6, 0.2, 0.2), batch_size=8)
    >>> dm.setup("fit")
    >>> history, future_covariates, target = dm.train_dataset[0]
    >>> tuple(history.shape), tuple(future_covariates.shape), tuple(target.shape)
    ((24, 2), (12, 1), (12, 1))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from trinity_lightning.data import DataFormatError, data_root, read_table

__all__ = [
    "STANDARD_SPLITS",
    "SlidingWindows",
    "TimeSeries",
    "TimeSeriesDataModule",
    "WindowLoader",
    "collate_windows",
    "read_series",
    "split_borders",
]

# Named splits of the long-horizon protocol (Informer / Autoformer / DLinear): row counts, not fractions.
# ETT hourly: 12 / 4 / 4 months of 30 days; the 15-minute files have four times as many rows.
STANDARD_SPLITS: dict[str, tuple[int, int, int]] = {
    "ett_hour": (12 * 30 * 24, 4 * 30 * 24, 4 * 30 * 24),
    "ett_minute": (12 * 30 * 24 * 4, 4 * 30 * 24 * 4, 4 * 30 * 24 * 4),
}

_TIME_NAMES = ("date", "timestamp", "time", "datetime", "ds")


@dataclass(frozen=True)
class TimeSeries:
    """A validated multivariate series: ``values`` ``(T, n_targets + n_covariates)`` float32, targets first.

    Attributes:
        values: the series, one row per time step.
        targets: names of the target columns (the first ``len(targets)`` columns of ``values``).
        covariates: names of the exogenous covariate columns (the rest).
        timestamps: the parsed time column, or ``None`` for a series without one.
        source: where the series came from (for error messages).
    """

    values: np.ndarray
    targets: tuple[str, ...]
    covariates: tuple[str, ...]
    timestamps: pd.DatetimeIndex | None
    source: str


def _where(frame: pd.DataFrame, row: int) -> dict[str, int]:
    lines = frame.attrs.get("lines")
    if lines is not None and row < len(lines):
        return {"line": int(lines[row])}
    return {"row": int(row)}


def _resolve(source: Any) -> Any:
    """A relative path that does not exist is looked up under the shared data folder (``TRINITY_DATA``)."""
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists() and not path.is_absolute() and (data_root() / path).exists():
            return data_root() / path
        return path
    return source


def _read_frame(source: Any, split: str | None) -> tuple[pd.DataFrame, str]:
    source = _resolve(source)
    if isinstance(source, Path):
        name = source.name.lower()
        if name.endswith((".txt", ".txt.gz")):  # LSTNet-style headerless numeric text (exchange_rate.txt.gz)
            if not source.is_file():
                raise FileNotFoundError(f"no such file: {source}")
            table = pd.read_csv(source, header=None, sep=",")
            table.columns = [str(i) for i in range(table.shape[1])]
            table.attrs["lines"] = list(range(1, len(table) + 1))
            return table, str(source)
        return read_table(source), str(source)
    table = read_table(source, split=split)
    return table, f"<{type(source).__name__}>"


def read_series(
    source: Any,
    *,
    targets: Sequence[str] | None = None,
    covariates: Sequence[str] = (),
    time_column: str | None = "auto",
    freq: str | pd.Timedelta | None = None,
    hf_split: str | None = None,
) -> TimeSeries:
    """Read and validate a multivariate series from CSV/TSV/Parquet/JSONL, headerless ``.txt(.gz)``, a Hugging
    Face dataset or a pandas frame.

    Args:
        source: a path (relative paths are also looked up under the shared data folder), a ``datasets.Dataset``
            / ``DatasetDict`` or a :class:`pandas.DataFrame`.
        targets: the columns to forecast (default: every numeric column that is not the time or a covariate).
        covariates: exogenous columns fed to the model as inputs, never forecast (e.g. ``["Temperature"]``).
        time_column: the timestamp column; ``"auto"`` takes the first of ``date``, ``timestamp``, ``time``,
            ``datetime``, ``ds`` that exists; ``None``: no time column (rows are taken as equally spaced).
        freq: the expected spacing (``"1h"``); default: the most common difference between timestamps.
        hf_split: the split of a ``DatasetDict``.

    Raises:
        DataFormatError: a missing or non-numeric column, a missing value (NaN), an unparseable, duplicated,
            decreasing or irregular (gap) timestamp, naming the source, the line or row and the column.

    Example:
        >>> frame = pd.DataFrame({"date": pd.date_range("2020", periods=4, freq="D"), "y": [1.0, 2, 3, 4]})
        >>> read_series(frame).values[:, 0].tolist()
        [1.0, 2.0, 3.0, 4.0]
    """
    frame, where = _read_frame(source, hf_split)
    if time_column == "auto":
        time_column = next((c for c in frame.columns if str(c).lower() in _TIME_NAMES), None)
    elif time_column is not None and time_column not in frame.columns:
        raise DataFormatError(
            f"time column {time_column!r} does not exist; columns are {list(map(str, frame.columns))}",
            source=where,
            field=time_column,
        )
    covariates = tuple(covariates)
    if targets is None:
        targets = tuple(
            str(c)
            for c in frame.columns
            if c != time_column and c not in covariates and pd.api.types.is_numeric_dtype(frame[c])
        )
        if not targets:
            raise DataFormatError("no numeric target column; pass targets=[...]", source=where)
    targets = tuple(targets)
    for column in (*targets, *covariates):
        if column not in frame.columns:
            raise DataFormatError(
                f"column {column!r} does not exist; columns are {list(map(str, frame.columns))}",
                source=where,
                field=column,
            )
    overlap = set(targets) & set(covariates)
    if overlap:
        raise ValueError(f"targets and covariates overlap: {sorted(overlap)}; a column is one or the other")
    columns = []
    for column in (*targets, *covariates):
        raw = frame[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() & raw.notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(
                f"non-numeric value {raw.iloc[row]!r}; forecasting columns must be numbers",
                source=where,
                field=column,
                **_where(frame, row),
            )
        missing = numbers.isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise DataFormatError(
                f"missing value (NaN), {int(missing.sum())} in this column; fill or interpolate it first",
                source=where,
                field=column,
                **_where(frame, row),
            )
        columns.append(numbers.to_numpy(dtype=np.float64))
    values = np.stack(columns, axis=1).astype(np.float32)
    stamps = None
    if time_column is not None:
        stamps = _check_timestamps(frame, time_column, freq, where)
    return TimeSeries(values, targets, covariates, stamps, where)


def _check_timestamps(
    frame: pd.DataFrame, column: str, freq: str | pd.Timedelta | None, where: str
) -> pd.DatetimeIndex:
    raw = frame[column]
    stamps = pd.to_datetime(raw, errors="coerce")
    bad = stamps.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataFormatError(f"not a timestamp: {raw.iloc[row]!r}", source=where, field=column, **_where(frame, row))
    index = pd.DatetimeIndex(stamps)
    if len(index) < 2:
        return index
    step = np.diff(index.asi8)
    duplicated = np.flatnonzero(step == 0)
    if len(duplicated):
        row = int(duplicated[0]) + 1
        raise DataFormatError(
            f"duplicated timestamp {index[row]} (same as the row before); drop or aggregate duplicates",
            source=where,
            field=column,
            **_where(frame, row),
        )
    decreasing = np.flatnonzero(step < 0)
    if len(decreasing):
        row = int(decreasing[0]) + 1
        raise DataFormatError(
            f"timestamps are not increasing: {index[row]} comes after {index[row - 1]}; sort the series by time",
            source=where,
            field=column,
            **_where(frame, row),
        )
    expected = pd.Timedelta(freq).value if freq is not None else int(pd.Series(step).mode().iloc[0])
    irregular = np.flatnonzero(step != expected)
    if len(irregular):
        row = int(irregular[0]) + 1
        raise DataFormatError(
            f"irregular spacing: {index[row - 1]} -> {index[row]} is {pd.Timedelta(int(step[row - 1]))}, expected "
            f"{pd.Timedelta(expected)} (a gap or an extra step); resample the series to a regular grid",
            source=where,
            field=column,
            **_where(frame, row),
        )
    return index


def split_borders(n_rows: int, split: str | Sequence[float] | Sequence[int]) -> tuple[int, int, int]:
    """End rows ``(train_end, val_end, test_end)`` of a time-ordered split.

    ``split`` is a name of :data:`STANDARD_SPLITS` (row counts), three fractions summing to at most 1 (the
    LSTNet / Autoformer rule: ``int(n * train)`` and ``int(n * test)`` rows, validation the rest), or three row
    counts.

    Example:
        >>> split_borders(7588, (0.7, 0.1, 0.2))
        (5311, 6071, 7588)
        >>> split_borders(17420, "ett_hour")
        (8640, 11520, 14400)
    """
    if isinstance(split, str):
        if split not in STANDARD_SPLITS:
            raise ValueError(f"split: unknown name {split!r}; expected one of {sorted(STANDARD_SPLITS)} or 3 numbers")
        counts = STANDARD_SPLITS[split]
    else:
        parts = list(split)
        if len(parts) != 3 or any(p < 0 for p in parts):
            raise ValueError(f"split: expected 3 non-negative numbers (train, val, test), got {split!r}")
        if all(float(p) <= 1.0 for p in parts) and any(isinstance(p, float) for p in parts):
            if sum(parts) > 1.0 + 1e-9:
                raise ValueError(f"split: fractions {split!r} sum to more than 1")
            n_train, n_test = int(n_rows * parts[0]), int(n_rows * parts[2])
            if abs(sum(parts) - 1.0) < 1e-9:
                counts = (n_train, n_rows - n_train - n_test, n_test)
            else:
                counts = (n_train, int(n_rows * parts[1]), n_test)
        else:
            counts = (int(parts[0]), int(parts[1]), int(parts[2]))
    train_end = counts[0]
    val_end = train_end + counts[1]
    test_end = val_end + counts[2]
    if test_end > n_rows:
        raise ValueError(f"split {split!r} needs {test_end} rows but the series has {n_rows}")
    return train_end, val_end, test_end


def collate_windows(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Collate for :meth:`SlidingWindows.__getitems__` (one stacked item per batch); stacks single windows."""
    if len(batch) == 1 and batch[0][0].dim() == 3:
        return batch[0]
    return tuple(torch.stack(part) for part in zip(*batch))


class SlidingWindows(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Lazy sliding windows over one series tensor: item ``i`` is a view, never a copy.

    Args:
        series: ``(T, n_targets + n_covariates)``, targets first.
        n_targets: how many leading columns are targets.
        history: input length.
        horizon: forecast length.
        start: first row of the first window; ``stop``: one past the last row a window may use.
        stride: step between consecutive windows.

    Example:
        >>> windows = SlidingWindows(torch.arange(20.0).reshape(10, 2), n_targets=1, history=3, horizon=2)
        >>> len(windows), windows[0][0][:, 0].tolist(), windows[0][2][:, 0].tolist()
        (6, [0.0, 2.0, 4.0], [6.0, 8.0])
    """

    def __init__(
        self,
        series: torch.Tensor,
        n_targets: int,
        history: int,
        horizon: int,
        start: int = 0,
        stop: int | None = None,
        stride: int = 1,
    ) -> None:
        self.series = series
        self.n_targets = n_targets
        self.history = history
        self.horizon = horizon
        self.start = start
        self.stop = series.shape[0] if stop is None else stop
        self.stride = stride
        span = self.stop - self.start - history - horizon
        self._count = max(0, span // stride + 1) if span >= 0 else 0
        # Every window at once as strided views of the series (no copy): window i of ``_history`` is rows
        # ``start + i*stride ...`` and its rows stay contiguous, so a batch is one ``index_select`` per part whose
        # result has the layout of a pre-materialised windows tensor (contiguous ``(batch, steps, columns)``).
        row, column = series.stride()
        size = (self._count, history, series.shape[1])
        first = series.storage_offset() + self.start * row
        self._history = series.as_strided(size, (stride * row, row, column), first)
        future = series.as_strided(
            (self._count, horizon, series.shape[1]), (stride * row, row, column), first + history * row
        )
        self._future_covariates = future[:, :, n_targets:]
        self._target = future[:, :, :n_targets]

    def __len__(self) -> int:
        return self._count

    def gather(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The windows ``indices`` stacked: ``(batch, history, columns)``, ``(batch, horizon, n_covariates)``,
        ``(batch, horizon, n_targets)``, the same values as stacking ``self[i]`` for every ``i``.

        Each part is one ``index_select`` over strided views of the series: contiguous, and the only copy made is
        the batch itself (memory stays O(series) + O(batch)).
        """
        index = torch.as_tensor(indices, dtype=torch.long)
        try:  # index_select refuses negative and too-large indices: no separate range check on the hot path
            return (
                self._history.index_select(0, index),
                self._future_covariates.index_select(0, index),
                self._target.index_select(0, index),
            )
        except (IndexError, RuntimeError) as err:
            raise IndexError(f"window index out of range [0, {self._count}): {err}") from None

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """A batch in one gather: the DataLoader calls this with a batch's indices and gets one stacked item
        (``collate_windows`` of a one-item list), instead of stacking ``batch_size`` small views one by one."""
        return [self.gather(indices)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(f"window {index} out of range [0, {self._count})")
        a = self.start + index * self.stride
        b = a + self.history
        c = b + self.horizon
        return self.series[a:b], self.series[b:c, self.n_targets :], self.series[b:c, : self.n_targets]

    def materialize(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every window as three stacked tensors (copies): the pre-materialised layout the benchmark compares with."""
        items = [self[i] for i in range(len(self))]
        return tuple(torch.stack(part) for part in zip(*items))  # type: ignore[return-value]


class WindowLoader(DataLoader):
    """A :class:`~torch.utils.data.DataLoader` over :class:`SlidingWindows` that yields the same batches as a plain
    ``DataLoader`` with the same arguments (same sampler, same random draws, same ``drop_last``), faster.

    In the main process (``num_workers=0``, no pinned memory, the default batch sampler) it draws the epoch's
    order from the sampler once, splits it into index tensors and gathers each batch with
    :meth:`SlidingWindows.gather`: no per-batch DataLoader bookkeeping and no Python list of indices per batch.
    Otherwise (workers, pinning, a custom or Lightning-wrapped batch sampler) it is the plain ``DataLoader``.
    Lightning re-creates it like any ``DataLoader`` subclass (e.g. to inject a ``DistributedSampler``).

    Example:
        >>> windows = SlidingWindows(torch.arange(40.0).reshape(20, 2), n_targets=2, history=4, horizon=2)
        >>> loader = WindowLoader(windows, batch_size=8, collate_fn=collate_windows)
        >>> [tuple(batch[0].shape) for batch in loader]
        [(8, 4, 2), (7, 4, 2)]
    """

    def __iter__(self) -> Any:
        plain = (
            self.num_workers > 0
            or self.pin_memory
            or not isinstance(self.dataset, SlidingWindows)
            or type(self.batch_sampler) is not BatchSampler
        )
        return super().__iter__() if plain else self._gathered()

    def _gathered(self) -> Iterator[Any]:
        sampler = self.batch_sampler
        assert isinstance(sampler, BatchSampler) and isinstance(self.dataset, SlidingWindows)
        # the random draws of a plain DataLoader iterator, in its order: its base seed, then the sampler's order
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.as_tensor(list(sampler.sampler), dtype=torch.long)
        batches = order.split(sampler.batch_size)
        if sampler.drop_last and batches and len(batches[-1]) < sampler.batch_size:
            batches = batches[:-1]
        for index in batches:
            yield self.collate_fn([self.dataset.gather(index)])


class TimeSeriesDataModule(pl.LightningDataModule):
    """Windows ``(history, future_covariates, target)`` of a multivariate series, split in time order.

    The train split is rows ``[0, train_end)``; validation and test windows start ``history`` rows before their
    border (the standard protocol), so every target row of a split is forecast. Normalization (per column mean
    and standard deviation) is fitted on the train rows only. Evaluation loaders keep every window
    (``drop_last=False``): the published code's ``drop_last=True`` test loader silently dropped windows.

    Args:
        source: a file path (relative paths are also looked up under ``TRINITY_DATA``), a HF dataset or a frame.
        targets: columns to forecast (default: every numeric column that is not time or a covariate).
        covariates: exogenous input columns (e.g. ``["Temperature"]``), given to the model over the history and,
            as known future inputs, over the horizon.
        time_column: the timestamp column (``"auto"``: ``date``/``timestamp``/...; ``None``: none).
        freq: expected timestamp spacing (default: the most common one).
        history: input window length.
        horizon: forecast length.
        split: a named split (``"ett_hour"``), three fractions (``[0.7, 0.1, 0.2]``) or three row counts.
        batch_size: training batch size; ``eval_batch_size`` for validation/test/predict (default: the same).
        train_stride: step between training windows (1: every window).
        normalize: fit and apply the train-only standardization.
        shuffle: shuffle the training windows.
        num_workers: DataLoader workers.
        hf_split: the split of a ``DatasetDict`` source.

    Raises:
        DataFormatError: bad input (see :func:`read_series`).
        ValueError: a series shorter than ``history + horizon``, or a horizon longer than the test split.

    Example:
        >>> import numpy as np, pandas as pd
        >>> frame = pd.DataFrame({"y": np.arange(100.0)})
        >>> dm = TimeSeriesDataModule(frame, history=10, horizon=5, split=(0.6, 0.2, 0.2), batch_size=4)
        >>> dm.setup("test")
        >>> len(dm.test_dataset), round(float(dm.target_mean[0]), 1)
        (16, 29.5)
    """

    def __init__(
        self,
        source: Any,
        targets: list[str] | None = None,
        covariates: list[str] | None = None,
        time_column: str | None = "auto",
        freq: str | None = None,
        history: int = 96,
        horizon: int = 96,
        split: str | list[float] | list[int] = "ett_hour",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        train_stride: int = 1,
        normalize: bool = True,
        shuffle: bool = True,
        num_workers: int = 0,
        hf_split: str | None = None,
    ) -> None:
        super().__init__()
        if history < 1 or horizon < 1:
            raise ValueError(f"history and horizon must be >= 1, got history={history}, horizon={horizon}")
        if batch_size < 1 or train_stride < 1:
            raise ValueError(f"batch_size and train_stride must be >= 1, got {batch_size}, {train_stride}")
        self.source = source
        self.targets = targets
        self.covariates = list(covariates or [])
        self.time_column = time_column
        self.freq = freq
        self.history = history
        self.horizon = horizon
        self.split = split
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.train_stride = train_stride
        self.normalize = normalize
        self.shuffle = shuffle
        self.num_workers = num_workers
        self.hf_split = hf_split
        self.series: TimeSeries | None = None
        self.values: torch.Tensor | None = None

    # -- reading -------------------------------------------------------------------------------------------------
    def prepare_series(self) -> TimeSeries:
        """Read, validate, split and normalize the series once (``setup`` calls it); returns the raw series."""
        if self.series is not None:
            return self.series
        series = read_series(
            self.source,
            targets=self.targets,
            covariates=self.covariates,
            time_column=self.time_column,
            freq=self.freq,
            hf_split=self.hf_split,
        )
        n_rows = series.values.shape[0]
        if n_rows < self.history + self.horizon:
            raise ValueError(
                f"{series.source}: the series has {n_rows} rows, shorter than history + horizon = "
                f"{self.history} + {self.horizon}"
            )
        self.borders = split_borders(n_rows, self.split if isinstance(self.split, str) else tuple(self.split))
        train_end, val_end, test_end = self.borders
        if test_end - val_end < self.horizon:
            raise ValueError(
                f"{series.source}: horizon {self.horizon} is longer than the test split ({test_end - val_end} rows, "
                f"rows {val_end}..{test_end - 1}); use a shorter horizon or a larger test split"
            )
        if train_end < self.history + self.horizon:
            raise ValueError(
                f"{series.source}: the train split has {train_end} rows, shorter than history + horizon = "
                f"{self.history + self.horizon}"
            )
        train = series.values[:train_end].astype(np.float64)
        mean = train.mean(axis=0) if self.normalize else np.zeros(train.shape[1])
        std = train.std(axis=0) if self.normalize else np.ones(train.shape[1])
        constant = np.flatnonzero(std == 0)
        if len(constant):
            name = (*series.targets, *series.covariates)[int(constant[0])]
            raise DataFormatError("constant on the train split: cannot normalize it", source=series.source, field=name)
        self.mean = torch.tensor(mean, dtype=torch.float32)
        self.std = torch.tensor(std, dtype=torch.float32)
        self.values = (torch.from_numpy(series.values) - self.mean) / self.std
        self.series = series
        return series

    @property
    def n_targets(self) -> int:
        """Number of forecast columns."""
        return len(self.prepare_series().targets)

    @property
    def n_covariates(self) -> int:
        """Number of exogenous covariate columns."""
        return len(self.prepare_series().covariates)

    @property
    def target_mean(self) -> torch.Tensor:
        """Train-split mean of each target (to map normalized predictions back to original units)."""
        self.prepare_series()
        return self.mean[: self.n_targets]

    @property
    def target_std(self) -> torch.Tensor:
        """Train-split standard deviation of each target."""
        self.prepare_series()
        return self.std[: self.n_targets]

    def inverse_transform(self, targets: torch.Tensor) -> torch.Tensor:
        """Normalized targets ``(..., n_targets)`` back to original units."""
        return targets * self.target_std.to(targets) + self.target_mean.to(targets)

    # -- splits ----------------------------------------------------------------------------------------------------
    def windows(self, split: str, horizon: int | None = None, stride: int | None = None) -> SlidingWindows:
        """The windows of ``"train"``, ``"val"`` or ``"test"`` (optionally for another horizon)."""
        self.prepare_series()
        assert self.values is not None
        train_end, val_end, test_end = self.borders
        bounds = {
            "train": (0, train_end),
            "val": (train_end - self.history, val_end),
            "test": (val_end - self.history, test_end),
        }
        if split not in bounds:
            raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
        start, stop = bounds[split]
        step = stride if stride is not None else (self.train_stride if split == "train" else 1)
        return SlidingWindows(
            self.values, self.n_targets, self.history, horizon or self.horizon, start=start, stop=stop, stride=step
        )

    def setup(self, stage: str | None = None) -> None:
        """Read the series and build the lazy window datasets."""
        self.prepare_series()
        self.train_dataset = self.windows("train")
        self.val_dataset = self.windows("val")
        self.test_dataset = self.windows("test")

    def _loader(self, dataset: SlidingWindows, train: bool) -> DataLoader:
        return WindowLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train and self.shuffle,
            drop_last=False,
            num_workers=self.num_workers,
            collate_fn=collate_windows,
        )

    def train_dataloader(self) -> DataLoader:
        """Training windows (shuffled)."""
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation windows, all of them (``drop_last=False``)."""
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test windows, all of them (``drop_last=False``)."""
        return self._loader(self.test_dataset, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test windows, for ``trainer.predict``."""
        return self._loader(self.test_dataset, train=False)
