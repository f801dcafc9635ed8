r"""Dawid-Skene EM with full confusion matrices, and its one-coin variant, vectorized over the annotations.

Model (Dawid & Skene, 1979): item :math:`i` has a true class :math:`z_i \sim p`; worker :math:`a` who
labels it reports :math:`y_{ia}` with probability :math:`\pi_a[z_i, y_{ia}]`. EM alternates

* E-step: :math:`q_i(k) \propto p_k \prod_{a \in i} \pi_a[k, y_{ia}]` (in log space), which also gives
  the marginal log-likelihood :math:`\sum_i \log \sum_k p_k \prod_a \pi_a[k, y_{ia}]`;
* M-step: :math:`\pi_a[k, l] \propto \alpha + \sum_{i: y_{ia}=l} q_i(k)`, :math:`p_k \propto \alpha + \sum_i q_i(k)`.

Both steps are one sparse-dense product (see ``_incidence.py``); nothing loops over items or workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trinity_lightning.crowd._gold import STRATEGIES, InitialErrorStrategy, apply_gold, gold_tensor, initial_counts
from trinity_lightning.crowd._incidence import Incidence
from trinity_lightning.crowd.base import deprecated_alias
from trinity_lightning.crowd.distributed import ShardedAggregator, ShardedIncidence
from trinity_lightning.crowd.table import AnnotationTable


@dataclass
class _Params:
    log_conf_t: torch.Tensor  # (R, K): row r = observed pair (row_worker[r], row_label[r]), column true class
    log_prior: torch.Tensor  # (K,)
    penalty: float  # log-density of the Dirichlet/Beta prior behind the smoothing (0 without smoothing)
    counts: torch.Tensor  # (R, true) counts behind these parameters (compat mode; otherwise the reused buffer)
    unobserved: torch.Tensor | float = 0.0  # P(said l | true k) of pairs nobody used: a number or (workers, K)


class _EMAggregator(ShardedAggregator):
    """The EM loop shared by :class:`DawidSkene`, :class:`OneCoinDawidSkene` and :class:`MBEM`.

    Example:
        >>> frame = {"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": [0, 0, 1, 1]}
        >>> ds = DawidSkene(n_iter=5).fit(frame)
        >>> ds.probas_.shape, ds.errors_.shape, ds.n_iter_ <= ds.n_iter
        (torch.Size([2, 2]), torch.Size([2, 2, 2]), True)
    """

    _final_m_step = True  # report the parameters re-estimated from the final posteriors (crowd-kit does)

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.0,
        crowdkit_compat: bool = False,
        eps: float = 1e-10,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        initial_error_strategy: InitialErrorStrategy | None = None,
        threads: int | None = None,
        max_iter: int | None = None,
    ) -> None:
        super().__init__(device, dtype if dtype is not None else torch.float64 if crowdkit_compat else torch.float32)
        if max_iter is not None:
            deprecated_alias("max_iter", "n_iter")
            n_iter = max_iter
        if isinstance(n_iter, bool) or not isinstance(n_iter, int | np.integer) or n_iter < 0:
            raise ValueError(f"n_iter: expected a non-negative integer (0: the majority-vote start), got {n_iter!r}")
        if not tol >= 0:
            raise ValueError(f"tol: expected a non-negative number, got {tol}")
        if not smoothing >= 0:
            raise ValueError(f"smoothing: expected a non-negative pseudo-count, got {smoothing}")
        if not 0 < eps < 1e-3:
            raise ValueError(f"eps: expected a small positive floor, got {eps}")
        if initial_error_strategy is not None and initial_error_strategy not in STRATEGIES:
            raise ValueError(
                f"initial_error_strategy: expected one of {STRATEGIES} or None, got {initial_error_strategy!r}"
            )
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads: expected a positive integer or None (auto), got {threads!r}")
        self.n_iter, self.tol, self.smoothing = int(n_iter), tol, smoothing
        self.crowdkit_compat, self.eps = crowdkit_compat, eps
        self.initial_error_strategy, self.threads = initial_error_strategy, threads
        self._init: torch.Tensor | None = None
        self._gold: tuple[torch.Tensor, torch.Tensor] | None = None
        self._true_labels: Any = None
        self._initial_error: Any = None
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # initial (R, K) counts, (workers, K) extra

    # fitted attributes
    priors_: torch.Tensor
    log_likelihood_: list[float]
    n_iter_: int
    gold_unused_: int

    @property
    def errors_(self) -> torch.Tensor:
        """``(num_workers, K, K)`` confusions, ``[a, l, k]`` = P(worker a says l | true class k) (crowd-kit's
        ``errors_.loc[(worker, observed), true]``), built on access from the observed rows (``error_rows_``)."""
        self._check_fitted()
        if self.empty_:
            return torch.empty(0, 0, 0, dtype=self.dtype)
        return self._incidence.dense(self.error_rows_, self._unobserved)

    @property
    def max_iter(self) -> int:
        """Deprecated name of :attr:`n_iter`."""
        deprecated_alias("max_iter", "n_iter")
        return self.n_iter

    @property
    def worker_confusion_(self) -> torch.Tensor:
        """Deprecated: ``errors_`` transposed, ``[a, k, l]`` = P(worker a says l | true class k)."""
        deprecated_alias("worker_confusion_", "errors_ (axes worker, observed, true)")
        return self.errors_.transpose(1, 2)

    def fit(
        self,
        annotations: Any,
        true_labels: Any = None,
        initial_error: Any = None,
        *,
        init_posteriors: torch.Tensor | np.ndarray | None = None,
        process_group: Any = None,
        **read_kwargs: Any,
    ) -> _EMAggregator:
        """Run EM.

        Args:
            annotations: an :class:`~trinity_lightning.crowd.table.AnnotationTable` or anything it reads. An
                empty DataFrame gives empty results, as in crowd-kit.
            true_labels: gold labels of some items (crowd-kit's ``true_labels``): a Series or mapping from item
                to label, or an ``(num_items,)`` tensor of class ids with ``-1`` for no gold. Their posteriors are
                set to the gold label at the start and after every E-step, so they teach the confusions. Items
                not in the table are ignored (counted in ``gold_unused_``); an unknown label is an error.
            initial_error: the workers' error matrices from earlier work (crowd-kit's ``initial_error``), used in
                the first M-step as ``initial_error_strategy`` says: a DataFrame indexed by ``(worker, label)``
                with one column per true class, or a ``(workers, K, K)`` tensor (worker, observed, true).
            init_posteriors: optional ``(num_items, num_classes)`` starting posteriors in ``table_.item_ids``
                order (default: the vote fractions of majority vote).
            process_group: fit across ranks (``torch.distributed``, gloo or NCCL): ``annotations`` is this rank's
                shard of the rows, a group or ``True`` (the default group) says which ranks; every rank calls
                ``fit`` with the same settings. See :mod:`trinity_lightning.crowd.distributed`.
            **read_kwargs: passed to :meth:`AnnotationTable.read`.

        Returns:
            self.

        Raises:
            FloatingPointError: the log-likelihood became NaN/inf; the message names the iteration.
        """
        if initial_error is not None and self.initial_error_strategy is None:
            raise ValueError(
                "initial_error: set initial_error_strategy='assign' or 'addition' in the constructor to use it "
                "(crowd-kit ignores initial_error without a strategy; we refuse to drop it silently)"
            )
        self._init = torch.as_tensor(init_posteriors) if init_posteriors is not None else None
        self._true_labels, self._initial_error = true_labels, initial_error
        unsupported = {"initial_error": initial_error, "init_posteriors": init_posteriors}
        previous = torch.get_num_threads()
        try:
            with self._sharded(annotations, process_group, unsupported, read_kwargs) as (annotations, read_kwargs):
                torch.set_num_threads(self.threads if self.threads is not None else auto_threads())
                return super().fit(annotations, **read_kwargs)  # type: ignore[return-value]
        finally:
            torch.set_num_threads(previous)
            self._true_labels = self._initial_error = None

    def _fit_empty(self) -> None:
        super()._fit_empty()
        self.priors_ = torch.empty(0, dtype=self.dtype)
        self.log_likelihood_, self.n_iter_, self.gold_unused_ = [], 0, 0
        self.error_rows_ = torch.empty(0, 0, dtype=self.dtype)

    # ------------------------------------------------------------------ M-step (model specific)
    def _m_step(self, inc: Incidence, post: torch.Tensor) -> _Params:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prior(self, inc: Incidence, post: torch.Tensor) -> tuple[torch.Tensor, float]:
        if self.crowdkit_compat:
            return inc.item_mean(post).clamp_min(self.eps).log(), 0.0
        a = self.smoothing
        log_prior = ((inc.item_sum(post) + a) / (inc.num_items + inc.num_classes * a)).clamp_min(self.eps).log()
        return log_prior, float(a * log_prior.sum()) if a else 0.0

    def _counts(self, inc: Incidence, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(R, K)`` expected counts of the observed rows, with the initial error applied on the first M-step,
        and the ``(workers, K)`` initial counts of rows nobody used (they join the normalisation), if any."""
        counts = inc.scatter(post)
        if self._pending is None:
            return counts, None
        rows, extra = self._pending
        self._pending = None
        rows = rows.to(counts.device, counts.dtype)
        counts = rows if self.initial_error_strategy == "assign" else counts + rows
        return counts, extra.to(counts.device, counts.dtype)

    # ------------------------------------------------------------------ the loop
    def _initial_posteriors(self, table: AnnotationTable, inc: Incidence) -> torch.Tensor:
        n, K = table.num_items, table.num_classes
        if self._init is None:
            votes = inc.votes()
            return votes / votes.sum(dim=1, keepdim=True)
        init = self._init.to(self.device, self.dtype)
        if init.shape != (n, K):
            raise ValueError(
                f"init_posteriors: expected shape ({n}, {K}) (items in table_.item_ids order), got {tuple(init.shape)}"
            )
        if not torch.isfinite(init).all() or (init < 0).any():
            raise ValueError("init_posteriors: values must be finite and non-negative")
        total = init.sum(dim=1, keepdim=True)
        if (total <= 0).any():
            raise ValueError(f"init_posteriors: row {int(torch.nonzero(total.squeeze(1) <= 0)[0])} sums to 0")
        return init / total

    def _crowdkit_loss(self, inc: Incidence, post: torch.Tensor, params: _Params) -> float:
        """crowd-kit's stopping value: its ELBO divided by the number of annotations."""
        joint = (params.counts * params.log_conf_t).sum()
        joint = joint + inc.total(inc.per_item[:, None] * post * params.log_prior)
        clipped = post.clamp_min(self.eps)
        entropy = -inc.total(clipped * clipped.log())
        return float(joint + entropy) / inc.num_annotations

    def _prepare(self, table: AnnotationTable, inc: Incidence) -> None:
        """Gold labels and initial error matrices, checked against the table."""
        self._gold, self.gold_unused_ = None, 0
        if self._true_labels is not None:
            items, labels, self.gold_unused_ = gold_tensor(table, self._true_labels)
            self._gold = (items.to(self.device), labels.to(self.device))
        self._pending = None
        if self._initial_error is not None and self.initial_error_strategy is not None:
            values, given = initial_counts(table, self._initial_error, self.initial_error_strategy, inc.observed)
            rows = values[inc.row_worker.cpu(), inc.row_label.cpu()]
            extra_rows = given & ~inc.observed.cpu()  # rows given for (worker, label) pairs nobody used
            extra = (values * extra_rows[:, :, None]).sum(dim=1)
            self._pending = (rows, extra)

    def _fit(self, table: AnnotationTable) -> None:
        name = type(self).__name__
        if table.num_classes < 2:
            raise ValueError(
                f"{name}: needs at least 2 classes, but the table has one, {table.classes[0]!r}; "
                "declare every class with classes=[...] (CLI: --classes a,b)"
            )
        dev = self.device
        if self._group is not None:
            inc: Incidence = ShardedIncidence(table, self._group, dev, self.dtype)
        else:
            inc = Incidence(
                table.items.to(dev),
                table.workers.to(dev),
                table.labels.to(dev),
                table.num_items,
                table.num_workers,
                table.num_classes,
                self.dtype,
            )
        self._prepare(table, inc)
        post = apply_gold(self._initial_posteriors(table, inc), self._gold)
        params = self._m_step(inc, post)
        history: list[float] = []
        previous = -float("inf")
        used = params
        for iteration in range(1, self.n_iter + 1):
            # E-step, in place on the one (items, K) buffer the product allocates: posteriors and log-likelihood
            post = inc.gather_sum(params.log_conf_t)
            post += params.log_prior
            top, total = _normalise_(post)
            log_likelihood = float(inc.total(top + total.log(), torch.float64))
            if not np.isfinite(log_likelihood):
                raise FloatingPointError(
                    f"{name} diverged at iteration {iteration}: the log-likelihood is {log_likelihood} "
                    "(check init_posteriors, worker labels and dtype; float64 is the safe choice)"
                )
            apply_gold(post, self._gold)
            history.append(log_likelihood)
            used = params
            new = self._m_step(inc, post)
            if self.crowdkit_compat:
                value = self._crowdkit_loss(inc, post, new)
            else:  # the penalised log-likelihood of the parameters of this E-step, per annotation
                value = (log_likelihood + params.penalty) / inc.num_annotations
            params = new
            if inc.agree(value - previous < self.tol):
                break
            previous = value
        final = params if self._final_m_step else used
        self.error_rows_ = final.log_conf_t.exp()  # (R, true): the observed rows of errors_ (inc.row_worker/label)
        self._unobserved = final.unobserved
        prior = final.log_prior.exp()
        self.priors_ = prior if prior.ndim == 1 else prior.mean(dim=0)  # MBEM's per-item prior: its average
        self.log_likelihood_ = history
        self.n_iter_ = len(history)
        self.probas_ = post
        self._incidence = inc


