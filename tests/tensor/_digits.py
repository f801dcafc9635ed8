"""A small CNN trained on sklearn digits, shared by the tensor tests (plain torch: fast and deterministic)."""

from __future__ import annotations

import functools

import torch
from torch import nn

from trinity_lightning.models import SmallCNN


@functools.lru_cache(maxsize=1)
def digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def accuracy(model: nn.Module) -> float:
    _, _, x, y = digits_tensors()
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train(model: nn.Module, epochs: int = 3, lr: float = 3e-3) -> nn.Module:
    x, y, _, _ = digits_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(y), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    return model


@functools.lru_cache(maxsize=1)
def _trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return train(SmallCNN(1, 10, channels=(16, 32), image_size=8)).state_dict()


def trained_cnn() -> SmallCNN:
    """A fresh copy of the trained digits CNN (about 97% test accuracy)."""
    model = SmallCNN(1, 10, channels=(16, 32), image_size=8)
    model.load_state_dict(_trained_state())
    return model.eval()
