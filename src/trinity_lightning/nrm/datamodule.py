"""``SemiSupervisedDataModule``: a few labels per class (stratified, seeded), the rest unlabelled, batched together."""

from __future__ import annotations

import warnings
from collections.abc import Sized
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from trinity_lightning.data import ArrayDataset, ImageArrays, load_cifar10, load_fashion_mnist, load_mnist
from trinity_lightning.data.datamodules import has_split, image_tensor, image_tensors, open_images
from trinity_lightning.nrm.augment import check_augment, random_crop_flip

SHARED = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}


class _Rows(Dataset):
    """Rows of tensors fetched a whole batch at a time (a list of indices -> stacked tensors)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: Any) -> Any:
        if self.labels is None:
            return self.features[index]
        return self.features[index], self.labels[index]


def to_tensors(
    source: Any,
    *,
    image_field: str = "image",
    label_field: str = "label",
    split: str = "train",
    image_shape: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of a dataset as tensors.

    Args:
        source: a shared dataset name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``), a user's images named by a
            string (a table file such as ``my.csv``, an image folder, a saved Hugging Face dataset or ``hf:NAME``:
            see :func:`~trinity_lightning.data.datamodules.open_images`), an
            :class:`~trinity_lightning.data.ImageArrays`, an :class:`~trinity_lightning.data.ArrayDataset`, a
            Hugging Face ``datasets.Dataset`` or ``DatasetDict`` (``image_field`` holds images, PIL or arrays, or
            feature lists; ``label_field`` the class ids) or any map-style dataset of ``(x, y)`` pairs. Integer
            images are 8-bit pixels (scaled to ``[0, 1]``); channels-last images are moved to channels-first.
        image_field: the features column of a Hugging Face dataset.
        label_field: the label column of a Hugging Face dataset.
        split: the split of a shared dataset or of a ``DatasetDict``.
        image_shape: ``[C, H, W]`` of the rows of a table file (default: square gray or RGB images).

    Example:
        >>> x, y = to_tensors(ArrayDataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])))
        >>> tuple(x.shape), y.tolist()
        ((4, 1, 2, 2), [0, 1, 0, 1])
    """
    if isinstance(source, (str, Path)):
        source = (
            SHARED[source](split)
            if source in SHARED
            else open_images(source, label_field=label_field, image_shape=image_shape)
        )
    if isinstance(source, ImageArrays):
        return image_tensor(source.images), torch.as_tensor(source.labels, dtype=torch.long)
    if isinstance(source, ArrayDataset):
        if source.labels is None:
            raise ValueError("dataset: the ArrayDataset has no labels; semi-supervised splits need them")
        return image_tensors(source)
    try:
        import datasets as hf
    except ImportError:  # pragma: no cover - datasets is a dependency
        hf = None
    if hf is not None and isinstance(source, (hf.Dataset, hf.DatasetDict)):
        return image_tensors(source, split=split, image_field=image_field, label_field=label_field)
    if isinstance(source, Dataset) and isinstance(source, Sized):
        pairs = [source[i] for i in range(len(source))]
        if not pairs or not isinstance(pairs[0], (tuple, list)) or len(pairs[0]) != 2:
            raise ValueError("dataset: expected a non-empty dataset of (x, y) pairs")
        features = torch.stack([torch.as_tensor(p[0]) for p in pairs]).float()
        return features, torch.as_tensor([int(p[1]) for p in pairs], dtype=torch.long)
    raise TypeError(
        f"dataset: cannot read {type(source).__name__}; pass a shared name, ImageArrays, "
        "ArrayDataset, a datasets.Dataset or a map-style dataset of (x, y) pairs"
    )


