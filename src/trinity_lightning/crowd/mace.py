r"""MACE (Multi-Annotator Competence Estimation), vectorized over the annotation list.

D. Hovy, T. Berg-Kirkpatrick, A. Vaswani and E. Hovy, "Learning Whom to Trust with MACE", *NAACL-HLT* 2013,
1120-1130. https://aclanthology.org/N13-1132

Each worker ``w`` either knows the answer (probability ``spamming_[w, 1]``) and reports the true label, or spams
(``spamming_[w, 0]``) and draws a label from their own distribution ``thetas_[w]``. EM (or variational Bayes with
Beta/Dirichlet priors, crowd-kit's default ``method="vb"``) alternates posteriors over the true labels with
expected "knowing" and "spamming" counts. crowd-kit 1.4.2's ``MACE`` (same arguments, same start).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from trinity_lightning.crowd.distributed import ShardedAggregator, all_reduce, row_offset
from trinity_lightning.crowd.table import AnnotationTable


def _first_seen_order(ids: torch.Tensor, count: int, group: Any = None, offset: int = 0) -> np.ndarray:
    """Ids ordered by their first appearance in the annotation list (pandas ``factorize`` order); with a process
    group, in the concatenation of every rank's rows (this rank's start at ``offset``)."""
    first = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(first, ids.numpy(), np.arange(len(ids)) + offset)
    if group is not None:
        first = all_reduce(torch.from_numpy(first), group, torch.distributed.ReduceOp.MIN).numpy()
    return np.argsort(first, kind="stable")


class MACE(ShardedAggregator):
    """MACE: per-worker competence (knowing vs spamming) and spamming label distributions.

    Args:
        n_restarts: restarts of EM, the best log marginal likelihood kept. crowd-kit draws every restart from
            the same ``random_state``, so its restarts are identical; ours too, and then it runs that start once.
        n_iter: EM iterations per restart.
        method: ``"vb"`` (variational Bayes with the priors below; crowd-kit's default) or ``"em"``.
        smoothing: pseudo-count of the ``"em"`` M-step (default ``0.01 / K``, crowd-kit's).
        default_noise: the start draws every parameter uniformly from ``[1, 2 + default_noise]`` and normalises.
        alpha: Beta prior on knowing (vb).
        beta: Beta prior on spamming (vb).
        random_state: seed of the start (``None``: a fresh start per restart).
        device: where to compute.
        dtype: floating dtype.

    Attributes:
        spamming_: ``(workers, 2)``: probability that a worker spams (column 0) or knows (column 1).
        thetas_: ``(workers, K)``: each worker's label distribution when spamming.
        skills_: ``spamming_[:, 1]``, the competence.
        log_marginal_likelihood_: of the kept restart.

    Example:
        >>> frame = {"task": [1, 1, 1, 2, 2, 2, 3, 3, 3], "worker": ["a", "b", "c"] * 3,
        ...          "label": [0, 0, 1, 1, 1, 1, 0, 0, 0]}
        >>> MACE().fit(frame).labels_.tolist()
        [0, 1, 0]
    """

    def __init__(
        self,
        n_restarts: int = 10,
        n_iter: int = 50,
        method: Literal["vb", "em"] = "vb",
        smoothing: float | None = None,
        default_noise: float = 0.5,
        alpha: float = 0.5,
        beta: float = 0.5,
        random_state: int | None = 0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(device, dtype)
        if method not in ("vb", "em"):
            raise ValueError(f"method: expected 'vb' or 'em', got {method!r}")
        if n_restarts < 1:
            raise ValueError(f"n_restarts: expected a positive integer, got {n_restarts}")
        if n_iter < 0:
            raise ValueError(f"n_iter: expected a non-negative integer, got {n_iter}")
        if not (alpha > 0 and beta > 0):
            raise ValueError(f"alpha, beta: expected positive Beta prior parameters, got {alpha}, {beta}")
        if smoothing is not None and not smoothing >= 0:
            raise ValueError(f"smoothing: expected a non-negative pseudo-count, got {smoothing}")
        self.n_restarts, self.n_iter, self.method, self.smoothing = n_restarts, n_iter, method, smoothing
        self.default_noise, self.alpha, self.beta, self.random_state = default_noise, alpha, beta, random_state

    spamming_: torch.Tensor
    thetas_: torch.Tensor
    skills_: torch.Tensor
    log_marginal_likelihood_: float

    def fit(self, annotations: Any, *, process_group: Any = None, **read_kwargs: Any) -> MACE:
        """Fit on the annotations (see :meth:`Aggregator.fit`).

        Args:
            annotations: the table or anything :meth:`AnnotationTable.read` reads.
            process_group: fit across ranks (``torch.distributed``): ``annotations`` is this rank's shard of the
                rows; a group or ``True`` (the default group). Needs a fixed ``random_state`` (every rank draws
                the same start). See :mod:`trinity_lightning.crowd.distributed`.
            **read_kwargs: passed to :meth:`AnnotationTable.read`.

        Returns:
            self.
        """
        seedless = {"random_state=None (every rank must draw the same start)": self.random_state is None or None}
        with self._sharded(annotations, process_group, seedless, read_kwargs) as (annotations, read_kwargs):
            return super().fit(annotations, **read_kwargs)

    def _start(self, table: AnnotationTable, seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """crowd-kit's start: uniform draws in first-appearance order of workers and labels, normalised."""
        W, K = table.num_workers, table.num_classes
        low, width = 1.0, 1.0 + self.default_noise
        spam = np.random.RandomState(seed).uniform(size=(W, 2)) * width + low
        theta = np.random.RandomState(seed).uniform(size=(W, K)) * width + low
        group, offset = self._group, self._offset
        workers = _first_seen_order(table.workers, W, group, offset)  # row j of the draws: the j-th worker seen
        labels = _first_seen_order(table.labels, K, group, offset)
        spam_ours, theta_ours = np.empty_like(spam), np.empty_like(theta)
        spam_ours[workers] = spam
        theta_ours[np.ix_(workers, labels)] = theta
        spam_t = torch.as_tensor(spam_ours, dtype=self.dtype, device=self.device)
        theta_t = torch.as_tensor(theta_ours, dtype=self.dtype, device=self.device)
        return spam_t / spam_t.sum(1, keepdim=True), theta_t / theta_t.sum(1, keepdim=True)

    def _e_step(
        self, table: AnnotationTable, spam: torch.Tensor, theta: torch.Tensor
    ) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
        items, workers, labels = self._items, self._workers, self._labels_t
        n, K = table.num_items, table.num_classes
        spam_part = spam[workers, 0] * theta[workers, labels]  # (N,)
        know = spam[workers, 1]
        # log g[n, k] = log(spam_part + know * [k == y]); summed per item
        g = spam_part[:, None].expand(-1, K).clone()
        g[torch.arange(len(labels), device=g.device), labels] += know
        log_joint = torch.zeros(n, K, dtype=self.dtype, device=self.device).index_add_(0, items, g.log())
        self._complete(log_joint)  # the items other ranks hold too (sharded fit)
        log_joint -= float(np.log(K))
        top = log_joint.amax(dim=1, keepdim=True)
        post = (log_joint - top).exp()
        total = post.sum(dim=1, keepdim=True)
        log_marginal = self._item_total(top + total.log())
        post /= total
        p = post[items]  # (N, K)
        spamming = (p * spam_part[:, None] / g).sum(dim=1)  # P(this annotation was spam)
        strategy = torch.zeros(table.num_workers * K, dtype=self.dtype, device=self.device)
        strategy.index_add_(0, workers * K + labels, spamming)
        knowing = p[torch.arange(len(labels), device=p.device), labels] * know / (spam_part + know)
        counts = torch.zeros(table.num_workers, 2, dtype=self.dtype, device=self.device)
        counts[:, 0].index_add_(0, workers, spamming)
        counts[:, 1].index_add_(0, workers, knowing)
        self._reduce(strategy, counts)
        return log_marginal, post, strategy.view(-1, K), counts

    def _m_step(self, strategy: torch.Tensor, counts: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.method == "vb":
            prior_ab = torch.tensor([self.alpha, self.beta], dtype=self.dtype, device=self.device)
            spam = _variational_normalize(counts, prior_ab.expand_as(counts))
            theta = _variational_normalize(strategy, torch.full_like(strategy, 10.0))
        else:
            smoothing = 0.01 / K if self.smoothing is None else self.smoothing
            spam = _normalize(counts, smoothing)
            theta = _normalize(strategy, smoothing)
        return spam, theta

    def _fit(self, table: AnnotationTable) -> None:
        dev = self.device
        self._items, self._workers, self._labels_t = (t.to(dev) for t in (table.items, table.workers, table.labels))
        K = table.num_classes
        self._offset = 0 if self._open_split(table) is None else row_offset(len(table), self._group)
        restarts = 1 if self.random_state is not None else self.n_restarts  # a fixed seed: identical restarts
        best: tuple[float, torch.Tensor, torch.Tensor] | None = None
        for _ in range(restarts):
            spam, theta = self._start(table, self.random_state)
            log_marginal, _, strategy, counts = self._e_step(table, spam, theta)
            for _ in range(self.n_iter):
                spam, theta = self._m_step(strategy, counts, K)
                log_marginal, _, strategy, counts = self._e_step(table, spam, theta)
            if best is None or log_marginal > best[0]:
                best = (log_marginal, spam, theta)
        assert best is not None
        self.log_marginal_likelihood_, self.spamming_, self.thetas_ = best
        _, self.probas_, _, _ = self._e_step(table, self.spamming_, self.thetas_)
        self.skills_ = self.spamming_[:, 1]


def _normalize(x: torch.Tensor, smoothing: float) -> torch.Tensor:
    total = (x + smoothing).sum(dim=1, keepdim=True)
    return torch.where(total.abs() > 1e-8, (x + smoothing) / total, torch.zeros_like(x))


def _variational_normalize(x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    total = torch.digamma((x + prior).sum(dim=1, keepdim=True)).exp()
    return torch.where(total.abs() > 1e-8, torch.digamma(x + prior).exp() / total, torch.zeros_like(x))
