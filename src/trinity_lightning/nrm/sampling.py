"""Render images from class labels and latent choices, and save them as a grid."""

from __future__ import annotations

from pathlib import Path

import torch

from trinity_lightning.data import atomic_open
from trinity_lightning.nrm.module import NRM


@torch.no_grad()
def render_grid(
    model: NRM, references: torch.Tensor, classes: list[int] | None = None, random_columns: int = 0, seed: int = 0
) -> torch.Tensor:
    """Render every class through the latents of every reference image (and of random latent draws).

    Entry ``[i, j]`` is class ``classes[i]`` rendered top-down with the switches and pooling positions the
    network inferred from ``references[j]`` (columns after ``len(references)`` use random latents).

    Args:
        model: a (trained) :class:`NRM`; it is put in eval mode.
        references: images ``(K, C, H, W)`` whose inferred latents are the columns.
        classes: the class ids of the rows (default: all classes).
        random_columns: extra columns with random latents (each unit on with probability 0.5).
        seed: seed of the random latents.

    Returns:
        Images ``(rows, columns, C, H, W)`` on the CPU.

    Example:
        >>> model = NRM(image_size=8, layers=[4, "M"])
        >>> render_grid(model, torch.randn(3, 1, 8, 8), classes=[0, 1], random_columns=1).shape
        torch.Size([2, 4, 1, 8, 8])
    """
    model.eval()
    device = next(model.parameters()).device
    rows = list(range(model.hparams["num_classes"])) if classes is None else list(classes)
    references = references.to(device)
    k = len(references)
    y = torch.tensor(rows, device=device).repeat_interleave(k)
    images = torch.arange(k, device=device).repeat(len(rows))
    grid = model.render(y, x=references[images]).view(len(rows), k, *references.shape[1:])
    if random_columns:
        generator = torch.Generator().manual_seed(seed)
        latents = model.net.random_latents(random_columns, generator=generator)
        index = torch.arange(random_columns, device=device).repeat(len(rows))
        y_random = torch.tensor(rows, device=device).repeat_interleave(random_columns)
        extra = model.render(y_random, latents.select(index)).view(len(rows), random_columns, *references.shape[1:])
        grid = torch.cat([grid, extra], dim=1)
    return grid.cpu()


def save_grid(
    grid: torch.Tensor,
    path: str | Path,
    references: torch.Tensor | None = None,
    row_labels: list[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save a ``(rows, columns, C, H, W)`` grid as a PNG (atomically), each image scaled to its own range.

    ``references``, if given, are drawn as a first row so a reader sees whose latents each column uses.
    Needs matplotlib (the ``bench`` extra).

    Args:
        grid: images ``(rows, columns, C, H, W)`` as returned by :func:`render_grid`.
        path: the PNG file to write (its folder is created).
        references: the images whose latents the first columns use.
        row_labels: one label per row (e.g. the class names).
        title: a title above the grid.

    Returns:
        The path written.

    Example:
        >>> import tempfile, pathlib
        >>> out = save_grid(torch.rand(2, 3, 1, 4, 4), pathlib.Path(tempfile.mkdtemp()) / "grid.png")
        >>> out.stat().st_size > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = grid.shape[:2]
    extra = 1 if references is not None else 0
    fig, axes = plt.subplots(rows + extra, columns, figsize=(columns * 0.8, (rows + extra) * 0.8), squeeze=False)

    def show(ax: object, image: torch.Tensor) -> None:
        picture = image.float()
        picture = (picture - picture.min()) / (picture.max() - picture.min()).clamp_min(1e-8)
        data = picture[0] if picture.shape[0] == 1 else picture.permute(1, 2, 0)
        ax.imshow(data.numpy(), cmap="gray" if picture.shape[0] == 1 else None)  # type: ignore[attr-defined]
        ax.set_xticks([]), ax.set_yticks([])  # type: ignore[attr-defined]

    for j in range(columns):
        if references is not None:
            if j < len(references):
                show(axes[0][j], references[j].cpu())
            else:
                axes[0][j].axis("off")
        for i in range(rows):
            show(axes[i + extra][j], grid[i, j])
            if j == 0 and row_labels is not None:
                axes[i + extra][j].set_ylabel(row_labels[i], rotation=0, labelpad=12, fontsize=8)
    if references is not None:
        axes[0][0].set_ylabel("latents\nfrom", rotation=0, labelpad=18, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return path
