"""DataModules that train on crowd labels: items + an annotation table, targets = posterior soft labels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, TensorDataset

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.dawid_skene import DawidSkene
from trinity_lightning.crowd.majority_vote import MajorityVote
from trinity_lightning.crowd.simulate import hammer_spammer_confusions, random_confusions, simulate_annotations
from trinity_lightning.crowd.table import AnnotationTable, DuplicatePolicy

InitMethod = Literal["majority_vote", "dawid_skene"]
HardTargets = Literal["sample", "argmax"]


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch from ``seed + epoch``, so a resumed run sees the same batches.

    Lightning calls ``set_epoch`` at the start of every training epoch; ``on_epoch`` (optional) is called with
    the new epoch too (the :class:`CrowdDataModule` redraws its sampled hard labels there).

    Example:
        >>> sampler = EpochSeededSampler(5, seed=0)
        >>> sampler.set_epoch(3); first = list(sampler); sampler.set_epoch(3)
        >>> list(sampler) == first and sorted(first) == [0, 1, 2, 3, 4]
        True
    """

    def __init__(self, size: int, seed: int = 0, on_epoch: Callable[[int], None] | None = None) -> None:
        self.size, self.seed, self.epoch, self.on_epoch = size, seed, 0, on_epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the permutation of ``epoch``."""
        self.epoch = epoch
        if self.on_epoch is not None:
            self.on_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class _TargetDataset(Dataset):
    """``(x, target)`` pairs: the inputs of the annotated items and a shared targets tensor.

    ``targets`` is either the ``(N, K)`` soft posteriors or the ``(N,)`` hard labels; both live in shared
    memory when loader workers are used, so an in-place update in the main process reaches every worker.
    """

    def __init__(self, items: Dataset, indices: torch.Tensor, targets: torch.Tensor) -> None:
        self.items, self.indices, self.targets = items, indices, targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[Any, torch.Tensor]:
        return _inputs(self.items[int(self.indices[k])]), self.targets[k]


class _InputsDataset(Dataset):
    def __init__(self, items: Dataset, indices: torch.Tensor) -> None:
        self.items, self.indices = items, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Any:
        return _inputs(self.items[int(self.indices[k])])


def _inputs(example: Any) -> Any:
    """The input part of a dataset example (``(x, y)`` tuples keep ``x``)."""
    return example[0] if isinstance(example, (tuple, list)) else example


def _as_dataset(items: Dataset | torch.Tensor) -> Dataset:
    return TensorDataset(items) if isinstance(items, torch.Tensor) else items


class CrowdDataModule(pl.LightningDataModule):
    """Train on crowd-labelled items: the targets come from a posterior over classes for every item.

    Batches are ``(x, y)`` with ``y`` an ordinary class id (``int64``), so an unmodified LightningModule
    works, torchmetrics on ``y`` included. By default ``y`` is *drawn* from each item's posterior, afresh
    every epoch (seeded by ``seed`` and the epoch, so a resumed run draws the same labels): in expectation
    ``cross_entropy(logits, y)`` is then exactly the cross-entropy with the soft posterior, so the soft
    labels still reach the loss. ``hard_targets="argmax"`` uses the most probable class instead, and
    ``soft_targets=True`` makes ``y`` the ``(K,)`` posterior itself, for modules that train on probabilities
    (``F.cross_entropy`` accepts them; metrics on ``y`` then need ``y.argmax(-1)``).

    The :class:`~trinity_lightning.crowd.callback.CrowdEM` callback replaces the posteriors every few epochs
    through :meth:`set_targets`.

    Args:
        items: the inputs: a ``Dataset`` (``x`` or ``(x, y)`` examples; only ``x`` is used) or a tensor.
        annotations: ``(item, worker, label)`` rows whose item ids are indices into ``items``; an
            :class:`AnnotationTable` or anything :meth:`AnnotationTable.read` accepts.
        val: gold-labelled validation set ``(x, y)`` (optional).
        test: gold-labelled test set ``(x, y)`` (optional).
        item_column: the item column of ``annotations``.
        worker_column: the worker column.
        label_column: the label column.
        num_classes: labels are ids in ``[0, num_classes)`` (else the sorted distinct labels).
        duplicates: policy for repeated ``(item, worker)`` pairs (see :meth:`AnnotationTable.read`).
        init: the first targets: ``"majority_vote"`` (vote fractions) or ``"dawid_skene"`` posteriors.
        batch_size: examples per batch.
        num_workers: DataLoader workers (the targets live in shared memory, so updates reach them).
        seed: seed of the shuffle and of the drawn labels (one draw per epoch, reproducible on resume).
        soft_targets: batches carry the ``(K,)`` posterior as ``y`` instead of a class id.
        hard_targets: with ``soft_targets=False``: ``"sample"`` (a class drawn from the posterior every
            epoch, the default) or ``"argmax"`` (the most probable class).

    Example:
        >>> x = torch.randn(4, 3)
        >>> table = {"task": [0, 0, 1, 2, 3], "worker": ["a", "b", "a", "b", "a"], "label": [1, 1, 0, 1, 0]}
        >>> dm = CrowdDataModule(x, table, batch_size=2)
        >>> dm.setup("fit"); xb, yb = next(iter(dm.train_dataloader()))
        >>> xb.shape, yb.shape, yb.dtype
        (torch.Size([2, 3]), torch.Size([2]), torch.int64)
        >>> soft = CrowdDataModule(x, table, batch_size=2, soft_targets=True)
        >>> soft.setup("fit"); next(iter(soft.train_dataloader()))[1].shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        items: Dataset | torch.Tensor | None = None,
        annotations: Any = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        item_column: str = "task",
        worker_column: str = "worker",
        label_column: str = "label",
        num_classes: int | None = None,
        duplicates: DuplicatePolicy = "error",
        init: InitMethod = "majority_vote",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        soft_targets: bool = False,
        hard_targets: HardTargets = "sample",
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        if init not in ("majority_vote", "dawid_skene"):
            raise ValueError(f"init: expected 'majority_vote' or 'dawid_skene', got {init!r}")
        if hard_targets not in ("sample", "argmax"):
            raise ValueError(f"hard_targets: expected 'sample' or 'argmax', got {hard_targets!r}")
        self.soft_targets, self.hard_targets = bool(soft_targets), hard_targets
        self.hard_labels: torch.Tensor | None = None  # the (N,) class ids the batches carry (soft_targets=False)
        self._labels_epoch: int | None = None
        self._items_source, self._annotations_source = items, annotations
        self.val_set, self.test_set = val, test
        self.columns = {"item": item_column, "worker": worker_column, "label": label_column}
        self.num_classes, self.duplicates, self.init = num_classes, duplicates, init
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.items: Dataset | None = None
        self.table: AnnotationTable | None = None
        self.item_indices: torch.Tensor | None = None
        self.targets: torch.Tensor | None = None
        self.gold: torch.Tensor | None = None  # true labels of the annotated items, when known (simulations)
        self.aggregator: Aggregator | None = None

    # ------------------------------------------------------------------ data
    def load(self) -> tuple[Dataset | torch.Tensor, Any, Dataset | None, Dataset | None]:
        """Return ``(items, annotations, val, test)``; subclasses that build data override this."""
        if self._items_source is None or self._annotations_source is None:
            raise ValueError("items/annotations: CrowdDataModule needs both (or a subclass that overrides load())")
        return self._items_source, self._annotations_source, self.val_set, self.test_set

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        items, annotations, self.val_set, self.test_set = self.load()
        self.items = _as_dataset(items)
        size = len(self.items)  # type: ignore[arg-type]
        self.table = AnnotationTable.read(
            annotations,
            item=self.columns["item"],
            worker=self.columns["worker"],
            label=self.columns["label"],
            num_classes=self.num_classes,
            items=list(range(size)),
            duplicates=self.duplicates,
        )
        ids = np.asarray(self.table.item_ids)
        if ids.dtype.kind not in "iu" or (len(ids) and (ids.min() < 0 or ids.max() >= size)):
            raise ValueError(f"annotations: item ids must be indices into items [0, {size}); got e.g. {ids[:3]!r}")
        self.item_indices = torch.as_tensor(ids.astype(np.int64))
        self.aggregator = MajorityVote() if self.init == "majority_vote" else DawidSkene()
        self.aggregator.fit(self.table)
        self.targets = self.aggregator.probas_.detach().to("cpu", torch.float32).clone()
        self.hard_labels = torch.zeros(len(self.targets), dtype=torch.int64)
        if self.num_workers > 0:
            self.targets.share_memory_()
            self.hard_labels.share_memory_()
        self._draw_labels(0)

    def _ready(self) -> tuple[Dataset, torch.Tensor, torch.Tensor]:
        if self.items is None or self.targets is None or self.item_indices is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() first")
        return self.items, self.item_indices, self.targets

    @property
    def annotation_table(self) -> AnnotationTable:
        """The validated annotation table (after ``setup``)."""
        if self.table is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() first")
        return self.table

    def set_targets(self, posteriors: torch.Tensor) -> None:
        """Replace the soft targets of the annotated items (``(num_items, K)`` in ``annotation_table`` order)."""
        _, _, targets = self._ready()
        if posteriors.shape != targets.shape:
            raise ValueError(f"posteriors: expected shape {tuple(targets.shape)}, got {tuple(posteriors.shape)}")
        if not torch.isfinite(posteriors).all():
            raise ValueError("posteriors: values must be finite")
        targets.copy_(posteriors.detach().to("cpu", targets.dtype))
        self._draw_labels(self._labels_epoch or 0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the hard labels of ``epoch`` (called by the train sampler and by ``CrowdEM``; idempotent)."""
        if epoch != self._labels_epoch:
            self._draw_labels(epoch)

    def _draw_labels(self, epoch: int) -> None:
        """Fill ``labels`` in place from the posteriors: a seeded draw per epoch, or the argmax."""
        if self.hard_labels is None or self.targets is None:
            return
        self._labels_epoch = epoch
        if self.hard_targets == "argmax":
            self.hard_labels.copy_(self.targets.argmax(dim=1))
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        probabilities = self.targets.to(torch.float64).clamp_min(0)
        self.hard_labels.copy_(torch.multinomial(probabilities, 1, generator=generator).squeeze(1))

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset, sampler: Sampler[int] | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        items, indices, targets = self._ready()
        carried = targets if self.soft_targets or self.hard_labels is None else self.hard_labels
        sampler = EpochSeededSampler(len(indices), self.seed, on_epoch=self.set_epoch)
        return self._loader(_TargetDataset(items, indices, carried), sampler)

    def annotated_dataloader(self) -> DataLoader:
        """The inputs of the annotated items in ``annotation_table`` order (no shuffle, no targets)."""
        items, indices, _ = self._ready()
        return self._loader(_InputsDataset(items, indices))

    def val_dataloader(self) -> DataLoader | list[Any]:
        """The gold-labelled validation set (no validation when ``val`` was not given)."""
        return [] if self.val_set is None else self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise RuntimeError(f"{type(self).__name__} has no test set; pass test=...")
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self.annotated_dataloader()


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.as_tensor(digits.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    return x, torch.as_tensor(digits.target, dtype=torch.int64)


def _shared_images(
    name: str, limit: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from trinity_lightning.data import load_cifar10, load_fashion_mnist, load_mnist

    loader = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10}[name]
    out = []
    for split in ("train", "test"):
        arrays = loader(split)
        images, labels = arrays.images, arrays.labels
        if split == "train" and limit is not None and limit < len(labels):
            keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
            images, labels = images[keep], labels[keep]
        x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
        x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x.unsqueeze(1)
        out += [(x - 0.5) / 0.25, torch.from_numpy(labels.astype(np.int64))]
    return out[0], out[1], out[2], out[3]


class SimulatedCrowdDataModule(CrowdDataModule):
    """A labelled image set relabelled by simulated annotators (seeded): the MBEM paper's setting.

    The training split's gold labels are hidden behind ``labels_per_item`` answers per item from
    ``num_annotators`` simulated workers; validation and test keep their gold labels.

    Args:
        dataset: ``"digits"`` (scikit-learn, offline), ``"mnist"``, ``"fashion_mnist"`` or ``"cifar10"``
            (shared data folder).
        num_annotators: number of simulated workers.
        labels_per_item: answers per training item (the redundancy ``r``).
        worker_model: ``"hammer_spammer"`` (perfect workers with probability ``hammer_fraction``, the rest
            answer nearly at random) or ``"realistic"`` (Beta-distributed accuracy, Dirichlet errors).
        hammer_fraction: the paper's ``gamma``.
        train_limit: keep a seeded subset of this many training items (``None``: all).
        val_fraction: share of the training split held out (with gold labels) for validation.
        test_fraction: for ``digits`` (no official split): share held out as the test set.
        init: the first targets (``"majority_vote"`` or ``"dawid_skene"``).
        batch_size: examples per batch.
        num_workers: DataLoader workers.
        seed: seed of the split, the workers, their answers and the shuffle.
        soft_targets: batches carry posteriors instead of class ids (see :class:`CrowdDataModule`).
        hard_targets: ``"sample"`` or ``"argmax"`` (see :class:`CrowdDataModule`).

    Inputs are float32, scaled: digits ``(N, 1, 8, 8)`` pixel/16, in ``[0, 1]``; mnist / fashion_mnist
    ``(N, 1, 28, 28)`` and cifar10 ``(N, 3, 32, 32)`` ``(pixel/255 - 0.5)/0.25``, in ``[-2, 2]``. A model of your
    own must expect that scale (or rescale in its ``forward``); one that does not learn makes the
    bootstrap useless, which ``CrowdEM``'s guard detects (see docs/crowd.md, "Simulated annotators").

    Example:
        >>> dm = SimulatedCrowdDataModule("digits", num_annotators=10, labels_per_item=1, seed=0)
        >>> dm.setup("fit"); len(dm.annotation_table), dm.annotation_table.num_classes
        (1150, 10)
    """

    def __init__(
        self,
        dataset: str = "digits",
        num_annotators: int = 20,
        labels_per_item: int = 1,
        worker_model: Literal["hammer_spammer", "realistic"] = "hammer_spammer",
        hammer_fraction: float = 0.2,
        train_limit: int | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        init: InitMethod = "majority_vote",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        soft_targets: bool = False,
        hard_targets: HardTargets = "sample",
    ) -> None:
        super().__init__(
            num_classes=10,
            init=init,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            soft_targets=soft_targets,
            hard_targets=hard_targets,
        )
        if dataset not in ("digits", "mnist", "fashion_mnist", "cifar10"):
            raise ValueError(f"dataset: expected 'digits', 'mnist', 'fashion_mnist' or 'cifar10', got {dataset!r}")
        if worker_model not in ("hammer_spammer", "realistic"):
            raise ValueError(f"worker_model: expected 'hammer_spammer' or 'realistic', got {worker_model!r}")
        if not 0.0 < val_fraction < 1.0 or not 0.0 < test_fraction < 1.0:
            raise ValueError("val_fraction/test_fraction: expected values in (0, 1)")
        self.dataset, self.num_annotators, self.hard_labels_per_item = dataset, num_annotators, labels_per_item
        self.worker_model, self.hammer_fraction, self.train_limit = worker_model, hammer_fraction, train_limit
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.true_confusions: torch.Tensor | None = None

    def load(self) -> tuple[Dataset | torch.Tensor, Any, Dataset | None, Dataset | None]:
        rng = np.random.default_rng(self.seed)
        if self.dataset == "digits":
            x, y = _digits()
            order = torch.from_numpy(rng.permutation(len(y)))
            n_test = round(len(y) * self.test_fraction)
            x_test, y_test, x, y = x[order[:n_test]], y[order[:n_test]], x[order[n_test:]], y[order[n_test:]]
        else:
            x, y, x_test, y_test = _shared_images(self.dataset, self.train_limit, self.seed)
        order = torch.from_numpy(rng.permutation(len(y)))
        n_val = round(len(y) * self.val_fraction)
        val = TensorDataset(x[order[:n_val]], y[order[:n_val]])
        x, y = x[order[n_val:]], y[order[n_val:]]
        if self.dataset == "digits" and self.train_limit is not None:
            x, y = x[: self.train_limit], y[: self.train_limit]
        if self.worker_model == "hammer_spammer":
            conf = hammer_spammer_confusions(self.num_annotators, 10, self.hammer_fraction, seed=self.seed)
        else:
            conf = random_confusions(self.num_annotators, 10, seed=self.seed)
        self.true_confusions = conf
        table = simulate_annotations(y, conf, self.hard_labels_per_item, seed=self.seed + 1)
        self.gold = y
        return x, table, val, TensorDataset(x_test, y_test)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self.gold is not None and self.item_indices is not None and len(self.gold) != len(self.item_indices):
            self.gold = self.gold[self.item_indices]
