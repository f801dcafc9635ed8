"""DataModules over in-memory arrays: a generic one, scikit-learn's digits, the shared image sets and a user's own
image files (CSV/TSV/JSONL/Parquet/``.npz`` tables, image folders, Hugging Face datasets), named from YAML."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from trinity_lightning.data.readers import TABLE_SUFFIXES, ArrayDataset, load_tensors
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


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """Images as a float ``(N, C, H, W)`` tensor: integer pixels are 8-bit (scaled to ``[0, 1]``), gray images get a
    channel axis and channels-last images are moved to channels-first.

    Example:
        >>> image_tensor(np.zeros((2, 5, 5, 3), dtype=np.uint8)).shape
        torch.Size([2, 3, 5, 5])
    """
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.float().div_(255.0) if not torch.is_floating_point(x) else x.float()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    return x.contiguous()


def _square_shape(width: int, where: str) -> tuple[int, int, int]:
    for channels in (1, 3):
        side = math.isqrt(width // channels)
        if width % channels == 0 and side * side * channels == width:
            return (channels, side, side)
    raise ValueError(
        f"image_shape: {where} has {width} features per row, neither a square gray image nor a square RGB image; "
        "pass image_shape: [C, H, W]"
    )


def open_images(source: str | Path, *, label_field: str = "label", image_shape: Sequence[int] | None = None) -> Any:
    """Open a user's image data named by a string (as in a YAML recipe), through ``trinity_lightning.data``.

    * a table file (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``, ``.npz``): read with :func:`load_tensors`
      (the ``label_field`` column holds class ids; the other columns are the pixels, as one list/array column or
      one column per pixel) into an :class:`ArrayDataset` of images shaped ``image_shape``, or square gray/RGB
      images when ``None``;
    * a folder written by ``datasets.Dataset.save_to_disk``: ``datasets.load_from_disk``;
    * any other folder: an image folder, one sub-folder per class (optionally under ``train/`` and ``test/``),
      read by Hugging Face's ``imagefolder`` loader;
    * ``hf:NAME`` or ``hf:NAME:CONFIG``: ``datasets.load_dataset(NAME, CONFIG)`` (a hub id or a local script).

    Returns an ``ArrayDataset``, a ``datasets.Dataset`` or a ``datasets.DatasetDict`` for :func:`image_tensors`.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.npz"
        >>> np.savez(path, image=np.zeros((4, 8, 8)), label=np.array([0, 1, 0, 1]))
        >>> open_images(path).features.shape
        torch.Size([4, 1, 8, 8])
    """
    text = str(source)
    if text.startswith("hf:"):
        import datasets as hf

        name, _, config = text[3:].partition(":")
        return hf.load_dataset(name, config or None)
    path = Path(text).expanduser()
    if not path.exists():
        expected = (
            f"expected a shared dataset name {sorted(_IMAGE_SETS)}, a table file {sorted(TABLE_SUFFIXES)}, an image "
            "folder, a saved Hugging Face dataset or hf:NAME"
        )
        if path.suffix.lower() in TABLE_SUFFIXES:
            raise FileNotFoundError(f"dataset: no such file: {path} ({expected})")
        raise ValueError(f"dataset: {text!r} is not a file or folder ({expected})")
    if path.is_dir():
        import datasets as hf

        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return hf.load_from_disk(str(path))
        return hf.load_dataset("imagefolder", data_dir=str(path))
    table = load_tensors(path, label=label_field)
    width = int(table.features[0].numel()) if len(table) else 0
    shape = tuple(image_shape) if image_shape is not None else _square_shape(width, str(path))
    if math.prod(shape) != width:
        raise ValueError(f"image_shape: {list(shape)} holds {math.prod(shape)} values, {path} has {width} per row")
    return ArrayDataset(table.features.reshape(len(table), *shape), table.labels, table.classes)


def has_split(source: Any, split: str) -> bool:
    """Whether ``source`` is a Hugging Face ``DatasetDict`` with the split ``split``.

    Example:
        >>> has_split(ArrayDataset(torch.zeros(1, 1)), "test")
        False
    """
    try:
        import datasets as hf
    except ImportError:  # pragma: no cover - datasets is a dependency
        return False
    return isinstance(source, hf.DatasetDict) and split in source


def image_tensors(
    source: Any, *, split: str = "train", image_field: str = "image", label_field: str = "label"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, C, H, W)`` and class ids of an :class:`ArrayDataset` or a Hugging Face dataset.

    Args:
        source: an ``ArrayDataset``, a ``datasets.Dataset`` or a ``datasets.DatasetDict`` (its ``split``), e.g.
            from :func:`open_images`. The ``image_field`` column holds images (PIL or arrays) or feature lists.
        split: the split of a ``DatasetDict``.
        image_field: the images column of a Hugging Face dataset.
        label_field: the class-id column of a Hugging Face dataset.

    Example:
        >>> x, y = image_tensors(ArrayDataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])))
        >>> tuple(x.shape), y.tolist()
        ((4, 1, 2, 2), [0, 1, 0, 1])
    """
    if isinstance(source, ArrayDataset):
        if source.labels is None:
            raise ValueError("dataset: the ArrayDataset has no labels")
        return source.features.float(), source.labels.long()
    import datasets as hf

    if isinstance(source, hf.DatasetDict):
        if split not in source:
            raise ValueError(f"split: the DatasetDict has no split {split!r}; its splits are {sorted(source)}")
        source = source[split]
    if not isinstance(source, hf.Dataset):
        raise TypeError(f"dataset: cannot read images from {type(source).__name__}")
    for field in (image_field, label_field):
        if field not in source.column_names:
            raise ValueError(
                f"dataset: no column {field!r}; columns are {source.column_names} (pass image_field=/label_field=)"
            )
    table = source.with_format("numpy")
    try:
        images = np.stack([np.asarray(v) for v in table[image_field]])
    except ValueError as err:
        raise ValueError(f"dataset: the images of column {image_field!r} differ in size ({err})") from None
    return image_tensor(images), torch.as_tensor(np.asarray(table[label_field]), dtype=torch.long)


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
    """MNIST, Fashion-MNIST or CIFAR-10 from the shared data folder, or a user's own images, standardized per channel.

    Args:
        dataset: ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``, or a user's images as :func:`open_images`
            reads them: a table file (``my.csv``, ``.tsv``, ``.jsonl``, ``.parquet``, ``.npz``), an image folder
            (one sub-folder per class, optionally under ``train/`` and ``test/``), a saved Hugging Face dataset or
            ``hf:NAME``.
        batch_size: examples per batch.
        val_fraction: share of the training set held out for validation.
        train_limit: keep a seeded random subset of this many training images (``None``: all).
        test_limit: likewise for the test set.
        test: the test images of a user's dataset, same kinds as ``dataset`` (default: its ``test`` split if
            it has one, else no test set).
        image_field: the images column of a Hugging Face dataset (or of a table with one array column).
        label_field: the class-id column.
        image_shape: ``[C, H, W]`` of the rows of a table (default: square gray or RGB images).
        num_workers: DataLoader workers.
        seed: seed of the splits and the shuffle.

    Example:
        >>> dm = SharedImageDataModule("fashion_mnist", train_limit=1000, test_limit=200)
        >>> dm.setup("fit"); x, y = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> x.shape  # doctest: +SKIP
        torch.Size([128, 1, 28, 28])

    In a recipe, a user's CSV (a ``label`` column and 784 pixel columns)::

        data:
          class_path: trinity_lightning.data.SharedImageDataModule
          init_args: {dataset: my_train.csv, test: my_test.csv}
    """

    def __init__(
        self,
        dataset: str = "mnist",
        batch_size: int = 128,
        val_fraction: float = 0.1,
        train_limit: int | None = None,
        test_limit: int | None = None,
        test: str | None = None,
        image_field: str = "image",
        label_field: str = "label",
        image_shape: list[int] | None = None,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        if dataset not in _IMAGE_SETS and not _names_user_data(dataset):
            raise ValueError(
                f"dataset: expected one of {sorted(_IMAGE_SETS)}, a table file {sorted(TABLE_SUFFIXES)}, an image "
                f"folder, a saved Hugging Face dataset or hf:NAME, got {dataset!r}"
            )
        super().__init__(val_fraction=val_fraction, batch_size=batch_size, num_workers=num_workers, seed=seed)
        self.dataset, self.train_limit, self.test_limit = dataset, train_limit, test_limit
        self.test, self.image_field, self.label_field, self.image_shape = test, image_field, label_field, image_shape
        self.num_classes = 10

    def load(self) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        if self.dataset in _IMAGE_SETS:
            loader = _IMAGE_SETS[self.dataset]
            train = _images_to_dataset(loader("train"), self.train_limit, self.seed)
            test = _images_to_dataset(loader("test"), self.test_limit, self.seed)
            return train, None, test
        return self._load_user_images()

    def _load_user_images(self) -> tuple[Dataset | None, Dataset | None, Dataset | None]:
        opened = open_images(self.dataset, label_field=self.label_field, image_shape=self.image_shape)
        fields = {"image_field": self.image_field, "label_field": self.label_field}
        x, y = image_tensors(opened, split="train", **fields)
        test_source = (
            open_images(self.test, label_field=self.label_field, image_shape=self.image_shape)
            if self.test is not None
            else (opened if has_split(opened, "test") else None)
        )
        test = image_tensors(test_source, split="test", **fields) if test_source is not None else None
        # standardize with the training set's per-channel statistics
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        x, y = _limit(x, y, self.train_limit, self.seed)
        self.num_classes = int(y.max()) + 1 if len(y) else 0
        train = ArrayDataset((x - mean) / std, y)
        if test is None:
            return train, None, None
        tx, ty = _limit(*test, self.test_limit, self.seed)
        return train, None, ArrayDataset((tx - mean) / std, ty)


def _names_user_data(dataset: Any) -> bool:
    text = str(dataset)
    return text.startswith("hf:") or Path(text).suffix.lower() in TABLE_SUFFIXES or Path(text).expanduser().is_dir()


def _limit(x: torch.Tensor, y: torch.Tensor, limit: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if limit is None or limit >= len(y):
        return x, y
    keep = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(y))[:limit]))
    return x[keep], y[keep]
