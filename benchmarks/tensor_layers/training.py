"""The plain train / evaluate loop every grid job uses (AdamW + one-cycle, flips and shifts for CIFAR-10)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import BATCH


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def head_params(model: nn.Module) -> int:
    return n_params(model.head)  # type: ignore[arg-type]


def train(
    model: nn.Module, data: tuple[torch.Tensor, ...], epochs: int, lr: float, seed: int, augment: bool
) -> nn.Module:
    xtr, ytr = data[0], data[1]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(ytr) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(ytr), generator=gen).to(xtr.device)
        for i in range(0, len(ytr), BATCH):
            idx = order[i : i + BATCH]
            x, y = xtr[idx], ytr[idx]
            if augment:  # horizontal flip per image + one random 4-px shift per batch (cheap on GPU)
                flip = torch.rand(len(idx), device=x.device) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(3), x)
                dx, dy = (int(v) for v in torch.randint(-4, 5, (2,), generator=gen))
                x = torch.roll(nn.functional.pad(x, (4, 4, 4, 4)), (dy, dx), (2, 3))[:, :, 4:-4, 4:-4]
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    return model


@torch.no_grad()
def accuracy(model: nn.Module, data: tuple[torch.Tensor, ...]) -> float:
    model.eval()
    xte, yte = data[2], data[3]
    correct = sum(
        int((model(xte[i : i + 1000]).argmax(1) == yte[i : i + 1000]).sum()) for i in range(0, len(yte), 1000)
    )
    return correct / len(yte)
