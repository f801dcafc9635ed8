"""CROWDLAB quality tables from CrowdEM inside ``trainer.fit`` with a user-written LightningModule."""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
from torch import nn

from trinity_lightning.crowd import CrowdEM, SimulatedCrowdDataModule
from trinity_lightning.crowd.quality import annotators_path, label_quality


class SmallNet(pl.LightningModule):
    """A module as a user writes it: its own layers and loss, nothing from this library."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("my_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _fit(tmp_path, **callback_kwargs):
    pl.seed_everything(0, verbose=False)
    dm = SimulatedCrowdDataModule(
        "digits", num_annotators=8, labels_per_item=2, hammer_fraction=0.5, train_limit=400, batch_size=50
    )
    callback = CrowdEM(epochs_per_round=1, guard=False, **callback_kwargs)
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(SmallNet(), dm)
    return callback, dm


def test_crowdem_writes_and_exposes_crowdlab_tables_every_round(tmp_path):
    out = tmp_path / "reports" / "quality.csv"
    callback, dm = _fit(tmp_path, quality_path=str(out))
    assert callback.round == 3 and callback.predictions is not None
    tables = callback.label_quality()
    table = dm.annotation_table
    # the model's predictions of the last round as pred_probs, on the DataModule's own ids
    again = label_quality(table, callback.predictions.double())
    pd.testing.assert_frame_equal(tables.label_quality, again.label_quality)
    assert len(tables.label_quality) == table.num_items and tables.probabilities_from == "pred_probs"
    # the hammers (perfect workers) rank above every spammer
    hammer = (dm.true_confusions.diagonal(dim1=1, dim2=2).mean(dim=1) > 0.9).numpy()
    stats = tables.annotator_stats
    by_worker = dict(zip(table.worker_ids, hammer))
    kinds = [by_worker[w] for w in stats.index]  # lowest quality first
    assert kinds == sorted(kinds) and any(kinds) and not all(kinds)
    # the consensus is right more often than a single label
    consensus = torch.tensor(tables.label_quality["consensus_label"].to_numpy())
    single = (table.labels == dm.gold[table.items]).double().mean()
    assert float((consensus == dm.gold).double().mean()) > float(single)
    # both CSVs on disk (written atomically: no temporary file left), equal to the last round's tables
    on_disk = pd.read_csv(out, index_col="item")
    assert list(on_disk.columns) == list(tables.label_quality.columns) and len(on_disk) == table.num_items
    workers = pd.read_csv(annotators_path(out), index_col="worker")
    assert list(workers.index) == list(stats.index)
    assert sorted(p.name for p in out.parent.iterdir()) == ["quality.annotators.csv", "quality.csv"]
    # the predictions travel in the checkpoint
    restored = CrowdEM(epochs_per_round=1)
    restored.load_state_dict(callback.state_dict())
    assert torch.equal(restored.predictions, callback.predictions)
    pd.testing.assert_frame_equal(restored.label_quality(table).label_quality, tables.label_quality)


def test_label_quality_before_any_round_says_so():
    with pytest.raises(RuntimeError, match="no round has run yet"):
        CrowdEM().label_quality()
