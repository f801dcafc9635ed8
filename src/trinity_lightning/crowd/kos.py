r"""KOS (Karger, Oh and Shah): message passing between items and workers for binary labels.

D. R. Karger, S. Oh and D. Shah, "Budget-Optimal Task Allocation for Reliable Crowdsourcing Systems",
*Operations Research* 62(1), 2014, 1-38. https://arxiv.org/abs/1110.3564

With ``A = +1`` for one class and ``-1`` for the other on every annotation (edge ``i - j``), items send
``x_{i->j} = sum_{j' != j} A_{ij'} y_{j'->i}`` and workers ``y_{j->i} = sum_{i' != i} A_{i'j} x_{i'->j}``;
an item's label is the sign of ``sum_j A_ij y_{j->i}``. Each half-step is one ``index_add_`` over the annotation
list. crowd-kit 1.4.2's ``KOS`` (same arguments; reliabilities start ``~ N(1, 1)``; the messages grow
geometrically and, as in crowd-kit, the iteration stops before any sum exceeds ``1e300``).
"""

from __future__ import annotations

import numpy as np
import torch

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.table import AnnotationTable

_MAX = 1e300


class KOS(Aggregator):
    """KOS: binary labels by belief propagation between items and worker reliabilities.

    Args:
        n_iter: message-passing iterations at most (crowd-kit: 100).
        random_state: seed of the ``N(1, 1)`` start of the per-annotation reliabilities.
        device: where to compute.
        dtype: floating dtype.

    Attributes:
        scores_: ``(items,)`` the final message ``sum_j A_ij y_{j->i}``: positive for class 0 (the first of
            ``table_.classes``), negative for class 1; its scale carries no probability.
        probas_: one-hot of the label (``0.5`` each when the score is exactly 0, then ``labels_`` is class 0;
            crowd-kit fails on such an item).
        n_iter_: iterations completed.

    Raises:
        ValueError: ``annotations`` with other than 2 classes (KOS is binary), or where no item has two
            annotations (a single worker, or workers who share no item: every message would be 0).

    Example:
        >>> frame = {"task": [1, 1, 1, 2, 2, 2, 3, 3, 3], "worker": ["a", "b", "c"] * 3,
        ...          "label": ["no", "no", "yes", "yes", "yes", "yes", "no", "no", "no"]}
        >>> k = KOS().fit(frame)
        >>> list(k.table_.decode_labels(k.labels_))
        ['no', 'yes', 'no']
    """

    def __init__(
        self,
        n_iter: int = 100,
        random_state: int = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(device, dtype)
        if n_iter < 0:
            raise ValueError(f"n_iter: expected a non-negative integer, got {n_iter}")
        self.n_iter, self.random_state = n_iter, random_state

    scores_: torch.Tensor
    n_iter_: int

    def _fit_empty(self) -> None:
        super()._fit_empty()
        self.scores_ = torch.empty(0, dtype=self.dtype)
        self.n_iter_ = 0

    def _fit(self, table: AnnotationTable) -> None:
        if table.num_classes != 2:
            raise ValueError(
                f"annotations: KOS is for binary labels (2 classes); the table has {table.num_classes}: "
                f"{list(table.classes)[:10]}"
            )
        if int(table.annotations_per_item().max()) < 2:
            raise ValueError(
                f"annotations: KOS passes messages between workers who share an item, but no item has two "
                f"annotations ({table.num_workers} worker(s), {table.num_items} items); every score would be 0"
            )
        dev, dt = self.device, self.dtype
        items, workers = table.items.to(dev), table.workers.to(dev)
        T, W = table.num_items, table.num_workers
        A = 1.0 - 2.0 * table.labels.to(dev, dt)  # class 0 -> +1, class 1 -> -1
        draw = np.random.RandomState(self.random_state).normal(loc=1.0, scale=1.0, size=len(table))
        reliability = torch.as_tensor(draw, dtype=dt, device=dev)

        def total(index: torch.Tensor, size: int, values: torch.Tensor) -> torch.Tensor:
            return torch.zeros(size, dtype=dt, device=dev).index_add_(0, index, values)

        self.n_iter_ = 0
        for _ in range(self.n_iter):
            message = A * reliability
            summed = total(items, T, message)[items]
            if bool((summed.abs() > _MAX).any()):
                break
            inferred = summed - message
            message = A * inferred
            summed = total(workers, W, message)[workers]
            if bool((summed.abs() > _MAX).any()):
                break
            reliability = summed - message
            self.n_iter_ += 1
        self.scores_ = total(items, T, A * reliability)
        positive = (self.scores_ > 0).to(dt)
        tie = (self.scores_ == 0).to(dt) * 0.5
        self.probas_ = torch.stack([positive + tie, 1 - positive - tie], dim=1)
