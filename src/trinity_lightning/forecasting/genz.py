"""Genz dynamics, the TT-RNN paper's synthetic benchmark: sequences of an iterated Genz test function
``x_{t+1} = g(x_t) + noise`` from random initial points, and a DataModule of (history, horizon) windows.

The six Genz families (Genz 1984) with width ``w`` and shape ``c``:

- ``oscillatory``: ``cos(2 pi w + c x)``
- ``product_peak``: ``1 / (c^-2 + (x - w)^2)``
- ``corner_peak``: ``(1 + c x)^-2``
- ``gaussian``: ``exp(-c^2 (x - w)^2)``
- ``continuous``: ``exp(-c |x - w|)``
- ``discontinuous``: ``exp(c x)`` for ``x < w``, else ``0``

Note: the thesis's exact map was not available to us; with ``w = 0.5, c = 1.0`` every family converges to a fixed
point within ~20 steps, so the benchmark uses ``oscillatory`` with ``c = 2.0``, whose orbits stay irregular.

Example:
    >>> x = genz_dynamics(4, 30, family="oscillatory", c=2.0, seed=0)
    >>> tuple(x.shape), bool(x.abs().max() <= 1.0)
    ((4, 30), True)
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["GENZ_FAMILIES", "GenzDataModule", "genz_dynamics", "genz_function"]

GENZ_FAMILIES = ("oscillatory", "product_peak", "corner_peak", "gaussian", "continuous", "discontinuous")


def genz_function(x: torch.Tensor, family: str = "oscillatory", w: float = 0.5, c: float = 1.0) -> torch.Tensor:
    """One Genz test function, elementwise.

    Example:
        >>> genz_function(torch.tensor([0.5]), "gaussian").item()
        1.0
    """
    if family == "oscillatory":
        return torch.cos(2 * math.pi * w + c * x)
    if family == "product_peak":
        return 1.0 / (c**-2 + (x - w) ** 2)
    if family == "corner_peak":
        return (1.0 + c * x) ** -2
    if family == "gaussian":
        return torch.exp(-(c**2) * (x - w) ** 2)
    if family == "continuous":
        return torch.exp(-c * (x - w).abs())
    if family == "discontinuous":
        return torch.where(x < w, torch.exp(c * x), torch.zeros_like(x))
    raise ValueError(f"family: got {family!r}; expected one of {list(GENZ_FAMILIES)}")


def genz_dynamics(
    n_sequences: int,
    length: int,
    family: str = "oscillatory",
    w: float = 0.5,
    c: float = 1.0,
    noise: float = 0.0,
    burn_in: int = 0,
    seed: int = 0,
) -> torch.Tensor:
    """``(n_sequences, length)`` orbits of ``x_{t+1} = g(x_t) + noise * N(0, 1)`` from ``x_0 ~ U(0, 1)``.

    Args:
        n_sequences: number of sequences.
        length: steps per sequence (after ``burn_in`` discarded steps).
        family, w, c: the Genz function (see :func:`genz_function`).
        noise: standard deviation of the additive process noise.
        burn_in: initial steps dropped (the transient from the random start).
        seed: random seed.
    """
    if n_sequences < 1 or length < 1:
        raise ValueError(f"n_sequences and length must be >= 1, got {n_sequences}, {length}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n_sequences, generator=generator, dtype=torch.float64)
    steps = []
    for t in range(burn_in + length):
        if t >= burn_in:
            steps.append(x)
        x = genz_function(x, family, w, c)
        if noise > 0:
            x = x + noise * torch.randn(n_sequences, generator=generator, dtype=torch.float64)
    return torch.stack(steps, dim=1).float()


class GenzDataModule(pl.LightningDataModule):
    """Genz sequences as ``(history, future_covariates, target)`` windows: the first ``history`` steps of each
    sequence and the ``horizon`` after them; sequences split 80 / 10 / 10 into train / val / test.

    Values are standardized with the train sequences' mean and standard deviation (``target_mean`` /
    ``target_std``, as :class:`~trinity_lightning.forecasting.datamodule.TimeSeriesDataModule` exposes them).

    Args:
        n_sequences: number of sequences (the paper: 10,000 of length 100).
        history: input length.
        horizon: forecast length.
        family, w, c, noise, burn_in: see :func:`genz_dynamics`.
        batch_size: batch size.
        seed: random seed of the data.

    Example:
        >>> dm = GenzDataModule(n_sequences=100, history=10, horizon=5, c=2.0)
        >>> dm.setup("fit")
        >>> [tuple(t.shape) for t in dm.train_dataset[0]]
        [(10, 1), (5, 0), (5, 1)]
    """

    def __init__(
        self,
        n_sequences: int = 5000,
        history: int = 50,
        horizon: int = 50,
        family: str = "oscillatory",
        w: float = 0.5,
        c: float = 2.0,
        noise: float = 0.0,
        burn_in: int = 0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.history, self.horizon, self.batch_size = history, horizon, batch_size
        self.n_targets, self.n_covariates = 1, 0
        self._ready = False

    def setup(self, stage: str | None = None) -> None:
        """Generate the sequences once and split them."""
        if self._ready:
            return
        hp = self.hparams
        x = genz_dynamics(
            hp["n_sequences"],
            self.history + self.horizon,
            hp["family"],
            hp["w"],
            hp["c"],
            hp["noise"],
            hp["burn_in"],
            hp["seed"],
        )
        n_train, n_val = int(0.8 * len(x)), int(0.1 * len(x))
        mean, std = x[:n_train].mean(), x[:n_train].std()
        self.target_mean, self.target_std = mean.view(1), std.view(1)
        z = ((x - mean) / std).unsqueeze(-1)
        empty = z.new_zeros(len(z), self.horizon, 0)
        parts = {
            "train": slice(0, n_train),
            "val": slice(n_train, n_train + n_val),
            "test": slice(n_train + n_val, None),
        }
        datasets = {k: TensorDataset(z[s, : self.history], empty[s], z[s, self.history :]) for k, s in parts.items()}
        self.train_dataset, self.val_dataset, self.test_dataset = datasets["train"], datasets["val"], datasets["test"]
        self._ready = True

    def train_dataloader(self) -> DataLoader:
        """Shuffled training windows."""
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Validation windows (all of them)."""
        return DataLoader(self.val_dataset, batch_size=self.batch_size, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        """Test windows (all of them)."""
        return DataLoader(self.test_dataset, batch_size=self.batch_size, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        """The test windows."""
        return self.test_dataloader()
