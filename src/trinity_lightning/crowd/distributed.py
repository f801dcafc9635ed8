r"""Dawid-Skene EM across processes: each rank holds a shard of the annotation rows (``torch.distributed``).

Every EM step of :class:`~trinity_lightning.crowd.DawidSkene` is a sum over annotations (``_incidence.py``), so a
row-sharded fit only has to add up, over the ranks, what each rank's rows contribute:

* **M-step:** the ``(R, K)`` expected counts of the confusion rows and the ``(K,)`` class totals: one all-reduce
  each per iteration. Rows are numbered over the pairs of *every* rank (``R`` is the global number of observed
  ``(worker, label)`` pairs), so row ``r`` means the same pair everywhere and the parameters are identical on all
  ranks.
* **E-step:** an item's posterior needs the sum of the log-confusion rows of *all* its annotations. We shard by
  rows, not by items, and allow an item to be split across ranks: the items that occur on more than one rank are
  found once (hashes of the item values, all-gathered, and their values checked), and each E-step all-reduces
  only those items' ``(S, K)`` partial sums. Why rows: a shard is whatever slice of the file a rank reads (a
  contiguous block of an item-sorted table splits at most ``world - 1`` items, so ``S`` is tiny), and no rank has
  to see the other ranks' rows to re-balance them by item. Items wholly on one rank cost no communication.
* **Log-likelihood, priors and the stopping rule:** every item counts once, on the lowest rank that holds it
  (its *owner*); the log-likelihood is all-reduced, and the stop decision is all-reduced too (MAX), so every rank
  runs the same number of iterations even if two machines round differently.

Vocabularies: the classes must be the same list on every rank (declare them with ``classes=[...]``; a mismatch is
an error on every rank that names the ranks and their classes); worker vocabularies are all-gathered and
merged (sorted, like one process's table), so ``errors_``, ``priors_`` and ``worker_accuracy_`` are global and
identical on every rank, indexed by the merged ``table_.worker_ids``. ``probas_``/``labels_`` are this rank's
items (``table_.item_ids``); a split item has the same posterior on each rank that holds it.

Every sharded aggregator (:class:`~trinity_lightning.crowd.DawidSkene`,
:class:`~trinity_lightning.crowd.OneCoinDawidSkene`, :class:`~trinity_lightning.crowd.MBEM`,
:class:`~trinity_lightning.crowd.MACE`, :class:`~trinity_lightning.crowd.GLAD`) derives from
:class:`ShardedAggregator`, which owns the steps they share: ``fit(..., process_group=...)`` reads and checks the
shard and merges the vocabularies (:meth:`ShardedAggregator._sharded`), finds the split items
(:meth:`ShardedAggregator._open_split`), all-reduces sums, completes split items' sums and agrees on branches
(``_reduce``, ``_complete``, ``_item_total``, ``_any``), and makes ``worker_accuracy_`` global (``_finish``). Each
aggregator keeps only its model-specific sums: GLAD's Newton M-step all-reduces its per-worker derivative sums,
completes the split items' per-item sums, and decides every branch (Newton stop, step halving, EM stop) on
all-reduced values; MACE all-reduces its expected counts; Dawid-Skene's sums live in :class:`ShardedIncidence`.

All collectives run on the calling thread (no ``Future`` callbacks). The single-process fit is unchanged (the
same code with the plain :class:`~trinity_lightning.crowd._incidence.Incidence`).

Example (two processes, ``torchrun --nproc-per-node 2 fit.py``)::

    import torch.distributed as dist
    from trinity_lightning.crowd import DawidSkene

    dist.init_process_group("gloo")
    shard = frame.iloc[dist.get_rank()::dist.get_world_size()]   # any split of the rows
    ds = DawidSkene(dtype="float64").fit(shard, classes=[0, 1, 2], process_group=True)
    ds.errors_, ds.priors_          # the same on every rank, equal to one process's fit
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from trinity_lightning.crowd._incidence import Incidence
from trinity_lightning.crowd.base import Aggregator, is_empty
from trinity_lightning.crowd.table import AnnotationTable, as_table


class ShardError(ValueError):
    """A sharded fit cannot start; raised on every rank with every rank's problem."""