def stratified_split(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted indices of ``per_class`` examples of every class, drawn with a seeded generator.

    Example:
        >>> stratified_split(np.array([0, 1, 0, 1, 0, 1]), 2, seed=0).tolist()
        [1, 2, 4, 5]
    """
    if per_class < 1:
        raise ValueError(f"labels_per_class: expected a positive integer, got {per_class}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(
            f"labels: expected non-negative integer class ids in a 1-D array, got dtype {labels.dtype}, "
            f"shape {labels.shape}" + (f", minimum {labels.min()}" if labels.size and labels.ndim == 1 else "")
        )
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise ValueError(
                f"labels_per_class: class {int(cls)} has only {len(members)} examples, fewer than {per_class}"
            )
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


class SemiSupervisedDataModule(pl.LightningDataModule):
    """Keep ``labels_per_class`` labels per class (stratified, seeded), hide the rest, batch both together.

    Training batches are ``{"labelled": (x, y), "unlabelled": x}`` with ``labelled_batch_size`` labelled and
    ``round(labelled_batch_size * unlabelled_ratio)`` unlabelled examples; an epoch is one pass over the
    unlabelled pool while the small labelled set cycles (Lightning's ``CombinedLoader``, ``max_size_cycle``).
    With ``unlabelled_ratio=0`` batches are plain ``(x, y)`` labelled batches. Features are standardized per
    channel with statistics of the training set. The labelled/validation split is saved in checkpoints and
    restored on resume.

    With ``augment=True`` every training batch, labelled and unlabelled images alike, gets the standard CIFAR
    augmentation after it reaches the device (``on_after_batch_transfer``, one gather for the whole batch, see
    :func:`~trinity_lightning.nrm.augment.random_crop_flip`): a random crop of the image size from the image
    padded by ``crop_padding`` pixels (``padding_mode``: ``"reflect"``, as FixMatch/MixMatch code, or ``"zeros"``;
    images are standardized first, so zeros pad with the channel mean) and, with ``flip``, a left-right flip with
    probability 0.5. Validation, test and predict batches are never augmented. The crops and flips come from a
    generator seeded by ``seed`` alone, re-seeded per training batch from the count of augmented batches (kept in
    checkpoints): the same seed gives the same augmented images on every device and for every model, and the
    global random state is neither read nor moved. Off by default (batches are then untouched).

    Args:
        dataset: training data: a shared dataset name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``), a user's
            images named by a string as a YAML recipe would (``my.csv`` or another table file, an image folder, a
            saved Hugging Face dataset or ``hf:NAME``; see :func:`~trinity_lightning.data.datamodules.open_images`),
            an ``ImageArrays``, an ``ArrayDataset``, a Hugging Face ``datasets.Dataset`` or ``DatasetDict`` (its
            ``"train"`` split) or a dataset of ``(x, y)``.
        test: test data of the same kinds (default: the shared dataset's or the ``DatasetDict``'s test split,
            else none).
        labels_per_class: labelled examples kept per class.
        labelled_batch_size: labelled examples per batch.
        unlabelled_ratio: unlabelled examples per labelled example in a batch (0: labelled-only batches).
        val_size: examples held out of the unlabelled pool for validation (their labels only score the model).
        unlabelled_limit: keep at most this many unlabelled examples (seeded), ``None`` for all.
        test_limit: keep at most this many test examples (seeded), ``None`` for all.
        image_field: features column of a Hugging Face dataset.
        label_field: label column of a Hugging Face dataset or a table file.
        image_shape: ``[C, H, W]`` of the rows of a table file (default: square gray or RGB images).
        normalize: standardize each channel with the training set's mean and standard deviation.
        seed: seed of the split and of the shuffling.
        num_workers: DataLoader workers.
        augment: random crop + horizontal flip on the training batches (see above).
        crop_padding: pixels of padding on every side before the random crop (0: no crop).
        padding_mode: ``"reflect"`` or ``"zeros"``.
        flip: random left-right flips (with ``augment``).

    Example:
        >>> from trinity_lightning.data import ArrayDataset
        >>> data = ArrayDataset(torch.randn(100, 1, 4, 4), torch.arange(100) % 2)
        >>> dm = SemiSupervisedDataModule(data, labels_per_class=3, labelled_batch_size=2, unlabelled_ratio=4,
        ...                               val_size=10)
        >>> dm.setup("fit"); batch, _, _ = next(iter(dm.train_dataloader()))  # (batch, index, loader index)
        >>> dm.num_labelled, tuple(batch["labelled"][0].shape), tuple(batch["unlabelled"].shape)
        (6, (2, 1, 4, 4), (8, 1, 4, 4))

        With augmentation (CIFAR-10 style; the crops and flips happen on the device, training batches only)::

            SemiSupervisedDataModule("cifar10", labels_per_class=400, labelled_batch_size=50, augment=True)
    """

    def __init__(
        self,
        dataset: Any = "mnist",
        test: Any = None,
        labels_per_class: int = 10,
        labelled_batch_size: int = 32,
        unlabelled_ratio: float = 4.0,
        val_size: int = 1000,
        unlabelled_limit: int | None = None,
        test_limit: int | None = None,
        image_field: str = "image",
        label_field: str = "label",
        image_shape: list[int] | None = None,
        normalize: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        augment: bool = False,
        crop_padding: int = 4,
        padding_mode: str = "reflect",
        flip: bool = True,
    ) -> None:
        super().__init__()
        if labels_per_class < 1:
            raise ValueError(f"labels_per_class: expected a positive integer, got {labels_per_class}")
        if labelled_batch_size < 1:
            raise ValueError(f"labelled_batch_size: expected a positive integer, got {labelled_batch_size}")
        if unlabelled_ratio < 0:
            raise ValueError(f"unlabelled_ratio: expected a non-negative number, got {unlabelled_ratio}")
        if val_size < 0:
            raise ValueError(f"val_size: expected a non-negative integer, got {val_size}")
        if not isinstance(augment, bool):
            raise TypeError(f"augment: expected a bool, got {type(augment).__name__}")
        check_augment(crop_padding, padding_mode, flip)
        self.dataset, self.test = dataset, test
        self.labels_per_class, self.labelled_batch_size = labels_per_class, labelled_batch_size
        self.unlabelled_ratio, self.val_size = unlabelled_ratio, val_size
        self.unlabelled_limit, self.test_limit = unlabelled_limit, test_limit
        self.image_field, self.label_field, self.normalize = image_field, label_field, normalize
        self.image_shape = image_shape
        self.seed, self.num_workers = seed, num_workers
        self.augment, self.crop_padding, self.padding_mode, self.flip = augment, crop_padding, padding_mode, flip
        self.augmented_batches = 0  # training batches augmented so far: the augmentation stream's position
        self.labelled_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None
        self.unlabelled_indices: np.ndarray | None = None
        self._features: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._test: tuple[torch.Tensor, torch.Tensor] | None = None
        self.num_classes = 0

    # ------------------------------------------------------------------ data
    def _read(self, source: Any, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        return to_tensors(source, image_field=self.image_field, label_field=self.label_field, split=split)

    def _open(self, source: Any) -> Any:
        """A user's files named by a string, opened once (a shared dataset name stays a name)."""
        if isinstance(source, (str, Path)) and source not in SHARED:
            return open_images(source, label_field=self.label_field, image_shape=self.image_shape)
        return source

    def prepare_data(self) -> None:
        if isinstance(self.dataset, str) and self.dataset == "cifar10":
            load_cifar10("train"), load_cifar10("test")  # decode once into the cache

    def setup(self, stage: str | None = None) -> None:
        if self._features is not None:
            return
        dataset = self._open(self.dataset)
        features, labels = self._read(dataset, "train")
        if self.test is not None:
            test = self._read(self._open(self.test), "test")
        elif isinstance(dataset, str) or has_split(dataset, "test"):
            test = self._read(dataset, "test")
        else:
            test = None
        if self.normalize:
            dims = [0, *range(2, features.ndim)]
            mean = features.mean(dim=dims, keepdim=True)
            std = features.std(dim=dims, keepdim=True).clamp_min(1e-6)
            features = (features - mean) / std
            if test is not None:
                test = ((test[0] - mean) / std, test[1])
        if test is not None and self.test_limit is not None and self.test_limit < len(test[1]):
            keep = torch.from_numpy(
                np.sort(np.random.default_rng(self.seed + 2).permutation(len(test[1]))[: self.test_limit])
            )
            test = (test[0][keep], test[1][keep])
        self._features, self._labels, self._test = features, labels, test
        self.num_classes = int(labels.max()) + 1
        if self.labelled_indices is None:
            self._split()
        else:
            self._assign_rest()

    def _split(self) -> None:
        assert self._labels is not None
        self.labelled_indices = stratified_split(self._labels.numpy(), self.labels_per_class, self.seed)
        self._assign_rest()

    def _assign_rest(self) -> None:
        assert self._labels is not None and self.labelled_indices is not None
        n = len(self._labels)
        if self.labelled_indices.size and (self.labelled_indices.min() < 0 or self.labelled_indices.max() >= n):
            raise ValueError(f"labelled_indices: out of range for a training set of {n} examples")
        rest = np.setdiff1d(np.arange(n), self.labelled_indices)
        order = np.random.default_rng(self.seed + 1).permutation(rest)
        if self.val_indices is None:
            self.val_indices = np.sort(order[: self.val_size])
        pool = np.setdiff1d(rest, self.val_indices)
        if self.unlabelled_limit is not None and self.unlabelled_limit < len(pool):
            pool = np.sort(np.random.default_rng(self.seed + 3).permutation(pool)[: self.unlabelled_limit])
        self.unlabelled_indices = pool

    @property
    def num_labelled(self) -> int:
        """Number of labelled training examples."""
        return 0 if self.labelled_indices is None else len(self.labelled_indices)

    @property
    def unlabelled_batch_size(self) -> int:
        """Unlabelled examples per training batch."""
        return round(self.labelled_batch_size * self.unlabelled_ratio)

    def subset(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of ``"labelled"``, ``"unlabelled"`` (labels for scoring only), ``"val"``, ``"test"``."""
        if self._features is None or self._labels is None:
            raise RuntimeError("SemiSupervisedDataModule: call setup() first")
        if part == "test":
            if self._test is None:
                raise RuntimeError("SemiSupervisedDataModule has no test set; pass test=...")
            return self._test
        indices = {
            "labelled": self.labelled_indices,
            "unlabelled": self.unlabelled_indices,
            "val": self.val_indices,
        }.get(part)
        if indices is None:
            raise ValueError(f"part: expected 'labelled', 'unlabelled', 'val' or 'test', got {part!r}")
        index = torch.from_numpy(indices)
        return self._features[index], self._labels[index]

    # ------------------------------------------------------------------ loaders
    def _loader(self, rows: _Rows, batch_size: int, shuffle: bool, offset: int = 0) -> DataLoader:
        if shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1000 + offset)
            sampler: Any = RandomSampler(rows, generator=generator)
        else:
            sampler = SequentialSampler(rows)
        batches = BatchSampler(sampler, batch_size=min(batch_size, len(rows)), drop_last=shuffle)
        return DataLoader(
            rows,
            sampler=batches,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> Any:
        x, y = self.subset("labelled")
        labelled = self._loader(_Rows(x, y), self.labelled_batch_size, True, offset=1)
        if self.unlabelled_batch_size == 0 or self.unlabelled_indices is None or not len(self.unlabelled_indices):
            return labelled
        unlabelled = self._loader(_Rows(self.subset("unlabelled")[0], None), self.unlabelled_batch_size, True, offset=2)
        return CombinedLoader({"labelled": labelled, "unlabelled": unlabelled}, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        return self._loader(_Rows(*self.subset("val")), 512, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(_Rows(*self.subset("test")), 512, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    # ------------------------------------------------------------------ augmentation
    def augment_batch(self, batch: Any) -> Any:
        """The training batch with its images (labelled and unlabelled) randomly cropped and flipped.

        Each call re-seeds a CPU generator from ``seed`` and the number of batches augmented before, so the
        ``k``-th training batch of a seed is augmented the same way in every run and on every device.
        """
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.augmented_batches)
        self.augmented_batches += 1

        def apply(x: torch.Tensor) -> torch.Tensor:
            return random_crop_flip(x, self.crop_padding, self.flip, self.padding_mode, generator)

        if isinstance(batch, dict):
            out = dict(batch)
            if "labelled" in out:
                x, y = out["labelled"]
                out["labelled"] = (apply(x), y)
            if isinstance(out.get("unlabelled"), torch.Tensor):
                out["unlabelled"] = apply(out["unlabelled"])
            return out
        if isinstance(batch, (list, tuple)) and len(batch) == 2:
            x, y = batch
            return [apply(x), y] if isinstance(batch, list) else (apply(x), y)
        raise ValueError("batch: expected (x, y) or {'labelled': (x, y), 'unlabelled': x} to augment")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches on the device (``augment=True``); then the model's own hook, if it has one.

        Lightning calls a DataModule's ``on_after_batch_transfer`` instead of the LightningModule's, so the
        module's override (if any) is called here, after the augmentation.
        """
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training:
            batch = self.augment_batch(batch)
        module = trainer.lightning_module if trainer is not None else None
        if (
            module is not None
            and type(module).on_after_batch_transfer is not pl.LightningModule.on_after_batch_transfer
        ):
            batch = module.on_after_batch_transfer(batch, dataloader_idx)
        return batch

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """The split (plain lists, so checkpoints load with ``weights_only=True``)."""
        return {
            "labelled_indices": None if self.labelled_indices is None else self.labelled_indices.tolist(),
            "val_indices": None if self.val_indices is None else self.val_indices.tolist(),
            "labels_per_class": self.labels_per_class,
            "seed": self.seed,
            "augmented_batches": self.augmented_batches,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the saved split (it wins over a re-drawn one, with a warning if they differ)."""
        self.augmented_batches = int(state_dict.get("augmented_batches", 0))
        labelled = state_dict.get("labelled_indices")
        if labelled is None:
            return
        restored = np.asarray(labelled, dtype=np.int64)
        if self.labelled_indices is not None and not np.array_equal(restored, self.labelled_indices):
            warnings.warn(
                "SemiSupervisedDataModule: the checkpoint's labelled set differs from the one drawn now; "
                "using the checkpoint's",
                stacklevel=2,
            )
        self.labelled_indices = restored
        val = state_dict.get("val_indices")
        self.val_indices = None if val is None else np.asarray(val, dtype=np.int64)
        if self._features is not None:
            self._assign_rest()
