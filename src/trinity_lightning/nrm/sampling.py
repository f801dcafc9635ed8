"""Render images from class labels and latent choices, and save them as a grid (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
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
    Needs matplotlib: ``pip install "trinity-lightning[nrm]"`` (also in the ``dev`` and ``bench`` extras).
    :func:`save_tiles` writes the same grid without labels and without matplotlib.

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
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            'save_grid needs matplotlib: pip install "trinity-lightning[nrm]" (or use save_tiles, which needs only '
            "Pillow)"
        ) from err

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


def save_tiles(grid: torch.Tensor, path: str | Path, references: torch.Tensor | None = None, gap: int = 1) -> Path:
    """Save a ``(rows, columns, C, H, W)`` grid as one PNG of tiles with Pillow (no matplotlib), atomically.

    Each image is scaled to its own range; ``references``, if given, form the first row. Tiles are separated by
    ``gap`` white pixels.

    Example:
        >>> import tempfile, pathlib
        >>> out = save_tiles(torch.rand(2, 3, 1, 4, 4), pathlib.Path(tempfile.mkdtemp()) / "tiles.png")
        >>> from PIL import Image; Image.open(out).size  # 3 columns x (4 + 1) + 1, 2 rows x (4 + 1) + 1
        (16, 11)
    """
    from PIL import Image

    if references is not None:
        top = torch.zeros(1, grid.shape[1], *grid.shape[2:])
        top[0, : min(len(references), grid.shape[1])] = references[: grid.shape[1]].cpu().float()
        grid = torch.cat([top, grid.float()])
    rows, columns, channels, height, width = grid.shape
    canvas = np.full((rows * (height + gap) + gap, columns * (width + gap) + gap, channels), 255, dtype=np.uint8)
    for i in range(rows):
        for j in range(columns):
            image = grid[i, j].float()
            image = (image - image.min()) / (image.max() - image.min()).clamp_min(1e-8)
            y, x = gap + i * (height + gap), gap + j * (width + gap)
            canvas[y : y + height, x : x + width] = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(canvas[..., 0] if channels == 1 else canvas)
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        picture.save(handle, format="PNG")
    return path


class RenderSamples(pl.Callback):
    """At the end of ``fit``, render every class through the latents of a few validation images: a PNG.

    Writes ``<log_dir>/<filename>`` (rank 0) with :func:`render_grid` and :func:`save_tiles` (Pillow only): the
    first row holds the reference images, then one row per class; the last ``random_columns`` columns use
    random latents. The path is kept in ``self.path``.

    Args:
        filename: the PNG's name inside the run's log folder.
        references: how many validation images give their latents (one column each).
        random_columns: extra columns rendered from random latents.
        seed: seed of the random latents.

    Example:
        >>> RenderSamples(references=4).filename
        'nrm_samples.png'
    """

    def __init__(
        self, filename: str = "nrm_samples.png", references: int = 8, random_columns: int = 2, seed: int = 0
    ) -> None:
        if references < 1 or random_columns < 0:
            raise ValueError(f"references, random_columns: expected >= 1 and >= 0, got {references}, {random_columns}")
        self.filename, self.references, self.random_columns, self.seed = filename, references, random_columns, seed
        self.path: Path | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir)  # a collective under DDP: every rank reads it
        if not trainer.is_global_zero:
            return
        if not isinstance(pl_module, NRM):
            raise TypeError(f"RenderSamples: the model is a {type(pl_module).__name__}, not an NRM")
        images = self._references(trainer)
        was_training = pl_module.training
        try:
            grid = render_grid(pl_module, images, random_columns=self.random_columns, seed=self.seed)
        finally:
            pl_module.train(was_training)
        self.path = save_tiles(grid, folder / self.filename, references=images)

    def _references(self, trainer: pl.Trainer) -> torch.Tensor:
        datamodule: Any = getattr(trainer, "datamodule", None)
        for part in ("val", "test", "labelled"):
            try:
                x = datamodule.subset(part)[0]
            except (AttributeError, RuntimeError, ValueError):
                continue
            if len(x):
                return x[: self.references]
        loader: Any = trainer.val_dataloaders or trainer.train_dataloader
        if loader is None:
            raise RuntimeError("RenderSamples: no validation or training data to take reference images from")
        batch = next(iter(loader))
        x = batch["labelled"][0] if isinstance(batch, dict) else batch[0]
        return x[: self.references]
