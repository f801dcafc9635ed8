"""Standard CIFAR augmentation on a batch tensor: random crop with padding + random horizontal flip, on the device.

The crop offsets and flips are drawn on the CPU from a ``torch.Generator`` (so a seed gives the same
augmentation on every device) and applied to the whole batch with one gather on the batch's own device
(no per-image loop, no PIL). :class:`~trinity_lightning.nrm.SemiSupervisedDataModule` uses it with
``augment=True`` on its training batches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PADDING_MODES = ("reflect", "zeros")


def check_augment(crop_padding: int, padding_mode: str, flip: bool) -> None:
    """Raise ``ValueError``/``TypeError`` naming the field for a bad augmentation setting.

    Example:
        >>> check_augment(4, "reflect", True)
        >>> check_augment(-1, "reflect", True)
        Traceback (most recent call last):
        ...
        ValueError: crop_padding: expected a non-negative integer, got -1
    """
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
        raise ValueError(f"crop_padding: expected a non-negative integer, got {crop_padding!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode: expected one of {PADDING_MODES}, got {padding_mode!r}")
    if not isinstance(flip, bool):
        raise TypeError(f"flip: expected a bool, got {type(flip).__name__}")


def crop_flip(
    x: torch.Tensor,
    offsets: torch.Tensor,
    flips: torch.Tensor,
    crop_padding: int = 4,
    padding_mode: str = "reflect",
) -> torch.Tensor:
    """Crop every image of ``x`` ``(N, C, H, W)`` at ``offsets`` of its padded copy and mirror the ``flips``.

    Args:
        x: a batch of images, channels first.
        offsets: ``(N, 2)`` integers in ``[0, 2 * crop_padding]``: the top and left corner of each crop in the image
            padded by ``crop_padding`` on every side (``(crop_padding, crop_padding)`` is the image itself).
        flips: ``(N,)`` booleans: mirror that image left-right (after cropping).
        crop_padding: pixels added on every side before cropping.
        padding_mode: ``"reflect"`` (mirror the border, as FixMatch/MixMatch code does) or ``"zeros"``.

    Example:
        >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
        >>> crop_flip(x, torch.tensor([[1, 1]]), torch.tensor([True]), crop_padding=1)[0, 0].tolist()  # flip only
        [[2.0, 1.0], [4.0, 3.0]]
        >>> corner = crop_flip(x, torch.tensor([[0, 0]]), torch.tensor([False]), crop_padding=1, padding_mode="zeros")
        >>> corner[0, 0].tolist()  # the top-left crop of the zero-padded image
        [[0.0, 0.0], [0.0, 1.0]]
    """
    check_augment(crop_padding, padding_mode, True)
    if x.ndim != 4:
        raise ValueError(f"x: expected a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    if offsets.shape != (n, 2) or flips.shape != (n,):
        raise ValueError(
            f"offsets, flips: expected shapes ({n}, 2) and ({n},), got {tuple(offsets.shape)} and {tuple(flips.shape)}"
        )
    if offsets.numel() and (int(offsets.min()) < 0 or int(offsets.max()) > 2 * crop_padding):
        raise ValueError(f"offsets: expected integers in [0, {2 * crop_padding}], got {offsets.tolist()}")
    if padding_mode == "reflect" and crop_padding >= min(h, w):
        raise ValueError(
            f"crop_padding: reflect padding needs crop_padding < the image size {min(h, w)}, got {crop_padding}"
        )
    if crop_padding:
        x = F.pad(x, (crop_padding,) * 4, mode="reflect" if padding_mode == "reflect" else "constant")
    device = x.device
    offsets, flips = offsets.to(device=device, dtype=torch.long), flips.to(device=device, dtype=torch.bool)
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(flips[:, None], w - 1 - cols, cols) + offsets[:, 1:]
    rows = torch.arange(h, device=device).expand(n, h) + offsets[:, :1]
    batch = torch.arange(n, device=device)[:, None, None]
    # advanced indices around a slice: the result is (N, H, W, C); back to channels first
    return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_crop_flip(
    x: torch.Tensor,
    crop_padding: int = 4,
    flip: bool = True,
    padding_mode: str = "reflect",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random crop of the input size from the image padded by ``crop_padding``, then a random left-right flip.

    Offsets (uniform in ``[0, 2 * crop_padding]`` per axis) and flips (probability 0.5) are drawn on the CPU from
    ``generator`` (torch's default CPU generator if ``None``), so the same generator state gives the same
    augmentation on a CPU and a GPU batch; :func:`crop_flip` applies them on ``x``'s device. Shape and dtype
    are kept.

    Example:
        >>> x = torch.randn(8, 3, 32, 32)
        >>> a = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
        >>> b = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
        >>> a.shape == x.shape and bool((a == b).all())
        True
    """
    check_augment(crop_padding, padding_mode, flip)
    n = x.shape[0]
    offsets = torch.randint(0, 2 * crop_padding + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros(n, dtype=torch.bool)
    return crop_flip(x, offsets, flips, crop_padding, padding_mode)