def resolve_group(process_group: Any) -> Any:
    """The process group of ``process_group`` (``True``: the default group); checks that one is initialised."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "process_group: torch.distributed is not initialised; call torch.distributed.init_process_group "
            "(or launch with torchrun) before fit(..., process_group=...)"
        )
    return dist.group.WORLD if process_group is True else process_group


def _comm_device(group: Any) -> torch.device:
    """NCCL moves CUDA tensors only; gloo (and the rest) CPU ones."""
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: torch.Tensor, group: Any, op: Any = None) -> torch.Tensor:
    """In-place ``all_reduce`` (SUM unless ``op``) on the calling thread, via the backend's device if needed."""
    op = dist.ReduceOp.SUM if op is None else op
    device = _comm_device(group)
    if tensor.device == device:
        dist.all_reduce(tensor, op=op, group=group)
        return tensor
    moved = tensor.to(device)
    dist.all_reduce(moved, op=op, group=group)
    tensor.copy_(moved)
    return tensor


def _gather_objects(value: Any, group: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, value, group=group)
    return out


def _merge(indexes: list[pd.Index]) -> pd.Index:
    """The union of the ranks' vocabularies, sorted when the values compare (as one process's table)."""
    union = pd.Index(pd.unique(np.concatenate([np.asarray(index, dtype=object) for index in indexes])))
    try:
        return pd.Index(sorted(union))
    except TypeError:
        return union


def shard_table(
    annotations: Any, group: Any, name: str, unsupported: dict[str, Any], **read_kwargs: Any
) -> AnnotationTable:
    """This rank's shard as a table whose worker vocabulary is the merge of every rank's.

    Every rank reads its shard; one all-gather then exchanges any error, the classes and the workers, so a bad
    shard on one rank raises :class:`ShardError` on all of them (no rank waits for a collective that never comes).

    Raises:
        ShardError: a rank's shard is empty or unreadable, the classes differ between ranks, or an argument the
            sharded fit does not take was given.
    """
    problem: str | None = None
    table: AnnotationTable | None = None
    cause: Exception | None = None
    given = [key for key, value in unsupported.items() if value is not None]
    if given:
        problem = f"{', '.join(given)}: not supported by the sharded fit (process_group=...)"
    elif is_empty(annotations):
        problem = "the shard is empty (every rank needs at least one annotation)"
    else:
        try:
            table = as_table(annotations, **read_kwargs)
        except Exception as error:  # told to every rank below, then raised from this one
            problem, cause = f"{type(error).__name__}: {error}", error
    mine = (problem, None, None) if table is None else (None, list(table.classes), list(table.worker_ids))
    everyone = _gather_objects(mine, group)
    problems = [f"rank {rank}: {p}" for rank, (p, _, _) in enumerate(everyone) if p is not None]
    if problems:
        raise ShardError(f"{name}.fit(process_group=...): " + "; ".join(problems)) from cause
    assert table is not None
    classes = [c for _, c, _ in everyone]
    if any(c != classes[0] for c in classes):
        listing = "; ".join(f"rank {rank}: {c}" for rank, c in enumerate(classes))
        raise ShardError(
            f"{name}.fit(process_group=...): classes: every rank needs the same class list, in the same order "
            f"(declare them with classes=[...]); got {listing}"
        )
    workers = _merge([pd.Index(w) for _, _, w in everyone])
    remap = torch.from_numpy(workers.get_indexer(table.worker_ids).astype(np.int64))
    return dataclasses.replace(table, workers=remap[table.workers], worker_ids=workers)


def _item_hashes(item_ids: pd.Index) -> np.ndarray:
    return pd.util.hash_array(np.asarray(item_ids)).view(np.int64)


