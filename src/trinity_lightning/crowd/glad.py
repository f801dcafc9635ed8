r"""GLAD (Generative model of Labels, Abilities and Difficulties), vectorized over the annotation list.

J. Whitehill, T. Wu, J. Bergsma, J. Movellan and P. Ruvolo, "Whose Vote Should Count More: Optimal Integration of
Labels from Labelers of Unknown Expertise", *NeurIPS* 2009.

Worker ``w`` with ability ``alpha_w`` labels item ``i`` of difficulty ``exp(beta_i)`` correctly with probability
``sigmoid(alpha_w * exp(beta_i))``, and otherwise picks one of the ``K - 1`` wrong classes uniformly. EM: the
E-step gives the posteriors, the M-step maximises the expected log-likelihood plus unit-variance Gaussian priors
on ``alpha`` and ``beta`` by conjugate gradients (SciPy's CG, as crowd-kit 1.4.2's ``GLAD``, same arguments);
the objective and its gradient are a handful of tensor ops over the annotations.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import softplus

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.table import AnnotationTable


class GLAD(Aggregator):
    """GLAD: worker abilities ``alphas_`` and item difficulties ``betas_`` by EM.

    Args:
        n_iter: EM iterations at most.
        tol: stop when the expected log-likelihood per (annotation, class) pair gains less than this.
        m_step_max_iter: conjugate-gradient iterations per M-step.
        m_step_tol: tolerance of the conjugate-gradient M-step.
        alpha_prior_mean: mean of the Gaussian prior on abilities.
        beta_prior_mean: mean of the Gaussian prior on log-difficulties.
        device: where to compute.
        dtype: floating dtype (float64, as SciPy's optimiser works in it).

    Attributes:
        alphas_: ``(workers,)`` abilities.
        betas_: ``(items,)`` log-difficulties (difficulty ``exp(beta)``).
        loss_history_: expected log-likelihood per (annotation, class) after each iteration.

    Example:
        >>> frame = {"task": [1, 1, 1, 2, 2, 2, 3, 3, 3], "worker": ["a", "b", "c"] * 3,
        ...          "label": [0, 0, 1, 1, 1, 1, 0, 0, 0]}
        >>> GLAD().fit(frame).labels_.tolist()
        [0, 1, 0]
    """

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        m_step_max_iter: int = 25,
        m_step_tol: float = 1e-2,
        alpha_prior_mean: float = 1.0,
        beta_prior_mean: float = 1.0,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str = torch.float64,
    ) -> None:
        super().__init__(device, dtype)
        if n_iter < 0:
            raise ValueError(f"n_iter: expected a non-negative integer, got {n_iter}")
        if not tol >= 0:
            raise ValueError(f"tol: expected a non-negative number, got {tol}")
        if m_step_max_iter < 1:
            raise ValueError(f"m_step_max_iter: expected a positive integer, got {m_step_max_iter}")
        self.n_iter, self.tol, self.m_step_max_iter, self.m_step_tol = n_iter, tol, m_step_max_iter, m_step_tol
        self.alpha_prior_mean, self.beta_prior_mean = alpha_prior_mean, beta_prior_mean

    alphas_: torch.Tensor
    betas_: torch.Tensor
    loss_history_: list[float]

    def _terms(self, alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ab = alpha[self._w] * beta[self._i].exp()
        return ab, -softplus(-ab), -softplus(ab) - self._log_wrong  # log P(right), log P(one given wrong label)

    def _e_step(self, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        _, right, wrong = self._terms(alpha, beta)
        n, K = self._n, self._K
        log_post = torch.zeros(n, K, dtype=self.dtype, device=self.device)
        log_post.index_add_(0, self._i, wrong[:, None].expand(-1, K).contiguous())
        correction = torch.zeros(n * K, dtype=self.dtype, device=self.device)
        correction.index_add_(0, self._i * K + self._y, right - wrong)
        log_post += correction.view(n, K) + self._log_prior
        return torch.softmax(log_post, dim=1)

    def _q(self, alpha: torch.Tensor, beta: torch.Tensor, post_y: torch.Tensor) -> float:
        _, right, wrong = self._terms(alpha, beta)
        q = (post_y * right + (1 - post_y) * wrong).sum()
        q = q - 0.5 * ((alpha - self.alpha_prior_mean) ** 2).sum() - 0.5 * ((beta - self.beta_prior_mean) ** 2).sum()
        q = q - 0.5 * np.log(2 * np.pi) * (len(alpha) + len(beta))
        return float(q)

    def _grad(self, alpha: torch.Tensor, beta: torch.Tensor, post_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ab, _, _ = self._terms(alpha, beta)
        push = (post_y - torch.sigmoid(ab)) * beta[self._i].exp()
        d_alpha = torch.zeros_like(alpha).index_add_(0, self._w, push) - (alpha - self.alpha_prior_mean)
        d_beta = torch.zeros_like(beta).index_add_(0, self._i, push * alpha[self._w]) - (beta - self.beta_prior_mean)
        return d_alpha, d_beta

    def _m_step(self, alpha: torch.Tensor, beta: torch.Tensor, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from scipy.optimize import minimize

        post_y = post[self._i, self._y]
        W = len(alpha)

        def split(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            t = torch.as_tensor(x, dtype=self.dtype, device=self.device)
            return t[:W], t[W:]

        def f(x: np.ndarray) -> float:
            return -self._q(*split(x), post_y)

        def df(x: np.ndarray) -> np.ndarray:
            d_alpha, d_beta = self._grad(*split(x), post_y)
            return -torch.cat([d_alpha, d_beta]).cpu().numpy()

        x0 = torch.cat([alpha, beta]).cpu().numpy()
        res = minimize(f, x0, method="CG", jac=df, tol=self.m_step_tol, options={"maxiter": self.m_step_max_iter})
        return split(res.x)

    def _fit(self, table: AnnotationTable) -> None:
        if table.num_classes < 2:
            raise ValueError(f"GLAD: needs at least 2 classes, but the table has one, {table.classes[0]!r}")
        dev = self.device
        self._i, self._w, self._y = (t.to(dev) for t in (table.items, table.workers, table.labels))
        self._n, self._K = table.num_items, table.num_classes
        used = int(torch.unique(table.labels).numel())  # crowd-kit's prior: uniform over the labels used
        prior = torch.zeros(self._K, dtype=self.dtype, device=dev)
        prior[torch.unique(table.labels).to(dev)] = 1.0 / used
        self._log_prior = prior.clamp_min(1e-300).log()
        self._log_wrong = float(np.log(self._K - 1))
        alpha = torch.full((table.num_workers,), 1.0, dtype=self.dtype, device=dev)
        beta = torch.full((table.num_items,), 1.0, dtype=self.dtype, device=dev)
        post = self._e_step(alpha, beta)
        q = self._q(alpha, beta, post[self._i, self._y])  # crowd-kit compares its first per-pair Q with this total
        pairs = len(table) * self._K
        self.loss_history_ = []
        for _ in range(self.n_iter):
            last = q
            post = self._e_step(alpha, beta)
            alpha, beta = self._m_step(alpha, beta, post)
            q = self._q(alpha, beta, post[self._i, self._y]) / pairs
            self.loss_history_.append(q)
            if q - last < self.tol:
                break
        self.alphas_, self.betas_, self.probas_ = alpha, beta, post
