"""Image pools for active learning: scikit-learn's digits (offline) as an ActiveLearningDataModule."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.data import ArrayDataset, DigitsDataModule, split_indices

__all__ = ["DigitsActiveDataModule"]


class DigitsActiveDataModule(ActiveLearningDataModule):
    """scikit-learn's 8x8 digits as a pool: ``(1, 8, 8)`` images, a seeded validation and test split.

    Args:
        val_fraction: share of the non-test images held out for validation (never queried).
        test_fraction: share of all images held out as the test set.
        **kwargs: :class:`ActiveLearningDataModule` arguments (``initial_labelled``, ``batch_size``...).

    Example:
        >>> dm = DigitsActiveDataModule(initial_labelled=20)
        >>> dm.setup(); dm.n_labelled, dm.n_pool, len(dm.val_set)
        (20, 1274, 144)
    """

    def __init__(self, val_fraction: float = 0.1, test_fraction: float = 0.2, **kwargs: Any) -> None:
        if kwargs.get("num_classes") is None:  # LightningCLI passes every inherited argument
            kwargs["num_classes"] = 10
        super().__init__(**kwargs)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.classes = [str(d) for d in range(10)]

    def load(self) -> tuple[Dataset, Dataset | None, Dataset | None, Dataset | None]:
        train, _, test = DigitsDataModule(test_fraction=self.test_fraction, seed=self.seed).load()
        assert isinstance(train, ArrayDataset) and train.labels is not None
        rest, held = split_indices(len(train), self.val_fraction, self.seed)
        pool = ArrayDataset(train.features[rest], train.labels[rest])
        val = ArrayDataset(train.features[held], train.labels[held])
        return pool, val, test, None