class SplitItems:
    """This rank's items that other ranks hold too (completed by an all-reduce), and the items it owns.

    An item held by several ranks counts once, on the lowest of them (its owner), in every sum over items.

    Args:
        item_ids: this rank's item values (``table_.item_ids``).
        group: the process group.
        device: where the index tensors live.
    """

    def __init__(self, item_ids: pd.Index, group: Any, device: torch.device) -> None:
        self.group = group
        rank = dist.get_rank(group)
        hashes = _item_hashes(item_ids)
        everyone = _gather_objects(hashes, group)
        earlier = np.concatenate([everyone[r] for r in range(rank)]) if rank else np.empty(0, np.int64)
        others = np.concatenate([h for r, h in enumerate(everyone) if r != rank] or [np.empty(0, np.int64)])
        values, seen = np.unique(np.concatenate(everyone), return_counts=True)
        shared = values[seen > 1]  # sorted: the same buffer order on every rank
        local = np.flatnonzero(np.isin(hashes, others))
        # a 64-bit hash collision would join two different items: check that the split items' values agree
        named = _gather_objects(dict(zip(hashes[local].tolist(), item_ids[local].tolist(), strict=True)), group)
        for key in shared.tolist():
            found = {repr(d[key]) for d in named if key in d}
            if len(found) > 1:
                raise ShardError(f"items {sorted(found)} on different ranks share a 64-bit hash; rename one of them")
        self.num_split = len(shared)
        self._local = torch.from_numpy(local).to(device)
        self._slot = torch.from_numpy(np.searchsorted(shared, hashes[local])).to(device)
        owned = ~np.isin(hashes, earlier)
        self._owned = None if owned.all() else torch.from_numpy(owned).to(device)
        total = torch.tensor([float(owned.sum())], dtype=torch.float64, device=device)
        self.num_items = int(all_reduce(total, group).item())  # over all ranks, each item once

    def complete(self, sums: torch.Tensor) -> torch.Tensor:
        """Add the other ranks' partial ``(items, K)`` sums to the rows of the split items (in place)."""
        if self.num_split:
            buffer = torch.zeros(self.num_split, sums.shape[1], dtype=sums.dtype, device=sums.device)
            buffer[self._slot] = sums[self._local]
            all_reduce(buffer, self.group)
            sums[self._local] = buffer[self._slot]
        return sums

    def _mine(self, values: torch.Tensor) -> torch.Tensor:
        return values if self._owned is None else values[self._owned]

    def item_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum over every rank's items (dim 0), each item once."""
        return all_reduce(self._mine(values).sum(dim=0), self.group)

    def total(self, values: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Sum of every entry of the per-item ``values`` over every rank's items, each item once (0-d)."""
        return all_reduce(self._mine(values).sum(dtype=dtype).reshape(1), self.group)[0]


class ShardedIncidence(Incidence):
    """The incidence operator of this rank's rows, with the sums over items and pairs completed across ranks.

    Rows are the global ``(worker, label)`` pairs (see the module docstring); ``num_items``, ``num_annotations``,
    ``per_worker`` and ``observed`` are global; ``per_item`` and the E-step sums are this rank's items with the
    split items completed.

    Args:
        table: this rank's shard (worker vocabulary already merged by :func:`shard_table`).
        group: the process group.
        device: where to compute.
        dtype: floating dtype.
    """

    def __init__(self, table: AnnotationTable, group: Any, device: torch.device, dtype: torch.dtype) -> None:
        self.group = group
        W, K = table.num_workers, table.num_classes
        items, workers, labels = (t.to(device) for t in (table.items, table.workers, table.labels))
        present = torch.bincount(workers * K + labels, minlength=W * K).to(torch.int32)
        present = all_reduce(present, group) > 0
        super().__init__(items, workers, labels, table.num_items, W, K, dtype, pairs_present=present)
        self._votes = super().votes()  # while num_items and per_item are still this rank's
        self.per_worker = all_reduce(self.per_worker, group)
        counts = torch.tensor([float(self.num_annotations)], dtype=torch.float64, device=device)
        self.num_annotations = int(all_reduce(counts, group).item())
        self.split = SplitItems(table.item_ids, group, device)
        self.num_items = self.split.num_items
        self.per_item = self.split.complete(self.per_item[:, None])[:, 0]
        self.split.complete(self._votes)

    def votes(self) -> torch.Tensor:
        return self._votes.clone()

    def gather_sum(self, row_values: torch.Tensor) -> torch.Tensor:
        return self.split.complete(super().gather_sum(row_values))

    def scatter(self, posteriors: torch.Tensor) -> torch.Tensor:
        return all_reduce(super().scatter(posteriors), self.group)

    def item_sum(self, values: torch.Tensor) -> torch.Tensor:
        return self.split.item_sum(values)

    def item_mean(self, values: torch.Tensor) -> torch.Tensor:
        return self.item_sum(values) / self.num_items

    def total(self, values: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.split.total(values, dtype)

    def agree(self, flag: bool) -> bool:
        vote = torch.tensor([int(flag)], dtype=torch.int32, device=self.per_worker.device)
        return bool(all_reduce(vote, self.group, dist.ReduceOp.MAX).item())


def row_offset(rows: int, group: Any) -> int:
    """Position of this rank's first row in the concatenation of every rank's rows (rank order)."""
    counts = _gather_objects(rows, group)
    return int(sum(counts[: dist.get_rank(group)]))


def start_sharded(
    annotations: Any, process_group: Any, name: str, unsupported: dict[str, Any], read_kwargs: dict[str, Any]
) -> tuple[Any, Any, dict[str, Any]]:
    """``(group, annotations, read_kwargs)`` for ``fit``: unchanged without a group, else this rank's checked
    shard (:func:`shard_table`) and no read arguments left."""
    if process_group is None or process_group is False:
        return None, annotations, read_kwargs
    group = resolve_group(process_group)
    return group, shard_table(annotations, group, name, unsupported, **read_kwargs), {}


def global_worker_accuracy(table: AnnotationTable, posteriors: torch.Tensor, group: Any) -> torch.Tensor:
    """``(workers,)`` mean posterior of the labels each worker gave, over every rank's annotations."""
    device = posteriors.device
    items, workers, labels = (t.to(device) for t in (table.items, table.workers, table.labels))
    agree = posteriors[items, labels].to(torch.float64)
    sums = torch.zeros(2, table.num_workers, dtype=torch.float64, device=device)
    sums[0].index_add_(0, workers, agree)
    sums[1].index_add_(0, workers, torch.ones_like(agree))
    all_reduce(sums, group)
    return sums[0] / sums[1].clamp_min(1)


class ShardedAggregator(Aggregator):
    """An aggregator whose ``fit`` can run sharded across ranks: the steps every sharded fit shares.

    A subclass's ``fit`` wraps the plain fit in :meth:`_sharded`; its ``_fit`` calls :meth:`_open_split` once the
    table is known and then uses :meth:`_reduce` (sums over annotations), :meth:`_complete` (per-item sums of
    split items), :meth:`_item_total` (sums over items, each once) and :meth:`_any` (one branch on every rank).
    Without a process group every helper is the identity (or the plain sum), so the single-process fit runs the
    same code. ``worker_accuracy_`` counts every rank's annotations (:meth:`_finish`).

    Example:
        >>> class Votes(ShardedAggregator):
        ...     def fit(self, annotations, *, process_group=None, **read_kwargs):
        ...         with self._sharded(annotations, process_group, {}, read_kwargs) as (annotations, read_kwargs):
        ...             return super().fit(annotations, **read_kwargs)
        ...
        ...     def _fit(self, table):
        ...         self._open_split(table)
        ...         votes = torch.zeros(table.num_items, table.num_classes, dtype=self.dtype)
        ...         votes.index_put_((table.items, table.labels), torch.ones(len(table), dtype=self.dtype), True)
        ...         self.probas_ = self._complete(votes) / votes.sum(1, keepdim=True)
        >>> Votes().fit({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [0, 1, 1]}).labels_.tolist()
        [0, 1]
    """

    _group: Any = None  # the process group of a sharded fit (only during fit)
    _split: SplitItems | None = None  # its split items (from _open_split, only during fit)

    @contextmanager
    def _sharded(
        self, annotations: Any, process_group: Any, unsupported: dict[str, Any], read_kwargs: dict[str, Any]
    ) -> Iterator[tuple[Any, dict[str, Any]]]:
        """``(annotations, read_kwargs)`` for the plain fit: unchanged without a group, else this rank's checked
        shard with the merged worker vocabulary (:func:`start_sharded`; ``unsupported`` names the arguments the
        sharded fit refuses, a value other than ``None`` meaning given); the group is forgotten afterwards."""
        self._group, annotations, read_kwargs = start_sharded(
            annotations, process_group, type(self).__name__, unsupported, read_kwargs
        )
        try:
            yield annotations, read_kwargs
        finally:
            self._group = self._split = None

    def _open_split(self, table: AnnotationTable) -> SplitItems | None:
        """Find the items other ranks hold too (sharded fit only; ``None`` without a group)."""
        if self._group is not None:
            self._split = SplitItems(table.item_ids, self._group, self.device)
        return self._split

    def _reduce(self, *tensors: torch.Tensor, op: Any = None) -> None:
        """All-reduce each tensor in place (SUM unless ``op``) over the ranks; nothing without a group."""
        if self._group is not None:
            for tensor in tensors:
                all_reduce(tensor, self._group, op)

    def _complete(self, sums: torch.Tensor) -> torch.Tensor:
        """Per-item ``(items, C)`` sums with the split items' other-rank parts added (in place)."""
        return sums if self._split is None else self._split.complete(sums)

    def _item_total(self, values: torch.Tensor) -> float:
        """Sum of per-item values over every rank's items, each item once."""
        return float(values.sum() if self._split is None else self._split.total(values))

    def _any(self, flag: bool) -> bool:
        """True on every rank if it is true on any (the ranks take the same branch)."""
        if self._group is None:
            return flag
        vote = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        return bool(all_reduce(vote, self._group, dist.ReduceOp.MAX).item())

    def _finish(self) -> None:
        super()._finish()
        if self._group is not None:  # every rank's annotations count in every worker's accuracy
            self.worker_accuracy_ = global_worker_accuracy(self.table_, self.probas_, self._group)
