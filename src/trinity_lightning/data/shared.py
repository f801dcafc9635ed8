"""Loaders for the real datasets of the shared data folder (see ``TRINITY_DATA``).

Images come back as :class:`ImageArrays` (``uint8`` arrays, ``int64`` labels, class names); token
tagging as :class:`~trinity_lightning.data.conll.TaggedSentence` lists; crowd labels as a
``task, worker, label`` frame plus the gold labels.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trinity_lightning.data.atomic import atomic_open
from trinity_lightning.data.conll import TaggedSentence, read_conll
from trinity_lightning.data.paths import data_root, dataset_dir

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
MNIST_CLASSES = [str(d) for d in range(10)]
SPLITS = ("train", "test")


@dataclass
class ImageArrays:
    """Images and labels as arrays.

    Attributes:
        images: ``uint8`` array ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` (RGB).
        labels: ``int64`` array ``(N,)``.
        classes: class names, index = label id.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")


def load_mnist(split: str = "train") -> ImageArrays:
    """MNIST: 60,000 train (official train = train + valid of the stored file) / 10,000 test."""
    _check_split(split)
    with np.load(dataset_dir("mnist") / "mnist.npz") as d:
        if split == "train":
            x = np.concatenate([d["x_train"], d["x_valid"]])
            y = np.concatenate([d["y_train"], d["y_valid"]])
        else:
            x, y = d["x_test"], d["y_test"]
    return ImageArrays(np.ascontiguousarray(x), y.astype(np.int64), list(MNIST_CLASSES))


def _idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path) as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=header)


def load_fashion_mnist(split: str = "train") -> ImageArrays:
    """Fashion-MNIST: 60,000 train / 10,000 test, 10 clothing classes."""
    _check_split(split)
    root = dataset_dir("fashion_mnist")
    prefix = "train" if split == "train" else "t10k"
    x = _idx(root / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    y = _idx(root / f"{prefix}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return ImageArrays(x.copy(), y, list(FASHION_MNIST_CLASSES))


def _cache_dir() -> Path:
    return Path(os.environ.get("TRINITY_CACHE", Path.home() / ".cache" / "trinity_lightning"))


def load_cifar10(split: str = "train") -> ImageArrays:
    """CIFAR-10 (the shared lossy-JPEG re-encoding): 50,000 train / 10,000 test, ``(N, 32, 32, 3)``.

    Decoding 60k JPEGs takes a while, so the decoded arrays are cached (``TRINITY_CACHE``, default
    ``~/.cache/trinity_lightning``) under a key of the archive's size and modification time.
    """
    _check_split(split)
    archive = dataset_dir("cifar10_jpeg") / "cifar10_jpeg.zip"
    stat = archive.stat()
    key = hashlib.sha1(f"{archive}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    cached = _cache_dir() / f"cifar10_{split}_{key}.npz"
    if cached.is_file():
        with np.load(cached) as d:
            return ImageArrays(d["images"], d["labels"], list(CIFAR10_CLASSES))
    from PIL import Image

    with zipfile.ZipFile(archive) as z:
        names = sorted(n for n in z.namelist() if n.startswith(split + "/") and n.endswith(".jpg"))
        images = np.stack([np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names])
    labels = np.array([CIFAR10_CLASSES.index(n.split("/")[1]) for n in names], dtype=np.int64)
    with atomic_open(cached, "wb") as handle:
        np.savez(handle, images=images, labels=labels)
    return ImageArrays(images, labels, list(CIFAR10_CLASSES))


def load_conll2003(split: str = "train") -> list[TaggedSentence]:
    """CoNLL-2003 English NER (IOB2 tags): ``train`` 14,041 / ``dev`` 3,250 / ``test`` 3,453 sentences."""
    if split not in ("train", "dev", "test"):
        raise ValueError(f"split: expected 'train', 'dev' or 'test', got {split!r}")
    return read_conll(dataset_dir("conll2003") / f"{split}.txt")


def crowd_datasets() -> list[str]:
    """Names of every crowd-label dataset in the data folder (found by its ``answers.csv`` + ``gold.csv``)."""
    root = data_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "answers.csv").is_file() and (p / "gold.csv").is_file())


def load_crowd(name: str) -> tuple[pd.DataFrame, pd.Series]:
    """A crowd dataset: the ``task, worker, label`` answers and the gold label per task (ids as strings)."""
    root = dataset_dir(name)
    answers = pd.read_csv(root / "answers.csv", dtype={"task": str, "worker": str})
    gold = pd.read_csv(root / "gold.csv", dtype={"task": str}).set_index("task")["label"]
    return answers, gold
