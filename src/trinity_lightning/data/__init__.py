"""The shared floor: readers for HF datasets and local files, the data-folder lookup, atomic writes.

The DataModules (:class:`ArrayDataModule`, :class:`DigitsDataModule`, :class:`SharedImageDataModule`) are
loaded on first use, so the readers import without Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trinity_lightning._lazy import lazy_exports
from trinity_lightning.data.atomic import (
    atomic_open,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from trinity_lightning.data.conll import TaggedSentence, read_conll, read_tagged_sentences
from trinity_lightning.data.errors import DataFormatError
from trinity_lightning.data.paths import data_root, dataset_dir, has_dataset
from trinity_lightning.data.shared import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    ImageArrays,
    crowd_datasets,
    load_cifar10,
    load_conll2003,
    load_crowd,
    load_fashion_mnist,
    load_mnist,
)
from trinity_lightning.data.tables import ArrayDataset, load_tensors, read_table

if TYPE_CHECKING:
    from trinity_lightning.data.datamodules import (
        ArrayDataModule,
        DigitsDataModule,
        SharedImageDataModule,
        image_tensors,
        open_images,
        split_indices,
    )

# names that need Lightning: imported on first access
_LAZY = {
    "ArrayDataModule": "trinity_lightning.data.datamodules",
    "DigitsDataModule": "trinity_lightning.data.datamodules",
    "SharedImageDataModule": "trinity_lightning.data.datamodules",
    "image_tensors": "trinity_lightning.data.datamodules",
    "open_images": "trinity_lightning.data.datamodules",
    "split_indices": "trinity_lightning.data.datamodules",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "ArrayDataModule",
    "ArrayDataset",
    "DataFormatError",
    "DigitsDataModule",
    "ImageArrays",
    "SharedImageDataModule",
    "TaggedSentence",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "crowd_datasets",
    "data_root",
    "dataset_dir",
    "has_dataset",
    "image_tensors",
    "load_cifar10",
    "load_conll2003",
    "load_crowd",
    "load_fashion_mnist",
    "load_mnist",
    "load_tensors",
    "open_images",
    "read_conll",
    "read_table",
    "read_tagged_sentences",
    "split_indices",
]
