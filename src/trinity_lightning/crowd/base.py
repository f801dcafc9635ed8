"""What every aggregator shares: reading the table, fitted attributes, and the tables of results."""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd.table import AnnotationTable, as_table

Self = TypeVar("Self", bound="Aggregator")

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """``torch.float32``/``torch.float64`` from a dtype or its name (YAML recipes pass strings)."""
    if isinstance(dtype, str):
        if dtype.removeprefix("torch.") not in _DTYPES:
            raise ValueError(f"dtype: expected one of {sorted(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype.removeprefix("torch.")]
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
    return dtype


def deprecated_alias(old: str, new: str) -> None:
    """Warn that ``old`` is a deprecated name of ``new`` (kept for one release)."""
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; use {new} (crowd-kit's name)",
        DeprecationWarning,
        stacklevel=3,
    )


def is_empty(annotations: Any) -> bool:
    """True for a DataFrame with no rows or a mapping of empty columns (crowd-kit's empty input)."""
    if isinstance(annotations, pd.DataFrame):
        return len(annotations) == 0
    if isinstance(annotations, dict) and annotations:
        return all(hasattr(v, "__len__") and len(v) == 0 for v in annotations.values())
    return False


class Aggregator:
    """Base class: ``fit(annotations)`` fills ``probas_``, ``labels_`` and ``worker_accuracy_``.

    Names follow crowd-kit's: ``probas_`` (items x classes), ``labels_``, ``priors_``, ``errors_``
    (workers x observed x true) and ``n_iter``/``tol``; unlike crowd-kit they are tensors indexed by the
    table's contiguous ids (``table_.item_ids``, ``table_.classes`` map back; :meth:`to_frame` gives a
    DataFrame). The old names ``posteriors_``, ``worker_confusion_`` and ``max_iter`` still work for one
    release, with a :class:`DeprecationWarning`.

    Args:
        device: where to compute (``"cpu"``, ``"cuda"``, ...; default CPU). Results stay on it.
        dtype: floating dtype of the computation.

    Attributes:
        table_: the :class:`~trinity_lightning.crowd.table.AnnotationTable` that was fitted.
        probas_: ``(num_items, num_classes)`` probability of each true class (crowd-kit's ``probas_``).
        labels_: ``(num_items,)`` most probable class id (decode with ``table_.classes``).
        worker_accuracy_: ``(num_workers,)`` estimated accuracy of each worker: the mean posterior
            probability of the labels they gave.
    """

    def __init__(self, device: str | torch.device | None = None, dtype: torch.dtype | str = torch.float64) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = resolve_dtype(dtype)

    # fitted attributes (set by fit)
    empty_: bool = False  # fitted on an empty DataFrame: every result is empty
    table_: AnnotationTable
    probas_: torch.Tensor
    labels_: torch.Tensor
    worker_accuracy_: torch.Tensor

    def fit(self: Self, annotations: Any, **read_kwargs: Any) -> Self:
        """Fit on an :class:`AnnotationTable` or anything :meth:`AnnotationTable.read` accepts.

        Args:
            annotations: the table, a DataFrame, a file path, a HF dataset or a dict of arrays.
            **read_kwargs: passed to :meth:`AnnotationTable.read` (``item=``, ``worker=``, ``label=``,
                ``classes=``, ``duplicates=``, ...) when ``annotations`` is not a table yet; ``classes=[...]``
                also applies to a table (:meth:`AnnotationTable.with_classes`): declare every class when some
                class was never used (Dawid-Skene needs two).

        Example:
            >>> answers = {"task": ["a", "b"], "worker": ["w", "v"], "label": ["yes", "yes"]}
            >>> from trinity_lightning.crowd import DawidSkene
            >>> DawidSkene().fit(answers, classes=["no", "yes"]).to_frame()["label"].tolist()
            ['yes', 'yes']

        Returns:
            self.
        """
        self.empty_ = is_empty(annotations)
        if self.empty_:  # crowd-kit returns empty results for an empty DataFrame; so do we
            self._fit_empty()
            return self
        self.table_ = as_table(annotations, **read_kwargs)
        self._fit(self.table_)
        self._finish()
        return self

    def _fit_empty(self) -> None:
        """Empty fitted attributes (no annotations)."""
        self.probas_ = torch.empty(0, 0, dtype=self.dtype)
        self.labels_ = torch.empty(0, dtype=torch.int64)
        self.worker_accuracy_ = torch.empty(0, dtype=torch.float64)

    def fit_predict(self, annotations: Any, **read_kwargs: Any) -> torch.Tensor:
        """``fit`` and return ``labels_``."""
        return self.fit(annotations, **read_kwargs).labels_

    @property
    def posteriors_(self) -> torch.Tensor:
        """Deprecated name of :attr:`probas_`."""
        deprecated_alias("posteriors_", "probas_")
        return self.probas_

    def _fit(self, table: AnnotationTable) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _labels(self) -> torch.Tensor:
        return self.probas_.argmax(dim=1)

    def _finish(self) -> None:
        table, post = self.table_, self.probas_
        self.labels_ = self._labels()
        items, workers, labels = (t.to(post.device) for t in (table.items, table.workers, table.labels))
        agree = post[items, labels].to(torch.float64)
        totals = torch.zeros(table.num_workers, dtype=torch.float64, device=post.device).index_add_(0, workers, agree)
        self.worker_accuracy_ = totals / torch.bincount(workers, minlength=table.num_workers).clamp_min(1)

    def _check_fitted(self) -> None:
        if not hasattr(self, "probas_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit(annotations) first")

    def to_frame(self, probabilities: bool = True) -> pd.DataFrame:
        """One row per item: ``item``, ``label`` (original value), ``confidence`` and ``p_<class>`` columns."""
        self._check_fitted()
        if self.empty_:
            return pd.DataFrame({"item": [], "label": [], "confidence": []})
        table = self.table_
        post = self.probas_.detach().to("cpu", torch.float64).numpy()
        frame = pd.DataFrame(
            {
                "item": table.item_ids,
                "label": table.decode_labels(self.labels_),
                "confidence": post[np.arange(len(post)), self.labels_.cpu().numpy()],
            }
        )
        if probabilities:
            for k, name in enumerate(table.classes):
                frame[f"p_{name}"] = post[:, k]
        return frame

    def worker_frame(self) -> pd.DataFrame:
        """One row per worker: ``worker``, ``annotations``, ``accuracy`` (estimated), least reliable first."""
        self._check_fitted()
        if self.empty_:
            return pd.DataFrame({"worker": [], "annotations": [], "accuracy": []})
        table = self.table_
        frame = pd.DataFrame(
            {
                "worker": table.worker_ids,
                "annotations": table.annotations_per_worker().numpy(),
                "accuracy": self.worker_accuracy_.cpu().numpy(),
            }
        )
        return frame.sort_values(["accuracy", "annotations"], ascending=[True, False], kind="stable", ignore_index=True)
