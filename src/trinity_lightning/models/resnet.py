"""A small CIFAR-style ResNet (He et al. 2016, section 4.2): 3 stages of basic blocks, 6n + 2 layers."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CifarResNet"]


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: a 3x3 stem, three stages (widths ``w, 2w, 4w``, strides 1, 2, 2) of
    ``n`` basic blocks, global average pooling and a linear head.

    Args:
        in_channels: input channels (3 for CIFAR, 1 for MNIST-like).
        num_classes: outputs.
        depth: ``6 * n + 2`` (8, 14, 20, 32, ...); keyword-only.
        width: channels of the first stage; keyword-only.

    Example:
        >>> net = CifarResNet(depth=8, width=8)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, *, depth: int = 20, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth: expected 6 * n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
        if width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"width, num_classes, in_channels: expected positive integers, got {width}, "
                f"{num_classes}, {in_channels}"
            )
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        layers: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                layers.append(_BasicBlock(cin, cout, 2 if stage > 0 and block == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(features, 1), 1))
