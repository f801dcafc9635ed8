"""``ResidualDynamicsModule``: a LightningModule regressing the residual force from state and control."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from trinity_lightning.lander.lipschitz import LipschitzMLP


class ResidualDynamicsModule(pl.LightningModule):
    """Learn the residual force ``f_a(zeta, u)`` (units of ``m g``) with a Lipschitz-bounded ReLU MLP.

    Inputs are the simulator's features in physical units (e.g. ``[z, vz, thrust]``), divided by
    ``feature_scale`` before the network, so the network's certified Lipschitz bound is in those scaled units.
    The training range of the features (``feature_low`` / ``feature_high`` buffers, saved with the weights) is
    read from the DataModule's ``feature_range()`` when fitting; controllers warn outside it.

    Args:
        in_features: number of features (3 vertical, 6 planar).
        out_features: residual force dimensions (1 vertical, 2 planar).
        hidden: hidden widths of the MLP.
        spectral_norm: spectrally normalize every layer (Neural Lander); ``False``: a plain MLP.
        layer_bound: per-layer spectral norm (one number or one per layer; > 0).
        feature_scale: per-feature scale; ``None``: the DataModule's ``feature_scale`` (else ones).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        schedule: ``"cosine"`` (learning rate annealed to 0 over the run, per step) or ``"constant"``.

    Example:
        >>> module = ResidualDynamicsModule(3, 1, hidden=(16, 16), feature_scale=[0.25, 1.0, 9.81])
        >>> module(torch.tensor([[0.1, -0.5, 9.81]])).shape
        torch.Size([1, 1])
        >>> module.lipschitz_bound() <= 1.35**3 * 1.5  # certified, in scaled feature units
        True
    """

    feature_low: torch.Tensor
    feature_high: torch.Tensor
    feature_scale: torch.Tensor

    def __init__(
        self,
        in_features: int = 3,
        out_features: int = 1,
        hidden: Sequence[int] = (32, 32, 32),
        spectral_norm: bool = True,
        layer_bound: float | Sequence[float] = 1.35,
        feature_scale: Sequence[float] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        schedule: str = "cosine",
    ) -> None:
        super().__init__()
        if schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule: expected 'cosine' or 'constant', got {schedule!r}")
        self.save_hyperparameters()
        self.net = LipschitzMLP(in_features, out_features, hidden, layer_bound, spectral_norm)
        scale = torch.ones(in_features) if feature_scale is None else torch.tensor(list(feature_scale)).float()
        if scale.shape != (in_features,) or bool((scale <= 0).any()):
            raise ValueError(f"feature_scale: expected {in_features} numbers > 0, got {feature_scale}")
        self._scale_given = feature_scale is not None
        self.register_buffer("feature_scale", scale)
        self.register_buffer("feature_low", torch.full((in_features,), -torch.inf))
        self.register_buffer("feature_high", torch.full((in_features,), torch.inf))
        self.loss = nn.MSELoss()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features / self.feature_scale)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if stage != "fit" or datamodule is None:
            return
        if not self._scale_given and hasattr(datamodule, "feature_scale"):
            self.feature_scale.copy_(torch.as_tensor(datamodule.feature_scale, dtype=torch.float32))
        if hasattr(datamodule, "feature_range"):
            low, high = datamodule.feature_range()
            self.feature_low.copy_(low)
            self.feature_high.copy_(high)

    def _step(self, batch: Sequence[torch.Tensor], stage: str) -> torch.Tensor:
        features, target = batch[0], batch[1]
        loss = self.loss(self(features), target)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "val")
        if stage != "train":
            self.log(f"{stage}_rmse", loss.sqrt())
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self.log("lipschitz/certified", self.lipschitz_bound())

    def lipschitz_bound(self) -> float:
        """Certified Lipschitz bound of the network in scaled feature units (product of exact layer norms)."""
        return self.net.certified_bound()

    def configure_optimizers(self) -> Any:
        h: Any = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=h.lr, weight_decay=h.weight_decay)
        if h.schedule == "constant" or self._trainer is None:
            return optimizer
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
