"""The annotation table: a validated long table of ``(item, worker, label)`` rows encoded as int tensors.

Item, worker and label values of any hashable type are mapped to contiguous ids ``0..n-1`` once, so
the aggregators work on three ``int64`` tensors; :meth:`AnnotationTable.decode_items`,
:attr:`AnnotationTable.classes` and :meth:`AnnotationTable.to_frame` map back.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd._sorting import factorize, radix_argsort
from trinity_lightning.data.errors import DataFormatError
from trinity_lightning.data.tables import as_text, read_table

DuplicatePolicy = Literal["error", "keep_last", "keep_all"]
DUPLICATE_POLICIES = ("error", "keep_last", "keep_all")


def _describe(source: Any) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__module__.split('.')[0]}.{type(source).__name__}>"


def _show(value: Any) -> str:
    """``repr`` of a value without NumPy's type wrapper (``7``, not ``np.int64(7)``)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _mixed_to_text(frame: pd.DataFrame, column: str, where: str) -> pd.DataFrame:
    """A column that mixes numbers and strings (``1`` and ``"1"``) read as strings, with a warning."""
    values = frame[column]
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return frame
    numbers = [v for v in values if _is_number(v)]
    texts = [v for v in values if isinstance(v, str)]
    if not numbers or not texts:
        return frame
    warnings.warn(
        f"{where}: column {column!r} mixes numbers and strings (e.g. {_show(numbers[0])} and {texts[0]!r}); "
        f"every value is read as a string, so {as_text(numbers[0])!r} and {_show(numbers[0])} are the same "
        "value. Convert the column yourself to silence this warning.",
        UserWarning,
        stacklevel=3,
    )
    frame = frame.copy()
    frame[column] = values.map(as_text)
    return frame


def _text_keys(index: pd.Index, values: np.ndarray) -> tuple[pd.Index, np.ndarray]:
    """Compare declared values with read values on their text forms when one side is text and the other not
    (ids and labels read from files are strings; ``items=range(n)`` or ``classes=[0, 1]`` are numbers)."""
    index_text = pd.api.types.infer_dtype(index, skipna=True) == "string"
    values_text = pd.api.types.infer_dtype(values, skipna=True) == "string"
    if index_text == values_text:
        return index, values
    return pd.Index([as_text(v) for v in index]), np.array([as_text(v) for v in values], dtype=object)


def _where(frame: pd.DataFrame, row: int) -> dict[str, int]:
    """``line=`` for rows read from a text file (``read_table`` keeps the line numbers), else ``row=``."""
    lines = frame.attrs.get("lines")
    if lines is not None and row < len(lines):
        return {"line": int(lines[row])}
    return {"row": int(row)}


