"""The NRM network: a CNN (bottom-up inference) and its rendering (top-down generation) sharing weights.

In the Neural Rendering Model (Ho, Nguyen, Patel, Anandkumar, Jordan, Baraniuk, 2018) an image is rendered
top-down from a class ``y``: the class template (a column of the classifier's weights) passes through the
levels of the network in reverse, each level choosing, per unit, whether it renders (a switch ``s``, the
counterpart of a ReLU being on) and, per pooling window, where it renders (a position ``t``, the counterpart
of the max-pool argmax), and applying its templates (the transposed conv weights). MAP inference of ``(y, s, t)``
bottom-up is the CNN's forward pass. Here both directions share one set of ordinary torch layers: the rendering
uses ``conv_transpose2d`` with the conv weights, an unpooling that puts each value back at its pooling index
(``max_unpool2d``, or the same result from ``index_put`` under torch's deterministic algorithms) and a
multiplication by the switches, so at the inferred latents it is exactly the adjoint (transposed Jacobian) of the
forward pass.

A "Min" path (the Max-Min network) shares the conv and classifier weights, uses ``min(a, 0) + slope * max(a, 0)``
instead of the leaky ReLU and min-pooling instead of max-pooling, and has its own BatchNorm statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

POOL = "M"
MODES = ("max", "min")
HEADS = ("flatten", "avgpool")


@dataclass
class Latents:
    """Latent variables of one rendering path, one entry per conv block (bottom-up order).

    Attributes:
        switches: the ReLU state ``s`` of each block as a multiplier, shape ``(N or 1, C, H, W)``: 1 where the unit
            renders, ``slope`` where it does not (0 for a plain ReLU).
        positions: the pooling position ``t`` of each block (flat indices as returned by
            ``max_pool2d(..., return_indices=True)``), or ``None`` for a block without pooling.
        sizes: spatial size ``(H, W)`` of each block's output before pooling.
    """

    switches: list[torch.Tensor]
    positions: list[torch.Tensor | None]
    sizes: list[tuple[int, int]]

    def select(self, index: torch.Tensor) -> Latents:
        """The latents of the examples ``index`` (a batch-1 switch is broadcast, not indexed)."""
        return Latents(
            [s if s.shape[0] == 1 else s[index] for s in self.switches],
            [p if p is None else p[index] for p in self.positions],
            list(self.sizes),
        )


@dataclass
class InferencePath:
    """What one bottom-up pass infers.

    Attributes:
        logits: class scores ``(N, num_classes)``.
        latents: the inferred switches and pooling positions.
        scales: per block, the per-channel scale of its affine map (BatchNorm ``gamma / sigma``, or ones).
        biases: per block, the per-channel effective bias (what a zero input produces before the activation):
            the NRM's prior parameters ``b`` of that level.
        mode: ``"max"`` or ``"min"``.
    """

    logits: torch.Tensor
    latents: Latents
    scales: list[torch.Tensor]
    biases: list[torch.Tensor]
    mode: str


class _Block(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, batch_norm: bool, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else None
        self.bn_min = nn.BatchNorm2d(out_channels) if batch_norm else None
        self.pool = pool


def parse_layers(layers: Sequence[int | str]) -> list[tuple[int, bool]]:
    """Turn a layer spec like ``[32, "M", 64, "M"]`` into ``[(width, pooled_after), ...]``.

    Example:
        >>> parse_layers([32, 32, "M", 64, "M"])
        [(32, False), (32, True), (64, True)]
    """
    blocks: list[tuple[int, bool]] = []
    for position, item in enumerate(layers):
        if isinstance(item, str) and item.upper() == POOL:
            if not blocks or blocks[-1][1]:
                raise ValueError(f"layers: 'M' at position {position} must follow a conv width (got {list(layers)})")
            blocks[-1] = (blocks[-1][0], True)
        elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
            blocks.append((item, False))
        else:
            raise ValueError(
                f"layers: expected positive conv widths or 'M' (max-pool), got {item!r} at position {position}"
            )
    if not blocks:
        raise ValueError("layers: need at least one conv width, e.g. [32, 'M', 64, 'M']")
    return blocks


class RenderingCNN(nn.Module):
    """A CNN whose transposed twin renders images from a class and latent switches.

    Each block is ``conv (k x k, stride 1) -> [BatchNorm] -> leaky ReLU(slope) -> [2x2 max-pool]``; the head is a
    linear classifier over the flattened (``head="flatten"``) or globally averaged (``head="avgpool"``) features.

    Args:
        in_channels: image channels (1 gray, 3 RGB).
        num_classes: classes.
        image_size: input height = width.
        layers: conv widths and ``"M"`` for a 2x2 max-pool after the preceding conv, e.g. ``[32, "M", 64, "M"]``.
        kernel_size: odd conv kernel size (padding keeps the spatial size).
        slope: negative slope of the leaky ReLU (0: plain ReLU); inactive units render with this weight.
        batch_norm: BatchNorm after each conv (the rendering then uses its scale; the Min path has its own).
        head: ``"flatten"`` or ``"avgpool"``.

    Example:
        >>> net = RenderingCNN(1, 10, image_size=8, layers=[4, "M"])
        >>> path = net.infer(torch.randn(2, 1, 8, 8))
        >>> net.render(torch.eye(10)[[3, 5]], path)[0].shape
        torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        layers: Sequence[int | str] = (32, "M", 64, "M"),
        kernel_size: int = 3,
        slope: float = 0.1,
        batch_norm: bool = True,
        head: str = "flatten",
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size: expected a positive odd integer, got {kernel_size}")
        if not 0.0 <= slope < 1.0:
            raise ValueError(f"slope: expected a value in [0, 1), got {slope}")
        if head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {head!r}")
        if in_channels < 1 or num_classes < 2 or image_size < 1:
            raise ValueError(f"in_channels, num_classes, image_size: got {in_channels}, {num_classes}, {image_size}")
        spec = parse_layers(layers)
        self.slope, self.batch_norm, self.head_kind = float(slope), batch_norm, head
        self.in_channels, self.num_classes, self.image_size = in_channels, num_classes, image_size
        blocks, previous, size = [], in_channels, image_size
        for width, pool in spec:
            blocks.append(_Block(previous, width, kernel_size, batch_norm, pool))
            previous, size = width, size // 2 if pool else size
        if size < 1:
            raise ValueError(f"layers: {sum(p for _, p in spec)} pools shrink a {image_size}px image to nothing")
        self.blocks = nn.ModuleList(blocks)
        self.feature_shape = (previous, size, size)
        features = previous * size * size if head == "flatten" else previous
        self.head = nn.Linear(features, num_classes)

    @property
    def block_list(self) -> list[_Block]:
        """The conv blocks, bottom-up."""
        return [cast(_Block, block) for block in self.blocks]

    # ---------------------------------------------------------------- bottom-up
    def _affine(
        self, block: _Block, u: torch.Tensor, mode: str, frozen: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pre-activation of a block and the (scale, bias) of the affine map ``a = scale * conv(h) + bias``."""
        if frozen is not None:
            scale, bias = frozen
            return u * scale.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1), scale, bias
        bn = block.bn if mode == "max" else block.bn_min
        if bn is None:
            assert block.conv.bias is not None
            conv_bias = block.conv.bias
            return u, torch.ones_like(conv_bias), conv_bias
        a = bn(u)
        with torch.no_grad():  # the statistics bn used: the batch's in training, the running ones otherwise
            if bn.training or bn.running_var is None or bn.running_mean is None:
                mean, var = u.mean(dim=(0, 2, 3)), u.var(dim=(0, 2, 3), unbiased=False)
            else:
                mean, var = bn.running_mean, bn.running_var
            inv_std = torch.rsqrt(var + bn.eps)
        weight = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
        scale = weight * inv_std
        bias = (bn.bias if bn.bias is not None else torch.zeros_like(inv_std)) - scale.detach() * mean
        return a, scale, bias

    def _conv_input(self, block: _Block, h: torch.Tensor, frozen: bool) -> torch.Tensor:
        # with a frozen affine the conv bias is already part of the given bias
        if frozen and block.conv.bias is not None:
            return F.conv2d(h, block.conv.weight, None, padding=block.conv.padding)
        return block.conv(h)

    def infer(
        self, x: torch.Tensor, mode: str = "max", affines: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None
    ) -> InferencePath:
        """Bottom-up pass: class scores and the latent switches / pooling positions it chose.

        Args:
            x: images ``(N, C, H, W)``.
            mode: ``"max"`` (leaky ReLU, max-pool) or ``"min"`` (``min(a, 0) + slope * max(a, 0)``, min-pool).
            affines: per block ``(scale, bias)`` to use instead of the block's own conv bias/BatchNorm (used to
                infer the latents of the prior, a blank image, under the statistics of a data batch).
        """
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected images (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"x: expected {self.image_size}x{self.image_size} images (image_size={self.image_size}), "
                f"got {x.shape[-2]}x{x.shape[-1]}"
            )
        switches: list[torch.Tensor] = []
        positions: list[torch.Tensor | None] = []
        sizes: list[tuple[int, int]] = []
        scales: list[torch.Tensor] = []
        biases: list[torch.Tensor] = []
        h = x
        for index, block in enumerate(self.block_list):
            frozen = affines[index] if affines is not None else None
            a, scale, bias = self._affine(block, self._conv_input(block, h, frozen is not None), mode, frozen)
            active = a > 0 if mode == "max" else a < 0
            s = torch.where(active, torch.ones_like(a), torch.full_like(a, self.slope)).detach()
            h = a * s  # leaky ReLU (max) / its mirror (min); its gradient is s
            sizes.append((h.shape[-2], h.shape[-1]))
            if block.pool:
                if mode == "max":
                    h, where = F.max_pool2d(h, 2, return_indices=True)
                else:
                    negated, where = F.max_pool2d(-h, 2, return_indices=True)
                    h = -negated
                positions.append(where)
            else:
                positions.append(None)
            switches.append(s)
            scales.append(scale)
            biases.append(bias)
        features = h.flatten(1) if self.head_kind == "flatten" else h.mean(dim=(2, 3))
        return InferencePath(self.head(features), Latents(switches, positions, sizes), scales, biases, mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores of the Max path."""
        return self.infer(x).logits

    def prior_latents(self, path: InferencePath) -> Latents:
        """Latents the network infers from a blank image under ``path``'s affine maps (the prior's mode).

        With a zero image the posterior over latents is the prior, so these switches are the ones the biases
        alone select. Pooling positions are taken from ``path`` (the prior over positions is uniform).
        """
        reference = path.latents.switches[0]
        blank = torch.zeros(1, self.in_channels, *path.latents.sizes[0], device=reference.device, dtype=reference.dtype)
        with torch.no_grad():
            prior = self.infer(blank, path.mode, affines=list(zip(path.scales, path.biases)))
        return Latents(prior.latents.switches, list(path.latents.positions), list(path.latents.sizes))

    # ---------------------------------------------------------------- top-down
    def render(
        self, top: torch.Tensor, path: InferencePath | Latents, scales: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Render images top-down from class weights ``top`` through the given latents.

        Args:
            top: ``(N, num_classes)`` class weights (one-hot for a class, probabilities for a mixture).
            path: an :class:`InferencePath` (its latents and scales are used) or bare :class:`Latents`.
            scales: per-block channel scales when ``path`` is bare latents (default: the blocks' current
                BatchNorm scales from the running statistics, or ones).

        Returns:
            ``(images, rendered)``: images ``(N, C, H, W)`` and, per block (bottom-up order), the rendered
            signal at that block's pre-activation after its switches (what the block's bias multiplies).
        """
        if isinstance(path, InferencePath):
            latents, scales = path.latents, path.scales
        else:
            latents = path
            scales = list(scales) if scales is not None else self.running_scales()
        if top.ndim != 2 or top.shape[1] != self.num_classes:
            raise ValueError(f"top: expected (N, {self.num_classes}) class weights, got shape {tuple(top.shape)}")
        channels, height, width = self.feature_shape
        mu = top.to(self.head.weight.dtype) @ self.head.weight
        if self.head_kind == "flatten":
            mu = mu.view(-1, channels, height, width)
        else:
            mu = mu[:, :, None, None].expand(-1, channels, height, width) / (height * width)
        rendered: list[torch.Tensor] = [mu] * len(self.blocks)
        for index in reversed(range(len(self.blocks))):
            block = self.block_list[index]
            where = latents.positions[index]
            if where is not None:
                mu = _unpool(mu, where, latents.sizes[index])
            mu = mu * latents.switches[index]
            rendered[index] = mu
            mu = mu * scales[index].view(1, -1, 1, 1)
            mu = F.conv_transpose2d(mu, block.conv.weight, padding=cast(tuple[int, int], block.conv.padding))
        return mu, rendered

    def running_scales(self, mode: str = "max") -> list[torch.Tensor]:
        """Per-block channel scales from BatchNorm's running statistics (ones without BatchNorm)."""
        scales = []
        for block in self.block_list:
            bn = block.bn if mode == "max" else block.bn_min
            if bn is None or bn.running_var is None:
                scales.append(torch.ones(block.conv.out_channels, device=block.conv.weight.device))
            else:
                weight = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
                scales.append(weight * torch.rsqrt(bn.running_var + bn.eps))
        return scales

    def random_latents(self, n: int, p_active: float = 0.5, generator: torch.Generator | None = None) -> Latents:
        """Latents chosen at random: each unit renders with probability ``p_active``, each pooling window
        renders at a uniformly chosen position (for sampling images from the generative model)."""
        if not 0.0 <= p_active <= 1.0:
            raise ValueError(f"p_active: expected a probability in [0, 1], got {p_active}")
        device = self.head.weight.device
        switches: list[torch.Tensor] = []
        positions: list[torch.Tensor | None] = []
        sizes: list[tuple[int, int]] = []
        size = self.image_size
        for block in self.block_list:
            shape = (n, block.conv.out_channels, size, size)
            on = torch.rand(shape, generator=generator) < p_active
            switches.append(torch.where(on, 1.0, self.slope).to(device))
            sizes.append((size, size))
            if block.pool:
                out = size // 2
                rows = torch.arange(out).view(1, 1, out, 1) * 2 + torch.randint(
                    0, 2, (n, shape[1], out, out), generator=generator
                )
                cols = torch.arange(out).view(1, 1, 1, out) * 2 + torch.randint(
                    0, 2, (n, shape[1], out, out), generator=generator
                )
                positions.append((rows * size + cols).to(device))
                size = out
            else:
                positions.append(None)
        return Latents(switches, positions, sizes)


def _unpool(values: torch.Tensor, positions: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Place pooled ``values`` back at the argmax ``positions`` of a ``(.., H, W)`` map of ``size``, zeros elsewhere.

    ``F.max_unpool2d`` (the fastest) unless torch's deterministic mode is on: it has no deterministic
    implementation, so ``Trainer(deterministic=True)`` would fail. There the same result comes from
    ``index_put(accumulate=True)``, deterministic on CPU and CUDA and exact here because the positions are unique
    per plane (about 1.5x slower than ``max_unpool2d`` forward + backward on a CPU).
    """
    if not torch.are_deterministic_algorithms_enabled():
        return F.max_unpool2d(values, positions, (2, 2), output_size=(int(size[-2]), int(size[-1])))
    batch, channels = values.shape[:2]
    height, width = int(size[-2]), int(size[-1])
    planes = torch.arange(batch * channels, device=values.device).view(batch, channels, 1) * (height * width)
    flat = (positions.flatten(2) + planes).reshape(-1)
    out = values.new_zeros(batch * channels * height * width)
    return out.index_put((flat,), values.reshape(-1), accumulate=True).view(batch, channels, height, width)
