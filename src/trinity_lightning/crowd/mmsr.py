r"""M-MSR (Matrix Mean-Subsequence-Reduced): worker skills by robust rank-one matrix completion.

Q. Ma and A. Olshevsky, "Adversarial Crowdsourcing Through Robust Rank-One Matrix Completion", *NeurIPS* 2020.
https://arxiv.org/abs/2010.12181

Workers ``i, j`` who share items agree at rate ``a_ij``; with ``M`` labels, ``C_ij = (M a_ij - 1) / (M - 1)``
has expectation ``s_i s_j``, the product of the two workers' (centred) skills. M-MSR fits the rank-one ``u v^T``
to ``|C|`` on the observed pairs by alternating trimmed means (the ``F`` largest and smallest ratios dropped, so a
few adversarial workers cannot drag it), then recovers the skills' signs from the sign pattern of ``C`` (a
spectral two-colouring) and votes with weights ``log((M - 1) p_i / (1 - p_i))``, ``p_i`` the accuracy.

crowd-kit 1.4.2's ``MMSR`` (same arguments, same trimming rule, clipping and weights), with each half-step of
the iteration one sort of a ``(workers, workers)`` tensor instead of a Python loop over workers.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.table import AnnotationTable


def _last_pairs(table: AnnotationTable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(item, worker, label)`` with one row per ``(worker, item)`` pair: the last one given (crowd-kit keeps
    the last when ``duplicates="keep_all"`` repeats a pair)."""
    key = table.workers * max(table.num_items, 1) + table.items
    order = torch.argsort(key, stable=True)
    key = key[order]
    last = torch.ones(len(key), dtype=torch.bool)
    last[:-1] = key[1:] != key[:-1]
    rows = order[last]
    return table.items[rows], table.workers[rows], table.labels[rows]