def auto_threads() -> int:
    """Threads for a fit when none are asked for: torch's setting, cut to the cores the load average leaves idle
    (at least 1). Measured on a 2-core machine: idle, 2 threads beat 1 (33x vs 22x crowd-kit at 1M annotations);
    at a load of 16, 2 threads took 3.9 s where 1 took 0.19 s (OpenMP threads stall on busy cores).

    Example:
        >>> 1 <= auto_threads() <= torch.get_num_threads()
        True
    """
    import os

    threads = torch.get_num_threads()
    if hasattr(os, "getloadavg"):
        idle = (os.cpu_count() or 1) - os.getloadavg()[0]
        threads = min(threads, max(1, int(idle + 0.5)))
    return max(1, threads)


def _normalise_(log_post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of log-values to probabilities, in place: returns each row's max and the sum of ``exp(value - max)``.

    Values more than ``log(tiny) + 2`` below their row's max (-85.3 in float32, -706 in float64) become exactly 0,
    where plain ``exp`` gives a number below ``e**2 * tiny`` (``8.7e-38`` in float32): a subnormal one or 0 for
    most of them. Subnormal arithmetic costs ~30x on x86 CPUs (float32 ``exp_`` of 1M values spread down to -230:
    21 ms plain, 0.6 ms this way; the M-step product slowed likewise), and a Dawid-Skene E-step sends most wrong
    classes there. Every other value is exactly what ``exp`` gives.

    Example:
        >>> p = torch.tensor([[0.0, -1e3, 0.0]])
        >>> _normalise_(p)[1], p
        (tensor([[2.]]), tensor([[0.5000, 0.0000, 0.5000]]))
    """
    top = log_post.amax(dim=1, keepdim=True)
    log_post -= top
    floor = math.log(torch.finfo(log_post.dtype).tiny) + 1.0  # exp at floor itself takes the slow path too
    log_post.clamp_min_(floor)
    log_post.exp_()
    torch.nn.functional.threshold_(log_post, math.exp(floor + 1.0), 0.0)  # type: ignore[attr-defined] # the clamped values (and up to e x) -> 0
    total = log_post.sum(dim=1, keepdim=True)
    log_post /= total
    return top, total


def _divide_rows(rows: torch.Tensor, denom: torch.Tensor, row_worker: torch.Tensor, block: int = 16384) -> None:
    """``rows[r] /= denom[row_worker[r]]`` in place, a block of rows at a time (no ``(R, K)`` temporary)."""
    for start in range(0, len(rows), block):
        rows[start : start + block] /= denom[row_worker[start : start + block]]


class DawidSkene(_EMAggregator):
    """Dawid-Skene EM with a full ``K x K`` confusion matrix per worker.

    A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
    Algorithm", *Journal of the Royal Statistical Society C* 28(1), 1979, 20-28. doi:10.2307/2346806

    EM starts from the majority-vote fractions and stops when the penalised log-likelihood gains
    less than ``tol`` per annotation (or falls), or after ``n_iter`` iterations.

    Args:
        n_iter: maximum number of EM iterations (crowd-kit's name; ``max_iter=`` is a deprecated alias).
        tol: stop when the log-likelihood per annotation improves by less than this.
        smoothing: Laplace pseudo-count added to every confusion cell and class count (a symmetric
            Dirichlet prior; EM then maximises the posterior, and stops on that objective). ``0``
            (default) is plain maximum likelihood, with cells floored at ``eps``: with one label per
            item it keeps majority vote's answer, where smoothing lets EM drift along the flat
            likelihood (one label per item cannot identify a worker: use :class:`MBEM` there).
        crowdkit_compat: reproduce crowd-kit 1.4.2 exactly: no smoothing, cells of observed
            ``(worker, label)`` pairs clipped at ``eps``, and its stopping rule (its per-annotation
            ELBO gains less than ``tol``, which also stops early when that value falls).
        eps: floor of probabilities before taking logs.
        device: where to compute.
        initial_error_strategy: how ``fit(..., initial_error=...)`` enters the first M-step: ``"assign"`` (the
            given matrices replace the counts) or ``"addition"`` (added to them), crowd-kit's names.
        threads: torch CPU threads during the fit; ``None`` (default): :func:`auto_threads`, torch's setting cut
            to the cores the load average leaves idle.
        dtype: of the sparse products and posteriors: ``torch.float32`` (default; about 1.5-3x faster
            on CPU, posteriors agree with float64 to ~1e-6) or ``torch.float64`` (default with
            ``crowdkit_compat``). The log-likelihood is always accumulated in float64.

    Attributes:
        errors_: ``(num_workers, K, K)``; ``[a, l, k]`` = P(worker a says l | true class k), crowd-kit's axis
            order (``errors_.loc[(worker, observed), true]``). The deprecated ``worker_confusion_`` is its
            transpose ``[a, k, l]``.
        priors_: ``(K,)`` class prior.
        log_likelihood_: marginal log-likelihood of the data at each E-step.
        n_iter_: number of E-steps run.

    Example:
        >>> import pandas as pd
        >>> frame = pd.DataFrame({"task": [1, 1, 1, 2, 2, 2, 3, 3, 3],
        ...                       "worker": ["a", "b", "c"] * 3,
        ...                       "label": ["y", "y", "n", "n", "n", "n", "y", "y", "n"]})
        >>> ds = DawidSkene().fit(frame)
        >>> ds.table_.decode_labels(ds.labels_)
        ['y', 'n', 'y']
        >>> ds.errors_.shape, round(float(ds.worker_accuracy_[2]), 2)
        (torch.Size([3, 2, 2]), 0.33)
    """

    def _m_step(self, inc: Incidence, post: torch.Tensor) -> _Params:
        counts, extra = self._counts(inc, post)  # (R, true)
        tiny = torch.finfo(counts.dtype).tiny
        unobserved: torch.Tensor | float = 0.0
        penalty = 0.0
        # in place on one (R, K) buffer: with many classes the rows dominate memory (crowd-kit keeps several copies)
        if self.crowdkit_compat:
            log_conf_t = counts.clamp_min(self.eps)  # counts stay: crowd-kit's stopping value needs them
            denom = inc.worker_sum(log_conf_t)  # (workers, true): sums over the observed labels
            if extra is not None:
                denom = denom + extra
            _divide_rows(log_conf_t, denom, inc.row_worker)
            log_conf_t.clamp_min_(1e-300).log_()
        else:
            s = self.smoothing
            log_conf_t = counts
            if s:
                log_conf_t += s
            denom = inc.worker_sum(log_conf_t)
            unused = (inc.num_classes - inc.observed.sum(dim=1)).to(counts.dtype)  # labels a worker never gave
            if s:
                denom = denom + s * unused[:, None]
            if extra is not None:
                denom = denom + extra
            denom = denom.clamp_min(tiny)
            _divide_rows(log_conf_t, denom, inc.row_worker)
            log_conf_t.clamp_min_(self.eps).log_()
            unobserved_t = (s / denom).clamp_min(self.eps)  # (workers, true) cell of every label never given
            if s:
                penalty = float(s * (log_conf_t.sum() + (unused[:, None] * unobserved_t.log()).sum()))
            unobserved = unobserved_t
        log_prior, prior_penalty = self._prior(inc, post)
        return _Params(log_conf_t, log_prior, penalty + prior_penalty, counts, unobserved)


class OneCoinDawidSkene(_EMAggregator):
    """Dawid-Skene with one accuracy per worker ("one coin"): ``pi_a[k, k] = s_a`` and every wrong
    label has probability ``(1 - s_a) / (K - 1)``.

    Y. Zhang, X. Chen, D. Zhou and M. I. Jordan, "Spectral Methods Meet EM: A Provably Optimal
    Algorithm for Crowdsourcing", *JMLR* 17, 2016. arXiv:1406.3824

    Args:
        n_iter: maximum number of EM iterations (crowd-kit's name; ``max_iter=`` is a deprecated alias).
        tol: stop when the log-likelihood per annotation improves by less than this.
        smoothing: pseudo-count of a symmetric Beta prior on each worker's accuracy (and on the classes).
        crowdkit_compat: reproduce crowd-kit 1.4.2 (``OneCoinDawidSkene``): no smoothing, accuracy
            clipped to ``[eps, 1 - eps]``, its stopping rule.
        eps: floor of probabilities.
        device: where to compute.
        dtype: as for :class:`DawidSkene`.

    Attributes:
        skills_: ``(num_workers,)`` estimated accuracy ``s_a``.
        errors_: ``(num_workers, K, K)`` built from ``skills_`` (axes worker, observed, true).
        priors_: ``(K,)`` class prior.
        log_likelihood_: marginal log-likelihood at each E-step.
        n_iter_: number of E-steps run.

    Example:
        >>> table = {"task": [0, 0, 0, 1, 1, 1], "worker": [0, 1, 2, 0, 1, 2], "label": [1, 1, 0, 0, 0, 1]}
        >>> OneCoinDawidSkene().fit(table).labels_.tolist()
        [1, 0]
    """

    def _m_step(self, inc: Incidence, post: torch.Tensor) -> _Params:
        K = inc.num_classes
        counts, _ = self._counts(inc, post)
        rows = torch.arange(inc.rows, device=counts.device)
        correct = torch.zeros(inc.num_workers, dtype=counts.dtype, device=counts.device)
        correct.index_add_(0, inc.row_worker, counts[rows, inc.row_label])
        if self.crowdkit_compat:
            skill = correct / inc.per_worker
            penalty = 0.0
        else:
            a = self.smoothing
            skill = (correct + a) / (inc.per_worker + 2 * a)
            penalty = float(a * (skill.clamp_min(self.eps).log() + (1 - skill).clamp_min(self.eps).log()).sum())
        wrong = (1 - skill) / (K - 1)
        if self.crowdkit_compat:
            log_right, log_wrong = skill.clamp(self.eps, 1 - self.eps).log(), wrong.clamp(self.eps, 1 - self.eps).log()
        else:
            log_right, log_wrong = skill.clamp_min(self.eps).log(), wrong.clamp_min(self.eps).log()
        diagonal = inc.row_label[:, None] == torch.arange(K, device=counts.device)
        log_conf_t = torch.where(diagonal, log_right[inc.row_worker, None], log_wrong[inc.row_worker, None])
        self.skills_ = skill
        log_prior, prior_penalty = self._prior(inc, post)
        return _Params(log_conf_t, log_prior, penalty + prior_penalty, counts)

    @property
    def errors_(self) -> torch.Tensor:
        """``(num_workers, K, K)`` built from ``skills_`` (axes worker, observed, true); in compat mode the rows of
        labels a worker never gave are 0, as crowd-kit stores none."""
        self._check_fitted()
        if self.empty_:
            return torch.empty(0, 0, 0, dtype=self.dtype)
        K, skill = self.table_.num_classes, self.skills_
        lo, hi = (self.eps, 1 - self.eps) if self.crowdkit_compat else (self.eps, 1.0)
        right, wrong = skill.clamp(lo, hi), ((1 - skill) / (K - 1)).clamp(lo, hi)
        eye = torch.eye(K, dtype=torch.bool, device=skill.device)
        conf = torch.where(eye, right[:, None, None], wrong[:, None, None])
        if self.crowdkit_compat:
            conf = conf * self._incidence.observed[:, :, None]
        return conf
