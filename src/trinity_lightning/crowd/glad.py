r"""GLAD (Generative model of Labels, Abilities and Difficulties), vectorized over the annotation list.

J. Whitehill, T. Wu, J. Bergsma, J. Movellan and P. Ruvolo, "Whose Vote Should Count More: Optimal Integration of
Labels from Labelers of Unknown Expertise", *NeurIPS* 2009.

Worker ``w`` with ability ``alpha_w`` labels item ``i`` of difficulty ``exp(beta_i)`` correctly with probability
``sigmoid(alpha_w * exp(beta_i))``, and otherwise picks one of the ``K - 1`` wrong classes uniformly; unit-variance
Gaussian priors on ``alpha`` and ``beta``. The fit maximises the log posterior of ``(alpha, beta)`` (the marginal
log-likelihood of the labels plus the log priors) by EM.

**M-step (default): exact, per parameter.** Given ``beta`` the expected complete-data log-likelihood ``Q``
separates into one concave 1-D problem per worker (``alpha_w``), and given ``alpha`` into one 1-D problem per
item (``beta_i``). Each M-step maximises ``Q`` over ``alpha`` and then over ``beta`` (expectation conditional
maximisation, Meng & Rubin 1993), each by Newton's method on all coordinates at once (first and second
derivatives are per-worker / per-item sums over the annotations), with per-coordinate step halving so ``Q``
never decreases. EM then stops when the log posterior gains less than ``tol`` per annotation: the quantity EM
increases monotonically, so the stop means *converged*, not *the optimiser ran out of steps*.

**Why not SciPy's CG (crowd-kit 1.4.2's M-step)?** crowd-kit runs 25 CG iterations per M-step over all
``W + n`` parameters at once; on the shared crowd sets every one of those M-steps stops at the iteration cap,
far from its optimum (gradient max-norm 0.4 to 29 against ``m_step_tol=1e-2``), and its stop test (``tol=1e-5``)
compares the expected log-likelihood of two different posteriors, so EM ends after 5-10 iterations, before it
converges. Where it ends depends on the last bits of the arithmetic: crowd-kit itself on other row orders of the
same data (or on another machine / library build) ends elsewhere, and an item near 50/50 can land on either
side (crowd_rte over 40 row orders: 0.9263 on 20, 0.9250 on 20). The exact M-step has one answer per E-step, its
fixed point is a stationary point of the log posterior, and every decision in it is per worker / per item or on
a global sum, so it also runs sharded across processes (``fit(..., process_group=...)``,
:mod:`trinity_lightning.crowd.distributed`).

**``crowdkit_compat=True``: crowd-kit's GLAD, bit for bit.** Because crowd-kit's path is that sensitive, matching
it means replaying its arithmetic, not just its algorithm: the same melted rows (one per annotation and label
used, label-major in order of first appearance, annotations in the order given), pandas' grouped sums over them,
the same NumPy / SciPy element-wise functions and reductions, parameters in order of first appearance, SciPy's
CG, crowd-kit's stop rule and defaults (``tol=1e-5``, ``m_step_tol=1e-2``) and its ``idxmax`` over the sorted
labels. On the four shared crowd sets and on shuffled rows every loss, posterior, ability and difficulty equals
crowd-kit's exactly (difference 0.0). It runs in float64 NumPy on the CPU (results are then cast to ``dtype`` /
``device``), 10-20x faster than crowd-kit (no data-frame re-indexing per CG step), and not sharded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn.functional import softplus

from trinity_lightning.crowd.distributed import ShardedAggregator
from trinity_lightning.crowd.table import AnnotationTable

_LOG_2PI = float(np.log(2 * np.pi))


class GLAD(ShardedAggregator):
    """GLAD: worker abilities ``alphas_`` and item difficulties ``betas_`` by EM.

    Args:
        n_iter: EM iterations (M-steps) at most.
        tol: stop when the log posterior gains less than this per annotation (``crowdkit_compat=True``:
            crowd-kit's rule, the expected log-likelihood per (annotation, class) pair). ``None``: ``1e-8``, or
            crowd-kit's ``1e-5`` in compat mode.
        m_step_max_iter: Newton iterations per block (abilities, then difficulties) in each M-step
            (``crowdkit_compat=True``: conjugate-gradient iterations per M-step, as crowd-kit).
        m_step_tol: a block's Newton iterations stop when every coordinate's gradient is below this
            (``crowdkit_compat=True``: SciPy CG's ``tol``). ``None``: ``1e-8`` (``1e-3`` in float32), or crowd-kit's
            ``1e-2`` in compat mode.
        alpha_prior_mean: mean of the Gaussian prior on abilities.
        beta_prior_mean: mean of the Gaussian prior on log-difficulties.
        crowdkit_compat: replay crowd-kit 1.4.2's GLAD exactly (same numbers, bit for bit, on the rows in the
            order given; see the module docstring): SciPy CG M-step (``m_step_max_iter`` iterations), its stop
            rule and defaults, its tie rule (the first of the sorted labels). float64 NumPy on the CPU.
        device: where to compute.
        dtype: floating dtype (float64 by default).

    Attributes:
        alphas_: ``(workers,)`` abilities.
        betas_: ``(items,)`` log-difficulties (difficulty ``exp(beta)``).
        log_posterior_: log posterior of the fitted ``(alpha, beta)``: marginal log-likelihood of the labels plus
            the log Gaussian priors (the objective EM maximises).
        loss_history_: after each iteration, the log posterior per annotation (``crowdkit_compat=True``:
            crowd-kit's expected log-likelihood per (annotation, class) pair).
        n_iter_: EM iterations run.
        probas_: ``(items, classes)`` posteriors after the last E-step (``crowdkit_compat=True``: crowd-kit's,
            from the E-step before its last M-step).

    Example:
        >>> frame = {"task": [1, 1, 1, 2, 2, 2, 3, 3, 3], "worker": ["a", "b", "c"] * 3,
        ...          "label": [0, 0, 1, 1, 1, 1, 0, 0, 0]}
        >>> GLAD().fit(frame).labels_.tolist()
        [0, 1, 0]
        >>> GLAD(crowdkit_compat=True).fit(frame).n_iter_  # crowd-kit's iterations, loss and posteriors
        5
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float | None = None,
        m_step_max_iter: int = 25,
        m_step_tol: float | None = None,
        alpha_prior_mean: float = 1.0,
        beta_prior_mean: float = 1.0,
        crowdkit_compat: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(device, dtype)
        if n_iter < 0:
            raise ValueError(f"n_iter: expected a non-negative integer, got {n_iter}")
        if tol is not None and not tol >= 0:
            raise ValueError(f"tol: expected a non-negative number or None, got {tol}")
        if m_step_max_iter < 1:
            raise ValueError(f"m_step_max_iter: expected a positive integer, got {m_step_max_iter}")
        if m_step_tol is not None and not m_step_tol >= 0:
            raise ValueError(f"m_step_tol: expected a non-negative number or None, got {m_step_tol}")
        if tol is None:  # crowd-kit's own default in compat mode (until 12/2026 compat ran on with 1e-8)
            tol = 1e-5 if crowdkit_compat else 1e-8
        self.n_iter, self.tol, self.m_step_max_iter = n_iter, tol, m_step_max_iter
        if m_step_tol is None:  # float32 sums cannot resolve a gradient of 1e-8
            m_step_tol = 1e-2 if crowdkit_compat else 1e-8 if self.dtype == torch.float64 else 1e-3
        self.m_step_tol = m_step_tol
        self._slack = max(1e-12, 100 * torch.finfo(self.dtype).eps)  # rounding a step may "lose" and still be taken
        self.alpha_prior_mean, self.beta_prior_mean = alpha_prior_mean, beta_prior_mean
        self.crowdkit_compat = crowdkit_compat

    alphas_: torch.Tensor
    betas_: torch.Tensor
    log_posterior_: float
    loss_history_: list[float]
    n_iter_: int

    def fit(self, annotations: Any, *, process_group: Any = None, **read_kwargs: Any) -> GLAD:
        """Fit on the annotations (see :meth:`Aggregator.fit`).

        Args:
            annotations: the table or anything :meth:`AnnotationTable.read` reads.
            process_group: fit across ranks (``torch.distributed``): ``annotations`` is this rank's shard of the
                rows; a group or ``True`` (the default group). ``alphas_`` are then global (indexed by the merged
                ``table_.worker_ids``), ``betas_``/``probas_`` this rank's items. Not with ``crowdkit_compat``.
                See :mod:`trinity_lightning.crowd.distributed`.
            **read_kwargs: passed to :meth:`AnnotationTable.read`.

        Returns:
            self.
        """
        unsupported = {"crowdkit_compat=True (SciPy CG takes per-rank line-search steps)": self.crowdkit_compat or None}
        with self._sharded(annotations, process_group, unsupported, read_kwargs) as (annotations, read_kwargs):
            if self.crowdkit_compat and not isinstance(annotations, AnnotationTable):
                read_kwargs = {**read_kwargs, "keep_source_rows": True}  # crowd-kit's sums follow the row order
            return super().fit(annotations, **read_kwargs)

    # ---- sums over the annotations, completed across ranks in a sharded fit -------------------------------------

    def _per_worker(self, values: torch.Tensor) -> torch.Tensor:
        """``(W, C)`` sums over each worker's annotations of the ``(N, C)`` values (all ranks)."""
        out = torch.zeros(self._W, values.shape[1], dtype=values.dtype, device=values.device)
        out.index_add_(0, self._w, values)
        self._reduce(out)
        return out

    def _per_item(self, values: torch.Tensor) -> torch.Tensor:
        """``(n, C)`` sums over each item's annotations of the ``(N, C)`` values (split items completed)."""
        out = torch.zeros(self._n, values.shape[1], dtype=values.dtype, device=values.device)
        out.index_add_(0, self._i, values)
        return self._complete(out)

    # ---- the model ----------------------------------------------------------------------------------------------

    def _terms(self, alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ab = alpha[self._w] * beta[self._i].exp()
        return ab, -softplus(-ab), -softplus(ab) - self._log_wrong  # log P(right), log P(one given wrong label)

    def _e_step(self, alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Posteriors and the log posterior of ``(alpha, beta)`` (log-likelihood plus log priors)."""
        _, right, wrong = self._terms(alpha, beta)
        n, K = self._n, self._K
        log_post = torch.zeros(n * K, dtype=self.dtype, device=self.device)
        log_post.index_add_(0, self._i * K + self._y, right - wrong)
        log_post = log_post.view(n, K)
        log_post.index_add_(0, self._i, wrong[:, None].expand(-1, K))
        self._complete(log_post)  # the items other ranks hold too (sharded fit)
        log_post += self._log_prior
        evidence = torch.logsumexp(log_post, dim=1)
        prior_beta = -0.5 * ((beta - self.beta_prior_mean) ** 2 + _LOG_2PI)
        prior_alpha = float((-0.5 * ((alpha - self.alpha_prior_mean) ** 2 + _LOG_2PI)).sum())  # global, the same
        log_posterior = self._item_total(evidence + prior_beta) + prior_alpha
        return (log_post - evidence[:, None]).exp(), log_posterior

    def _newton_block(
        self,
        x: torch.Tensor,
        derivatives: Callable[[torch.Tensor], torch.Tensor],
        value: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Maximise a sum of independent 1-D concave-ish problems, one per coordinate of ``x``.

        ``derivatives(x)`` gives ``(len(x), 3)``: gradient, minus the exact second derivative and a positive
        curvature to fall back on where the exact one is not positive (Fisher scoring); ``value(x)`` each
        coordinate's objective. Steps are halved per coordinate until its objective does not decrease.
        """
        for _ in range(self.m_step_max_iter):
            grad, curvature, fallback = derivatives(x).unbind(1)
            if not self._any(bool(grad.abs().max() > self.m_step_tol)):
                break
            step = grad / torch.where(curvature > 0, curvature, fallback)
            step = step.clamp(-2.0, 2.0)  # a log-difficulty step of 2 scales exp(beta) by 7: plenty per iteration
            before = value(x)
            for _ in range(30):
                candidate = x + step
                # not worse, up to rounding (near the optimum a step gains less than the sums' last bits); NaN is worse
                worse = ~(value(candidate) >= before - self._slack * (1 + before.abs()))
                if not self._any(bool(worse.any())):
                    break
                step = torch.where(worse, step / 2, step)
            x = torch.where(worse, x, candidate)  # a coordinate still worse after 30 halvings stays put
        return x

    def _m_step_newton(
        self, alpha: torch.Tensor, beta: torch.Tensor, post: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = post[self._i, self._y]  # P(annotation is right)
        w, i = self._w, self._i

        def pieces(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            s = a[w] * b[i].exp()
            return s, torch.sigmoid(s), p * -softplus(-s) + (1 - p) * -softplus(s)

        def alpha_derivatives(a: torch.Tensor) -> torch.Tensor:
            _, sig, _ = pieces(a, beta)
            e = beta[i].exp()
            sums = self._per_worker(torch.stack([(p - sig) * e, sig * (1 - sig) * e * e], dim=1))
            grad = sums[:, 0] - (a - self.alpha_prior_mean)
            curvature = sums[:, 1] + 1.0  # Q is concave in each alpha: the exact curvature is always positive
            return torch.stack([grad, curvature, curvature], dim=1)

        def alpha_value(a: torch.Tensor) -> torch.Tensor:
            return self._per_worker(pieces(a, beta)[2][:, None])[:, 0] - 0.5 * (a - self.alpha_prior_mean) ** 2

        def beta_derivatives(b: torch.Tensor) -> torch.Tensor:
            s, sig, _ = pieces(alpha, b)
            fisher_part = sig * (1 - sig) * s * s
            sums = self._per_item(torch.stack([(p - sig) * s, fisher_part], dim=1))
            grad = sums[:, 0] - (b - self.beta_prior_mean)
            fisher = sums[:, 1] + 1.0
            return torch.stack([grad, fisher - sums[:, 0], fisher], dim=1)

        def beta_value(b: torch.Tensor) -> torch.Tensor:
            return self._per_item(pieces(alpha, b)[2][:, None])[:, 0] - 0.5 * (b - self.beta_prior_mean) ** 2

        alpha = self._newton_block(alpha, alpha_derivatives, alpha_value)
        beta = self._newton_block(beta, beta_derivatives, beta_value)
        return alpha, beta

    # ---- crowd-kit 1.4.2's path (crowdkit_compat=True) ----------------------------------------------------------

    def _fit_crowdkit(self, table: AnnotationTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(alphas, betas, probas)`` of crowd-kit 1.4.2's GLAD on ``table``, replayed operation by operation.

        crowd-kit melts the annotations into one row per (annotation, label used), label-major in the order the
        labels first appear, annotations in source order; each E-step sums per (task, label) with pandas'
        grouped sum, each M-step runs SciPy's CG on ``-Q`` (``Q``: a pairwise NumPy sum over those rows plus the
        Gaussian log priors in order of first appearance) and its gradient (grouped sums per task / worker). The
        same ufuncs, the same pandas / NumPy reductions over the same row order and the same CG give the same
        floating-point numbers, so the path (and where the stop rule ends it) is crowd-kit's, bit for bit
        (tested), in float64 on the CPU. ``probas`` are crowd-kit's ``probas_``: from the last E-step, which runs
        before the last M-step.
        """
        import pandas as pd
        from scipy.optimize import minimize
        from scipy.special import expit, logsumexp
        from scipy.stats import norm

        rows = table.source_rows
        order = np.arange(len(table)) if rows is None else np.argsort(rows.numpy(), kind="stable")
        t, w, y = (v.numpy()[order] for v in (table.items, table.workers, table.labels))
        n, W, N = table.num_items, table.num_workers, len(t)
        first_labels = pd.unique(y)  # crowd-kit's prior_labels_: the labels used, in order of first appearance
        K = len(first_labels)
        if K < 2:
            raise ValueError(
                f"GLAD(crowdkit_compat=True): crowd-kit needs at least 2 labels used, but every annotation is "
                f"{table.classes[int(first_labels[0])]!r}"
            )
        try:  # crowd-kit's probas_ columns (unstack) and idxmax follow the sorted label values
            by_value = sorted(range(K), key=lambda k: table.classes[int(first_labels[k])])
        except TypeError:
            by_value = list(range(K))
        rank = np.empty(K, dtype=np.int64)
        rank[by_value] = np.arange(K)
        self._crowdkit_columns = torch.as_tensor(first_labels[by_value].astype(np.int64))
        tasks, workers = pd.unique(t), pd.unique(w)  # crowd-kit's tasks_ / workers_: order of first appearance
        T, Wr = np.tile(t, K), np.tile(w, K)  # the melted rows: label-major, annotations in source order
        var = np.repeat(np.arange(K), N)  # position in first_labels
        delta = (np.tile(y, K) == first_labels[var]).astype(np.int64)
        task_label = T * K + rank[var]  # groupby(["task", "variable"]): tasks, then label values, sorted
        log_wrong = np.log(K - 1)
        log_prior = np.log(np.full(K, 1.0 / K))
        alpha_mean, beta_mean = np.full(W, self.alpha_prior_mean), np.full(n, self.beta_prior_mean)

        def softplus(x: np.ndarray, limit: int = 30) -> np.ndarray:  # crowd-kit's, limit and all
            positive = x > limit
            mask = (positive | (x < -limit)).astype(np.int64)
            return np.log1p(np.exp(x * (1 - mask))) * (1 - mask) + x * positive

        def grouped(values: np.ndarray, codes: np.ndarray) -> np.ndarray:  # pandas' grouped (Kahan) sum
            return pd.Series(values).groupby(codes, sort=True).sum().to_numpy()

        def terms(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
            ab = alpha[Wr] * np.exp(beta[T])
            return delta * -softplus(-ab) + (1 - delta) * (-softplus(ab) - log_wrong)

        def e_step(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """``(n, K)`` posteriors (columns in label-value order) and each melted row's posterior."""
            sums = grouped(terms(alpha, beta), task_label).reshape(n, K) + log_prior[by_value]
            probas = np.exp(sums - logsumexp(sums, axis=1, keepdims=True))  # crowd-kit's softmax, per task
            return probas, probas[T, rank[var]]

        def q(alpha: np.ndarray, beta: np.ndarray, post: np.ndarray) -> float:
            value = (post * terms(alpha, beta)).sum()
            value += np.log(norm.pdf(alpha[workers] - alpha_mean[workers])).sum()
            value += np.log(norm.pdf(beta[tasks] - beta_mean[tasks])).sum()
            return -np.inf if np.isnan(value) else float(value)

        def point(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            alpha, beta = np.empty(W), np.empty(n)
            alpha[workers], beta[tasks] = x[: len(workers)], x[len(workers) :]
            return alpha, beta

        def minus_gradient(x: np.ndarray, post: np.ndarray) -> np.ndarray:
            alpha, beta = point(x)
            e_beta = np.exp(beta[T])
            push = post * (delta - expit(alpha[Wr] * e_beta))
            d_beta = grouped(push * alpha[Wr] * e_beta, T) - (beta - beta_mean)
            d_alpha = grouped(push * e_beta, Wr) - (alpha - alpha_mean)
            return np.concatenate([-d_alpha[workers], -d_beta[tasks]])

        alpha, beta = np.ones(W), np.ones(n)
        probas, post = e_step(alpha, beta)
        loss = q(alpha, beta, post)  # crowd-kit compares its first per-pair Q with this total
        for _ in range(self.n_iter):
            last = loss
            probas, post = e_step(alpha, beta)
            result = minimize(
                lambda x, post=post: -q(*point(x), post),
                np.concatenate([alpha[workers], beta[tasks]]),
                method="CG",
                jac=lambda x, post=post: minus_gradient(x, post),
                tol=self.m_step_tol,
                options={"disp": False, "maxiter": self.m_step_max_iter},
            )
            alpha, beta = point(result.x)
            loss = q(alpha, beta, post) / len(T)
            self.loss_history_.append(loss)
            if loss - last < self.tol:
                break
        full = np.zeros((n, table.num_classes))  # a declared class nobody used: probability 0, as it has no column
        full[:, first_labels[by_value]] = probas
        return alpha, beta, full

    # ---- fit ----------------------------------------------------------------------------------------------------

    def _labels(self) -> torch.Tensor:
        if not self.crowdkit_compat:
            return super()._labels()
        # crowd-kit's idxmax: the first most probable label in sorted label order (a 50/50 item: the smaller label)
        columns = self._crowdkit_columns.to(self.probas_.device)
        return columns[self.probas_[:, columns].argmax(dim=1)]

    def _fit(self, table: AnnotationTable) -> None:
        if table.num_classes < 2:
            raise ValueError(f"GLAD: needs at least 2 classes, but the table has one, {table.classes[0]!r}")
        dev = self.device
        self._i, self._w, self._y = (t.to(dev) for t in (table.items, table.workers, table.labels))
        self._n, self._K, self._W = table.num_items, table.num_classes, table.num_workers
        used = torch.zeros(self._K, dtype=torch.int32, device=dev)
        used[self._y] = 1
        annotations = torch.tensor([float(len(table))], dtype=torch.float64, device=dev)
        self._open_split(table)
        self._reduce(used, annotations)
        prior = (used > 0).to(self.dtype)  # crowd-kit's prior: uniform over the labels used
        self._log_prior = (prior / prior.sum()).clamp_min(1e-300).log()
        self._log_wrong = float(np.log(self._K - 1))
        alpha = torch.full((self._W,), 1.0, dtype=self.dtype, device=dev)
        beta = torch.full((self._n,), 1.0, dtype=self.dtype, device=dev)
        self.loss_history_ = []
        if self.crowdkit_compat:
            as_tensor = lambda a: torch.as_tensor(a, dtype=self.dtype, device=dev)  # noqa: E731
            alpha, beta, post = (as_tensor(a) for a in self._fit_crowdkit(table))
            _, log_posterior = self._e_step(alpha, beta)
            self.n_iter_ = len(self.loss_history_)
        else:
            per = float(annotations.item())
            post, log_posterior = self._e_step(alpha, beta)
            self.n_iter_ = 0
            for _ in range(self.n_iter):
                alpha, beta = self._m_step_newton(alpha, beta, post)
                post, new = self._e_step(alpha, beta)
                gain, log_posterior = (new - log_posterior) / per, new
                self.loss_history_.append(log_posterior / per)
                self.n_iter_ += 1
                if gain < self.tol:
                    break
        self.alphas_, self.betas_, self.probas_, self.log_posterior_ = alpha, beta, post, log_posterior
