"""DataModules over in-memory arrays: a generic one, scikit-learn's digits, and the shared image sets."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trinity_lightning.data.readers import ArrayDataset, load_tensors
from trinity_lightning.data.shared import ImageArrays, load_cifar10, load_fashion_mnist, load_mnist


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (rest, held-out) with ``round(n * fraction)`` held out."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in [0, 1), got {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    k = round(n * fraction)
    return np.sort(order[k:]), np.sort(order[:k])


class ArrayDataModule(pl.LightningDataModule):
    """Train/validation/test loaders over :class:`ArrayDataset` objects.

    Args:
        train: the training set (a validation split is carved from it when ``val`` is ``None``).
        val: the validation set.
        test: the test set.
        val_fraction: share of ``train`` held out for validation when ``val`` is ``None``.
        batch_size: examples per batch.
        num_workers: DataLoader workers.
        seed: seed of the validation split and the training shuffle.

    Example:
        >>> import torch
        >>> dm = ArrayDataModule(ArrayDataset(torch.randn(20, 4), torch.arange(20) % 2), batch_size=5)
        >>> dm.setup("fit"); len(dm.train_dataloader())
        4
    """

    def __init__(
        self,
        train: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        val_fraction: float = 0.1,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self._train_source, self._val_source, self.test_set = train, val, test
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self._loaded = False

    def load(self) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        """Return ``(train, val, test)``; subclasses that read data override this."""
        return self._train_source, self._val_source, self.test_set

    def setup(self, stage: str | None = None) -> None:
        if self._loaded:
            return
        train, val, test = self.load()
        if train is not None and val is None and self.val_fraction > 0:
            rest, held = split_indices(len(train), self.val_fraction, self.seed)  # type: ignore[arg-type]
            train, val = torch.utils.data.Subset(train, rest.tolist()), torch.utils.data.Subset(train, held.tolist())
        self.train_set, self.val_set, self.test_set = train, val, test
        self._loaded = True

    def _loader(self, dataset: Dataset | None, shuffle: bool, name: str) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__} has no {name} set; call setup() or pass {name}=...")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, "train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, "val")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, "test")


def _images_to_dataset(arrays: ImageArrays, limit: int | None = None, seed: int = 0) -> ArrayDataset:
    images, labels = arrays.images, arrays.labels
    if limit is not None and limit < len(labels):
        keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
        images, labels = images[keep], labels[keep]
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
    # per-channel standardization with statistics of this split
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return ArrayDataset((x - mean) / std, torch.from_numpy(labels.astype(np.int64)), arrays.classes)


class DigitsDataModule(ArrayDataModule):
    """scikit-learn's 8x8 handwritten digits (1,797 images, shipped with scikit-learn: works offline).

    Images are ``(1, 8, 8)`` floats scaled to ``[0, 1]``; a seeded ``test_fraction`` is held out as test.

    Example:
        >>> dm = DigitsDataModule(batch_size=32)
        >>> dm.setup("fit"); next(iter(dm.train_dataloader()))[0].shape
        torch.Size([32, 1, 8, 8])
    """

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(val_fraction=val_fraction, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.test_fraction = test_fraction
        self.num_classes = 10

    def load(self) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        data = {"pixels": list(digits.data / 16.0), "label": digits.target}
        full = load_tensors(data, label="label", num_classes=10, shape=(1, 8, 8))
        rest, held = split_indices(len(full), self.test_fraction, self.seed + 1)
        train = ArrayDataset(full.features[rest], full.labels[rest])  # type: ignore[index]
        test = ArrayDataset(full.features[held], full.labels[held])  # type: ignore[index]
        return train, None, test


_IMAGE_SETS: dict[str, Any] = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


class SharedImageDataModule(ArrayDataModule):
    """MNIST, Fashion-MNIST or CIFAR-10 from the shared data folder, standardized per channel.

    Args:
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``.
        train_limit: keep a seeded random subset of this many training images (``None``: all).
        test_limit: likewise for the test set.

    Example:
        >>> dm = SharedImageDataModule("fashion_mnist", train_limit=1000, test_limit=200)
        >>> dm.setup("fit"); x, y = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> x.shape  # doctest: +SKIP
        torch.Size([128, 1, 28, 28])
    """

    def __init__(
        self,
        dataset: str = "mnist",
        batch_size: int = 128,
        val_fraction: float = 0.1,
        train_limit: int | None = None,
        test_limit: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if dataset not in _IMAGE_SETS:
            raise ValueError(f"dataset: expected one of {sorted(_IMAGE_SETS)}, got {dataset!r}")
        super().__init__(val_fraction=val_fraction, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.dataset, self.train_limit, self.test_limit = dataset, train_limit, test_limit
        self.num_classes = 10

    def load(self) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        loader = _IMAGE_SETS[self.dataset]
        train = _images_to_dataset(loader("train"), self.train_limit, self.seed)
        test = _images_to_dataset(loader("test"), self.test_limit, self.seed)
        return train, None, test
