"""Forecasting baselines: Repeat (last value), a closed-form channel-shared ridge on the last ``L`` values
(NLinear-style), DLinear, and the LSTM / multiplicative-LSTM cells the recurrent forecaster runs for comparison.

Every forecasting network maps ``(history, future_covariates, horizon) -> forecast``: ``history`` is
``(batch, T, n_targets + n_covariates)`` (targets first), ``future_covariates`` ``(batch, horizon, n_covariates)``
and the forecast ``(batch, horizon, n_targets)``, all in normalized units.

Example:
    >>> history = torch.arange(12.0).view(1, 6, 2)
    >>> Repeat(n_targets=2)(history, history[:, :0, 2:], horizon=3)[0].tolist()
    [[10.0, 11.0], [10.0, 11.0], [10.0, 11.0]]
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["DLinear", "LSTMCell", "MLSTMCell", "Repeat", "RidgeLast"]

State = tuple[torch.Tensor, ...]


class Repeat(nn.Module):
    """The naive forecast: the last observed value of each target, repeated over the horizon.

    Args:
        n_targets: how many leading columns of the history are targets.
    """

    def __init__(self, n_targets: int) -> None:
        super().__init__()
        self.n_targets = n_targets

    def forward(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
        """``(batch, horizon, n_targets)``: the last history row, repeated."""
        return history[:, -1:, : self.n_targets].expand(-1, horizon, -1)


class RidgeLast(nn.Module):
    """Closed-form ridge regression from the last ``lags`` values of a channel to its next ``horizon`` values,
    one map shared by every channel, on values relative to the last one (NLinear-style), with a bias.

    :meth:`fit` accumulates ``X^T X`` and ``X^T Y`` over a loader and solves once; no gradient steps.

    Args:
        n_targets: number of target columns.
        lags: ``L``, how many recent values enter the regression.
        horizon: forecast length.
        alpha: the ridge penalty (on the weights, not the bias).

    Example:
        >>> t = torch.arange(40.0)
        >>> windows = [(t[i : i + 8].view(1, 8, 1), t[:0].view(1, 0, 0), t[i + 8 : i + 12].view(1, 4, 1))
        ...            for i in range(20)]
        >>> ridge = RidgeLast(n_targets=1, lags=4, horizon=4, alpha=1e-6).fit(windows)
        >>> [round(v, 3) for v in ridge(t[30:38].view(1, 8, 1), t[:0].view(1, 0, 0), 4).flatten().tolist()]
        [38.0, 39.0, 40.0, 41.0]
    """

    def __init__(self, n_targets: int, lags: int, horizon: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.n_targets, self.lags, self.horizon, self.alpha = n_targets, lags, horizon, alpha
        self.weight: torch.Tensor
        self.register_buffer("weight", torch.zeros(lags + 1, horizon, dtype=torch.float64))

    def _features(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if history.shape[1] < self.lags:
            raise ValueError(f"history has {history.shape[1]} steps, fewer than lags={self.lags}")
        values = history[:, -self.lags :, : self.n_targets].double()  # (B, L, C)
        last = values[:, -1:, :]
        x = (values - last).permute(0, 2, 1).reshape(-1, self.lags)  # (B*C, L)
        return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1), last

    @torch.no_grad()
    def fit(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> RidgeLast:
        """Solve the ridge normal equations over ``(history, future_covariates, target)`` batches."""
        gram = torch.zeros(self.lags + 1, self.lags + 1, dtype=torch.float64)
        cross = torch.zeros(self.lags + 1, self.horizon, dtype=torch.float64)
        seen = 0
        for history, _, target in batches:
            x, last = self._features(history)
            y = (target[:, : self.horizon].double() - last).permute(0, 2, 1).reshape(-1, self.horizon)
            gram += x.t() @ x
            cross += x.t() @ y
            seen += x.shape[0]
        if seen == 0:
            raise ValueError("RidgeLast.fit: no training windows")
        penalty = torch.eye(self.lags + 1, dtype=torch.float64) * self.alpha
        penalty[-1, -1] = 0.0
        self.weight.copy_(torch.linalg.solve(gram + penalty, cross))
        return self

    def forward(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
        """``(batch, horizon, n_targets)``; ``horizon`` may not exceed the fitted one."""
        if horizon > self.horizon:
            raise ValueError(f"horizon {horizon} is longer than the fitted horizon {self.horizon}")
        x, last = self._features(history)
        y = (x @ self.weight[:, :horizon]).view(history.shape[0], self.n_targets, horizon).permute(0, 2, 1)
        return (y + last).to(history.dtype)


class DLinear(nn.Module):
    """DLinear (Zeng et al., AAAI 2023): a moving-average trend / remainder split, one linear map ``T -> horizon``
    for each, shared by every channel.

    Args:
        n_targets: number of target columns.
        history: input length ``T``.
        horizon: forecast length.
        kernel_size: moving-average window (25 in the paper).

    Example:
        >>> model = DLinear(n_targets=2, history=48, horizon=12)
        >>> tuple(model(torch.randn(4, 48, 2), torch.zeros(4, 12, 0), 12).shape)
        (4, 12, 2)
    """

    def __init__(self, n_targets: int, history: int, horizon: int, kernel_size: int = 25) -> None:
        super().__init__()
        self.n_targets, self.history, self.horizon, self.kernel_size = n_targets, history, horizon, kernel_size
        self.trend = nn.Linear(history, horizon)
        self.seasonal = nn.Linear(history, horizon)
        for layer in (self.trend, self.seasonal):
            nn.init.constant_(layer.weight, 1.0 / history)
            nn.init.zeros_(layer.bias)

    def forward(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
        """``(batch, horizon, n_targets)``."""
        if horizon != self.horizon:
            raise ValueError(f"DLinear forecasts exactly {self.horizon} steps, got horizon={horizon}")
        x = history[:, :, : self.n_targets].permute(0, 2, 1)  # (B, C, T)
        pad = (self.kernel_size - 1) // 2
        padded = torch.cat(
            [x[:, :, :1].expand(-1, -1, pad), x, x[:, :, -1:].expand(-1, -1, self.kernel_size - 1 - pad)], dim=2
        )
        trend = padded.unfold(2, self.kernel_size, 1).mean(-1)
        out = self.trend(trend) + self.seasonal(x - trend)
        return out.permute(0, 2, 1)


class LSTMCell(nn.LSTMCell):
    """``torch.nn.LSTMCell`` with the recurrent-cell interface of this package (``initial_state``, tuple state).

    Example:
        >>> cell = LSTMCell(3, 5)
        >>> h, state = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> tuple(h.shape), len(state)
        ((2, 5), 2)
    """

    def initial_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        """Zero ``(h, c)``."""
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:  # type: ignore[override]
        """One step: ``h_t`` and ``(h_t, c_t)``."""
        h, c = super().forward(x, state if state is None else (state[0], state[1]))
        return h, (h, c)


class MLSTMCell(nn.Module):
    """Multiplicative LSTM (Krause et al. 2016): ``m_t = (W_mx x_t) * (W_mh h_{t-1})`` replaces ``h_{t-1}`` in the
    gates, so the transition depends on the input (the MLSTM baseline of the TT-RNN paper).

    Args:
        input_size: size of ``x_t``.
        hidden_size: ``H``.

    Example:
        >>> cell = MLSTMCell(3, 5)
        >>> h, (h2, c) = cell(torch.randn(2, 3), cell.initial_state(2))
        >>> torch.equal(h, h2), tuple(c.shape)
        (True, (2, 5))
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.mx = nn.Linear(input_size, hidden_size, bias=False)
        self.mh = nn.Linear(hidden_size, hidden_size, bias=False)
        self.wx = nn.Linear(input_size, 4 * hidden_size)
        self.wm = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        with torch.no_grad():
            self.wx.bias[hidden_size : 2 * hidden_size].fill_(1.0)

    def initial_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        """Zero ``(h, c)``."""
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step: ``h_t`` and ``(h_t, c_t)``."""
        h, c = state
        m = self.mx(x) * self.mh(h)
        i, f, g, o = (self.wx(x) + self.wm(m)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)