@dataclass
class AnnotationTable:
    """Crowd annotations as contiguous integer ids, with the maps back to the original values.

    Build one with :meth:`read` (a DataFrame, CSV/TSV/JSONL/Parquet file, HF dataset or dict of
    arrays) or :meth:`from_tensors`; every aggregator also accepts those sources directly.

    Attributes:
        items: ``int64`` tensor ``(N,)``, item id of each annotation in ``[0, num_items)``.
        workers: ``int64`` tensor ``(N,)``, worker id in ``[0, num_workers)``.
        labels: ``int64`` tensor ``(N,)``, class id in ``[0, num_classes)``.
        item_ids: original item values, index = item id.
        worker_ids: original worker values, index = worker id.
        classes: original label values, index = class id.
        unlabelled_items: ids of the declared ``items`` that nobody labelled (excluded).
        dropped_duplicates: rows removed by ``duplicates="keep_last"``.
        source: where the table came from (for messages).
        source_rows: ``int64`` tensor ``(N,)``, the position of each annotation among the rows read (rows are
            stored sorted by ``(item, worker)``); kept only when :meth:`read` is asked to (``keep_source_rows``),
            else ``None``. ``GLAD(crowdkit_compat=True)`` replays crowd-kit's arithmetic in the source order.

    Example:
        >>> frame = pd.DataFrame({"task": ["a", "a", "b"], "worker": ["w1", "w2", "w1"], "label": ["x", "y", "y"]})
        >>> table = AnnotationTable.read(frame, item="task")
        >>> table.num_items, table.num_workers, table.classes
        (2, 2, ['x', 'y'])
        >>> table.labels.tolist()
        [0, 1, 1]
    """

    items: torch.Tensor
    workers: torch.Tensor
    labels: torch.Tensor
    item_ids: pd.Index
    worker_ids: pd.Index
    classes: list[Any]
    unlabelled_items: list[Any] = field(default_factory=list)
    dropped_duplicates: int = 0
    source: str = "<tensors>"
    source_rows: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.items)
        if len(self.workers) != n or len(self.labels) != n:
            raise ValueError(f"items/workers/labels: lengths differ ({n}, {len(self.workers)}, {len(self.labels)})")
        if n == 0:
            raise DataFormatError("the annotation table is empty", source=self.source)

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_items(self) -> int:
        """Number of (labelled) items."""
        return len(self.item_ids)

    @property
    def num_workers(self) -> int:
        """Number of workers."""
        return len(self.worker_ids)

    @property
    def num_classes(self) -> int:
        """Number of classes (including classes that nobody used, when declared)."""
        return len(self.classes)

    def annotations_per_item(self) -> torch.Tensor:
        """``(num_items,)`` count of annotations of each item."""
        return torch.bincount(self.items, minlength=self.num_items)

    def annotations_per_worker(self) -> torch.Tensor:
        """``(num_workers,)`` count of annotations of each worker."""
        return torch.bincount(self.workers, minlength=self.num_workers)

    # ------------------------------------------------------------------ mapping back
    def decode_items(self, ids: torch.Tensor | np.ndarray | None = None) -> pd.Index:
        """Original item values of item ids (all items when ``ids`` is ``None``)."""
        if ids is None:
            return self.item_ids
        return self.item_ids[np.asarray(ids.cpu() if isinstance(ids, torch.Tensor) else ids)]

    def decode_labels(self, class_ids: torch.Tensor | np.ndarray) -> list[Any]:
        """Original label values of class ids."""
        array = np.asarray(class_ids.cpu() if isinstance(class_ids, torch.Tensor) else class_ids)
        return [self.classes[int(c)] for c in array]

    def item_index(self, values: Sequence[Hashable]) -> torch.Tensor:
        """Item ids of original item values (``-1`` for values not in the table)."""
        return torch.from_numpy(self.item_ids.get_indexer(pd.Index(values)).astype(np.int64))

    def to_frame(self, item: str = "item", worker: str = "worker", label: str = "label") -> pd.DataFrame:
        """The table with its original values."""
        return pd.DataFrame(
            {
                item: self.item_ids[self.items.numpy()],
                worker: self.worker_ids[self.workers.numpy()],
                label: np.asarray(self.classes, dtype=object)[self.labels.numpy()],
            }
        )

    def with_classes(self, classes: Sequence[Any]) -> AnnotationTable:
        """The same annotations with the class list ``classes`` (which must contain every label used).

        Declaring classes matters when some class was never used: Dawid-Skene needs two classes even when
        every annotator said ``"yes"``.

        Example:
            >>> t = AnnotationTable.read({"task": ["a", "b"], "worker": ["w", "w"], "label": ["yes", "yes"]})
            >>> t.classes, t.with_classes(["no", "yes"]).labels.tolist()
            (['yes'], [1, 1])
        """
        class_index = pd.Index(list(classes))
        if class_index.has_duplicates:
            raise ValueError(f"classes: values must be unique; {class_index[class_index.duplicated()][0]!r} repeats")
        keys, lookup = _text_keys(class_index, np.asarray(self.classes, dtype=object))
        remap = keys.get_indexer(pd.Index(lookup))
        if (remap < 0).any():
            missing = [self.classes[k] for k in np.flatnonzero(remap < 0)]
            raise ValueError(f"classes: the table uses labels {missing} that are not among {list(classes)}")
        return dataclasses.replace(
            self, labels=torch.from_numpy(remap.astype(np.int64))[self.labels], classes=list(classes)
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_tensors(
        cls,
        items: torch.Tensor | np.ndarray | Sequence[int],
        workers: torch.Tensor | np.ndarray | Sequence[int],
        labels: torch.Tensor | np.ndarray | Sequence[int],
        num_classes: int | None = None,
        duplicates: DuplicatePolicy = "error",
        num_items: int | None = None,
    ) -> AnnotationTable:
        """A table from three integer arrays; labels are class indices in ``[0, num_classes)``.

        Item and worker values may have gaps: they are mapped to contiguous ids (``item_ids`` keeps them).

        Args:
            items: ``(N,)`` item id of each annotation.
            workers: ``(N,)`` worker id of each annotation.
            labels: ``(N,)`` class id of each annotation.
            num_classes: number of classes (default: the largest label id + 1).
            duplicates: policy for repeated ``(item, worker)`` pairs (see :meth:`read`).
            num_items: the item ids are indices in ``[0, num_items)``; ids nobody labelled are excluded
                and listed in ``unlabelled_items`` (with a warning), ids outside the range raise.

        Example:
            >>> t = AnnotationTable.from_tensors([10, 10, 12], [0, 1, 0], [1, 1, 0], num_classes=3)
            >>> t.items.tolist(), list(t.item_ids), t.num_classes
            ([0, 0, 1], [10, 12], 3)
        """
        arrays = {
            name: torch.as_tensor(value).cpu()
            for name, value in (("item", items), ("worker", workers), ("label", labels))
        }
        for name, tensor in arrays.items():
            if tensor.ndim != 1:
                raise DataFormatError(f"expected a 1-D tensor, got shape {tuple(tensor.shape)}", field=name)
            if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
                raise DataFormatError(f"expected integer ids, got dtype {tensor.dtype}", field=name)
            if len(tensor) != len(arrays["item"]):
                raise DataFormatError(
                    f"has {len(tensor)} values but item has {len(arrays['item'])}; the three tensors must align",
                    source="<tensors>",
                    field=name,
                )
        label_values = arrays["label"]
        if len(label_values) and int(label_values.min()) < 0:
            row = int(torch.nonzero(label_values < 0)[0])
            raise DataFormatError(
                f"label id {int(label_values[row])} is negative", source="<tensors>", row=row, field="label"
            )
        limit = num_classes if num_classes is not None else int(label_values.max()) + 1 if len(label_values) else 0
        if len(label_values) and int(label_values.max()) >= limit:
            row = int(torch.nonzero(label_values >= limit)[0])
            raise DataFormatError(
                f"label id {int(label_values[row])} is out of range [0, {limit})",
                source="<tensors>",
                row=row,
                field="label",
            )
        frame = pd.DataFrame({k: v.numpy() for k, v in arrays.items()})
        return cls.read(
            frame,
            item="item",
            classes=list(range(limit)),
            items=None if num_items is None else range(num_items),
            duplicates=duplicates,
            description="<tensors>",
        )

    @classmethod
    def read(
        cls,
        source: Any,
        *,
        item: str = "task",
        worker: str = "worker",
        label: str = "label",
        classes: Sequence[Any] | None = None,
        num_classes: int | None = None,
        items: Sequence[Hashable] | None = None,
        duplicates: DuplicatePolicy = "error",
        split: str | None = None,
        description: str | None = None,
        keep_source_rows: bool = False,
    ) -> AnnotationTable:
        """Read and validate a long annotation table.

        Args:
            source: a :class:`pandas.DataFrame`, a ``.csv``/``.tsv``/``.jsonl``/``.parquet`` path, a
                ``datasets.Dataset``/``DatasetDict``, or a dict of arrays (anything
                :func:`~trinity_lightning.data.read_table` reads); an :class:`AnnotationTable` is returned as is.
            item: the item (task) column.
            worker: the worker (annotator) column.
            label: the label column.
            classes: every label value, index = class id; unknown labels raise. Default: the sorted
                distinct labels (a class nobody used must be declared here or with ``num_classes``).
            num_classes: labels are integer ids in ``[0, num_classes)``.
            items: every item id of the data set; ids that nobody labelled are excluded and listed in
                ``unlabelled_items`` (with a warning), annotated ids outside it raise.
            duplicates: what to do with repeated ``(item, worker)`` pairs: ``"error"``, ``"keep_last"``
                (keep the last row of each pair) or ``"keep_all"`` (count each as a separate vote).
            split: the split of a ``DatasetDict``.
            description: how error messages name the source (default: the path or the type).
            keep_source_rows: keep ``source_rows``, each stored annotation's row in the source (``N`` more
                ``int64``; for a method whose arithmetic follows the row order, ``GLAD(crowdkit_compat=True)``).

        Raises:
            DataFormatError: a missing column, a missing (NaN) value, an unknown label, an item outside
                ``items`` or a duplicate pair, naming the line (files) or row (in-memory) and the field.

        Example:
            >>> t = AnnotationTable.read({"task": [1, 1, 2], "worker": ["a", "b", "a"], "label": [0, 2, 2]},
            ...                          num_classes=3)
            >>> t.num_classes, t.labels.tolist()
            (3, [0, 2, 2])
        """
        if isinstance(source, AnnotationTable):
            return source
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates: expected one of {DUPLICATE_POLICIES}, got {duplicates!r}")
        if classes is not None and num_classes is not None and len(classes) != num_classes:
            raise ValueError(f"classes/num_classes: {len(classes)} classes given but num_classes={num_classes}")
        where = description if description is not None else _describe(source)
        frame = read_table(source, split=split, text_columns=(item, worker))
        for column in (item, worker, label):
            if column not in frame.columns:
                raise DataFormatError(
                    f"missing column; columns are {list(frame.columns)} (pass item=/worker=/label= to name yours)",
                    source=where,
                    field=column,
                )
        for column in (item, worker, label):
            missing = frame[column].isna().to_numpy()
            if missing.any():
                row = int(np.flatnonzero(missing)[0])
                raise DataFormatError("value is missing (NaN/None)", source=where, field=column, **_where(frame, row))
            values = frame[column].to_numpy()
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                row = int(np.flatnonzero(~np.isfinite(values))[0])
                raise DataFormatError(
                    f"value {_show(values[row])} is not finite", source=where, field=column, **_where(frame, row)
                )
        for column in (item, worker, label):
            frame = _mixed_to_text(frame, column, where)
        item_codes, item_ids, unlabelled = cls._encode_items(frame, item, items, where)
        worker_codes, worker_ids = factorize(frame[worker].to_numpy())
        label_codes, class_list = cls._encode_labels(frame, label, classes, num_classes, where)

        # Rows are stored sorted by (item, worker): duplicates become neighbours (found in O(N), no
        # hashing) and the incidence matrix of the aggregators needs no further sort by item.
        num_workers = max(len(worker_ids), 1)
        pair = item_codes * num_workers + worker_codes
        order = radix_argsort(pair, max(len(item_ids), 1) * num_workers)
        if order is None:
            order = np.arange(len(pair))
        else:
            pair = pair[order]
        same = pair[1:] == pair[:-1]
        keep = np.ones(len(pair), dtype=bool)
        dropped = 0
        if same.any():
            if duplicates == "error":
                later_positions = np.flatnonzero(same) + 1
                later = int(order[later_positions].min())  # the first duplicate row in file order
                first = int(order[np.flatnonzero(pair == pair[np.flatnonzero(order == later)[0]])].min())
                at = _where(frame, first)
                pair_values = f"({_show(frame[item].iloc[later])}, {_show(frame[worker].iloc[later])})"
                raise DataFormatError(
                    f"duplicate (item, worker) pair {pair_values}, "
                    f"first at {next(iter(at))} {next(iter(at.values()))}; pass duplicates='keep_last' or "
                    "'keep_all'",
                    source=where,
                    field=worker,
                    **_where(frame, later),
                )
            if duplicates == "keep_last":  # the sort is stable: the last row of a run is the last one given
                keep[:-1] = ~same
                dropped = int((~keep).sum())
        if unlabelled:
            warnings.warn(
                f"{len(unlabelled)} of the declared items have no annotation and are excluded "
                f"(first: {unlabelled[:5]}); see AnnotationTable.unlabelled_items",
                stacklevel=2,
            )
        rows = order[keep] if dropped else order
        # items and workers from the sorted pair codes (sequential), not two more random gathers of N rows
        sorted_items, sorted_workers = np.divmod(pair[keep] if dropped else pair, num_workers)
        return cls(
            torch.from_numpy(sorted_items),
            torch.from_numpy(sorted_workers),
            torch.from_numpy(label_codes[rows]),
            item_ids,
            worker_ids,
            class_list,
            unlabelled,
            dropped,
            where,
            torch.from_numpy(rows.astype(np.int64, copy=False)) if keep_source_rows else None,
        )

    @staticmethod
    def _encode_items(
        frame: pd.DataFrame, item: str, items: Sequence[Hashable] | None, where: str
    ) -> tuple[np.ndarray, pd.Index, list[Any]]:
        values = frame[item].to_numpy()
        if items is None:
            codes, uniques = factorize(values)
            return codes, uniques, []
        universe = pd.Index(list(items))
        if universe.has_duplicates:
            raise ValueError(f"items: declared item ids must be unique; {universe[universe.duplicated()][0]!r} repeats")
        keys, lookup = _text_keys(universe, values)
        position = keys.get_indexer(pd.Index(lookup))
        if (position < 0).any():
            row = int(np.flatnonzero(position < 0)[0])
            raise DataFormatError(
                f"unknown item {_show(values[row])} (not in the declared items)",
                source=where,
                field=item,
                **_where(frame, row),
            )
        used = np.zeros(len(universe), dtype=bool)
        used[position] = True
        remap = np.cumsum(used) - 1
        return remap[position].astype(np.int64), universe[used], list(universe[~used])

    @staticmethod
    def _encode_labels(
        frame: pd.DataFrame, label: str, classes: Sequence[Any] | None, num_classes: int | None, where: str
    ) -> tuple[np.ndarray, list[Any]]:
        values = frame[label].to_numpy()
        if classes is None and num_classes is not None:
            classes = list(range(num_classes))
        # CSV columns with integral floats (e.g. after a NaN was dropped upstream) are integer ids
        if values.dtype.kind == "f" and np.all(values == np.round(values)):
            values = values.astype(np.int64)
        if classes is None:
            codes, uniques = factorize(values)
            return codes, [v.item() if isinstance(v, np.generic) else v for v in uniques]
        class_index = pd.Index(list(classes))
        if class_index.has_duplicates:
            raise ValueError(f"classes: values must be unique; {class_index[class_index.duplicated()][0]!r} repeats")
        keys, lookup = _text_keys(class_index, values)
        codes = keys.get_indexer(pd.Index(lookup))
        if (codes < 0).any():
            row = int(np.flatnonzero(codes < 0)[0])
            raise DataFormatError(
                f"unknown label {_show(values[row])}; known: [{', '.join(_show(c) for c in list(class_index)[:20])}]",
                source=where,
                field=label,
                **_where(frame, row),
            )
        return codes.astype(np.int64), list(classes)


def as_table(annotations: Any, **kwargs: Any) -> AnnotationTable:
    """``annotations`` if it is a table (with ``classes=`` declared, when given), else
    :meth:`AnnotationTable.read` of it."""
    if isinstance(annotations, AnnotationTable):
        classes = kwargs.get("classes")
        return annotations if classes is None else annotations.with_classes(classes)
    return AnnotationTable.read(annotations, **kwargs)
