"""``Tensorize`` on a LightningModule written as a user would write it, and the standard reload afterwards.

The module follows a popular project template's MNIST module: its own network with BatchNorm, torchmetrics
accuracy on ``y``, metric names ``train/loss`` / ``val/acc``, ``save_hyperparameters()``; nothing of ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torchmetrics
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from trinity_lightning.data import DigitsDataModule
from trinity_lightning.tensor import (
    Tensorize,
    TensorizedConv,
    TensorizedLinear,
    load_tensorized,
    tensorized_checkpoints,
)
from trinity_lightning.tensor.tensorize import SPEC_KEY


def make_user_module_class() -> type[pl.LightningModule]:
    """A new class per call: one that no ``Tensorize`` has seen stands for a class imported in another process."""

    class DigitsLitModule(pl.LightningModule):
        def __init__(self, hidden: int = 16, lr: float = 0.01) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Conv2d(8, 8, 3, padding=1, stride=2),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(8 * 4 * 4, hidden),
                nn.BatchNorm1d(hidden),
                nn.ReLU(),
                nn.Linear(hidden, 10),
            )
            self.criterion = nn.CrossEntropyLoss()
            self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)
            self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def model_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x, y = batch
            logits = self(x)
            return self.criterion(logits, y), logits.argmax(dim=1), y

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            loss, preds, targets = self.model_step(batch)
            self.train_acc(preds, targets)
            self.log("train/loss", loss, on_epoch=True, prog_bar=True)
            self.log("train/acc", self.train_acc, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            loss, preds, targets = self.model_step(batch)
            self.val_acc(preds, targets)
            self.log("val/loss", loss)
            self.log("val/acc", self.val_acc)

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}

    return DigitsLitModule


def _fit(root: Path, module: pl.LightningModule, callback: Tensorize, epochs: int = 2) -> pl.Trainer:
    pl.seed_everything(0)
    trainer = pl.Trainer(
        max_epochs=epochs,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=3,
        limit_val_batches=1,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", save_last=True), callback],
    )
    trainer.fit(module, DigitsDataModule(batch_size=32))
    return trainer


def _outputs(module: pl.LightningModule) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return module(torch.linspace(-1, 1, 4 * 64).reshape(4, 1, 8, 8))


def test_user_module_with_its_own_metric_names_torchmetrics_and_batchnorm_trains_with_tensorize(tmp_path):
    module_class = make_user_module_class()
    module = module_class(hidden=16)
    callback = Tensorize("tucker", rank=0.5, epoch=1, verbose=False, progress=False)
    trainer = _fit(tmp_path, module, callback)
    assert callback.tensorized_at == 1 and callback.report is not None
    assert [r.name for r in callback.report.layers] == ["net.0", "net.3", "net.7", "net.10"]
    assert isinstance(module.net[3], TensorizedConv) and isinstance(module.net[7], TensorizedLinear)
    assert type(module.net[1]) is nn.BatchNorm2d  # BatchNorm has no weight matrix: left alone
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(metrics)
    assert 0.0 <= float(metrics["val/acc"]) <= 1.0 and torch.isfinite(metrics["train/loss"])
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert set(checkpoint[SPEC_KEY]) == {"net.0", "net.3", "net.7", "net.10"}


def test_standard_load_from_checkpoint_after_tensorize(tmp_path):
    """``MyModel.load_from_checkpoint("last.ckpt")`` used to fail with ``Missing key(s) ... weight.core``."""
    module_class = make_user_module_class()
    trained = module_class(hidden=12)
    _fit(tmp_path, trained, Tensorize("tt", rank=0.5, epoch=1, verbose=False, progress=False))
    expected = _outputs(trained)

    # in the process that trained it: the plain Lightning call
    reloaded = module_class.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert type(reloaded) is module_class and reloaded.hparams.hidden == 12
    assert isinstance(reloaded.net[3], TensorizedConv)
    assert torch.allclose(_outputs(reloaded), expected, atol=1e-6)


def test_reload_in_a_fresh_process_with_load_tensorized_or_the_decorator(tmp_path):
    trained = make_user_module_class()(hidden=12)
    _fit(tmp_path, trained, Tensorize("tucker", rank=0.5, epoch=0, verbose=False, progress=False), epochs=1)
    expected = _outputs(trained)
    ckpt = tmp_path / "ckpt" / "last.ckpt"

    fresh_class = make_user_module_class()  # never seen by Tensorize: what another process imports
    original_hook = fresh_class.on_load_checkpoint
    plain = fresh_class.load_from_checkpoint(ckpt)  # the checkpoint names our instantiator (test_plain_reload.py)
    assert type(plain) is fresh_class and fresh_class.on_load_checkpoint is original_hook
    assert "on_load_checkpoint" not in vars(plain)  # the per-instance hook removed itself
    assert torch.allclose(_outputs(plain), expected, atol=1e-6)

    loaded = load_tensorized(fresh_class, ckpt)
    assert type(loaded) is fresh_class and fresh_class.on_load_checkpoint is original_hook  # class left as it was
    assert loaded.hparams.hidden == 12 and torch.allclose(_outputs(loaded), expected, atol=1e-6)
    overridden = load_tensorized(fresh_class, ckpt, lr=0.5, map_location="cpu")
    assert overridden.hparams.lr == 0.5

    decorated = tensorized_checkpoints(make_user_module_class())
    assert torch.allclose(_outputs(decorated.load_from_checkpoint(ckpt)), expected, atol=1e-6)

    with pytest.raises(TypeError, match="pass a module instance, or a LightningModule class"):
        load_tensorized(nn.Linear, ckpt)
