"""BALD for any architecture: a network with dropout on its input has no trunk to share, so the whole network is
sampled, in calls of about ``ROWS_PER_CALL`` rows with channels-last conv weights on CPU (``sampled_passes``)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from trinity_lightning.active import BALD, ActiveLearning, ActiveLearningDataModule, scoring
from trinity_lightning.active.scoring import find_mc_split, mc_logits, sampled_passes, score_pool
from trinity_lightning.data import ArrayDataset
from trinity_lightning.models import Classifier


class InputDropoutCNN(nn.Module):
    """Dropout on the input, then conv + batch norm + linear: nothing deterministic to run once."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Dropout(0.3),
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 4 * 4, classes),
        )
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.net(x)


def _loop_reference(model: nn.Module, x: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """The samples as plain passes, one network per sample: sample ``s`` multiplies every input by the same
    dropout mask, drawn as consistent MC dropout documents it (``seed * 1009 + layer index``), ``(S, N, C)``."""
    g = torch.Generator().manual_seed(seed * 1009)
    keep = (torch.rand((n_samples, 1, *x.shape[1:]), generator=g) >= 0.3).float() / 0.7
    with torch.inference_mode():
        return torch.stack([model.net[1:](x * keep[s]) for s in range(n_samples)])


def test_whole_network_path_equals_separate_passes_with_the_same_seed(monkeypatch):
    monkeypatch.setattr(scoring, "ROWS_PER_CALL", 8)
    model = InputDropoutCNN().eval()
    x = torch.randn(8, 1, 8, 8)
    assert find_mc_split(model) is None
    with torch.inference_mode():
        fast, mask = mc_logits(model, x, 6, seed=3)
    assert fast.shape == (6, 8, 3) and mask is None
    assert model.forwards == 6  # a batch of ROWS_PER_CALL items: one sample per call, like baal's T passes
    reference = _loop_reference(model, x, 6, seed=3)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)  # channels-last conv: rounding only
    assert not torch.allclose(fast[0], fast[1])  # the samples differ (dropout was on)
    assert not model.net[0].training  # dropout back in eval mode


def test_small_batches_share_calls_in_sample_order(monkeypatch):
    monkeypatch.setattr(scoring, "ROWS_PER_CALL", 8)
    model = InputDropoutCNN().eval()
    x = torch.randn(3, 1, 8, 8)
    with torch.inference_mode():
        fast, _ = mc_logits(model, x, 7, seed=5)
    assert model.forwards == 3  # ceil(8 / 3) = 3 samples per call: 3 + 3 + 1
    # each sample keeps its own network whichever call it lands in (consistent masks across the split calls)
    torch.testing.assert_close(fast, _loop_reference(model, x, 7, seed=5), atol=1e-5, rtol=1e-5)


def test_the_model_is_left_as_it_was():
    model = InputDropoutCNN().eval()
    before = {name: (p, p.stride()) for name, p in model.named_parameters()}
    with torch.inference_mode():
        mc_logits(model, torch.randn(5, 1, 8, 8), 4)
    after = dict(model.named_parameters())
    assert all(after[name] is p and p.stride() == stride for name, (p, stride) in before.items())
    assert model.net[1].weight.is_contiguous()  # not left in channels-last


def test_input_dropout_sequential_is_sampled_whole():
    seq = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert find_mc_split(seq) is None  # dropout first: no trunk (used to split off an empty one)
    assert find_mc_split(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 3))) is not None
    logits, _ = sampled_passes(seq.train(), torch.randn(6, 4), 3)
    assert logits.shape == (3, 6, 3)


def test_token_masks_come_back_for_the_batch_not_the_replicas(monkeypatch):
    monkeypatch.setattr(scoring, "ROWS_PER_CALL", 16)

    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop, self.out = nn.Dropout(0.5), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.out(self.drop(x)), x[..., 0] > 0

    x = torch.randn(4, 5, 4)
    logits, mask = mc_logits(Tagger(), x, 6)
    assert logits.shape == (6, 4, 5, 2) and mask.shape == (4, 5)
    assert torch.equal(mask, x[..., 0] > 0)


