"""The labelled/unlabelled split of a pool of examples, kept as Lightning DataModule state.

:class:`ActiveLearningDataModule` wraps any map-style dataset (a torch ``Dataset``, a Hugging Face
``datasets.Dataset``, an :class:`~trinity_lightning.data.ArrayDataset`, ...). Every example is either
*labelled* (it trains the model) or in the *pool* (it waits to be scored and queried). The state is a
plain-Python ``state_dict`` (so it lands in the Lightning checkpoint under the class name), and every
call to :meth:`ActiveLearningDataModule.label` also rewrites a JSON labels file atomically, so a crash
never loses an annotator's work.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, Subset

from trinity_lightning.data.atomic import atomic_write_json
from trinity_lightning.data.readers import ArrayDataset

LABELS_FILE_VERSION = 1


class _LabelledView(Dataset):
    """The labelled part of a dataset; labels given by an annotator replace the dataset's own."""

    def __init__(
        self, dataset: Dataset, indices: Sequence[int], overrides: dict[int, Any], label_field: int | str
    ) -> None:
        self.dataset, self.indices, self.overrides, self.label_field = dataset, list(indices), overrides, label_field

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Any:
        index = self.indices[position]
        item = self.dataset[index]
        if index in self.overrides:
            item = _with_label(item, self.overrides[index], self.label_field)
        return item


