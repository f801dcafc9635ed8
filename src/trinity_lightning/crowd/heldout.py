r"""Held-out likelihood of the annotations: a gold-free score of a guess of the truth.

How well does a guess of each item's class explain the answers people gave? Split the annotation rows into
folds; for each fold, estimate every worker's confusion from the guess on the *other* rows, form each item's
posterior from its prior and its other rows, and score the held-out answers:

.. math::
    \log p(y_{ia} \mid \text{rest}) = \log \sum_k q^{-f}_i(k)\, \pi^{-f}_a[k, y_{ia}].

The mean over every row is comparable across guesses of the same table. The :class:`CrowdEM` callback uses it
to refuse a bootstrap from a model that did not learn: such a model explains the answers no better than each
worker's own label frequencies (:func:`worker_marginal_log_likelihood`), and MBEM started from it would drag
the labels towards its few favourite classes.

Caveat, said plainly: the model was trained on targets built from these same annotations, so a model that
memorizes its targets scores optimistically. What the score catches is the failure that hurts, a model whose
predictions carry no information about the answers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from trinity_lightning.crowd.table import AnnotationTable

__all__ = ["aggregate_log_likelihood", "heldout_log_likelihood", "worker_marginal_log_likelihood"]


def _fold_of_rows(table: AnnotationTable, folds: int, seed: int) -> torch.Tensor:
    if folds < 2:
        raise ValueError(f"folds: expected at least 2, got {folds}")
    order = np.random.default_rng(seed).permutation(len(table))
    fold = np.empty(len(table), dtype=np.int64)
    fold[order] = np.arange(len(table)) % folds
    return torch.from_numpy(fold)


def _log_confusions(table: AnnotationTable, guess: torch.Tensor, rows: torch.Tensor, smoothing: float) -> torch.Tensor:
    """``(workers, K, K)`` log confusion ``[worker, true, observed]`` from ``guess`` on the annotation ``rows``."""
    K, W = table.num_classes, table.num_workers
    counts = torch.full((W * K, K), smoothing, dtype=torch.float64)  # row worker*K + observed, column true
    counts.index_add_(0, table.workers[rows] * K + table.labels[rows], guess[table.items[rows]])
    counts = counts.view(W, K, K).transpose(1, 2)  # worker, true, observed
    totals = counts.sum(dim=2, keepdim=True)
    return (counts / totals.clamp_min(1e-300)).clamp_min(1e-300).log()


def _score(
    table: AnnotationTable,
    log_prior: torch.Tensor,
    log_conf: torch.Tensor,
    train: torch.Tensor,
    held: torch.Tensor,
) -> torch.Tensor:
    """Log-probability of each held-out row given the item's prior and its training rows."""
    items, workers, labels = table.items, table.workers, table.labels
    evidence = torch.zeros_like(log_prior).index_add_(0, items[train], log_conf[workers[train], :, labels[train]])
    log_post = torch.log_softmax(log_prior + evidence, dim=1)
    return torch.logsumexp(log_post[items[held]] + log_conf[workers[held], :, labels[held]], dim=1)


