"""Simulated annotators: worker confusion matrices and the labels they give, vectorized and seeded.

Used by :class:`~trinity_lightning.crowd.datamodule.SimulatedCrowdDataModule` (which hides the gold labels of
an image set behind these answers) and by the benchmarks; it never imports Lightning.

Two worker models:

* :func:`hammer_spammer_confusions`: the simulation of the MBEM paper and its official code: with
  probability ``hammer_fraction`` a worker is perfect (identity), otherwise a near-uniform spammer;
* :func:`random_confusions`: a realistic spread: each worker's accuracy is drawn from a Beta
  distribution and its errors from a Dirichlet (some confusions are much likelier than others).
"""

from __future__ import annotations

import numpy as np
import torch

from trinity_lightning.crowd.table import AnnotationTable


def hammer_spammer_confusions(
    num_workers: int, num_classes: int, hammer_fraction: float = 0.2, seed: int = 0, spammer_boost: float = 0.01
) -> torch.Tensor:
    """``(num_workers, K, K)`` confusions: hammers are perfect, spammers answer nearly uniformly.

    Args:
        num_workers: number of workers ``m``.
        num_classes: ``K``.
        hammer_fraction: probability that a worker is a hammer (the paper's ``gamma``).
        seed: seed.
        spammer_boost: extra probability of a spammer's correct label (the official code's tiny
            diagonal boost), before renormalising.

    Example:
        >>> conf = hammer_spammer_confusions(4, 3, hammer_fraction=0.5, seed=1)
        >>> conf.shape, torch.allclose(conf.sum(-1), torch.ones(4, 3, dtype=conf.dtype))
        (torch.Size([4, 3, 3]), True)
    """
    if not 0.0 <= hammer_fraction <= 1.0:
        raise ValueError(f"hammer_fraction: expected a probability, got {hammer_fraction}")
    rng = np.random.default_rng(seed)
    hammer = rng.random(num_workers) < hammer_fraction
    spammer = np.full((num_classes, num_classes), 1.0 / num_classes) + spammer_boost * np.eye(num_classes)
    spammer /= spammer.sum(axis=1, keepdims=True)
    conf = np.where(hammer[:, None, None], np.eye(num_classes)[None], spammer[None])
    return torch.from_numpy(conf)


def random_confusions(
    num_workers: int,
    num_classes: int,
    accuracy: tuple[float, float] = (4.0, 2.0),
    error_concentration: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """``(num_workers, K, K)`` confusions with a realistic quality spread.

    Args:
        num_workers: number of workers.
        num_classes: ``K``.
        accuracy: Beta ``(a, b)`` of each worker's accuracy (default mean 0.67, most in 0.35-0.95).
        error_concentration: Dirichlet concentration of how a worker's errors spread over the wrong
            classes (small: a few systematic confusions; large: uniform errors).
        seed: seed.

    Example:
        >>> conf = random_confusions(5, 4, seed=0)
        >>> conf.shape, bool((conf.diagonal(dim1=1, dim2=2) > 0).all())
        (torch.Size([5, 4, 4]), True)
    """
    rng = np.random.default_rng(seed)
    K = num_classes
    acc = rng.beta(accuracy[0], accuracy[1], size=num_workers)
    errors = rng.dirichlet(np.full(K - 1, error_concentration), size=(num_workers, K))
    conf = np.zeros((num_workers, K, K))
    off = ~np.eye(K, dtype=bool)
    conf[:, off] = (errors * (1 - acc)[:, None, None]).reshape(num_workers, -1)
    conf[:, np.arange(K), np.arange(K)] = acc[:, None]
    return torch.from_numpy(conf)


def _distinct_workers(num_items: int, per_item: int, num_workers: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_items, per_item)`` workers, distinct within each row (redraw the rows that repeat one)."""
    if per_item > num_workers:
        raise ValueError(
            f"labels_per_item: {per_item} labels per item need at least as many workers, got {num_workers}"
        )
    workers = rng.integers(0, num_workers, size=(num_items, per_item))
    while True:
        ordered = np.sort(workers, axis=1)
        bad = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1) if per_item > 1 else np.zeros(num_items, bool)
        if not bad.any():
            return workers
        workers[bad] = rng.integers(0, num_workers, size=(int(bad.sum()), per_item))


def simulate_annotations(
    true_labels: torch.Tensor | np.ndarray,
    confusions: torch.Tensor,
    labels_per_item: int = 1,
    seed: int = 0,
    item_ids: np.ndarray | None = None,
) -> AnnotationTable:
    """Each item gets ``labels_per_item`` distinct random workers, who answer from their confusion rows.

    Only labels are simulated: the items' inputs are not touched (``SimulatedCrowdDataModule`` scales its
    images itself: digits to ``[0, 1]``, MNIST, Fashion-MNIST and CIFAR-10 to ``[-2, 2]``; see docs/crowd.md).

    Args:
        true_labels: ``(n,)`` true class of each item.
        confusions: ``(m, K, K)``; ``[a, k, l]`` = P(worker a says l | true class k).
        labels_per_item: redundancy ``r``.
        seed: seed.
        item_ids: the id of each item in the table (default ``0..n-1``).

    Returns:
        The annotation table (``n * r`` rows, classes ``0..K-1``).

    Example:
        >>> table = simulate_annotations(torch.tensor([0, 1, 2]), hammer_spammer_confusions(5, 3, 1.0), 2)
        >>> len(table), table.labels.view(3, 2)[:, 0].tolist()
        (6, [0, 1, 2])
    """
    truth = np.asarray(true_labels.cpu() if isinstance(true_labels, torch.Tensor) else true_labels, dtype=np.int64)
    conf = confusions.detach().cpu().numpy()
    m, K, _ = conf.shape
    if truth.min(initial=0) < 0 or truth.max(initial=0) >= K:
        raise ValueError(f"true_labels: class ids must lie in [0, {K})")
    rng = np.random.default_rng(seed)
    n = len(truth)
    workers = _distinct_workers(n, labels_per_item, m, rng).reshape(-1)
    items = np.repeat(np.arange(n), labels_per_item)
    cumulative = conf[workers, truth[items]].cumsum(axis=1)
    draws = rng.random(len(items))[:, None]
    labels = np.minimum((draws > cumulative).sum(axis=1), K - 1)
    ids = np.arange(n) if item_ids is None else np.asarray(item_ids)
    return AnnotationTable.from_tensors(
        torch.from_numpy(ids[items]), torch.from_numpy(workers), torch.from_numpy(labels), num_classes=K
    )