class SeededShuffle(torch.utils.data.Sampler[int]):
    """A random order of ``range(n)`` fixed by ``seed`` alone: iterating twice gives the same order.

    Example:
        >>> list(SeededShuffle(5, seed=1)) == list(SeededShuffle(5, seed=1))
        True
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed

    def __iter__(self) -> Any:
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist())

    def __len__(self) -> int:
        return self.n


class _TensorBatches(Dataset):
    """Whole batches of an :class:`ArrayDataset` by fancy indexing: no Python work per example."""

    def __init__(self, dataset: ArrayDataset, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, torch.as_tensor(list(indices), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, positions: Any) -> Any:
        rows = self.indices[torch.as_tensor(positions, dtype=torch.long)]
        if self.dataset.labels is None:
            return self.dataset.features[rows]
        return self.dataset.features[rows], self.dataset.labels[rows]


def _as_label_tensor(label: Any, like: Any) -> Any:
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(label, dtype=like.dtype)
    return label


def _with_label(item: Any, label: Any, field: int | str) -> Any:
    """Return ``item`` with its label (tuple position or dict key ``field``) replaced by ``label``."""
    if isinstance(item, dict):
        out = dict(item)
        out[field] = _as_label_tensor(label, item.get(field))
        return out
    if isinstance(item, (tuple, list)) and isinstance(field, int):
        out_list = list(item)
        out_list[field] = _as_label_tensor(label, out_list[field])
        return tuple(out_list) if isinstance(item, tuple) else out_list
    raise TypeError(
        f"label_field: cannot set the label of a {type(item).__name__} item with field {field!r}; "
        "items must be tuples/lists (int field) or dicts (str field)"
    )


def _plain_label(label: Any, argument: str) -> int | list[int]:
    """Validate one label (a class id, or a sequence of tag ids) and return it as plain Python ints."""
    if isinstance(label, (torch.Tensor, np.ndarray)):
        label = label.tolist()
    if isinstance(label, bool) or (not isinstance(label, numbers.Integral) and not isinstance(label, (list, tuple))):
        raise TypeError(
            f"{argument}: expected an integer class id or a sequence of integer tag ids, "
            f"got {type(label).__name__} {label!r}"
        )
    if isinstance(label, (list, tuple)):
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in label):
            raise TypeError(f"{argument}: a sequence label must hold integer tag ids, got {label!r}")
        return [int(v) for v in label]
    return int(label)


class ActiveLearningDataModule(pl.LightningDataModule):
    """A pool of examples split into labelled and unlabelled parts, with train/pool/val/test loaders.

    Indices are always *dataset* indices (positions in ``dataset``), never positions in the pool.
    The state records the round at which each example was labelled (``-1``: still in the pool),
    the labels an annotator gave (they override the dataset's own labels in :meth:`train_dataloader`)
    and the round counter; :meth:`state_dict` holds only plain Python types.

    Args:
        dataset: the map-style pool (all training examples); items are tuples/lists whose
            ``label_field`` position holds the label, or dicts with a ``label_field`` key.
        val: optional validation set (fully labelled, never queried).
        test: optional test set.
        pool_dataset: the same examples in the same order *without* training-time augmentation, used by
            :meth:`pool_dataloader` (default: ``dataset``; pass it when ``dataset`` augments).
        initial_labelled: examples labelled at random before the first round: a count, or a fraction of
            the pool when a float in ``(0, 1)``. Their labels are the dataset's own.
        batch_size: batch size of the train/val/test loaders.
        pool_batch_size: batch size of :meth:`pool_dataloader` and of the validation/test loaders
            (default ``4 * batch_size``; no gradients there, so larger batches are cheap).
        num_workers: DataLoader workers.
        collate_fn: collate function of every loader (e.g. padding for token sequences).
        label_field: where an item keeps its label (tuple position or dict key).
        num_classes: when given, labels (or tag ids) must lie in ``[0, num_classes)``.
        cost_fn: annotation cost of one item (e.g. its number of tokens) for token budgets; default 1.
        labels_path: JSON file rewritten atomically by every :meth:`label` call.
        resume_labels: when ``labels_path`` exists at a fresh ``fit`` (no checkpoint): ``True`` (default)
            continues from it (an INFO line names the file and the count; ``initial_labelled`` and ``seed`` do
            not re-draw the seed set), ``False`` starts afresh from ``initial_labelled`` and overwrites it at
            the first label. On resume from a checkpoint the checkpoint's labelled set wins; labels the file
            holds beyond it (written after the checkpoint) are kept on disk and applied once, when their
            round is replayed.
        seed: seed of the initial random labelling and of the training shuffle.

    Example:
        >>> from trinity_lightning.data import ArrayDataset
        >>> pool = ArrayDataset(torch.randn(10, 3), torch.arange(10) % 2)
        >>> dm = ActiveLearningDataModule(pool, initial_labelled=2, batch_size=4, num_classes=2)
        >>> dm.setup("fit"); dm.n_labelled, dm.n_pool
        (2, 8)
        >>> dm.label([dm.pool_indices[0]], labels=[1]); dm.n_labelled
        3
    """

    def __init__(
        self,
        dataset: Dataset | None = None,
        val: Dataset | None = None,
        test: Dataset | None = None,
        pool_dataset: Dataset | None = None,
        initial_labelled: int | float = 0,
        batch_size: int = 32,
        pool_batch_size: int | None = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        label_field: int | str = -1,
        num_classes: int | None = None,
        cost_fn: Callable[[Any], int] | None = None,
        labels_path: str | None = None,
        seed: int = 0,
        resume_labels: bool = True,
    ) -> None:
        super().__init__()
        self.awaiting_first_answers = False  # set by ActiveLearning's cold start (nothing labelled yet)
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        if pool_batch_size is not None and pool_batch_size < 1:
            raise ValueError(f"pool_batch_size: expected a positive integer, got {pool_batch_size}")
        if isinstance(initial_labelled, float) and not 0.0 <= initial_labelled < 1.0:
            raise ValueError(f"initial_labelled: a fraction must lie in [0, 1), got {initial_labelled}")
        if isinstance(initial_labelled, int) and initial_labelled < 0:
            raise ValueError(f"initial_labelled: expected a count >= 0, got {initial_labelled}")
        self.batch_size = batch_size
        self.pool_batch_size = pool_batch_size or 4 * batch_size
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.label_field = label_field
        self.num_classes = num_classes
        self.cost_fn = cost_fn
        self.initial_labelled = initial_labelled
        self.labels_path = Path(labels_path) if labels_path else None
        self.resume_labels = resume_labels
        self.seed = seed
        self._dataset, self._val, self._test, self._pool_dataset = dataset, val, test, pool_dataset
        self.dataset: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.pool_set: Dataset | None = None
        self._labelled_round: np.ndarray = np.zeros(0, dtype=np.int64)
        self._overrides: dict[int, Any] = {}
        self._newer: dict[int, tuple[int, Any]] = {}  # labels file entries newer than the checkpoint
        self._costs: np.ndarray | None = None
        self.round = 0

    # ----------------------------------------------------------------------------------------- data
    def load(self) -> tuple[Dataset, Dataset | None, Dataset | None, Dataset | None]:
        """Return ``(dataset, val, test, pool_dataset)``; subclasses that read data override this."""
        if self._dataset is None:
            raise ValueError("dataset: no dataset given; pass dataset=... or subclass and override load()")
        return self._dataset, self._val, self._test, self._pool_dataset

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        dataset, self.val_set, self.test_set, pool = self.load()
        n = len(dataset)  # type: ignore[arg-type]
        if pool is not None and len(pool) != n:  # type: ignore[arg-type]
            raise ValueError(
                f"pool_dataset: has {len(pool)} items but dataset has {n}; "  # type: ignore[arg-type]
                "it must hold the same examples in the same order"
            )
        self.dataset, self.pool_set = dataset, pool if pool is not None else dataset
        self._labelled_round = np.full(n, -1, dtype=np.int64)
        if self.labels_path is not None and self.labels_path.exists():
            if self.resume_labels:
                self._load_labels_file(self.labels_path)
                rank_zero_info(
                    f"labels_path: continuing from {self.labels_path} ({self.n_labelled} labelled examples, round "
                    f"{self.round}); initial_labelled={self.initial_labelled} is not drawn again. Pass "
                    "resume_labels=False to start afresh"
                )
                return
            rank_zero_info(f"labels_path: resume_labels=False; {self.labels_path} will be overwritten")
        count = self.initial_labelled
        if isinstance(count, float):
            count = round(count * n)
        if count > n:
            raise ValueError(f"initial_labelled: asked for {count} examples but the dataset has {n}")
        if count:
            chosen = np.random.default_rng(self.seed).choice(n, size=count, replace=False)
            self.label(np.sort(chosen).tolist(), advance_round=False)

    def _require_setup(self) -> Dataset:
        if self.dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() first (Lightning does it in fit/test)")
        return self.dataset

    # -------------------------------------------------------------------------------------- queries
    @property
    def labelled_mask(self) -> np.ndarray:
        """Boolean mask over the dataset: ``True`` where labelled."""
        self._require_setup()
        return self._labelled_round >= 0

    @property
    def labelled_indices(self) -> list[int]:
        """Dataset indices of the labelled examples, ascending."""
        return np.flatnonzero(self.labelled_mask).tolist()

    @property
    def pool_indices(self) -> list[int]:
        """Dataset indices of the unlabelled examples (the pool), ascending."""
        return np.flatnonzero(~self.labelled_mask).tolist()

    @property
    def n_labelled(self) -> int:
        return int(self.labelled_mask.sum())

    @property
    def n_pool(self) -> int:
        return int((~self.labelled_mask).sum())

    @property
    def labelled_round(self) -> np.ndarray:
        """For each dataset index the round at which it was labelled, ``-1`` when in the pool (a copy)."""
        self._require_setup()
        return self._labelled_round.copy()

    @property
    def annotations(self) -> dict[int, Any]:
        """Labels given through :meth:`label` (dataset index -> label), a copy."""
        return dict(self._overrides)

    def costs(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """Annotation cost of each index (``cost_fn``, e.g. tokens; 1 per example without it)."""
        dataset = self._require_setup()
        if self._costs is None:
            n = len(self._labelled_round)
            if self.cost_fn is None:
                self._costs = np.ones(n, dtype=np.int64)
            else:
                self._costs = np.asarray([int(self.cost_fn(dataset[i])) for i in range(n)], dtype=np.int64)
        return self._costs if indices is None else self._costs[np.asarray(indices, dtype=np.int64)]

    @property
    def labelled_cost(self) -> int:
        """Total cost (examples or tokens, see ``cost_fn``) of the labelled set."""
        return int(self.costs()[self.labelled_mask].sum())

    # ------------------------------------------------------------------------------------- labelling
    def label(self, indices: Sequence[int], labels: Sequence[Any] | None = None, advance_round: bool = True) -> None:
        """Move ``indices`` from the pool to the labelled set.

        Args:
            indices: dataset indices, each currently in the pool.
            labels: labels from an annotator, one per index (a class id, or a sequence of tag ids);
                ``None`` keeps the dataset's own labels (simulation).
            advance_round: count this call as a new query round (the initial labelling is round 0).

        Raises:
            ValueError: an index out of range, repeated, or already labelled; wrong number of labels;
                a label out of ``[0, num_classes)``.
            TypeError: a label that is not an integer id or a sequence of them.
        """
        self._require_setup()
        n = len(self._labelled_round)
        idx = [int(i) for i in (indices.tolist() if hasattr(indices, "tolist") else indices)]  # type: ignore[union-attr]
        if not idx:
            return
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"indices: {bad[:5]} out of range for a dataset of {n} examples")
        if len(set(idx)) != len(idx):
            raise ValueError("indices: the same index appears more than once")
        already = [i for i in idx if self._labelled_round[i] >= 0]
        if already:
            raise ValueError(f"indices: {already[:5]} are already labelled (only pool indices can be labelled)")
        plain: list[Any] = []
        if labels is not None:
            if len(labels) != len(idx):
                raise ValueError(f"labels: got {len(labels)} labels for {len(idx)} indices")
            for i, value in zip(idx, labels):
                label = _plain_label(value, f"labels[{i}]")
                values = label if isinstance(label, list) else [label]
                if self.num_classes is not None and any(not 0 <= v < self.num_classes for v in values):
                    raise ValueError(f"labels: label {label!r} of index {i} is out of range [0, {self.num_classes})")
                plain.append(label)
        round_ = self.round + 1 if advance_round else self.round
        for i in idx:  # a replayed round: the file's copy of these labels is superseded by this call
            self._newer.pop(i, None)
        self._labelled_round[idx] = round_
        self.round = round_
        if labels is not None:
            self._overrides.update(zip(idx, plain))
        if self.labels_path is not None:
            self.save_labels(self.labels_path)

    def label_randomly(self, count: int, seed: int | None = None) -> list[int]:
        """Label ``count`` random pool examples with their own labels; returns the chosen indices."""
        pool = self.pool_indices
        if count > len(pool):
            raise ValueError(f"count: asked for {count} examples but the pool holds {len(pool)}")
        rng = np.random.default_rng(self.seed + 7919 * (self.round + 1) if seed is None else seed)
        chosen = np.sort(rng.choice(np.asarray(pool, dtype=np.int64), size=count, replace=False)).tolist()
        self.label(chosen)
        return chosen

    # --------------------------------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset, shuffle: bool, batch_size: int, seed: int | None = None) -> DataLoader:
        """A loader that never draws from the global random generators (so a resumed run replays exactly).

        Shuffled loaders use :class:`SeededShuffle` (the order depends only on ``seed``, however often the loader is
        iterated); every loader gets its own generator for the workers' base seed, which PyTorch would otherwise
        draw from the global generator at each ``iter()``.
        """
        seed = self.seed if seed is None else seed
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=SeededShuffle(len(dataset), seed) if shuffle else None,  # type: ignore[arg-type]
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            generator=torch.Generator().manual_seed(seed),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled loader over the labelled examples (with annotator labels applied)."""
        dataset = self._require_setup()
        labelled = self.labelled_indices
        if not labelled and self.awaiting_first_answers:  # ActiveLearning asked round 1 before any training
            return DataLoader(Subset(dataset, []), batch_size=1)  # no batches: fit ends until answered
        if not labelled:
            raise RuntimeError(
                "train_dataloader: no labelled examples yet; set initial_labelled=... or call "
                "label(...) before training"
            )
        view = _LabelledView(dataset, labelled, self._overrides, self.label_field)
        return self._loader(view, True, self.batch_size, self._train_seed())

    def _train_seed(self) -> int:
        """The shuffle seed of the epoch about to start, from (seed, epoch, round).

        The epoch is the fit loop's count of processed epochs: on a resume Lightning builds the loader before it
        updates ``current_epoch``, so ``current_epoch`` would give the replayed epoch another shuffle.
        """
        trainer = getattr(self, "trainer", None)
        epoch = 0
        if trainer is not None:
            progress = getattr(getattr(trainer, "fit_loop", None), "epoch_progress", None)
            epoch = int(progress.current.processed) if progress is not None else int(trainer.current_epoch)
        return self.seed * 1_000_003 + 7 * epoch + self.round

    def pool_dataloader(self, indices: Sequence[int] | None = None) -> DataLoader:
        """Loader over the pool (or the given subset of it), in order, from ``pool_dataset``.

        Batches come in the order of ``indices`` (default :attr:`pool_indices`), so the ``i``-th score
        belongs to ``indices[i]``. Items come from ``pool_dataset``: no training augmentation.
        """
        self._require_setup()
        chosen = self.pool_indices if indices is None else [int(i) for i in indices]
        if not chosen:
            raise ValueError("pool_dataloader: the pool is empty; every example is labelled")
        if isinstance(self.pool_set, ArrayDataset) and self.collate_fn is None and self.num_workers == 0:
            batches = torch.utils.data.BatchSampler(range(len(chosen)), self.pool_batch_size, drop_last=False)
            generator = torch.Generator().manual_seed(self.seed)  # no draw from the global generator
            data = _TensorBatches(self.pool_set, chosen)
            return DataLoader(data, sampler=batches, batch_size=None, generator=generator)
        return self._loader(
            torch.utils.data.Subset(self.pool_set, chosen),  # type: ignore[arg-type]
            False,
            self.pool_batch_size,
        )

    def val_dataloader(self) -> DataLoader:
        self._require_setup()
        if self.val_set is None:
            raise RuntimeError(f"{type(self).__name__} has no validation set; pass val=...")
        return self._loader(self.val_set, False, self.pool_batch_size)

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        if self.test_set is None:
            raise RuntimeError(f"{type(self).__name__} has no test set; pass test=...")
        return self._loader(self.test_set, False, self.pool_batch_size)

    def predict_dataloader(self) -> DataLoader:
        """The pool loader, so ``trainer.predict(model, datamodule=dm)`` scores the pool."""
        return self.pool_dataloader()

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state: labelled round per index, annotator labels, round counter."""
        return {
            "version": LABELS_FILE_VERSION,
            "size": len(self._labelled_round),
            "round": int(self.round),
            "labelled_round": self._labelled_round.tolist(),
            "labels": {str(k): v for k, v in self._overrides.items()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the checkpoint wins over ``labels_path``).

        Labels the file holds beyond the checkpoint were given after it was written (a kill between the
        answers and the next checkpoint): they are not applied now, which would change the replayed epochs,
        but kept on disk (:meth:`save_labels` writes them too) and applied once when their round is replayed.
        A labels file that cannot be read is reported and left alone; the checkpoint carries the state.
        """
        self._require_setup()
        size = int(state_dict["size"])
        if size != len(self._labelled_round):
            raise ValueError(
                f"state_dict: saved for a pool of {size} examples, this dataset has {len(self._labelled_round)}"
            )
        on_file = None
        if self.labels_path and self.labels_path.exists():
            try:
                on_file = self._read_labels_file(self.labels_path)
            except ValueError as err:
                rank_zero_warn(f"{err}; resuming from the checkpoint's labelled set", stacklevel=2)
        self._labelled_round = np.asarray(state_dict["labelled_round"], dtype=np.int64)
        self._overrides = {int(k): v for k, v in state_dict["labels"].items()}
        self.round = int(state_dict["round"])
        self._newer = {}
        if on_file is not None:
            extra = np.flatnonzero((on_file["labelled_round"] >= 0) & (self._labelled_round < 0))
            self._newer = {int(i): (int(on_file["labelled_round"][i]), on_file["labels"].get(int(i))) for i in extra}
            if self._newer:
                rank_zero_info(
                    f"labels_path: {len(self._newer)} labels in {self.labels_path} are newer than the checkpoint; "
                    "they stay in the file and are applied once when their round is replayed"
                )

    def save_labels(self, path: str | Path) -> None:
        """Write the labelled set and annotator labels to ``path`` as JSON, atomically."""
        rounds = self._labelled_round.copy()
        labels = dict(self._overrides)
        for i, (round_, label) in self._newer.items():  # never drop labels given after the checkpoint
            rounds[i] = round_
            if label is not None:
                labels[i] = label
        labelled = np.flatnonzero(rounds >= 0)
        atomic_write_json(
            path,
            {
                "version": LABELS_FILE_VERSION,
                "size": len(rounds),
                "round": max(int(self.round), int(rounds.max(initial=0))),
                "labelled": {str(i): int(rounds[i]) for i in labelled},
                "labels": {str(k): v for k, v in sorted(labels.items())},
            },
            indent=None,
        )

    def _read_labels_file(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            size = int(data["size"])
            rounds = np.full(size, -1, dtype=np.int64)
            for k, v in data["labelled"].items():
                rounds[int(k)] = int(v)
            labels = {int(k): v for k, v in data["labels"].items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"labels_path: {path} is not a labels file written by save_labels ({err})") from None
        if size != len(self._labelled_round):
            raise ValueError(
                f"labels_path: {path} holds labels for {size} examples, the dataset has {len(self._labelled_round)}"
            )
        return {"labelled_round": rounds, "labels": labels, "round": int(data["round"])}

    def _load_labels_file(self, path: Path) -> None:
        data = self._read_labels_file(path)
        self._labelled_round = data["labelled_round"]
        self._overrides = data["labels"]
        self.round = data["round"]
