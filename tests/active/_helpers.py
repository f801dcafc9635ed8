"""Tiny pools and models shared by the active-learning tests."""

from __future__ import annotations

import torch
from torch import nn

from trinity_lightning.active import ActiveLearningDataModule
from trinity_lightning.data import ArrayDataset
from trinity_lightning.models import Classifier


def blobs(n: int = 240, seed: int = 0) -> ArrayDataset:
    """Three Gaussian blobs in 4-d: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    centers = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    return ArrayDataset(centers[y] + torch.randn(n, 4, generator=g), y)


def mlp(dropout: float = 0.2) -> Classifier:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))
    return Classifier(model=net, num_classes=3, lr=0.05)


def datamodule(tmp_path=None, n: int = 240, **kwargs) -> ActiveLearningDataModule:
    kwargs.setdefault("initial_labelled", 12)
    kwargs.setdefault("batch_size", 16)
    return ActiveLearningDataModule(
        blobs(n),
        val=blobs(60, seed=1),
        num_classes=3,
        labels_path=str(tmp_path / "labels.json") if tmp_path else None,
        **kwargs,
    )
