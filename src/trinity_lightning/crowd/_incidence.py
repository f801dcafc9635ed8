"""The annotation incidence operator that every EM step reduces to.

Write ``wy = worker * K + label`` for each annotation. With ``A`` the ``(items, workers*K)`` 0/1 matrix
holding a one at ``(item, wy)`` of each annotation:

* E-step: ``A @ log_confusion_T`` sums, for every item, the log-confusion rows
  ``log pi[worker, :, label]`` of its annotations (``log_confusion_T`` is ``(workers*K, K)``);
* M-step: ``A.T @ posteriors`` gives the ``(worker, observed, true)`` counts of the confusion matrices.

Both are one sparse-dense product over a CSR matrix built once per fit (MKL on CPU, cuSPARSE on GPU).
This is why the fit is fast: measured at 1M annotations / 10 classes on 2 cores, a CSR product takes
1-4 ms in float32 (13 ms in float64) where ``index_add_`` over a gathered ``(N, K)`` copy takes ~90 ms,
and pandas ``join``/``groupby`` (crowd-kit) about a second.
"""

from __future__ import annotations

import warnings

import torch

from trinity_lightning.crowd._sorting import radix_argsort


def stable_argsort(keys: torch.Tensor, key_range: int) -> torch.Tensor | None:
    """Stable argsort of integer keys below ``key_range``; ``None`` when already sorted (radix on CPU)."""
    if keys.device.type != "cpu":
        if len(keys) < 2 or not bool((keys[1:] < keys[:-1]).any()):
            return None
        return torch.argsort(keys, stable=True)
    order = radix_argsort(keys.numpy(), key_range)
    return None if order is None else torch.from_numpy(order)


def _csr(
    rows: torch.Tensor, cols: torch.Tensor, num_rows: int, num_cols: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """0/1 CSR matrix from COO coordinates given in an order whose columns are sorted within each row
    once the rows are stably sorted; also returns the row counts.

    Repeated coordinates stay repeated: the product sums them, which counts a repeated vote twice.
    """
    order = stable_argsort(rows, num_rows)
    counts = torch.bincount(rows, minlength=num_rows)
    crow = torch.zeros(num_rows + 1, dtype=torch.int64, device=rows.device)
    torch.cumsum(counts, 0, out=crow[1:])
    col = cols if order is None else cols[order]
    data = torch.ones(len(rows), dtype=dtype, device=rows.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products we use are stable
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.sparse_csr_tensor(crow, col, data, (num_rows, num_cols), check_invariants=False)
    return matrix, counts


class Incidence:
    """The sparse ``(items, workers*K)`` incidence matrix of one annotation table and its transpose.

    Args:
        items: ``(N,)`` item ids.
        workers: ``(N,)`` worker ids.
        labels: ``(N,)`` class ids.
        num_items: number of items.
        num_workers: number of workers.
        num_classes: number of classes ``K``.
        dtype: floating dtype of the products.
    """

    def __init__(
        self,
        items: torch.Tensor,
        workers: torch.Tensor,
        labels: torch.Tensor,
        num_items: int,
        num_workers: int,
        num_classes: int,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        K = num_classes
        self.num_items, self.num_workers, self.num_classes, self.dtype = num_items, num_workers, K, dtype
        self.num_annotations = len(items)
        wy = workers * K + labels
        self.rows = num_workers * K
        # Sort the annotations by item (stably). A.T then gets its rows by a stable sort on
        # worker*K + label, which keeps the items of each row in order: a cache-friendly M-step.
        # cuSPARSE also wants A's columns sorted within rows; MKL (CPU) does not, so we skip that sort there.
        if items.device.type != "cpu":
            order = stable_argsort(wy, self.rows)
            if order is not None:
                items, wy = items[order], wy[order]
        order = stable_argsort(items, num_items)
        if order is not None:
            items, wy = items[order], wy[order]
        self._a, per_item = _csr(items, wy, num_items, self.rows, dtype)
        self._at, per_row = _csr(wy, items, self.rows, num_items, dtype)
        self.per_item = per_item.to(dtype)
        per_row = per_row.view(num_workers, K)
        self.per_worker = per_row.sum(dim=1).to(dtype)
        # (worker, observed) rows that hold at least one annotation (crowd-kit only stores those)
        self.observed = per_row > 0

    def votes(self) -> torch.Tensor:
        """``(items, K)`` count of each label per item (the E-step product with one-hot rows)."""
        K = self.num_classes
        one_hot = torch.eye(K, dtype=self.dtype, device=self._a.device).repeat(self.num_workers, 1)
        return self._a @ one_hot

    def gather_sum(self, log_confusion_t: torch.Tensor) -> torch.Tensor:
        """E-step sum ``(items, K)``: for each item, the sum of its annotations' rows of ``(workers*K, K)``."""
        return self._a @ log_confusion_t

    def scatter(self, posteriors: torch.Tensor) -> torch.Tensor:
        """M-step counts ``(workers, observed K, true K)`` from ``(items, K)`` posteriors."""
        return (self._at @ posteriors).view(self.num_workers, self.num_classes, self.num_classes)