def heldout_log_likelihood(
    table: AnnotationTable,
    guess: torch.Tensor,
    folds: int = 5,
    smoothing: float = 0.1,
    seed: int = 0,
    hard: bool = False,
) -> float:
    """Mean held-out log-likelihood per annotation when ``guess`` is each item's distribution of its class.

    The guess is both the source of the worker confusions (as in MBEM) and each item's prior.

    Args:
        table: the annotations.
        guess: ``(num_items, K)`` class probabilities in ``table.item_ids`` order (e.g. a model's softmax).
        folds: annotation rows are split into this many seeded folds (each row held out once).
        smoothing: Laplace pseudo-count of each confusion cell.
        seed: seed of the split.
        hard: estimate the confusions from the guess's most probable class (as ``MBEM(hard=True)``).

    Returns:
        The mean of ``log p(answer | everything else)`` over every annotation (nats, at most 0).

    Example:
        >>> t = AnnotationTable.from_tensors([0, 1, 2, 3] * 2, [0] * 4 + [1] * 4, [0, 1, 0, 1] * 2)
        >>> right = torch.tensor([[0.9, 0.1], [0.1, 0.9]] * 2)
        >>> heldout_log_likelihood(t, right, folds=2) > heldout_log_likelihood(t, right.flip(1) * 0 + 0.5, folds=2)
        True
    """
    guess = torch.as_tensor(guess, dtype=torch.float64).cpu()
    if guess.shape != (table.num_items, table.num_classes):
        raise ValueError(f"guess: expected shape ({table.num_items}, {table.num_classes}), got {tuple(guess.shape)}")
    if not torch.isfinite(guess).all() or (guess < 0).any():
        raise ValueError("guess: probabilities must be finite and non-negative")
    guess = guess / guess.sum(dim=1, keepdim=True).clamp_min(1e-300)
    fold = _fold_of_rows(table, folds, seed)
    log_prior = guess.clamp_min(1e-12).log()
    source = torch.nn.functional.one_hot(guess.argmax(dim=1), table.num_classes).double() if hard else guess
    total = 0.0
    for f in range(folds):
        train, held = torch.nonzero(fold != f).squeeze(1), torch.nonzero(fold == f).squeeze(1)
        log_conf = _log_confusions(table, source, train, smoothing)
        total += float(_score(table, log_prior, log_conf, train, held).sum())
    return total / len(table)


def worker_marginal_log_likelihood(
    table: AnnotationTable, folds: int = 5, smoothing: float = 0.1, seed: int = 0
) -> float:
    """The no-information baseline: each answer predicted by its worker's own label frequencies.

    This is what :func:`heldout_log_likelihood` gives for a guess that is the same for every item (a model
    that learned nothing), so a guess worth bootstrapping from must score above it.

    Example:
        >>> t = AnnotationTable.from_tensors([0, 1, 2, 3], [0, 0, 1, 1], [0, 0, 1, 1])
        >>> round(worker_marginal_log_likelihood(t, folds=2), 3)
        -0.154
    """
    uniform = torch.full((table.num_items, table.num_classes), 1.0 / table.num_classes, dtype=torch.float64)
    return heldout_log_likelihood(table, uniform, folds=folds, smoothing=smoothing, seed=seed)


def aggregate_log_likelihood(
    table: AnnotationTable,
    aggregate: Callable[[AnnotationTable], torch.Tensor],
    folds: int = 5,
    smoothing: float = 0.1,
    seed: int = 0,
) -> float:
    """Held-out log-likelihood of an annotation-only aggregate (majority vote, Dawid-Skene, ...).

    Unlike a model's guess, an aggregate is computed from the answers themselves, so it is refitted on each
    fold's training rows (the held-out answer never votes for itself); items with no training row get the
    class frequencies of the aggregate.

    Args:
        table: the annotations.
        aggregate: maps a table to its ``(table.num_items, K)`` posteriors, e.g.
            ``lambda t: MajorityVote().fit(t).probas_``.
        folds: seeded folds of annotation rows.
        smoothing: Laplace pseudo-count of each confusion cell.
        seed: seed of the split.

    Example:
        >>> from trinity_lightning.crowd.majority_vote import MajorityVote
        >>> t = AnnotationTable.from_tensors([0, 0, 1, 1], [0, 1, 0, 1], [0, 0, 1, 1])
        >>> aggregate_log_likelihood(t, lambda s: MajorityVote().fit(s).probas_, folds=2) < 0
        True
    """
    fold = _fold_of_rows(table, folds, seed)
    total = 0.0
    for f in range(folds):
        train, held = torch.nonzero(fold != f).squeeze(1), torch.nonzero(fold == f).squeeze(1)
        sub = AnnotationTable.from_tensors(
            table.items[train], table.workers[train], table.labels[train], num_classes=table.num_classes
        )
        posteriors = torch.as_tensor(aggregate(sub), dtype=torch.float64).cpu()
        present = torch.as_tensor(np.asarray(sub.item_ids, dtype=np.int64))
        class_freq = posteriors.mean(dim=0)
        guess = class_freq.expand(table.num_items, -1).clone()
        guess[present] = posteriors
        log_conf = _log_confusions(table, guess, train, smoothing)
        log_prior = class_freq.clamp_min(1e-12).log().expand(table.num_items, -1)
        total += float(_score(table, log_prior, log_conf, train, held).sum())
    return total / len(table)