def _images(n: int, seed: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.5
    x[:, 0, :4, :4] += (y == 0).float()[:, None, None] * 2
    x[:, 0, 4:, 4:] += (y == 1).float()[:, None, None] * 2
    return ArrayDataset(x, y)


def test_bald_on_an_input_dropout_cnn_inside_active_learning(tmp_path):
    dm = ActiveLearningDataModule(_images(120), val=None, initial_labelled=12, batch_size=16, pool_batch_size=32)
    al = ActiveLearning("bald", query_size=10, budget=32, strategy_kwargs={"n_samples": 4})
    model = Classifier(model=InputDropoutCNN(), num_classes=3, lr=0.05)
    trainer = pl.Trainer(
        max_epochs=-1,
        callbacks=[al],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
        limit_val_batches=0,
    )
    trainer.fit(model, datamodule=dm)
    assert dm.n_labelled == 32 and al.finished and al.round == 2
    assert model.model.net[1].weight.is_contiguous()  # trained on between rounds, never left channels-last
    # the same scoring outside the callback picks distinct pool items, all still unlabelled before the query
    dm.setup()
    sel = score_pool(model, dm.pool_dataloader(), BALD(n_samples=4), 5, dm.pool_indices)
    assert len(set(sel.indices)) == 5 and set(sel.indices) <= set(dm.pool_indices)


@pytest.mark.parametrize("batch", [3, 300])
def test_bald_scores_equal_the_unbatched_reference(batch):
    """BALD from ``mc_logits`` equals BALD of a plain loop of forward passes with the same seed (one sample per
    call from ``ROWS_PER_CALL`` items up; below, the replicas share calls in sample order)."""
    model = InputDropoutCNN().eval()
    x = torch.randn(batch, 1, 8, 8)
    with torch.inference_mode():
        fast, _ = mc_logits(model, x, 10, seed=11)
    reference = _loop_reference(model, x, 10, seed=11)
    bald = BALD(n_samples=10)
    torch.testing.assert_close(bald.score(fast), bald.score(reference), atol=1e-5, rtol=1e-4)


def test_a_model_class_named_dropout_is_not_switched_to_training_mode():
    """Regression: ``InputDropoutCNN`` itself matched the "Dropout" class-name rule, so MC dropout put the whole
    model in training mode: batch norm used batch statistics and overwrote its running statistics."""
    model = InputDropoutCNN().eval()
    model.net[2].running_mean.fill_(0.5)
    x = torch.randn(4, 1, 8, 8)
    with torch.inference_mode():
        mc_logits(model, x, 3)
    assert torch.equal(model.net[2].running_mean, torch.full((4,), 0.5))  # running stats untouched
    assert scoring.is_dropout(model.net[0]) and not scoring.is_dropout(model)


def test_a_forward_that_views_after_a_convolution_falls_back_to_its_own_layout():
    class ViewNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop, self.conv, self.out = nn.Dropout(0.2), nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 3)
            self.forwards = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.forwards += 1
            h = self.conv(self.drop(x))
            return self.out(h.view(h.shape[0], -1))  # fails on a channels-last tensor

    model = ViewNet().eval()
    x = torch.randn(4, 3, 8, 8)
    with pytest.raises(RuntimeError, match="view"):  # what the channels-last call meets
        model.to(memory_format=torch.channels_last)(x)
    model.to(memory_format=torch.contiguous_format)
    model.forwards = 0
    with torch.inference_mode():
        logits, _ = mc_logits(model, x, 3)
        assert logits.shape == (3, 4, 3) and model.forwards == 2  # one failed channels-last try, then one call
        mc_logits(model, x, 3)
    assert model.forwards == 3  # not tried again
