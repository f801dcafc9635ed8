"""Prior knowledge an aggregator can take in ``fit``: gold labels for some items and initial error matrices.

Both follow crowd-kit 1.4.2's conventions (``true_labels`` a Series indexed by item; ``initial_error`` a DataFrame
indexed by ``(worker, label)`` with one column per true class) and also accept tensors in the table's id order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd.table import AnnotationTable

InitialErrorStrategy = Literal["assign", "addition"]
STRATEGIES = ("assign", "addition")


def class_ids(table: AnnotationTable, values: Any, argument: str) -> np.ndarray:
    """Class ids of original label ``values``; an unknown label raises naming ``argument`` and the value."""
    values = list(values)
    lookup = {c: k for k, c in enumerate(table.classes)}
    text = {str(c): k for k, c in enumerate(table.classes)}
    out = np.empty(len(values), dtype=np.int64)
    for j, value in enumerate(values):
        k = lookup.get(value, text.get(str(value)))
        if k is None:
            raise ValueError(f"{argument}: label {value!r} is not one of the table's classes {list(table.classes)}")
        out[j] = k
    return out


def gold_tensor(table: AnnotationTable, true_labels: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Item ids and class ids of the gold labels that concern the table, and how many named other items.

    ``true_labels``: a Series / mapping from original item value to original label (crowd-kit's form; items
    not in the table are ignored, as crowd-kit does, and counted), or an ``(num_items,)`` integer tensor of
    class ids in ``table_.item_ids`` order with ``-1`` for items without gold.

    Example:
        >>> t = AnnotationTable.read({"task": ["a", "b"], "worker": ["w", "w"], "label": ["no", "yes"]})
        >>> items, labels, unused = gold_tensor(t, {"b": "no", "zz": "yes"})
        >>> items.tolist(), labels.tolist(), unused
        ([1], [0], 1)
    """
    if isinstance(true_labels, torch.Tensor | np.ndarray):
        ids = torch.as_tensor(true_labels)
        if ids.shape != (table.num_items,) or ids.is_floating_point():
            raise ValueError(
                f"true_labels: expected a Series from item to label, or ({table.num_items},) integer class ids "
                f"with -1 for no gold; got shape {tuple(ids.shape)} {ids.dtype}"
            )
        bad = (ids < -1) | (ids >= table.num_classes)
        if bad.any():
            j = int(torch.nonzero(bad)[0])
            raise ValueError(f"true_labels: class id {int(ids[j])} at item {j} is outside [-1, {table.num_classes})")
        items = torch.nonzero(ids >= 0).squeeze(1)
        return items, ids[items].long(), 0
    if isinstance(true_labels, Mapping):
        true_labels = pd.Series(dict(true_labels), dtype=object)
    if not isinstance(true_labels, pd.Series):
        raise ValueError(
            f"true_labels: expected a pandas Series (item -> label), a mapping or a tensor; got "
            f"{type(true_labels).__name__}"
        )
    series = true_labels.dropna()
    if series.index.has_duplicates:
        raise ValueError(f"true_labels: item {series.index[series.index.duplicated()][0]!r} has two gold labels")
    index = table.item_index(list(series.index)).numpy()
    if (index < 0).any():  # the same ids read as numbers in one file and as text in the other
        text = pd.Index([str(v) for v in table.item_ids])
        again = text.get_indexer(pd.Index([str(v) for v in series.index]))
        index = np.where(index >= 0, index, again)
    known = index >= 0
    labels = class_ids(table, series.to_numpy()[known], "true_labels")
    return torch.from_numpy(index[known]), torch.from_numpy(labels), int((~known).sum())


def apply_gold(post: torch.Tensor, gold: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Set the posterior rows of gold items to their one-hot gold label, in place (crowd-kit's correction)."""
    if gold is not None and len(gold[0]):
        items, labels = gold
        post[items] = 0
        post[items, labels] = 1
    return post


def initial_counts(
    table: AnnotationTable,
    initial_error: Any,
    strategy: InitialErrorStrategy,
    observed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(workers, K, K)`` initial error counts (axes worker, observed, true) and a ``(workers, K)`` mask of the
    ``(worker, label)`` rows they give.

    ``initial_error``: crowd-kit's DataFrame (MultiIndex ``(worker, label)``, a column per true class), or a
    ``(workers, K, K)`` tensor in ``table_.worker_ids`` / ``table_.classes`` order (all rows given). Rows of
    workers not in the table are ignored. With ``strategy="assign"`` every observed ``(worker, label)`` row must
    be given, and matrices given as probabilities (all values <= 1) must sum to 1 over the observed labels of
    each true class.
    """
    W, K = table.num_workers, table.num_classes
    if isinstance(initial_error, torch.Tensor | np.ndarray):
        values = torch.as_tensor(initial_error, dtype=torch.float64)
        if values.shape != (W, K, K):
            raise ValueError(
                f"initial_error: expected shape ({W}, {K}, {K}) (worker, observed, true in table order), "
                f"got {tuple(values.shape)}"
            )
        given = torch.ones(W, K, dtype=torch.bool)
    elif isinstance(initial_error, pd.DataFrame):
        if initial_error.index.nlevels != 2:
            raise ValueError(
                "initial_error: expected a DataFrame indexed by (worker, label) with one column per true class, "
                f"got an index with {initial_error.index.nlevels} level(s) {list(initial_error.index.names)}"
            )
        columns = class_ids(table, initial_error.columns, "initial_error (columns)")
        workers = table.worker_ids.get_indexer(initial_error.index.get_level_values(0))
        keep = workers >= 0
        labels = class_ids(table, initial_error.index.get_level_values(1)[keep], "initial_error (label level)")
        values = torch.zeros(W, K, K, dtype=torch.float64)
        given = torch.zeros(W, K, dtype=torch.bool)
        block = torch.zeros(int(keep.sum()), K, dtype=torch.float64)
        block[:, torch.from_numpy(columns)] = torch.from_numpy(initial_error.to_numpy(dtype=np.float64)[keep])
        rows_w, rows_l = torch.from_numpy(workers[keep]), torch.from_numpy(labels)
        values[rows_w, rows_l] = block
        given[rows_w, rows_l] = True
    else:
        raise ValueError(
            "initial_error: expected a DataFrame indexed by (worker, label) or a tensor; "
            f"got {type(initial_error).__name__}"
        )
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError("initial_error: values must be finite, non-negative counts or probabilities")
    if strategy == "assign":
        missing = observed.cpu() & ~given
        if missing.any():
            w = int(torch.nonzero(missing.any(dim=1))[0])
            raise ValueError(
                f"initial_error: with initial_error_strategy='assign' every worker in the data needs its error matrix; "
                f"worker {table.worker_ids[w]!r} has none for label "
                f"{table.classes[int(torch.nonzero(missing[w])[0])]!r}"
            )
        if bool((values <= 1).all()):
            sums = values.sum(dim=1)  # (workers, true)
            seen = given.any(dim=1)
            bad = seen[:, None] & ~torch.isclose(sums, torch.ones_like(sums), atol=1e-8)
            if bad.any():
                w = int(torch.nonzero(bad.any(dim=1))[0])
                raise ValueError(
                    "initial_error: The sum of each worker's error matrix in initial_error should be 1.0 over the "
                    f"observed labels of each true class (probabilities); worker {table.worker_ids[w]!r} sums to "
                    f"{[round(float(v), 6) for v in sums[w]]}"
                )
    return values, given
