"""A module written as a user writes it (not our Classifier): its own metric names (``valid_loss``,
``val/acc``), torchmetrics on ``y``, BatchNorm and dropout. The callbacks run it unchanged, or refuse with an
error naming the one thing to change (issue 13, issue 14 item 5)."""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import pytest
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from trinity_lightning.active import ActiveLearning
from trinity_lightning.active.partial_feedback import (
    ClassHierarchy,
    PartialFeedback,
    PartialFeedbackDataModule,
    partial_label_loss,
)

from ..active._helpers import datamodule


class UserModule(pl.LightningModule):
    def __init__(self, num_classes: int = 3, partial: bool = False, inputs: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(inputs or (5 if partial else 4), 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(16, num_classes),
        )
        self.partial = partial
        self.train_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
        self.valid_acc = torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        if self.partial:  # ALPF: y is the candidate mask
            return partial_label_loss(logits, y)
        self.train_acc(logits, y)  # torchmetrics on y: needs hard labels
        self.log("train_acc", self.train_acc)
        return F.cross_entropy(logits, y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.valid_acc(logits, y)
        self.log("valid_loss", F.cross_entropy(logits, y))
        self.log("val/acc", self.valid_acc)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _trainer(tmp_path, callback, **kwargs):
    return pl.Trainer(
        max_epochs=kwargs.pop("max_epochs", -1),
        callbacks=[callback],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_active_learning_runs_a_user_module_and_records_its_metric_names(tmp_path):
    al = ActiveLearning(
        "bald", query_size=10, budget=32, strategy_kwargs={"n_samples": 3}, curve_path=str(tmp_path / "c.csv")
    )
    _trainer(tmp_path, al).fit(UserModule(), datamodule=datamodule())
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert [int(r["labelled"]) for r in rows] == [12, 22, 32]
    assert {"valid_loss", "val/acc"} <= set(rows[0]) and "train_acc" not in rows[0]  # every validation metric
    assert all(0.0 <= float(r["val/acc"]) <= 1.0 for r in rows)


def test_a_monitor_that_is_not_logged_is_refused_at_the_first_round(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"monitor: ActiveLearning records \['val_acc'\] but the module logged \[.*'val/acc'.*'valid_loss'\]; "
        r"set ActiveLearning\(monitor=\.\.\.\)",
    ):
        _trainer(tmp_path, ActiveLearning("entropy", query_size=10, budget=32, monitor="val_acc")).fit(
            UserModule(), datamodule=datamodule()
        )


HIERARCHY = ClassHierarchy.from_nested({"animal": ["cat", "dog"], "thing": ["car", "cup", "pen"]})


def _pf_datamodule(tmp_path):
    from trinity_lightning.data import ArrayDataset

    def pool(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 5
        return ArrayDataset(3 * torch.eye(5)[y] + torch.randn(n, 5, generator=g), y)

    return PartialFeedbackDataModule(
        pool(120, 0), HIERARCHY, val=pool(40, 1), batch_size=256
    )  # BatchNorm: no batch of 1


def test_partial_feedback_runs_a_user_module(tmp_path):
    callback = PartialFeedback("alpf_erc", round_budget=0.2, total_budget=0.6, curve_path=str(tmp_path / "c.csv"))
    _trainer(tmp_path, callback, max_epochs=3).fit(UserModule(5, partial=True), datamodule=_pf_datamodule(tmp_path))
    rows = list(csv.DictReader((tmp_path / "c.csv").open()))
    assert len(rows) == 3 and rows[0]["val/acc"] == "" and 0.0 <= float(rows[-1]["val/acc"]) <= 1.0
    with pytest.raises(ValueError, match=r"set PartialFeedback\(monitor=\.\.\.\)"):
        _trainer(tmp_path, PartialFeedback(round_budget=0.2, monitor="val_acc"), max_epochs=3).fit(
            UserModule(5, partial=True), datamodule=_pf_datamodule(tmp_path)
        )


def test_partial_feedback_names_the_one_thing_to_change_for_a_hard_label_module(tmp_path):
    with pytest.raises(RuntimeError) as caught:  # cross_entropy / torchmetrics on the candidate mask
        _trainer(tmp_path, PartialFeedback(round_budget=0.2), max_epochs=2).fit(
            UserModule(5, partial=False, inputs=5), datamodule=_pf_datamodule(tmp_path)
        )
    assert any("partial_label_loss(logits, candidates)" in note for note in getattr(caught.value, "__notes__", []))
