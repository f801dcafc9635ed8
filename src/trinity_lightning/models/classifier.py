"""A plain image/feature classifier LightningModule used by the recipes and as a base for benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy


class SmallCNN(nn.Module):
    """Conv (3x3) -> BatchNorm -> ReLU -> MaxPool blocks, then a flatten + linear head.

    Args:
        in_channels: input channels (1 for gray, 3 for RGB).
        num_classes: outputs.
        channels: output channels of each conv block (each block halves the spatial size).
        image_size: input height = width (to size the head).
        dropout: dropout before the head.

    Example:
        >>> SmallCNN(1, 10, channels=(8, 16), image_size=8)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        channels: Sequence[int] = (32, 64),
        image_size: int = 28,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous, size = in_channels, image_size
        for width in channels:
            layers += [
                nn.Conv2d(previous, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous, size = width, size // 2
        if size < 1:
            raise ValueError(f"channels: {len(channels)} pooling blocks shrink a {image_size}px image to nothing")
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(previous * size * size, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Classifier(pl.LightningModule):
    """Cross-entropy classifier around any ``nn.Module`` (default: :class:`SmallCNN`).

    Logs ``train_loss``, ``val_loss``, ``val_acc``, ``test_acc`` (torchmetrics accuracy, micro).

    Every argument after ``model`` is keyword-only, in the library's order (``in_channels, num_classes`` first,
    as in :class:`SmallCNN` and every other network here).

    Args:
        model: the network mapping a batch of inputs to logits; default ``SmallCNN(in_channels, num_classes,
            channels, image_size)``.
        in_channels: input channels for the default CNN.
        num_classes: number of classes.
        image_size: input size for the default CNN.
        channels: conv widths for the default CNN.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.

    Example:
        >>> clf = Classifier(in_channels=1, num_classes=10, image_size=8, channels=(8,))
        >>> clf(torch.zeros(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        channels: Sequence[int] = (32, 64),
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model if model is not None else SmallCNN(in_channels, num_classes, channels, image_size)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y), prog_bar=True, sync_dist=True)
        self.val_acc(logits, y)
        self.log("val_acc", self.val_acc, prog_bar=True, sync_dist=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.test_acc(self(x), y)
        self.log("test_acc", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).softmax(dim=-1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams["lr"], weight_decay=self.hparams["weight_decay"])
