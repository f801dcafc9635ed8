"""CrowdEM inside a LightningModule written the way a user writes one, and its gold-free guard (issue 14 items 3-4)."""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from trinity_lightning.crowd import CrowdDataModule, CrowdEM, SimulatedCrowdDataModule
from trinity_lightning.crowd.heldout import (
    aggregate_log_likelihood,
    heldout_log_likelihood,
    worker_marginal_log_likelihood,
)
from trinity_lightning.crowd.majority_vote import MajorityVote
from trinity_lightning.crowd.simulate import hammer_spammer_confusions, simulate_annotations


class DigitsNet(pl.LightningModule):
    """Not our Classifier: its own metric names, torchmetrics on ``y`` in training_step, BatchNorm."""

    def __init__(self, lr: float = 1e-2) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
        self.train_accuracy = MulticlassAccuracy(num_classes=10)
        self.valid_accuracy = MulticlassAccuracy(num_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        self.train_accuracy(logits, y)  # fails on (N, K) soft targets: the reason for hard labels by default
        self.log("train/accuracy", self.train_accuracy)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.valid_accuracy(self(x), y)
        self.log("valid/accuracy", self.valid_accuracy)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


def _fit(lr: float, callback: CrowdEM, quiet: bool = True) -> SimulatedCrowdDataModule:
    pl.seed_everything(0, verbose=False)
    model = DigitsNet(lr)
    dm = SimulatedCrowdDataModule(
        "digits", num_annotators=12, labels_per_item=1, hammer_fraction=0.4, train_limit=600, batch_size=50
    )
    trainer = pl.Trainer(
        max_epochs=4,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        trainer.fit(model, dm)
    return dm


def test_an_unmodified_user_module_trains_with_torchmetrics_on_y():
    callback = CrowdEM(epochs_per_round=2)
    dm = _fit(1e-2, callback)
    assert callback.round == 2 and [h["bootstrap_used"] for h in callback.history] == [1.0, 1.0]
    assert callback.history[-1]["heldout_ll_model"] > callback.history[-1]["heldout_ll_baseline"] + 0.1
    assert callback.history[-1]["label_acc"] > callback.history[0]["label_acc_initial"] + 0.2  # 0.41 -> 0.7
    assert dm.hard_labels is not None and dm.hard_labels.dtype == torch.int64


def test_soft_targets_on_request_reach_the_batch():
    x = torch.randn(4, 3)
    table = {"task": [0, 0, 1, 2, 3], "worker": ["a", "b", "a", "b", "a"], "label": [1, 0, 0, 1, 0]}
    soft = CrowdDataModule(x, table, batch_size=4, soft_targets=True)
    soft.setup("fit")
    assert torch.equal(next(iter(soft.train_dataloader()))[1].sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="hard_targets"):
        CrowdDataModule(x, table, hard_targets="mode")  # type: ignore[arg-type]


def test_drawn_labels_follow_the_posteriors_and_repeat_per_epoch():
    x = torch.randn(3, 2)
    table = {"task": [0, 1, 2], "worker": ["a", "a", "a"], "label": [0, 1, 1]}
    dm = CrowdDataModule(x, table, batch_size=3, seed=7)
    dm.setup("fit")
    posterior = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    dm.set_targets(posterior)
    draws = []
    for epoch in range(600):
        dm.set_epoch(epoch)
        draws.append(dm.hard_labels.clone())
    frequency = torch.stack(draws).float().mean(0)  # share of class 1 per item
    assert torch.allclose(frequency, posterior[:, 1], atol=0.06)  # unbiased: E[CE(logits, y)] = soft CE
    dm.set_epoch(3)
    again = dm.hard_labels.clone()
    dm.set_epoch(4)
    dm.set_epoch(3)
    assert torch.equal(dm.hard_labels, again) and torch.equal(again, draws[3])  # a resume redraws the same labels
    argmax = CrowdDataModule(x, table, hard_targets="argmax")
    argmax.setup("fit")
    argmax.set_targets(posterior)
    assert argmax.hard_labels.tolist() == [0, 1, 0]


def test_the_guard_keeps_the_aggregate_when_the_model_did_not_learn():
    """lr=0: the network's predictions carry no information; without the guard MBEM makes the labels worse."""
    unguarded = CrowdEM(epochs_per_round=2, guard=False)
    _fit(0.0, unguarded)
    initial = unguarded.history[0]["label_acc_initial"]
    assert max(h["label_acc"] for h in unguarded.history) < initial - 0.2  # 0.41 -> 0.05: what the guard prevents

    guarded = CrowdEM(epochs_per_round=2)
    with pytest.warns(UserWarning, match="no better than the annotation-only baseline"):
        dm = _fit(0.0, guarded, quiet=False)
    assert [h["bootstrap_used"] for h in guarded.history] == [0.0, 0.0]
    assert all(h["label_acc"] == pytest.approx(initial) for h in guarded.history)
    assert torch.equal(dm.targets, dm.aggregator.probas_.float())
    assert guarded.history[0]["heldout_ll_model"] <= guarded.history[0]["heldout_ll_baseline"]


def test_heldout_likelihood_ranks_guesses_without_gold():
    truth = torch.arange(300) % 4
    table = simulate_annotations(truth, hammer_spammer_confusions(10, 4, 0.4, seed=0), 2, seed=1)
    right = torch.nn.functional.one_hot(truth[torch.as_tensor(list(table.item_ids))], 4).double() * 0.9 + 0.025
    # a guess that relabels the classes consistently explains the answers as well (the confusions absorb it);
    # one that is unrelated to the items (shuffled across items) explains them worse than knowing nothing
    relabelled = right.roll(1, dims=1)
    unrelated = right[torch.randperm(len(right), generator=torch.Generator().manual_seed(0))]
    ll_right, baseline = heldout_log_likelihood(table, right), worker_marginal_log_likelihood(table)
    assert heldout_log_likelihood(table, relabelled) == pytest.approx(ll_right)
    assert ll_right > baseline + 0.2 and heldout_log_likelihood(table, unrelated) < baseline
    mv = aggregate_log_likelihood(table, lambda t: MajorityVote().fit(t).probas_)
    assert ll_right > mv  # knowing the truth explains the answers better than voting among two answers
    with pytest.raises(ValueError, match="guess: expected shape"):
        heldout_log_likelihood(table, right[:5])
    with pytest.raises(ValueError, match="folds"):
        heldout_log_likelihood(table, right, folds=1)


def test_em_iter_is_a_deprecated_alias_of_n_iter():
    with pytest.warns(DeprecationWarning, match="n_iter"):
        assert CrowdEM(em_iter=3).n_iter == 3
    with pytest.raises(ValueError, match="n_iter"):
        CrowdEM(n_iter=0)
    with pytest.raises(ValueError, match="guard_folds"):
        CrowdEM(guard_folds=1)
