"""The forecasting LightningModule: a recurrent encoder over the history, then either a free-running recurrent
decoder (the TT-RNN paper's seq2seq) or a direct multi-step head; per-horizon MSE / MAE / RMSE via torchmetrics.

Metrics are computed in normalized units (the standard long-horizon protocol reports them so); ``predict_step``
returns forecasts in the series' original units.

Example:
    >>> net = RecurrentForecastNet(n_targets=2, n_covariates=1, cell="tlstm", hidden_size=8, rank=2)
    >>> history, future_covariates = torch.randn(4, 24, 3), torch.randn(4, 6, 1)
    >>> tuple(net(history, future_covariates, horizon=6).shape)
    (4, 6, 2)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric

from trinity_lightning.forecasting.baselines import LSTMCell, MLSTMCell
from trinity_lightning.forecasting.cells import TLSTMCell, TTRNNCell

__all__ = [
    "CELLS",
    "CHANNEL_COVARIATES",
    "INSTANCE_NORMS",
    "ChannelIndependent",
    "Forecaster",
    "Highway",
    "HorizonMetrics",
    "InstanceNorm",
    "RecurrentForecastNet",
    "evaluate",
    "make_cell",
]

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

CELLS: dict[str, Callable[..., nn.Module]] = {
    "tlstm": TLSTMCell,
    "ttrnn": TTRNNCell,
    "lstm": LSTMCell,
    "mlstm": MLSTMCell,
}


def make_cell(name: str, input_size: int, hidden_size: int, lags: int = 3, order: int = 3, rank: int = 4) -> nn.Module:
    """A recurrent cell by name (``tlstm``, ``ttrnn``, ``lstm``, ``mlstm``); ``lags/order/rank`` apply to TT cells.

    Example:
        >>> type(make_cell("mlstm", 3, 8)).__name__
        'MLSTMCell'
    """
    if name not in CELLS:
        raise ValueError(f"cell: got {name!r}; expected one of {sorted(CELLS)}")
    if name in ("tlstm", "ttrnn"):
        return CELLS[name](input_size, hidden_size, lags=lags, order=order, rank=rank)
    return CELLS[name](input_size, hidden_size)


class RecurrentForecastNet(nn.Module):
    """Encoder-decoder forecaster around one recurrent cell.

    The encoder reads every history row (targets and covariates). ``decoder="recurrent"`` then runs free: each
    step feeds its own forecast (or, with teacher forcing, the truth) and the known future covariates back into the
    cell; ``decoder="direct"`` maps the last hidden state to all ``horizon`` steps at once. Both forecast the change
    from the last observed value (so an untrained model starts near :class:`~.baselines.Repeat`).

    Args:
        n_targets: number of forecast columns.
        n_covariates: number of exogenous columns.
        cell: ``tlstm``, ``ttrnn``, ``lstm`` or ``mlstm``.
        hidden_size: the cell's hidden size.
        lags, order, rank: TT-cell hyper-parameters.
        decoder: ``recurrent`` or ``direct``.
        horizon: the horizon of the direct head (required for ``direct``).
    """

    def __init__(
        self,
        n_targets: int,
        n_covariates: int = 0,
        cell: str = "tlstm",
        hidden_size: int = 32,
        lags: int = 3,
        order: int = 3,
        rank: int = 4,
        decoder: str = "recurrent",
        horizon: int | None = None,
    ) -> None:
        super().__init__()
        if decoder not in ("recurrent", "direct"):
            raise ValueError(f"decoder: got {decoder!r}; expected 'recurrent' or 'direct'")
        if decoder == "direct" and not horizon:
            raise ValueError("decoder='direct' needs horizon=...")
        self.n_targets, self.n_covariates, self.decoder, self.horizon = n_targets, n_covariates, decoder, horizon
        self.cell = make_cell(cell, n_targets + n_covariates, hidden_size, lags, order, rank)
        out = n_targets * (int(horizon or 1) if decoder == "direct" else 1)
        self.head = nn.Linear(hidden_size, out)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        history: torch.Tensor,
        future_covariates: torch.Tensor,
        horizon: int,
        target: torch.Tensor | None = None,
        teacher_forcing: float = 0.0,
    ) -> torch.Tensor:
        """``(batch, horizon, n_targets)``; ``target`` and ``teacher_forcing`` (a probability per step) train the
        recurrent decoder with the truth fed back instead of its own forecast."""
        batch = history.shape[0]
        state = self.cell.initial_state(batch, device=history.device, dtype=history.dtype)  # type: ignore[operator]
        h = history.new_zeros(batch, 1)
        for t in range(history.shape[1]):
            h, state = self.cell(history[:, t], state)
        last = history[:, -1, : self.n_targets]
        if self.decoder == "direct":
            if horizon > int(self.horizon or 0):
                raise ValueError(f"horizon {horizon} is longer than the direct head's {self.horizon}")
            steps = self.head(h).view(batch, -1, self.n_targets)[:, :horizon]
            return last.unsqueeze(1) + steps
        outputs = []
        y = last + self.head(h)
        outputs.append(y)
        for k in range(1, horizon):
            fed = y
            if target is not None and teacher_forcing > 0 and random.random() < teacher_forcing:
                fed = target[:, k - 1]
            h, state = self.cell(torch.cat([fed, future_covariates[:, k - 1]], dim=1), state)
            y = fed + self.head(h)
            outputs.append(y)
        return torch.stack(outputs, dim=1)


CHANNEL_COVARIATES = ("append", "drop")
DECODERS = ("recurrent", "direct", "segment")


class ChannelIndependent(nn.Module):
    """Channel independence around any forecasting network ``(history, future_covariates, horizon)``: every target
    channel is forecast on its own by the same (shared-weight) network, as in DLinear, PatchTST and SegRNN.

    A ``(batch, time, n_targets + n_covariates)`` window becomes ``batch * n_targets`` univariate windows
    ``(batch * n_targets, time, 1 [+ n_covariates])``, row ``b * n_targets + c`` holding target channel ``c`` of
    window ``b``; the wrapped network forecasts ``(batch * n_targets, horizon, 1)`` and the forecast is reshaped back to
    ``(batch, horizon, n_targets)``. The wrapped network is therefore built for **one** target: its weights are
    shared by the channels and see no cross-channel information (the channels no longer mix in one hidden state).

    Covariates (``covariates``): ``"append"`` (default) gives every channel's window all the exogenous columns,
    over the history and, as known future inputs, over the horizon (the wrapped network is built with
    ``n_covariates`` covariates); ``"drop"`` forecasts each target from its own past alone (the wrapped network has
    no covariates). Extra arguments pass through, a ``target`` for teacher forcing reshaped like the forecast.
    Per-channel instance normalisation (:class:`InstanceNorm`) and the channel-shared :class:`Highway` commute with
    it and go outside (``Forecaster(channel_independent=True, instance_norm="revin")``).

    Args:
        network: the shared univariate network (one target column).
        covariates: ``append`` or ``drop``.

    Example:
        >>> net = ChannelIndependent(RecurrentForecastNet(1, 0, "lstm", 4))
        >>> history = torch.randn(8, 24, 7)                        # 8 windows, 7 target channels
        >>> tuple(net(history, history[:, :6, 7:], 6).shape)       # one shared 1-channel LSTM, run 56 times
        (8, 6, 7)
    """

    def __init__(self, network: nn.Module, covariates: str = "append") -> None:
        super().__init__()
        if covariates not in CHANNEL_COVARIATES:
            raise ValueError(f"channel_covariates: got {covariates!r}; expected one of {CHANNEL_COVARIATES}")
        self.network, self.covariates = network, covariates

    def split(self, history: torch.Tensor, future_covariates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(history, future_covariates, n_targets)`` of the ``batch * n_targets`` univariate windows."""
        if history.dim() != 3 or future_covariates.dim() != 3:
            raise ValueError(
                "channel_independent: expected history (batch, time, channels) and future_covariates (batch, horizon, "
                f"covariates), got shapes {tuple(history.shape)} and {tuple(future_covariates.shape)}"
            )
        batch, steps, channels = history.shape
        n_covariates = future_covariates.shape[-1]
        n_targets = channels - n_covariates
        if n_targets < 1:
            raise ValueError(
                f"channel_independent: history has {channels} columns and future_covariates {n_covariates}: no target "
                "column left"
            )
        targets = history[..., :n_targets].transpose(1, 2).reshape(batch * n_targets, steps, 1)
        if self.covariates == "drop" or n_covariates == 0:
            future = future_covariates.new_zeros(batch * n_targets, future_covariates.shape[1], 0)
            return targets, future, n_targets
        past = history[..., n_targets:].repeat_interleave(n_targets, dim=0)
        future = future_covariates.repeat_interleave(n_targets, dim=0)
        return torch.cat([targets, past], dim=-1), future, n_targets

    @staticmethod
    def _per_channel(target: torch.Tensor) -> torch.Tensor:
        """``(batch, steps, n_targets)`` -> ``(batch * n_targets, steps, 1)``."""
        batch, steps, n_targets = target.shape
        return target.transpose(1, 2).reshape(batch * n_targets, steps, 1)

    def forward(
        self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """``(batch, horizon, n_targets)``: the shared network's forecast of every channel; extra arguments (the
        recurrent decoder's ``target`` and ``teacher_forcing``) go to the network, a ``target`` split per channel."""
        batch = history.shape[0]
        univariate, future, n_targets = self.split(history, future_covariates)
        if args and isinstance(args[0], torch.Tensor):
            args = (self._per_channel(args[0]), *args[1:])
        if isinstance(kwargs.get("target"), torch.Tensor):
            kwargs["target"] = self._per_channel(kwargs["target"])
        out = self.network(univariate, future, horizon, *args, **kwargs)
        if out.dim() != 3 or out.shape[0] != batch * n_targets or out.shape[-1] != 1:
            raise ValueError(
                f"channel_independent: the wrapped network must forecast one channel, (batch * n_targets, horizon, 1) "
                f"= ({batch * n_targets}, {horizon}, 1); got {tuple(out.shape)} (build it with n_targets=1)"
            )
        return out.reshape(batch, n_targets, out.shape[1]).transpose(1, 2).contiguous()  # torchmetrics views it


INSTANCE_NORMS = ("revin", "last")


class InstanceNorm(nn.Module):
    """Per-window instance normalisation around any forecasting network ``(history, future_covariates, horizon)``.

    Each input window is normalised by its own statistics, per channel, before the network sees it, and the
    forecast is mapped back: ``mode="revin"`` subtracts the window's mean and divides by its standard deviation
    (RevIN, Kim et al. 2022, without the affine parameters; PatchTST's default), ``mode="last"`` subtracts the last
    observed value (NLinear). The future covariates are shifted and scaled by their own channels' history
    statistics; the target fed back for teacher forcing by the targets'. This removes a level (and scale) shift
    between the training and the evaluation months, which the series' train-split normalisation does not.

    Args:
        network: the wrapped forecasting network (its targets are the leading ``history`` columns; the number of
            targets is ``history`` columns minus ``future_covariates`` columns).
        mode: ``revin`` or ``last``.
        eps: added to the variance (``revin``).

    Example:
        >>> from trinity_lightning.forecasting.baselines import Repeat
        >>> history = torch.tensor([[[1.0], [3.0]]])                  # mean 2, std 1
        >>> InstanceNorm(Repeat(1))(history, history[:, :0, 1:], 2).flatten().tolist()
        [3.0, 3.0]
    """

    def __init__(self, network: nn.Module, mode: str = "revin", eps: float = 1e-5) -> None:
        super().__init__()
        if mode not in INSTANCE_NORMS:
            raise ValueError(f"instance_norm: got {mode!r}; expected one of {INSTANCE_NORMS} or None")
        self.network, self.mode, self.eps = network, mode, eps

    def statistics(self, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)``, each ``(batch, 1, channels)``: the window's mean and std, or its last row and 1."""
        if self.mode == "last":
            loc = history[:, -1:].detach()
            return loc, torch.ones_like(loc)
        loc = history.mean(dim=1, keepdim=True).detach()
        scale = (history.var(dim=1, keepdim=True, unbiased=False) + self.eps).sqrt().detach()
        return loc, scale

    def forward(
        self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The wrapped network's forecast on the normalised window, in the caller's units; extra arguments (the
        recurrent decoder's ``target`` for teacher forcing) are passed on, a ``target`` normalised like the
        history's targets."""
        n_targets = history.shape[-1] - future_covariates.shape[-1]
        loc, scale = self.statistics(history)
        history = (history - loc) / scale
        future_covariates = (future_covariates - loc[..., n_targets:]) / scale[..., n_targets:]
        loc, scale = loc[..., :n_targets], scale[..., :n_targets]
        if args and isinstance(args[0], torch.Tensor):
            args = ((args[0] - loc) / scale, *args[1:])
        if isinstance(kwargs.get("target"), torch.Tensor):
            kwargs["target"] = (kwargs["target"] - loc) / scale
        return self.network(history, future_covariates, horizon, *args, **kwargs) * scale + loc


class Highway(nn.Module):
    """A linear autoregressive highway around any forecasting network (LSTNet, Lai et al. 2018): the forecast is
    the network's forecast plus a linear map of the last ``window`` observed values of each target channel.

    One ``nn.Linear(window, horizon)`` is shared by every target channel (channel-shared, like
    :class:`~.baselines.RidgeLast` and DLinear), so the wrapped network only has to model the residual of a linear
    forecast. The map starts at zero (the forecast is then the network's own); :meth:`fit_ridge` sets it to the
    closed-form ridge fit of what the network, as it stands, leaves over (``target - network``) on a loader's
    windows, so that training starts from a ridge-quality forecast.

    With ``gate=True`` the forecast is ``linear(x) + g * network(x)`` with a learnable scalar ``g`` that starts at
    0 (ReZero, Bachlechner et al. 2020): an untrained network adds nothing, so after :meth:`fit_ridge` training
    starts from exactly the ridge forecast whatever the untrained network outputs. Without the gate the map is
    fitted to what the untrained network leaves over, which gives the same start only where that output is a
    linear function of the window (the recurrent networks' untrained output on ETTh1 nearly is: the two starts
    differed by 2e-5 in test MSE, docs/forecasting.md, stop 20). The gate's value is read as the network's share.

    Args:
        network: the wrapped forecasting network ``(history, future_covariates, horizon) -> forecast`` (targets are
            the leading history columns: history columns minus ``future_covariates`` columns).
        window: ``w``, how many of the last history steps the map reads (at most the history length).
        horizon: the longest horizon forecast.
        gate: scale the network's forecast by a learnable scalar that starts at 0.

    Example:
        >>> from trinity_lightning.forecasting.baselines import Repeat
        >>> net = Highway(Repeat(1), window=2, horizon=3)
        >>> history = torch.tensor([[[1.0], [3.0]]])
        >>> net(history, history[:, :0, 1:], 3).flatten().tolist()          # the map starts at zero: Repeat
        [3.0, 3.0, 3.0]
        >>> with torch.no_grad():
        ...     _ = net.linear.weight.copy_(torch.tensor([[0.0, 1.0]] * 3))   # + the last value again
        >>> net(history, history[:, :0, 1:], 2).flatten().tolist()
        [6.0, 6.0]
        >>> gated = Highway(Repeat(1), window=2, horizon=3, gate=True)   # the network's share starts at 0
        >>> gated(history, history[:, :0, 1:], 3).flatten().tolist()
        [0.0, 0.0, 0.0]
    """

    def __init__(self, network: nn.Module, window: int, horizon: int, gate: bool = False) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"highway: expected a window of at least 1 step, got {window}")
        if not isinstance(gate, bool):
            raise ValueError(f"highway_gate: expected True or False, got {gate!r}")
        self.network, self.window, self.horizon = network, window, horizon
        self.linear = nn.Linear(window, horizon)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.gate: nn.Parameter | None = nn.Parameter(torch.zeros(())) if gate else None

    def _inputs(self, history: torch.Tensor, future_covariates: torch.Tensor) -> torch.Tensor:
        """``(batch, n_targets, window)``: the last ``window`` values of each target channel."""
        if history.shape[1] < self.window:
            raise ValueError(f"highway: history has {history.shape[1]} steps, fewer than window={self.window}")
        n_targets = history.shape[-1] - future_covariates.shape[-1]
        return history[:, -self.window :, :n_targets].transpose(1, 2)

    def linear_forecast(self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int) -> torch.Tensor:
        """The highway's part alone, ``(batch, horizon, n_targets)``."""
        if horizon > self.horizon:
            raise ValueError(f"horizon {horizon} is longer than the highway's {self.horizon}")
        return self.linear(self._inputs(history, future_covariates))[..., :horizon].transpose(1, 2)

    def forward(
        self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The network's forecast (times the gate, if any) plus the linear map; extra arguments go to the network."""
        return self.network_forecast(history, future_covariates, horizon, *args, **kwargs) + self.linear_forecast(
            history, future_covariates, horizon
        )

    def network_forecast(
        self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The network's part alone (times the gate, if any), ``(batch, horizon, n_targets)``."""
        base = self.network(history, future_covariates, horizon, *args, **kwargs)
        return base if self.gate is None else self.gate * base

    @torch.no_grad()
    def fit_ridge(self, batches: Iterable[Batch], alpha: float = 1.0) -> Highway:
        """Set the map to the closed-form ridge regression (penalty ``alpha`` on the weights, not the bias) of the
        residual ``target - network(history)`` on the last ``window`` values, over ``batches`` of
        ``(history, future_covariates, target)`` at the full horizon; the network is run in eval mode as it is.
        """
        was_training = self.network.training
        self.network.eval()
        size = self.window + 1
        gram = torch.zeros(size, size, dtype=torch.float64)
        cross = torch.zeros(size, self.horizon, dtype=torch.float64)
        try:
            for history, future_covariates, target in batches:
                residual = target[:, : self.horizon] - self.network_forecast(history, future_covariates, self.horizon)
                x = self._inputs(history, future_covariates).reshape(-1, self.window).double()
                x = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
                y = residual.transpose(1, 2).reshape(-1, self.horizon).double()
                gram += x.t() @ x
                cross += x.t() @ y
        finally:
            self.network.train(was_training)
        if not gram[-1, -1]:
            raise ValueError("Highway.fit_ridge: no training windows")
        penalty = torch.eye(size, dtype=torch.float64) * alpha
        penalty[-1, -1] = 0.0
        solution = torch.linalg.solve(gram + penalty, cross)
        self.linear.weight.copy_(solution[:-1].t())
        self.linear.bias.copy_(solution[-1])
        return self


WRAPPERS = (InstanceNorm, Highway, ChannelIndependent)
W = TypeVar("W", InstanceNorm, Highway, ChannelIndependent)


class HorizonMetrics(nn.Module):
    """Per-step MSE and MAE over a horizon (torchmetrics, one output per step), RMSE derived per step.

    ``compute()`` returns ``mse``, ``mae``, ``rmse`` curves ``(horizon,)``; ``summary(h)`` the protocol's numbers
    for horizon ``h`` (the mean over steps ``1..h``).

    Example:
        >>> m = HorizonMetrics(3)
        >>> m.update(torch.zeros(2, 3, 1), torch.tensor([[[1.0], [2.0], [3.0]]] * 2))
        >>> m.compute()["mse"].tolist(), m.summary(2)["mae"]
        ([1.0, 4.0, 9.0], 1.5)
    """

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.mse: Metric = MeanSquaredError(num_outputs=horizon)
        self.mae: Metric = MeanAbsoluteError(num_outputs=horizon)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """``(batch, horizon, channels)`` forecasts and truth."""
        p = preds.detach().permute(0, 2, 1).reshape(-1, self.horizon).float()
        t = target.permute(0, 2, 1).reshape(-1, self.horizon).float()
        self.mse.update(p, t)
        self.mae.update(p, t)

    def compute(self) -> dict[str, torch.Tensor]:
        """Per-step curves."""
        mse = self.mse.compute().reshape(-1)
        return {"mse": mse, "mae": self.mae.compute().reshape(-1), "rmse": mse.sqrt()}

    def summary(self, horizon: int | None = None) -> dict[str, float]:
        """Mean over steps ``1..horizon`` of MSE, MAE and RMSE (the square root of that MSE)."""
        curves = self.compute()
        h = horizon or self.horizon
        mse = float(curves["mse"][:h].mean())
        return {"mse": mse, "mae": float(curves["mae"][:h].mean()), "rmse": mse**0.5}

    def reset(self) -> None:
        """Clear the accumulated state."""
        self.mse.reset()
        self.mae.reset()


@torch.no_grad()
def evaluate(network: nn.Module, batches: Iterable[Batch], horizon: int) -> HorizonMetrics:
    """Run any forecasting network ``(history, future_covariates, horizon) -> forecast`` over ``batches`` in eval
    mode and return the filled :class:`HorizonMetrics` (normalized units).

    Example:
        >>> from trinity_lightning.forecasting.baselines import Repeat
        >>> batch = (torch.ones(2, 5, 1), torch.zeros(2, 3, 0), torch.full((2, 3, 1), 3.0))
        >>> evaluate(Repeat(1), [batch], horizon=3).summary()["mse"]
        4.0
    """
    was_training = network.training
    network.eval()
    metrics = HorizonMetrics(horizon)
    try:
        for history, future_covariates, target in batches:
            metrics.update(network(history, future_covariates, horizon), target[:, :horizon])
    finally:
        network.train(was_training)
    return metrics


class Forecaster(pl.LightningModule):
    """Multi-step forecasting with a TT-RNN / TLSTM (or LSTM / MLSTM, or any network) on windows from
    :class:`~trinity_lightning.forecasting.datamodule.TimeSeriesDataModule`.

    Logs ``train_loss``, ``val_mse``, ``val_mae`` and, on test, ``test_mse`` / ``test_mae`` / ``test_rmse`` and the
    same at each of ``report_horizons`` (``test_mse@96`` ...; mean over steps ``1..h``). After ``trainer.test``
    the per-step curves are in :attr:`test_curves`. ``predict_step`` returns forecasts in original units.

    Args:
        cell: ``tlstm``, ``ttrnn``, ``lstm`` or ``mlstm``.
        hidden_size: hidden size of the cell.
        lags: ``L``, lagged hidden states of a TT cell.
        order: ``P``, order of a TT cell.
        rank: TT rank.
        decoder: ``recurrent`` (free-running, the paper's), ``direct`` (multi-step head) or ``segment`` (the cell
            reads the history segment by segment and decodes every output segment in parallel: SegRNN's design,
            :class:`~trinity_lightning.forecasting.segment.SegmentRecurrentNet`; channel-independent with channel
            embeddings; suits long histories such as 720 steps).
        horizon: forecast length (default: the DataModule's).
        n_targets, n_covariates: sizes (default: the DataModule's).
        teacher_forcing: probability of feeding the truth back in the recurrent decoder at the first epoch.
            At long horizons prefer 0 (or a schedule that ends well before training does): a decoder trained on
            the truth never pays for a constant per-step increment, which integrates over a free-running forecast
            (measured on ETTh1 at 720 steps: squared mean error 4.9 of the last step's MSE 5.5 with p = 0.5; 0.56
            of 1.15 with p = 0, same seed and steps; docs/forecasting.md).
        teacher_forcing_epochs: the probability falls linearly to 0 over this many epochs (the schedule).
        lr: Adam learning rate.
        lr_decay: the learning rate is multiplied by this after every epoch (``0.5``: DLinear's published
            ``type1`` schedule, halved each epoch; ``1.0``: constant).
        weight_decay: Adam weight decay.
        network: any module ``(history, future_covariates, horizon) -> forecast`` to train instead (a baseline).
        report_horizons: horizons logged separately at test time.
        instance_norm: ``None`` (default), ``"revin"`` or ``"last"``: wrap the network (built or given) in
            :class:`InstanceNorm`, so every window is normalised by its own mean / std (or last value) and the
            forecast de-normalised. On ETTh1 the validation and test months sit at other levels than the training
            months; measured at horizon 720 (docs/forecasting.md, stop 16) it lowers the recurrent models' test MSE
            (TLSTM 1.21 -> 0.73, LSTM 1.12 -> 0.72) but raises their validation MSE (1.52-1.59 -> 1.92), so the
            benchmark's validation-chosen recipe keeps it off.
        highway: ``None`` (default) or a window ``w``: wrap the network (built or given) in :class:`Highway`, so
            the forecast is the network's plus a linear map (shared by the channels) of the last ``w`` observed
            values of each target (LSTNet's autoregressive highway); the network then models the residual of a
            linear forecast. Applied inside ``instance_norm`` (the map reads the normalised window).
            :meth:`fit_highway` sets the map to a closed-form ridge fit before training. A given ``network`` needs
            ``horizon``. Measured on ETTh1 at horizon 720 (docs/forecasting.md, stop 17; chosen on validation,
            w = 96, ridge warm start, trained along): test MSE TLSTM 1.21 -> 0.75, LSTM 1.12 -> 0.83.
        highway_lr: the highway's learning rate (``None``: ``lr``; ``0``: frozen, e.g. at its ridge fit, so the
            network learns the residual of a fixed linear forecast).
        highway_gate: with ``highway``, scale the network's forecast by a learnable scalar starting at 0
            (:class:`Highway`'s ``gate``), so that after :meth:`fit_highway` training starts from exactly the ridge
            forecast instead of ridge plus the untrained network's output.
        channel_independent: ``False`` (default) or ``True``: wrap the network in :class:`ChannelIndependent`, so
            one shared univariate network forecasts every target channel on its own (DLinear / PatchTST / SegRNN's
            channel independence); a built recurrent network is then built for one target (its parameter count
            drops: the input and the head are one channel wide). A given ``network`` must forecast one channel.
            Applied inside ``highway`` and ``instance_norm`` (both are per channel). Measured on ETTh1 at 720
            (docs/forecasting.md, "Channel independence"): its best recipe on validation (direct head, 336-value
            highway) scores test MSE 0.653 (TLSTM); validation preferred, by 0.001, the direct head with the
            channels mixed and a 96-value highway (test 0.651); with the recurrent decoder it did not help on
            validation (1.33 vs 1.30).
        channel_covariates: with ``channel_independent``, ``"append"`` (default: every channel's window carries all
            covariates) or ``"drop"`` (each target from its own past alone).
        segment_length: with ``decoder="segment"``, steps per segment (SegRNN's ``seg_len``; 24 in its ETTh1 recipe).
        dropout: with ``decoder="segment"``, dropout before the output map (SegRNN's ETTh1 recipe: 0.1).

    Example:
        >>> model = Forecaster(cell="tlstm", hidden_size=8, rank=2, horizon=6, n_targets=1)
        >>> batch = (torch.randn(3, 12, 1), torch.zeros(3, 6, 0), torch.randn(3, 6, 1))
        >>> tuple(model.predict_step(batch, 0).shape)
        (3, 6, 1)
    """

    def __init__(
        self,
        cell: str = "tlstm",
        hidden_size: int = 32,
        lags: int = 3,
        order: int = 3,
        rank: int = 4,
        decoder: str = "recurrent",
        horizon: int | None = None,
        n_targets: int | None = None,
        n_covariates: int | None = None,
        teacher_forcing: float = 0.5,
        teacher_forcing_epochs: int = 5,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_decay: float = 1.0,
        network: nn.Module | None = None,
        report_horizons: list[int] | None = None,
        instance_norm: str | None = None,
        highway: int | None = None,
        highway_lr: float | None = None,
        channel_independent: bool = False,
        channel_covariates: str = "append",
        highway_gate: bool = False,
        segment_length: int = 24,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder: got {decoder!r}; expected one of {DECODERS}")
        if not isinstance(channel_independent, bool):
            raise ValueError(f"channel_independent: expected True or False, got {channel_independent!r}")
        if channel_covariates not in CHANNEL_COVARIATES:
            raise ValueError(f"channel_covariates: got {channel_covariates!r}; expected one of {CHANNEL_COVARIATES}")
        if highway is not None and network is not None and horizon is None:
            raise ValueError("highway: a given network needs horizon=... (the highway's output length)")
        if highway is not None and (isinstance(highway, bool) or not isinstance(highway, int) or highway < 1):
            raise ValueError(f"highway: expected None or a window of at least 1 step, got {highway!r}")
        if highway_lr is not None and highway_lr < 0:
            raise ValueError(f"highway_lr: expected a learning rate >= 0, got {highway_lr}")
        if not isinstance(highway_gate, bool):
            raise ValueError(f"highway_gate: expected True or False, got {highway_gate!r}")
        if highway_gate and highway is None:
            raise ValueError("highway_gate: needs highway=w (the gate scales the network inside the highway)")
        if instance_norm is not None and instance_norm not in INSTANCE_NORMS:
            raise ValueError(f"instance_norm: got {instance_norm!r}; expected one of {INSTANCE_NORMS} or None")
        if not 0.0 <= teacher_forcing <= 1.0:
            raise ValueError(f"teacher_forcing: expected a probability in [0, 1], got {teacher_forcing}")
        if not 0.0 < lr_decay <= 1.0:
            raise ValueError(f"lr_decay: expected a factor in (0, 1], got {lr_decay}")
        self.save_hyperparameters(ignore=["network"])
        self.network = self._normalized(network)
        self.register_buffer("target_mean", torch.zeros(0))
        self.register_buffer("target_std", torch.zeros(0))
        self.test_curves: dict[str, torch.Tensor] = {}
        if network is None and n_targets is not None and horizon is not None:
            self._build(n_targets, n_covariates or 0, horizon)

    def _normalized(self, network: nn.Module | None) -> nn.Module | None:
        """``network`` wrapped in the :class:`ChannelIndependent`, :class:`Highway` and :class:`InstanceNorm` the
        options ask for (innermost first)."""
        if network is None or isinstance(network, InstanceNorm):
            return network
        if self.hparams.get("channel_independent") and not isinstance(network, (Highway, ChannelIndependent)):
            network = ChannelIndependent(network, str(self.hparams.get("channel_covariates", "append")))
        window, horizon = self.hparams.get("highway"), self.hparams.get("horizon")
        if window is not None and not isinstance(network, Highway):
            if horizon is None:
                raise ValueError("highway: a given network needs horizon=... (the highway's output length)")
            network = Highway(network, int(window), int(horizon), gate=bool(self.hparams.get("highway_gate", False)))
        mode = self.hparams.get("instance_norm")
        return network if mode is None else InstanceNorm(network, mode)

    def _wrapper(self, kind: type[W]) -> W | None:
        """The wrapper of type ``kind`` around the network (the chain of :data:`WRAPPERS`), or ``None``."""
        net = self.network
        while isinstance(net, WRAPPERS):
            if isinstance(net, kind):
                return net
            net = net.network
        return None

    @property
    def highway_module(self) -> Highway | None:
        """The :class:`Highway` around the network (``highway=w``), or ``None``."""
        return self._wrapper(Highway)

    @property
    def channel_independent_module(self) -> ChannelIndependent | None:
        """The :class:`ChannelIndependent` around the network (``channel_independent=True``), or ``None``."""
        return self._wrapper(ChannelIndependent)

    @torch.no_grad()
    def fit_highway(self, batches: Iterable[Batch], alpha: float = 1.0) -> None:
        """Set the highway's map to the closed-form ridge fit of the residual the network leaves on ``batches``
        (:meth:`Highway.fit_ridge`), in the units the highway sees (instance-normalised when ``instance_norm`` is
        set). Example: ``model.fit_highway(datamodule.train_dataloader())`` before ``trainer.fit``."""
        highway = self.highway_module
        if highway is None:
            raise ValueError("fit_highway: the Forecaster has no highway (pass highway=w)")
        if isinstance(self.network, InstanceNorm):
            norm = self.network

            def normalised() -> Iterable[Batch]:
                for history, future_covariates, target in batches:
                    n_targets = history.shape[-1] - future_covariates.shape[-1]
                    loc, scale = norm.statistics(history)
                    yield (
                        (history - loc) / scale,
                        (future_covariates - loc[..., n_targets:]) / scale[..., n_targets:],
                        (target - loc[..., :n_targets]) / scale[..., :n_targets],
                    )

            highway.fit_ridge(normalised(), alpha)
        else:
            highway.fit_ridge(batches, alpha)

    def _build(self, n_targets: int, n_covariates: int, horizon: int) -> None:
        hp = self.hparams
        self.hparams.update(n_targets=n_targets, n_covariates=n_covariates, horizon=horizon)
        if hp.get("channel_independent"):  # one shared univariate network, with or without the covariates
            n_targets = 1
            n_covariates = n_covariates if hp.get("channel_covariates", "append") == "append" else 0
        cell_args = (n_targets, n_covariates, hp["cell"], hp["hidden_size"], hp["lags"], hp["order"], hp["rank"])
        network: nn.Module
        if hp["decoder"] == "segment":
            from trinity_lightning.forecasting.segment import SegmentRecurrentNet

            network = SegmentRecurrentNet(
                *cell_args,
                horizon=horizon,
                segment_length=int(hp.get("segment_length", 24)),
                dropout=float(hp.get("dropout", 0.1)),
            )
        else:
            network = RecurrentForecastNet(*cell_args, hp["decoder"], horizon)
        self.network = self._normalized(network)

    def setup(self, stage: str) -> None:
        """Take sizes and the target scale from the trainer's DataModule (when it has them)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "target_mean"):
            self.target_mean = dm.target_mean.clone().to(self.device)
            self.target_std = dm.target_std.clone().to(self.device)
        if self.network is None:
            if dm is None:
                raise ValueError("Forecaster: pass n_targets and horizon, or fit with a TimeSeriesDataModule")
            hp = self.hparams
            self._build(
                hp["n_targets"] or dm.n_targets,
                dm.n_covariates if hp["n_covariates"] is None else hp["n_covariates"],
                hp["horizon"] or dm.horizon,
            )

    @property
    def horizon(self) -> int:
        """The forecast length."""
        return int(self.hparams["horizon"])

    def forward(
        self, history: torch.Tensor, future_covariates: torch.Tensor, horizon: int | None = None
    ) -> torch.Tensor:
        """Normalized forecast ``(batch, horizon, n_targets)``."""
        assert self.network is not None
        return self.network(history, future_covariates, horizon or self.horizon)

    def teacher_forcing_probability(self) -> float:
        """The scheduled probability at the current epoch (linear decay to 0)."""
        epochs = int(self.hparams["teacher_forcing_epochs"])
        if epochs <= 0 or self._trainer is None:
            return 0.0
        return float(self.hparams["teacher_forcing"]) * max(0.0, 1.0 - self.current_epoch / epochs)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        history, future_covariates, target = batch
        inner = self.network
        while isinstance(inner, WRAPPERS):
            inner = inner.network
        if isinstance(inner, RecurrentForecastNet):
            assert self.network is not None
            preds = self.network(
                history, future_covariates, target.shape[1], target, self.teacher_forcing_probability()
            )
        else:
            preds = self(history, future_covariates, target.shape[1])
        loss = nn.functional.mse_loss(preds, target)
        self.log("train_loss", loss, prog_bar=True, batch_size=history.shape[0])
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_metrics = HorizonMetrics(self.horizon).to(self.device)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        history, future_covariates, target = batch
        self._val_metrics.update(self(history, future_covariates, target.shape[1]), target)

    def on_validation_epoch_end(self) -> None:
        summary = self._val_metrics.summary()
        self.log("val_mse", summary["mse"], prog_bar=True)
        self.log("val_mae", summary["mae"])

    def on_test_epoch_start(self) -> None:
        self._test_metrics = HorizonMetrics(self.horizon).to(self.device)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        history, future_covariates, target = batch
        self._test_metrics.update(self(history, future_covariates, target.shape[1]), target)

    def on_test_epoch_end(self) -> None:
        self.test_curves = {k: v.cpu() for k, v in self._test_metrics.compute().items()}
        for name, value in self._test_metrics.summary().items():
            self.log(f"test_{name}", value)
        for h in self.hparams["report_horizons"] or []:
            if h < self.horizon:
                for name, value in self._test_metrics.summary(h).items():
                    self.log(f"test_{name}@{h}", value)

    def predict_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        """Forecasts in original units (the DataModule's train-split scale undone)."""
        history, future_covariates, _ = batch
        preds = self(history, future_covariates, future_covariates.shape[1] or None)
        if self.target_mean.numel():
            preds = preds * self.target_std + self.target_mean
        return preds

    def configure_optimizers(self) -> Any:
        params: Any = self.parameters()
        highway, highway_lr = self.highway_module, self.hparams.get("highway_lr")
        if highway is not None and highway_lr is not None:
            own = {id(p) for p in highway.linear.parameters()}
            rest = [p for p in self.parameters() if id(p) not in own]
            params = [{"params": rest}]
            if highway_lr > 0:
                params.append({"params": list(highway.linear.parameters()), "lr": highway_lr})
            else:
                highway.linear.requires_grad_(False)
        optimizer = torch.optim.Adam(params, lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
        decay = float(self.hparams.get("lr_decay", 1.0))
        if decay == 1.0:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer, decay)}

    def num_parameters(self) -> int:
        """Trainable parameters of the network."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["hyper_parameters"] = dict(self.hparams)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Size the target-scale buffers like the checkpoint's (they are empty until a DataModule sets them), so that
        ``Forecaster.load_from_checkpoint`` restores a model trained with a DataModule."""
        state = checkpoint.get("state_dict", {})
        for name in ("target_mean", "target_std"):
            if name in state and getattr(self, name).shape != state[name].shape:
                setattr(self, name, torch.zeros_like(state[name], device=self.device))
