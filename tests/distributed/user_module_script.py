# ruff: noqa: I001, F401, E402
"""A user's own training script (not our Classifier): run by tests/distributed/test_user_module.py.

``python user_module_script.py ORDER OUT``: imports trinity-lightning and Lightning in the order ``ORDER``, trains a
LightningModule written as a user would (its own metric names, torchmetrics on ``y``, BatchNorm, plain SGD) with
``strategy="ddp_signsgd"`` on 2 CPU processes, then our ``Classifier`` for one epoch, and writes what each rank saw
to ``OUT/rank<R>.pt``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ORDER, OUT = sys.argv[1], Path(sys.argv[2])
# the order of these imports is what the test is about: keep isort away (see the file-level noqa)
if ORDER == "trinity_first":
    import trinity_lightning
    import lightning.pytorch as pl
elif ORDER == "callbacks_first":
    import trinity_lightning.callbacks
    import lightning.pytorch as pl
elif ORDER == "lightning_first":
    import lightning.pytorch as pl
    import trinity_lightning
else:
    raise SystemExit(f"unknown order {ORDER!r}")

import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class MyModel(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
        self.train_accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=3)
        self.valid_accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.train_accuracy(logits, y)
        self.log("train/loss", loss)
        self.log("train/accuracy", self.train_accuracy)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("valid/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)
        self.valid_accuracy(logits, y)
        self.log("valid/accuracy", self.valid_accuracy)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.02)


def data(n: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return DataLoader(TensorDataset(x, y), batch_size=16)


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        strategy="ddp_signsgd",
        accelerator="cpu",
        devices=2,
        max_epochs=kwargs.pop("max_epochs", 3),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


torch.manual_seed(0)
model = MyModel()
fit = trainer()
before = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
fit.fit(model, data(384, 0), data(96, 1))
report = {
    "strategy": type(fit.strategy).__name__,
    "params": nn.utils.parameters_to_vector(model.parameters()).detach().clone(),
    "before": before,
    "metrics": {k: float(v) for k, v in fit.callback_metrics.items()},
    "steps": fit.global_step,
}

from trinity_lightning.data import DigitsDataModule
from trinity_lightning.models import Classifier

torch.manual_seed(0)
classifier_trainer = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=3)
classifier_trainer.fit(Classifier(image_size=8, channels=(4,)), DigitsDataModule(batch_size=32))
report["classifier"] = {k: float(v) for k, v in classifier_trainer.callback_metrics.items()}
OUT.mkdir(parents=True, exist_ok=True)
torch.save(report, OUT / f"rank{fit.global_rank}.pt")
# Both ranks have saved (the barrier), so leave without the interpreter's teardown: on torch 2.13 the gloo process
# group's destructor at exit aborted once in CI ("terminate called without an active exception", exit -6) after
# both fits had finished; tests/distributed/_workers.py does the same for the same reason.
classifier_trainer.strategy.barrier()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
