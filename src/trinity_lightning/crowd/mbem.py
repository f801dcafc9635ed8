"""Model-bootstrapped EM: estimate the workers from a model's predictions instead of from each other."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from trinity_lightning.crowd._incidence import Incidence
from trinity_lightning.crowd.dawid_skene import DawidSkene, _Params
from trinity_lightning.crowd.table import as_table

PRIORS = ("model", "class", "none")
"""The accepted values of ``prior`` (:class:`MBEM` and the CrowdEM callback)."""


class MBEM(DawidSkene):
    """Model-bootstrapped EM (MBEM): worker confusions from a model's predictions, then the posteriors.

    A. Khetan, Z. C. Lipton and A. Anandkumar, "Learning From Noisy Singly-labeled Data", ICLR 2018.
    arXiv:1712.04577

    With one label per item, label-only EM (Dawid-Skene) cannot tell a good worker from a bad one;
    a model trained on the noisy labels gives an independent guess of the truth. ``fit`` takes the
    model's predictions ``t_i`` on the annotated items and

    1. estimates each worker's confusion ``pi_a[k, l] ∝ smoothing + #{i by a: t_i = k, y_ia = l}``
       (rows with no data become uniform: the worker is treated as a spammer there) and the class
       prior from ``t`` (one M-step with ``t`` as the posterior);
    2. computes ``q_i(k) ∝ p_i(k) prod_a pi_a[k, y_ia]`` (one E-step), where the prior ``p_i`` is the
       model's own predicted distribution for item ``i`` (``prior="model"``, the default: the model as an
       informative prior on each item's truth, as in Raykar et al., "Learning From Crowds", JMLR 2010),
       the class prior of ``t`` (``prior="class"``, the paper's choice: ``q_k = (#{i: t_i = k} + smoothing) /
       (n + K smoothing)``, from the hard predictions when ``hard``, applied once) or the uniform distribution
       (``prior="none"``: the workers' likelihood alone, as the official code computes the posterior).

    With few epochs behind it a model's predictions are often biased towards a few classes; the class
    prior then pulls every item labelled by a poor worker towards those classes, and training on that
    can collapse (measured: Fashion-MNIST, 1 label per item, 20% good workers, 3 epochs of training: label
    accuracy 24% with the class prior, 55% with the model prior, 28% for majority vote).

    ``n_iter > 1`` continues with Dawid-Skene EM from there. Retrain the model on ``probas_``
    and repeat: that is what the :class:`~trinity_lightning.crowd.callback.CrowdEM` callback does.

    Args:
        n_iter: E-steps (1 = the paper's MBEM step; ``max_iter=`` is a deprecated alias).
        hard: estimate the confusions from the model's hard predictions ``argmax`` (the official code)
            instead of its probabilities.
        prior: ``"model"`` (each item's predicted distribution), ``"class"`` (the class frequencies of
            the predictions, the paper) or ``"none"`` (uniform: the official code's posterior).
        smoothing: Laplace pseudo-count per confusion cell; larger values shrink the few counts that
            one label per item gives towards the uniform (spammer) row.
        tol: as for :class:`DawidSkene` (used when ``n_iter > 1``).
        eps: probability floor.
        device: where to compute.
        dtype: floating dtype (default float32).

    Attributes:
        errors_: ``(num_workers, K, K)`` confusions estimated from the predictions (the ones that produced
            ``probas_``), axes worker, observed, true as in crowd-kit.

    Example:
        >>> table = {"task": [0, 1, 2, 3], "worker": ["good", "good", "bad", "bad"], "label": [0, 1, 1, 0]}
        >>> model = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
        >>> mbem = MBEM().fit(table, model)  # "bad" disagrees with the model: its labels get flipped
        >>> mbem.labels_.tolist(), list(mbem.table_.worker_ids), [round(float(a), 2) for a in mbem.worker_accuracy_]
        ([0, 1, 0, 1], ['bad', 'good'], [0.05, 0.98])
    """

    _final_m_step = False

    def __init__(
        self,
        n_iter: int = 1,
        hard: bool = True,
        prior: Literal["model", "class", "none"] = "model",
        smoothing: float = 0.1,
        tol: float = 1e-5,
        eps: float = 1e-10,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        max_iter: int | None = None,
    ) -> None:
        super().__init__(
            n_iter=n_iter, tol=tol, smoothing=smoothing, eps=eps, device=device, dtype=dtype, max_iter=max_iter
        )
        if prior not in PRIORS:
            raise ValueError(f"prior: expected one of {', '.join(map(repr, PRIORS))}, got {prior!r}")
        self.hard, self.prior = hard, prior
        self._item_log_prior: torch.Tensor | None = None

    def _m_step(self, inc: Incidence, post: torch.Tensor) -> _Params:
        params = super()._m_step(inc, post)
        if self._item_log_prior is not None:
            params.log_prior = self._item_log_prior
        return params

    def fit(  # type: ignore[override]
        self,
        annotations: Any,
        predictions: torch.Tensor | np.ndarray | None = None,
        init_posteriors: torch.Tensor | np.ndarray | None = None,
        **read_kwargs: Any,
    ) -> MBEM:
        """Estimate the workers from ``predictions`` and compute the posteriors.

        Args:
            annotations: an :class:`~trinity_lightning.crowd.table.AnnotationTable` or anything it reads.
            predictions: the model's ``(num_items, K)`` class probabilities, or ``(num_items,)`` class ids,
                for the items in ``table_.item_ids`` order.
            init_posteriors: alias of ``predictions`` (the initial posterior of EM).
            **read_kwargs: passed to :meth:`AnnotationTable.read`.

        Returns:
            self.
        """
        if predictions is None:
            predictions = init_posteriors
        if predictions is None:
            raise ValueError("predictions: MBEM needs the model's predictions on the annotated items")
        table = as_table(annotations, **read_kwargs)
        preds = torch.as_tensor(predictions)
        K = table.num_classes
        if preds.ndim == 1:
            if preds.is_floating_point() or len(preds) != table.num_items:
                raise ValueError(
                    f"predictions: expected ({table.num_items},) integer class ids or "
                    f"({table.num_items}, {K}) probabilities, got {tuple(preds.shape)} {preds.dtype}"
                )
            if len(preds) and (int(preds.min()) < 0 or int(preds.max()) >= K):
                raise ValueError(f"predictions: class ids must lie in [0, {K})")
            preds = torch.nn.functional.one_hot(preds.long(), K)
        elif preds.shape != (table.num_items, K):
            raise ValueError(
                f"predictions: expected shape ({table.num_items}, {K}) (items in table_.item_ids "
                f"order), got {tuple(preds.shape)}"
            )
        preds = preds.to(torch.float64)
        if not torch.isfinite(preds).all() or (preds < 0).any():
            raise ValueError("predictions: probabilities must be finite and non-negative (pass softmax outputs)")
        self._item_log_prior = None
        if self.prior == "model":
            soft = preds / preds.sum(dim=1, keepdim=True).clamp_min(1e-300)
            self._item_log_prior = soft.clamp_min(self.eps).log().to(self.device, self.dtype)
        elif self.prior == "none":  # uniform: the posterior is the workers' likelihood alone
            self._item_log_prior = torch.full((K,), -float(np.log(K)), device=self.device, dtype=self.dtype)
        if self.hard:
            preds = torch.nn.functional.one_hot(preds.argmax(dim=1), K).to(torch.float64)
        return super().fit(table, init_posteriors=preds)  # type: ignore[return-value]
