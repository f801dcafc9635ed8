"""Segment-wise recurrence with parallel multi-step decoding (SegRNN, Lin et al. 2023) around any recurrent cell
of this package, so that a TT cell (:class:`~.cells.TLSTMCell`) can read a long history in few steps.

A long history is cut into segments of ``segment_length`` steps; each segment of each target channel is embedded
(``Linear`` + ReLU) and the cell runs once per segment (720 steps of history at segment length 24: 30 cell steps
instead of 720). The forecast is decoded in parallel: every output segment ``m`` of every channel ``c`` is one
more cell step from the encoder's final state, fed a learned position embedding of ``m`` and (by default) a
learned embedding of ``c``; a shared ``Linear`` maps the resulting hidden state to that segment's values. The
channels share every weight (channel independence) and meet only through their embeddings. Like SegRNN (and
:class:`~.module.RecurrentForecastNet`), the network forecasts the change from each channel's last observed value.

Why our own module: SegRNN's reference code hard-wires ``nn.GRU`` / ``nn.LSTM`` layers; the higher-order TT cells
keep several lagged hidden states in their state, which the layer API cannot carry, so the recurrence here steps
any cell with this package's ``cell(x, state) -> (h, state)`` interface.

Example:
    >>> net = SegmentRecurrentNet(n_targets=3, cell="tlstm", hidden_size=8, rank=2, horizon=48, segment_length=12)
    >>> history = torch.randn(4, 96, 3)
    >>> tuple(net(history, history[:, :48, 3:], 48).shape)
    (4, 48, 3)
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SegmentRecurrentNet"]


class SegmentRecurrentNet(nn.Module):
    """SegRNN's segment recurrence and parallel decoding around a cell of :data:`~.module.CELLS`.

    Args:
        n_targets: number of forecast columns (channels; they share the weights).
        n_covariates: exogenous columns. Each channel's segment embedding also reads the covariates over that
            segment, and each output segment's decoder input adds an embedding of the known future covariates over
            it.
        cell: ``tlstm``, ``ttrnn``, ``lstm`` or ``mlstm``.
        hidden_size: the cell's hidden size, also the embeddings' size (SegRNN's ``d_model``).
        lags, order, rank: TT-cell hyper-parameters.
        horizon: the longest forecast (sizes the position embeddings: ``ceil(horizon / segment_length)``).
        segment_length: steps per segment (SegRNN's ``seg_len``). A history that is not a multiple of it is read
            from its last ``floor(history / segment_length)`` whole segments (the oldest remainder is not used).
        dropout: dropout before the output map (SegRNN's ``dropout``).
        channel_embedding: ``True`` (default): the decoder input is a position embedding and a channel embedding,
            half the hidden size each (SegRNN's ``channel_id``); ``False``: a position embedding only.

    Raises:
        ValueError: naming the argument, for a non-positive size, an unknown cell, a history shorter than one
            segment, a horizon longer than ``horizon``, or a window whose column count does not match.

    Example:
        >>> net = SegmentRecurrentNet(n_targets=1, n_covariates=1, cell="lstm", hidden_size=8, horizon=24)
        >>> history, future = torch.randn(2, 72, 2), torch.randn(2, 24, 1)   # 3 segments of 24 steps
        >>> torch.equal(net(history, future, 24), history[:, -1:, :1].expand(2, 24, 1))   # untrained: Repeat
        True
    """

    def __init__(
        self,
        n_targets: int,
        n_covariates: int = 0,
        cell: str = "tlstm",
        hidden_size: int = 64,
        lags: int = 3,
        order: int = 3,
        rank: int = 4,
        horizon: int = 96,
        segment_length: int = 24,
        dropout: float = 0.1,
        channel_embedding: bool = True,
    ) -> None:
        super().__init__()
        from trinity_lightning.forecasting.module import make_cell  # the cell registry lives with the module

        for name, value in (("n_targets", n_targets), ("hidden_size", hidden_size), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if isinstance(segment_length, bool) or not isinstance(segment_length, int) or segment_length < 1:
            raise ValueError(f"segment_length: expected a positive integer, got {segment_length!r}")
        if n_covariates < 0:
            raise ValueError(f"n_covariates: expected >= 0, got {n_covariates}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout}")
        if channel_embedding and hidden_size < 2:
            raise ValueError("channel_embedding: needs hidden_size >= 2 (half position, half channel)")
        self.n_targets, self.n_covariates, self.horizon = n_targets, n_covariates, horizon
        self.segment_length, self.hidden_size = segment_length, hidden_size
        self.out_segments = math.ceil(horizon / segment_length)
        self.embed = nn.Sequential(nn.Linear(segment_length * (1 + n_covariates), hidden_size), nn.ReLU())
        self.cell = make_cell(cell, hidden_size, hidden_size, lags, order, rank)
        position = hidden_size - hidden_size // 2 if channel_embedding else hidden_size
        self.position = nn.Parameter(torch.randn(self.out_segments, position))
        self.channel = nn.Parameter(torch.randn(n_targets, hidden_size // 2)) if channel_embedding else None
        self.future = nn.Linear(segment_length * n_covariates, hidden_size) if n_covariates else None
        out = nn.Linear(hidden_size, segment_length)
        nn.init.zeros_(out.weight)  # an untrained network forecasts the last value (Repeat)
        nn.init.zeros_(out.bias)
        self.head = nn.Sequential(nn.Dropout(dropout), out)

    def _segments(self, series: torch.Tensor) -> torch.Tensor:
        """``(rows, time)`` -> ``(rows, segments, segment_length)`` over the last whole segments."""
        n = series.shape[1] // self.segment_length
        return series[:, series.shape[1] - n * self.segment_length :].unflatten(1, (n, self.segment_length))

    def forward(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
        """``(batch, horizon, n_targets)`` from ``history (batch, time, n_targets + n_covariates)`` and
        ``future_covariates (batch, >= horizon, n_covariates)``."""
        if history.dim() != 3 or history.shape[-1] != self.n_targets + self.n_covariates:
            raise ValueError(
                f"history: expected (batch, time, {self.n_targets + self.n_covariates}) for {self.n_targets} targets "
                f"and {self.n_covariates} covariates, got {tuple(history.shape)}"
            )
        if history.shape[1] < self.segment_length:
            raise ValueError(
                f"history: {history.shape[1]} steps is shorter than one segment (segment_length={self.segment_length})"
            )
        if horizon > self.horizon:
            raise ValueError(f"horizon {horizon} is longer than the network's {self.horizon} (its position embeddings)")
        batch, c = history.shape[0], self.n_targets
        last = history[:, -1:, :c]
        rows = (history[..., :c] - last).transpose(1, 2).reshape(batch * c, -1)  # row b * c + k: channel k
        segments = self._segments(rows)
        if self.n_covariates:
            past = self._segments_of_covariates(history[..., c:])
            segments = torch.cat([segments, past.repeat_interleave(c, dim=0)], dim=-1)
        x = self.embed(segments)
        state = self.cell.initial_state(batch * c, device=history.device, dtype=history.dtype)  # type: ignore[operator]
        for step in range(x.shape[1]):
            _, state = self.cell(x[:, step], state)
        m = self.out_segments
        if self.channel is not None:
            channel = self.channel.unsqueeze(1).expand(c, m, -1)
            position = self.position.unsqueeze(0).expand(c, m, -1)
            query = torch.cat([position, channel], dim=-1).unsqueeze(0).expand(batch, c, m, -1)
        else:
            query = self.position.expand(batch, c, m, -1)
        if self.future is not None:
            query = query + self.future(self._future_segments(future_covariates)).unsqueeze(1)
        query = query.reshape(batch * c * m, self.hidden_size)
        state = tuple(s.repeat_interleave(m, dim=0) for s in state)
        h, _ = self.cell(query, state)
        steps = self.head(h).view(batch, c, m * self.segment_length)[:, :, :horizon]
        return (last + steps.transpose(1, 2)).contiguous()  # contiguous: torchmetrics views its inputs

    def _segments_of_covariates(self, covariates: torch.Tensor) -> torch.Tensor:
        """``(batch, time, n_cov)`` -> ``(batch, segments, segment_length * n_cov)``, aligned with the targets'."""
        n = covariates.shape[1] // self.segment_length
        tail = covariates[:, covariates.shape[1] - n * self.segment_length :]
        return tail.reshape(covariates.shape[0], n, self.segment_length * self.n_covariates)

    def _future_segments(self, future_covariates: torch.Tensor) -> torch.Tensor:
        """``(batch, >= horizon, n_cov)`` -> ``(batch, out_segments, segment_length * n_cov)``, zero-padded."""
        if future_covariates.dim() != 3 or future_covariates.shape[-1] != self.n_covariates:
            raise ValueError(
                f"future_covariates: expected (batch, horizon, {self.n_covariates}), "
                f"got {tuple(future_covariates.shape)}"
            )
        need = self.out_segments * self.segment_length
        future = future_covariates[:, :need]
        if future.shape[1] < need:
            future = nn.functional.pad(future, (0, 0, 0, need - future.shape[1]))
        return future.reshape(future.shape[0], self.out_segments, self.segment_length * self.n_covariates)
