"""Long-horizon forecasting with tensor-train RNNs: TT-RNN / TLSTM cells, the :class:`Forecaster` LightningModule,
the :class:`TimeSeriesDataModule` (lazy windows, time-ordered splits, train-only normalization), Genz dynamics
and the baselines (Repeat, closed-form ridge, DLinear, LSTM, multiplicative LSTM).

Example:
    >>> from trinity_lightning.forecasting import TLSTMCell
    >>> TLSTMCell(input_size=7, hidden_size=16, lags=3, order=3, rank=4).transition.ranks
    (4, 4, 4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trinity_lightning._lazy import lazy_exports

_EXPORTS = {
    "TLSTMCell": "trinity_lightning.forecasting.cells",
    "TTRNNCell": "trinity_lightning.forecasting.cells",
    "TTTransition": "trinity_lightning.forecasting.cells",
    "full_outer_product_contract": "trinity_lightning.forecasting.cells",
    "tt_contract": "trinity_lightning.forecasting.cells",
    "DLinear": "trinity_lightning.forecasting.baselines",
    "LSTMCell": "trinity_lightning.forecasting.baselines",
    "MLSTMCell": "trinity_lightning.forecasting.baselines",
    "Repeat": "trinity_lightning.forecasting.baselines",
    "RidgeLast": "trinity_lightning.forecasting.baselines",
    "SlidingWindows": "trinity_lightning.forecasting.datamodule",
    "TimeSeries": "trinity_lightning.forecasting.datamodule",
    "TimeSeriesDataModule": "trinity_lightning.forecasting.datamodule",
    "WindowLoader": "trinity_lightning.forecasting.datamodule",
    "collate_windows": "trinity_lightning.forecasting.datamodule",
    "read_series": "trinity_lightning.forecasting.datamodule",
    "split_borders": "trinity_lightning.forecasting.datamodule",
    "GenzDataModule": "trinity_lightning.forecasting.genz",
    "genz_dynamics": "trinity_lightning.forecasting.genz",
    "genz_function": "trinity_lightning.forecasting.genz",
    "ChannelIndependent": "trinity_lightning.forecasting.module",
    "Forecaster": "trinity_lightning.forecasting.module",
    "Highway": "trinity_lightning.forecasting.module",
    "HorizonMetrics": "trinity_lightning.forecasting.module",
    "InstanceNorm": "trinity_lightning.forecasting.module",
    "RecurrentForecastNet": "trinity_lightning.forecasting.module",
    "SegmentRecurrentNet": "trinity_lightning.forecasting.segment",
    "evaluate": "trinity_lightning.forecasting.module",
    "make_cell": "trinity_lightning.forecasting.module",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from trinity_lightning.forecasting.baselines import DLinear, LSTMCell, MLSTMCell, Repeat, RidgeLast
    from trinity_lightning.forecasting.cells import (
        TLSTMCell,
        TTRNNCell,
        TTTransition,
        full_outer_product_contract,
        tt_contract,
    )
    from trinity_lightning.forecasting.datamodule import (
        SlidingWindows,
        TimeSeries,
        TimeSeriesDataModule,
        WindowLoader,
        collate_windows,
        read_series,
        split_borders,
    )
    from trinity_lightning.forecasting.genz import GenzDataModule, genz_dynamics, genz_function
    from trinity_lightning.forecasting.module import (
        ChannelIndependent,
        Forecaster,
        Highway,
        HorizonMetrics,
        InstanceNorm,
        RecurrentForecastNet,
        evaluate,
        make_cell,
    )
    from trinity_lightning.forecasting.segment import SegmentRecurrentNet