def co_labelling(table: AnnotationTable, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``(workers, workers)`` counts of the items two workers share and of those they gave the same label
    (diagonals zero): two sparse products, never the dense ``(workers, items)`` table.

    Example:
        >>> t = AnnotationTable.from_tensors([0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 0, 1])
        >>> common, same = co_labelling(t)
        >>> common.tolist(), same.tolist()
        ([[0.0, 2.0], [2.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]])
    """
    items, workers, labels = _last_pairs(table)
    W, T, K = table.num_workers, table.num_items, table.num_classes
    ones = torch.ones(len(items), dtype=dtype)

    def gram(columns: torch.Tensor, width: int) -> torch.Tensor:
        b = torch.sparse_coo_tensor(torch.stack([workers, columns]), ones, (W, width), check_invariants=False)
        with warnings.catch_warnings():  # "sparse support is in beta": a plain sparse-sparse product
            warnings.simplefilter("ignore", UserWarning)
            out = torch.sparse.mm(b.coalesce(), b.t().coalesce()).to_dense()
        return out.fill_diagonal_(0.0)

    return gram(items, T), gram(items * K + labels, T * K)


def _trimmed_means(ratios: torch.Tensor, observed: torch.Tensor, a: torch.Tensor, F: int, n_tasks: int) -> torch.Tensor:
    """Row ``r``: the mean of ``ratios[r, observed[r]]`` without its ``F`` smallest and ``F`` largest values, as
    crowd-kit's ``_remove_largest_and_smallest_F_value`` cuts them relative to the current value ``a[r]`` (fewer
    than ``F`` values below ``a``: drop exactly those; ``F = -1``: keep only the largest). No value left: ``a``."""
    n = ratios.shape[1]
    y = torch.where(observed, ratios, torch.full_like(ratios, float("inf"))).sort(dim=1).values
    count = observed.sum(dim=1)
    col = torch.arange(n, device=ratios.device)[None, :]
    below = ((y < a[:, None]) & (col < count[:, None])).sum(dim=1)
    if F >= 0:
        start = torch.where(below < F, below, torch.full_like(below, F))
    else:  # y[F:] with F = -1: the largest value only
        start = (count + F).clamp_min(0)
    kept = count - start
    above = ((y > a[:, None]) & (col >= start[:, None]) & (col < count[:, None])).sum(dim=1)
    end = torch.where(above < F, count - above, start + torch.minimum(kept - F, kept))
    keep = (col >= start[:, None]) & (col < end[:, None])
    size = end - start
    mean = torch.where(keep, y, torch.zeros_like(y)).sum(dim=1) / size.clamp_min(1)
    first = y.gather(1, start.clamp_max(n - 1)[:, None]).squeeze(1)
    mean = torch.where((size == 1) & (first == 0), torch.full_like(mean, 1 / np.sqrt(n_tasks)), mean)
    return torch.where(size == 0, a, mean)


def _sign_vector(covariation: torch.Tensor, dense_max: int = 300) -> torch.Tensor:
    """Signs of the skills from the sign pattern of ``C`` (crowd-kit's ``_sign_determination_valid``).

    A negative ``C_ij`` joins ``i`` and ``j`` by an edge, a positive one by a path through a new midpoint node;
    the eigenvector of the random walk's eigenvalue nearest ``-1`` two-colours the graph. It is found here as the
    lowest eigenvector of the symmetric normalised adjacency (dense ``eigh`` up to ``dense_max`` nodes, sparse
    Lanczos above) where crowd-kit asks ARPACK for the smallest-magnitude eigenvalue of a dense non-symmetric matrix.
    Rows of ``C`` summing to zero get sign 0.
    """
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    C = covariation.detach().cpu().to(torch.float64).numpy()
    valid = np.flatnonzero(C.sum(axis=1) != 0)
    S = np.sign(C[np.ix_(valid, valid)])
    k = len(valid)
    out = np.zeros(len(C))
    if k == 0:
        return torch.from_numpy(out)
    rows, cols = np.nonzero(np.triu(S) == 1)
    m = len(rows)
    negative = sp.csr_matrix((S == -1).astype(np.float64))
    mid = np.arange(m)
    incidence = sp.csr_matrix(
        (np.ones(2 * m), (np.concatenate([rows, cols]), np.concatenate([mid, mid]))), shape=(k, m)
    )  # duplicates (rows == cols) add up, as crowd-kit's I[i] + I[j]
    A = sp.bmat([[negative, incidence], [incidence.T, None]], format="csr")
    degree = np.asarray(A.sum(axis=1)).ravel()
    scale = 1 / np.sqrt(degree)
    N = sp.diags(scale) @ A @ sp.diags(scale)
    if N.shape[0] <= dense_max:
        _, vectors = np.linalg.eigh(N.toarray())
        z = vectors[:, 0]
    else:
        _, vectors = sla.eigsh(N, k=1, which="SA", v0=np.linspace(1.0, 2.0, N.shape[0]), tol=1e-12)
        z = vectors[:, 0]
    signs = np.sign(scale * z)[:k]
    out[valid] = np.sign(signs.sum()) * signs
    return torch.from_numpy(out)


class MMSR(Aggregator):
    """M-MSR: worker skills from a robust rank-one completion of the workers' agreement matrix, then a vote
    weighted by each worker's log-odds of being right.

    Args:
        n_iter: alternating trimmed-mean iterations at most (crowd-kit: 10,000).
        tol: stop when the Frobenius change of ``u v^T`` falls below this.
        random_state: seed of the uniform start of ``u`` and ``v`` (``None``: a fresh start).
        vote: how the skills become labels. ``"crowdkit"`` (default): crowd-kit's rule, the largest entry of
            ``scores_`` (each label's summed skill over the item's total); when the total is negative (the item's
            voters look worse than chance) that is the label with the *smallest* summed skill. ``"log_odds"``:
            the largest summed skill, with ``probas_`` its softmax over the labels used, the posterior of the
            one-coin model the weights come from. On a simulated table with two always-wrong workers among 12
            (tests/crowd/test_mmsr_kos.py) ``"log_odds"`` is right on 99.7% of items and ``"crowdkit"`` on 61%;
            on ``crowd_rte`` it is the other way round (66% vs 85.75%, see docs/crowd.md).
        device: where to compute.
        dtype: floating dtype.

    Attributes:
        skills_: ``(workers,)`` vote weights ``log((M - 1) p / (1 - p))`` (crowd-kit's ``skills_``; negative for
            workers worse than chance, ``p < 1 / M``).
        accuracy_: ``(workers,)`` the estimated probability ``p`` that each worker is right.
        scores_: ``(items, classes)`` crowd-kit's ``scores_``: each label's summed skill divided by the item's
            total (rows sum to 1, but entries may be negative when some skills are).
        probas_: ``(items, classes)``; with ``vote="crowdkit"``, ``scores_`` with negative shares set to 0 and
            renormalised (uniform over the labels used when an item's total skill is 0), so that its argmax is
            crowd-kit's label; with ``"log_odds"``, the softmax of the summed skills over the labels used.
        covariation_: ``(workers, workers)`` the matrix ``C`` (``-1/(M-1)`` where two workers share no item).
        loss_history_: Frobenius change of ``u v^T`` per iteration; ``n_iter_`` iterations ran.

    Raises:
        ValueError: ``annotations`` with one distinct label, or where no two workers share an item (a single
            worker included): agreement beyond chance cannot be measured.

    Example:
        >>> frame = {"task": [t for t in range(6) for _ in range(3)], "worker": ["a", "b", "c"] * 6,
        ...          "label": [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1]}
        >>> m = MMSR().fit(frame)
        >>> m.labels_.tolist(), [round(float(s), 2) for s in m.skills_]
        ([0, 1, 0, 1, 0, 1], [1.36, 1.36, 1.36])
    """

    def __init__(
        self,
        n_iter: int = 10000,
        tol: float = 1e-10,
        random_state: int | None = 0,
        vote: Literal["crowdkit", "log_odds"] = "crowdkit",
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(device, dtype)
        if vote not in ("crowdkit", "log_odds"):
            raise ValueError(f"vote: expected 'crowdkit' or 'log_odds', got {vote!r}")
        if n_iter < 0:
            raise ValueError(f"n_iter: expected a non-negative integer, got {n_iter}")
        if not tol >= 0:
            raise ValueError(f"tol: expected a non-negative number, got {tol}")
        self.n_iter, self.tol, self.random_state, self.vote = n_iter, tol, random_state, vote

    skills_: torch.Tensor
    accuracy_: torch.Tensor
    scores_: torch.Tensor
    covariation_: torch.Tensor
    loss_history_: list[float]
    n_iter_: int

    def _fit_empty(self) -> None:
        super()._fit_empty()
        self.skills_ = self.accuracy_ = torch.empty(0, dtype=torch.float64)
        self.scores_ = torch.empty(0, 0, dtype=self.dtype)
        self.covariation_ = torch.empty(0, 0, dtype=self.dtype)
        self.loss_history_, self.n_iter_ = [], 0

    def _fit(self, table: AnnotationTable) -> None:
        used = torch.unique(table.labels)
        M, T, W = len(used), table.num_items, table.num_workers
        if M < 2:
            raise ValueError(
                f"annotations: M-MSR needs at least 2 distinct labels to measure agreement beyond chance; every "
                f"annotation is {table.classes[int(used[0])]!r}"
            )
        dev, dt = self.device, self.dtype
        common, same = (t.to(dev, dt) for t in co_labelling(table, dt))
        observed = common != 0
        if not bool(observed.any()):
            raise ValueError(
                f"annotations: M-MSR estimates skills from the items workers share, but no two of the "
                f"{W} worker(s) share an item (first worker: {table.worker_ids[0]!r})"
            )
        sparsity = int(observed.sum(dim=0).min())
        F = sparsity // 2 - 1
        C = torch.where(observed, same / common.clamp_min(1), torch.zeros_like(common)) * M / (M - 1) - 1 / (M - 1)
        X = C.abs()
        draw = np.random.RandomState(self.random_state).uniform(size=W)  # crowd-kit draws u and v from one seed
        u = torch.as_tensor(draw, dtype=dt, device=dev)
        v = u.clone()
        self.loss_history_ = []
        for _ in range(self.n_iter):
            u_prev, v_prev = u, v
            v = _trimmed_means((X / u[:, None]).T, observed.T, v, F, T)
            u = _trimmed_means(X / v[None, :], observed, u, F, T)
            loss = float(torch.linalg.matrix_norm(torch.outer(u, v) - torch.outer(u_prev, v_prev)))
            self.loss_history_.append(loss)
            if not np.isfinite(loss):
                raise ValueError(
                    "annotations: M-MSR's rank-one iteration divided by a zero skill (a worker agrees with every "
                    "co-worker exactly at chance, 1/M of the time); crowd-kit fails on such a table too. Use another "
                    "method or more annotations"
                )
            if loss < self.tol:
                break
        self.n_iter_ = len(self.loss_history_)
        scale = torch.sqrt(torch.linalg.vector_norm(u) / torch.linalg.vector_norm(v))
        s = _sign_vector(C).to(dev, dt) * (u / scale)
        s = s.clamp(max=1 - 1 / np.sqrt(T)).clamp(min=-1 / (M - 1) + 1 / np.sqrt(T))
        p = s * (M - 1) / M + 1 / M
        self.covariation_, self.accuracy_ = C, p
        self.skills_ = torch.log(p * (M - 1) / (1 - p))
        K = table.num_classes
        items, labels = table.items.to(dev), table.labels.to(dev)
        votes = torch.zeros(T * K, dtype=dt, device=dev)
        votes = votes.index_add_(0, items * K + labels, self.skills_[table.workers.to(dev)]).view(T, K)
        total = votes.sum(dim=1, keepdim=True)
        self.scores_ = votes / total
        unused = torch.ones(K, dtype=torch.bool, device=dev)
        unused[used.to(dev)] = False
        # crowd-kit labels each item with its largest score; a zero total (no information) counts as uniform
        shares = torch.where(total != 0, self.scores_, torch.ones_like(votes)).clamp_min(0).masked_fill(unused, 0.0)
        self.probas_ = shares / shares.sum(dim=1, keepdim=True)
        if self.vote == "log_odds":
            self.probas_ = torch.softmax(votes.masked_fill(unused, float("-inf")), dim=1)
