"""Active relabelling with several annotators: ActiveLab scores (Goh and Mueller, "ActiveLab: Active Learning with
Re-Labeling by Multiple Annotators", 2023. arXiv:2301.11856), vectorized in torch.

With several annotators the next label can go to a **new** item or to a **relabel** of an item that already has
labels. ActiveLab scores both kinds on one scale (lower = label it next):

* a labelled item ``i``: its CROWDLAB consensus quality ``q_i`` (the probability of the consensus label under a
  blend of the model's temperature-scaled prediction and the item's labels, each label weighted by its
  annotator's estimated quality) averaged with the chance level ``1/K``, with weights ``sum of the item's
  annotator weights + model weight`` and ``mean annotator weight``: an item with many good labels stays near
  ``q_i``, an item with one label from a weak annotator is pulled towards ``1/K``;
* an unlabelled item: the model's confidence ``max_c p_c`` averaged with ``1/K``, with weights ``model weight``
  and ``mean annotator weight``.

With ``compat=True`` the numbers equal cleanlab's ``cleanlab.multiannotator.get_active_learning_scores`` (2.9) to 1e-6
(``tests/active/test_relabel.py``); cleanlab breaks the last, exact ties of its majority vote at random, here the
smallest class wins. cleanlab is not needed at run time. :func:`activelab_scores` is the function;
:class:`ActiveLab` (``strategy: activelab``) is the query heuristic for
:class:`~trinity_lightning.active.ActiveLearning`, and :class:`ActiveRelabelling` the campaign that lets a round's
queries be relabels (a relabel request carries the item and asks a worker who has not labelled it yet; answers
carry ``worker``).

Example:
    >>> labels = torch.tensor([[0, 0, -1], [1, -1, 0], [-1, 1, 1]])   # 3 items x 3 annotators, -1 = no label
    >>> probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    >>> scored, new = activelab_scores(labels, probs, torch.tensor([[0.6, 0.4]]))
    >>> int(torch.cat([scored, new]).argmin())                     # item 1 (labels disagree) is relabelled next
    1
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from trinity_lightning.active.batch import PoolQueryStrategy
from trinity_lightning.active.callback import ActiveLearning
from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.strategies import LOGITS, QueryStrategy, register_heuristic
from trinity_lightning.data.atomic import atomic_write_json
from trinity_lightning.rounds.inference import broadcast
from trinity_lightning.rounds.oracle import Answers, Oracle, Query
from trinity_lightning.rounds.schedule import StoppingCriterion

Annotations = dict[int, list[tuple[str, int]]]
"""Labels per item (dataset index): ``[(worker, class id), ...]`` in the order they came."""

__all__ = [
    "ActiveLab",
    "ActiveLabResult",
    "ActiveRelabelling",
    "CrowdOracle",
    "activelab_scores",
    "activelab_select",
    "crowdlab_consensus",
    "majority_vote",
]

_CLIP = 1e-6  # cleanlab's CLIPPING_LOWER_BOUND
_SMALL = 1e-30  # cleanlab's SMALL_CONST
_COARSE_TEMPERATURES = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)
_FINE = 4


def _long_form(labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """``(items, workers, labels, N, M)`` from an ``(N, M)`` matrix whose missing entries are NaN or negative."""
    matrix = torch.as_tensor(np.asarray(labels, dtype=np.float64) if not isinstance(labels, torch.Tensor) else labels)
    if matrix.ndim != 2:
        raise ValueError(f"labels: expected an (items, annotators) matrix, got shape {tuple(matrix.shape)}")
    matrix = matrix.to(torch.float64)
    present = ~torch.isnan(matrix) & (matrix >= 0)
    items, workers = present.nonzero(as_tuple=True)
    values = matrix[items, workers]
    if (values != values.round()).any():
        raise ValueError("labels: class ids must be whole numbers")
    return items, workers, values.long(), int(matrix.shape[0]), int(matrix.shape[1])


def _probs(value: Any, name: str, k: int | None = None) -> torch.Tensor:
    probs = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value).to(torch.float64)
    if probs.ndim != 2 or (k is not None and probs.shape[1] != k):
        expected = "(N, K)" if k is None else f"(N, {k})"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(probs.shape)}")
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError(f"{name}: probabilities must be finite and non-negative (pass softmax outputs)")
    return probs


def _softmax_no_shift(x: torch.Tensor, temperature: float) -> torch.Tensor:
    e = torch.exp(x / max(temperature, 1e-12))
    return e / e.sum(dim=-1, keepdim=True)


def temperature_scale(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(log p / T)`` of probabilities clipped at 1e-30 and renormalized (cleanlab's scaling)."""
    probs = probs.clamp_min(_SMALL)
    probs = probs / probs.sum(dim=1, keepdim=True)
    scaled = _softmax_no_shift(torch.log(probs), temperature)
    return scaled / scaled.sum(dim=1, keepdim=True)


def best_temperature(counts: torch.Tensor, probs: torch.Tensor, compat: bool = False) -> float:
    """The temperature minimizing the soft cross-entropy between the label distributions and the prediction
    (a coarse grid, then a finer one around its best point: cleanlab's search).

    ``compat``: reproduce cleanlab 2.x, whose label counts (of float labels) put the counts of the classes an
    item received in the first columns (an item labelled ``[1, 1]`` of 3 classes counts as ``[2, 0, 0]``).
    """
    k = probs.shape[1]
    if compat:
        present = counts > 0
        column = (present.cumsum(dim=1) - 1).clamp_min(0)
        packed = torch.zeros_like(counts).scatter_add_(1, column, counts * present)
        counts = torch.where(present.all(dim=1, keepdim=True), counts, packed)
    empirical = counts / counts.sum(dim=1, keepdim=True)
    log_probs = torch.where(probs > 0, torch.log(probs.clamp_min(1e-300)), torch.full_like(probs, -math.inf))

    def losses(temperatures: Sequence[float]) -> torch.Tensor:
        out = []
        for t in temperatures:
            scaled = _softmax_no_shift(log_probs, t).clamp_min(_SMALL)
            out.append((-(empirical * torch.log(scaled)).sum(dim=1) / math.log(k)).mean())
        return torch.stack(out)

    coarse = list(_COARSE_TEMPERATURES)
    best = int(losses(coarse).argmin())
    fine: list[float] = []
    if best != 0:
        fine += np.linspace(coarse[best - 1], coarse[best], _FINE, endpoint=False).tolist()
    if best != len(coarse) - 1:
        fine += np.linspace(coarse[best], coarse[best + 1], _FINE + 1, endpoint=True).tolist()
    return float(fine[int(losses(fine).argmin())])


def _counts(items: torch.Tensor, labels: torch.Tensor, n: int, k: int) -> torch.Tensor:
    counts = torch.zeros(n, k, dtype=torch.float64)
    return counts.index_put_((items, labels), torch.ones(len(items), dtype=torch.float64), accumulate=True)


def majority_vote(
    items: torch.Tensor,
    workers: torch.Tensor,
    labels: torch.Tensor,
    num_items: int,
    num_classes: int,
    probs: torch.Tensor | None = None,
) -> torch.Tensor:
    """Majority vote per item; ties go to the model's most probable class (``probs``), then the rarer class
    overall, then the class whose annotators agree most with the untied majority, then the smallest class.

    Example:
        >>> majority_vote(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), torch.tensor([1, 0, 1]), 2, 2,
        ...               torch.tensor([[0.3, 0.7], [0.5, 0.5]])).tolist()
        [1, 1]
    """
    counts = _counts(items, labels, num_items, num_classes)
    modes = counts == counts.amax(dim=1, keepdim=True)
    untied = modes.sum(dim=1) == 1
    candidates = modes
    if probs is not None:
        masked = probs.masked_fill(~candidates, -math.inf)
        candidates = candidates & (masked == masked.amax(dim=1, keepdim=True))
    frequency = counts.sum(dim=0).expand_as(counts)
    masked = frequency.masked_fill(~candidates, math.inf)
    candidates = candidates & (masked == masked.amin(dim=1, keepdim=True))
    if bool((candidates.sum(dim=1) > 1).any()):
        vote = counts.argmax(dim=1)
        on_untied = untied[items]
        num_workers = int(workers.max()) + 1 if len(workers) else 0
        hits = torch.zeros(num_workers, dtype=torch.float64).index_add_(
            0, workers[on_untied], (labels[on_untied] == vote[items[on_untied]]).to(torch.float64)
        )
        seen = torch.zeros(num_workers, dtype=torch.float64).index_add_(
            0, workers[on_untied], torch.ones(int(on_untied.sum()), dtype=torch.float64)
        )
        agreement = hits / seen
        agreement = torch.where(seen > 0, agreement, agreement[seen > 0].mean())
        summed = torch.zeros_like(counts).index_put_((items, labels), agreement[workers], accumulate=True)
        score = (summed / counts.clamp_min(1)).masked_fill(~candidates, -math.inf)
        candidates = candidates & (score == score.amax(dim=1, keepdim=True))
    return candidates.to(torch.int8).argmax(dim=1)


@dataclass
class ActiveLabResult:
    """What :func:`crowdlab_consensus` estimates: consensus labels and their quality, the weights and the
    temperature of the model's probabilities."""

    consensus: torch.Tensor
    quality: torch.Tensor
    model_weight: float
    annotator_weight: torch.Tensor
    temperature: float
    item_weight: torch.Tensor  # sum of the weights of each item's annotators


def _stats(
    items: torch.Tensor,
    workers: torch.Tensor,
    labels: torch.Tensor,
    counts: torch.Tensor,
    probs: torch.Tensor,
    consensus: torch.Tensor,
    num_workers: int,
) -> tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]:
    """CROWDLAB's posterior ``(N, K)``, model weight, annotator weights and per-item annotator weight sum."""
    n, k = counts.shape
    per_item = counts.sum(dim=1)
    multi = per_item != 1
    agreement = counts[torch.arange(n), consensus] / per_item
    likely = agreement[multi].mean()
    unlikely = (1 - likely) / (k - 1)
    subset = consensus[multi]
    majority = torch.bincount(subset, minlength=k).argmax()
    class_error = max(float((subset != majority).to(torch.float64).mean()), _CLIP)
    # each annotator's agreement with the other annotators of the items they labelled
    extra = per_item[items] - 1
    same = counts[items, labels] - 1
    num = torch.zeros(num_workers, dtype=torch.float64).index_add_(0, workers, same)
    den = torch.zeros(num_workers, dtype=torch.float64).index_add_(0, workers, extra)
    with_overlap = den > 0
    peer = torch.where(with_overlap, num / den.clamp_min(1), (num / den.clamp_min(1))[with_overlap].mean())
    weight = (1 - (1 - peer) / class_error).clamp_min(_CLIP)
    model_error = float((probs[multi].argmax(dim=1) != subset).to(torch.float64).mean())
    model_weight = max(1 - model_error / class_error, _CLIP) * math.sqrt(float(per_item.mean()))
    item_weight = torch.zeros(n, dtype=torch.float64).index_add_(0, items, weight[workers])
    post = probs * model_weight + (item_weight * unlikely)[:, None]
    post = post.index_put_((items, labels), weight[workers] * (likely - unlikely), accumulate=True)
    return post / (item_weight + model_weight)[:, None], model_weight, weight, item_weight


def crowdlab_consensus(
    items: torch.Tensor,
    workers: torch.Tensor,
    labels: torch.Tensor,
    probs: torch.Tensor,
    num_workers: int | None = None,
    calibrate: bool = True,
    compat: bool = False,
) -> ActiveLabResult:
    """CROWDLAB's consensus (``best_quality``) and its quality for labelled items, from long-form annotations
    (``items``, ``workers``, ``labels``: one entry per label, ids from 0) and the model's ``probs`` ``(N, K)``.

    With ``calibrate`` (ActiveLab's use), the model's probabilities are first temperature-scaled to the labels
    (``compat``: with cleanlab's label counts, see :func:`best_temperature`).
    When every item has one label there is nothing to estimate: the consensus is that label, its quality the
    model's probability of it, and every weight is 1.

    Example:
        >>> out = crowdlab_consensus(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]),
        ...                          torch.tensor([1, 1, 0, 1]), torch.tensor([[0.2, 0.8], [0.6, 0.4]]))
        >>> out.consensus.tolist()
        [1, 0]
    """
    probs = probs.to(torch.float64)
    n, k = probs.shape
    m = int(num_workers if num_workers is not None else (int(workers.max()) + 1 if len(workers) else 0))
    counts = _counts(items, labels, n, k)
    per_item = counts.sum(dim=1)
    if (per_item == 0).any():
        raise ValueError(f"labels: items {(per_item == 0).nonzero().flatten()[:5].tolist()} have no label")
    if bool((per_item == 1).all()):
        consensus = majority_vote(items, workers, labels, n, k, probs)
        ones = torch.ones(m, dtype=torch.float64)
        return ActiveLabResult(consensus, probs[torch.arange(n), consensus], 1.0, ones, 1.0, per_item.clone())
    temperature = best_temperature(counts, probs, compat) if calibrate else 1.0
    if calibrate:
        probs = temperature_scale(probs, temperature)
    vote = majority_vote(items, workers, labels, n, k, probs)
    post, *_ = _stats(items, workers, labels, counts, probs, vote, m)
    top = post == post.amax(dim=1, keepdim=True)
    consensus = torch.where(top.sum(dim=1) == 1, post.argmax(dim=1), vote)
    post, model_weight, weight, item_weight = _stats(items, workers, labels, counts, probs, consensus, m)
    quality = post[torch.arange(n), consensus]
    return ActiveLabResult(consensus, quality, model_weight, weight, temperature, item_weight)


def activelab_scores(
    labels: Any = None,
    probs: Any = None,
    probs_unlabelled: Any = None,
    compat: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ActiveLab scores of labelled and unlabelled items (lower = label next); see the module docstring.

    Args:
        labels: ``(N, M)`` labels of the N labelled items by M annotators (NaN or a negative number where an
            annotator gave none), the layout of cleanlab's ``labels_multiannotator``.
        probs: the model's predicted probabilities ``(N, K)`` for the labelled items.
        probs_unlabelled: ``(U, K)`` for the unlabelled items (or ``None``).
        compat: pick the temperature exactly as cleanlab 2.x does (see :func:`best_temperature`); the default
            counts each class in its own column.

    Returns:
        ``(scores of the labelled items (N,), scores of the unlabelled items (U,))``, float64, on one scale.

    Example:
        >>> s, u = activelab_scores(None, None, torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
        >>> s.numel(), [round(v, 3) for v in u.tolist()]
        (0, [0.5, 0.7])
    """
    if probs is None and probs_unlabelled is None:
        raise ValueError("probs, probs_unlabelled: give at least one of them")
    if probs is not None and labels is None:
        raise ValueError("labels: required with probs (the labelled items' labels)")
    empty = torch.zeros(0, dtype=torch.float64)
    if probs is None:
        unlabelled = _probs(probs_unlabelled, "probs_unlabelled")
        return empty, _unlabelled_scores(unlabelled, 1.0, 1.0, 1.0)
    items, workers, values, n, m = _long_form(labels)
    model = _probs(probs, "probs")
    if model.shape[0] != n:
        raise ValueError(f"probs: {model.shape[0]} rows for {n} labelled items")
    k = model.shape[1]
    if len(values) and int(values.max()) >= k:
        raise ValueError(f"labels: class {int(values.max())} is out of range for {k} classes in probs")
    result = crowdlab_consensus(items, workers, values, model, m, compat=compat)
    avg = float(result.annotator_weight.mean())
    weight = result.item_weight + result.model_weight
    scores = (result.quality * weight + avg / k) / (weight + avg)
    if probs_unlabelled is None:
        return scores, empty
    unlabelled = _probs(probs_unlabelled, "probs_unlabelled", k)
    return scores, _unlabelled_scores(unlabelled, result.temperature, result.model_weight, avg)


def _unlabelled_scores(probs: torch.Tensor, temperature: float, model_weight: float, avg: float) -> torch.Tensor:
    k = probs.shape[1]
    confidence = temperature_scale(probs, temperature).amax(dim=1)
    return (confidence * model_weight + avg / k) / (model_weight + avg)


def activelab_select(
    scores: torch.Tensor, scores_unlabelled: torch.Tensor, k: int, relabel_allowed: torch.Tensor | None = None
) -> tuple[list[int], list[int]]:
    """The ``k`` lowest-scoring items of both kinds: ``(labelled items to relabel, unlabelled items to label)``,
    positions into each score vector, lowest first. ``relabel_allowed`` masks labelled items that can take no
    more labels (every annotator has labelled them).

    Example:
        >>> activelab_select(torch.tensor([0.9, 0.4]), torch.tensor([0.5, 0.8]), 2)
        ([1], [0])
    """
    scores = scores.to(torch.float64)
    if relabel_allowed is not None:
        scores = scores.masked_fill(~relabel_allowed.to(torch.bool), math.inf)
    both = torch.cat([scores, scores_unlabelled.to(torch.float64)])
    available = int(torch.isfinite(both).sum())
    if not 0 < k <= available:
        raise ValueError(f"k: expected 1..{available} (items that can take a label), got {k}")
    order = torch.sort(both, stable=True).indices[:k].tolist()
    n = len(scores)
    return [i for i in order if i < n], [i - n for i in order if i >= n]


@register_heuristic("activelab")
class ActiveLab(PoolQueryStrategy):
    """ActiveLab as a query heuristic: labels the lowest-scoring items (model-only scores for the pool).

    With :class:`ActiveRelabelling` the candidates also hold the labelled items, whose labels (with their
    workers) the campaign keeps in :attr:`annotations`; the heuristic then compares relabels and new items on
    one scale. Inside the plain :class:`~trinity_lightning.active.ActiveLearning` (pool items only, one label
    each) it ranks the pool by the model's confidence, as ActiveLab does for unlabelled items.

    Example:
        >>> ActiveLab().select({"logits": torch.tensor([[3.0, 0.0], [0.1, 0.0], [1.0, 0.0]])}, 2)
        [1, 2]
    """

    requires: ClassVar[frozenset[str] | None] = frozenset({LOGITS})

    def __init__(self) -> None:
        self.candidates: list[int] | None = None  # dataset index of each pool row (set by ActiveRelabelling)
        self.annotations: dict[int, list[tuple[str, int]]] = {}  # item -> [(worker, label)]
        self.max_labels: int | None = None
        self.blocked: set[int] = set()  # labelled items that can take no further label

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        probs = torch.softmax(pool[LOGITS].to(torch.float64), dim=1)
        rows = list(range(len(probs))) if self.candidates is None else self.candidates
        if len(rows) != len(probs):
            raise ValueError(f"candidates: {len(rows)} candidates for {len(probs)} rows of logits")
        done = [p for p, item in enumerate(rows) if self.annotations.get(int(item))]
        new = [p for p, item in enumerate(rows) if not self.annotations.get(int(item))]
        if not done:
            _, order = activelab_select(torch.zeros(0), activelab_scores(None, None, probs[new])[1], k)
            return [new[i] for i in order]
        names = sorted({w for p in done for w, _ in self.annotations[int(rows[p])]})
        column = {w: j for j, w in enumerate(names)}
        matrix = torch.full((len(done), len(names)), -1, dtype=torch.long)
        for r, p in enumerate(done):
            for worker, label in self.annotations[int(rows[p])]:
                matrix[r, column[worker]] = int(label)
        scored, fresh = activelab_scores(matrix, probs[done], probs[new] if new else None)
        allowed = torch.tensor(
            [
                int(rows[p]) not in self.blocked
                and (self.max_labels is None or len(self.annotations[int(rows[p])]) < self.max_labels)
                for p in done
            ],
            dtype=torch.bool,
        )
        k = min(k, int(allowed.sum()) + len(new))
        both = torch.cat([scored.masked_fill(~allowed, math.inf), fresh])
        order = torch.sort(both, stable=True).indices[:k].tolist()  # lowest first, relabels and new items mixed
        return [done[i] if i < len(done) else new[i - len(done)] for i in order]


def item_consensus(annotations: Sequence[tuple[str, int]]) -> int:
    """The majority label of one item's ``(worker, label)`` answers (ties: the label given first).

    Example:
        >>> item_consensus([("a", 2), ("b", 1), ("c", 1)]), item_consensus([("a", 2), ("b", 1)])
        (1, 2)
    """
    labels = [int(label) for _, label in annotations]
    if not labels:
        raise ValueError("annotations: an item without labels has no consensus")
    return max(dict.fromkeys(labels), key=labels.count)


class CrowdOracle(Oracle):
    """A simulated crowd: each item's labels are held back and revealed one at a time, each from a worker who has
    not labelled the item yet (a relabel request asks for a new worker's label). Answers carry ``worker``.

    Args:
        held_back: per dataset index, the ``(worker, label)`` answers to reveal, in order.

    Example:
        >>> oracle = CrowdOracle({3: [("ann", 1), ("bob", 0)]})
        >>> oracle.query(1, [3]); answers = oracle.collect(1)
        >>> answers.labels, answers.workers, oracle.remaining(3)
        ([1], ['ann'], 1)
    """

    def __init__(self, held_back: Annotations) -> None:
        self.held_back = {int(i): list(v) for i, v in held_back.items()}
        self.revealed: dict[int, int] = {}
        self._batches: dict[int, list[int]] = {}

    def remaining(self, index: int) -> int:
        """How many more labels ``index`` can get."""
        return len(self.held_back.get(int(index), [])) - self.revealed.get(int(index), 0)

    def query(self, round: int, items: Sequence[Query | int], datamodule: Any = None) -> None:
        batch = [int(q.index if isinstance(q, Query) else q) for q in items]
        empty = [i for i in batch if self.remaining(i) <= 0]
        if empty:
            raise ValueError(f"items: {empty[:5]} have no held-back label left (every worker has answered)")
        self._batches[round] = batch

    def collect(self, round: int) -> Answers | None:
        if round not in self._batches:
            raise KeyError(f"round: no batch was queried for round {round}")
        batch = self._batches.pop(round)
        labels: list[Any] = []
        workers: list[str | None] = []
        for i in batch:
            worker, label = self.held_back[i][self.revealed.get(i, 0)]
            self.revealed[i] = self.revealed.get(i, 0) + 1
            labels.append(int(label))
            workers.append(str(worker))
        return Answers(batch, labels, workers)

    def state_dict(self) -> dict[str, Any]:
        return {"revealed": dict(self.revealed)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.revealed = {int(k): int(v) for k, v in state["revealed"].items()}


class _LabelBudget(StoppingCriterion):
    """Stop once the campaign has collected ``budget`` labels (new items and relabels alike)."""

    def __init__(self, owner: ActiveRelabelling, budget: int | None) -> None:
        self.owner, self.budget = owner, budget

    def measure(self, trainer: Any, module: Any, datamodule: Any) -> dict[str, Any]:
        return {"labels_spent": self.owner.labels_spent, "relabels": self.owner.relabels}

    def should_stop(self, history: Sequence[dict[str, Any]]) -> bool:
        return self.budget is not None and bool(history) and int(history[-1].get("labels_spent", 0)) >= self.budget

    def __repr__(self) -> str:
        return f"_LabelBudget(budget={self.budget})"


class ActiveRelabelling(ActiveLearning):
    """An :class:`~trinity_lightning.active.ActiveLearning` campaign whose queries may be relabels.

    Each round the :class:`ActiveLab` heuristic scores the pool *and* the labelled items on one scale and the
    ``query_size`` lowest get one more label each: a new item goes to the labelled set, a relabel asks a further
    worker for an item already labelled. Every answer is kept with its ``worker`` in :attr:`annotations`; the
    label the model trains on is each item's majority label (:func:`item_consensus`). The budget counts labels,
    not items.

    Args:
        query_size: labels asked per round.
        budget: stop once this many labels were collected by the campaign (``None``: until no item can take one).
        annotations: the labels the labelled items already have, ``{index: [(worker, label), ...]}`` (an item
            labelled in the DataModule without an entry here is never relabelled).
        max_labels: at most this many labels per item (``None``: no limit; a :class:`CrowdOracle` also stops at
            the labels it holds).
        strategy: an :class:`ActiveLab` (or ``"activelab"``).
        **kwargs: the other arguments of :class:`~trinity_lightning.active.ActiveLearning` (``budget`` there counts
            items, so it is not accepted here).

    Example:
        >>> campaign = ActiveRelabelling(query_size=8, budget=40, annotations={0: [("ann", 2)]}, max_labels=3)
        >>> campaign.strategy.max_labels, campaign.labels_spent
        (3, 0)
    """

    def __init__(
        self,
        query_size: int = 100,
        budget: int | None = None,
        annotations: Annotations | None = None,
        max_labels: int | None = None,
        strategy: str | QueryStrategy = "activelab",
        **kwargs: Any,
    ) -> None:
        if "budget" in kwargs or "unit" in kwargs:
            raise ValueError("budget, unit: ActiveRelabelling counts labels; pass budget as a number of labels")
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise ValueError(f"budget: expected a positive number of labels, got {budget!r}")
        if max_labels is not None and max_labels < 1:
            raise ValueError(f"max_labels: expected a positive number of labels per item, got {max_labels!r}")
        stopping = list(kwargs.pop("stopping", None) or [])
        super().__init__(strategy, query_size=query_size, **kwargs)
        if not isinstance(self.strategy, ActiveLab):
            raise TypeError(f"strategy: ActiveRelabelling needs an ActiveLab heuristic, got {self.strategy!r}")
        self.annotations: Annotations = {int(i): list(v) for i, v in (annotations or {}).items()}
        self.strategy.annotations = self.annotations
        self.strategy.max_labels = max_labels
        self.max_labels, self.labels_spent, self.relabels = max_labels, 0, 0
        self.stopping = [_LabelBudget(self, budget), *stopping]

    def _can_take(self, index: int) -> bool:
        have = len(self.annotations.get(index, []))
        left = self.oracle.remaining(index) if isinstance(self.oracle, CrowdOracle) else 1
        return left > 0 and (self.max_labels is None or have < self.max_labels)

    def _candidates(self, dm: ActiveLearningDataModule) -> list[int]:
        pool = [i for i in super()._candidates(dm) if self._can_take(i)]
        labelled = set(dm.labelled_indices)
        annotated = [i for i in sorted(self.annotations) if i in labelled]
        allowed = {i for i in annotated if self._can_take(i)}
        if not pool and not allowed:
            return []
        candidates = pool + annotated
        assert isinstance(self.strategy, ActiveLab)
        self.strategy.candidates = candidates
        self.strategy.blocked = set(annotated) - allowed
        return candidates

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        dm = self._datamodule(trainer)
        if not self.finished and not self.waiting and not self._candidates(dm):
            self.finished = trainer.should_stop = True  # every item has all the labels it can get
            return
        super().on_train_epoch_end(trainer, pl_module)

    def select(self, trainer: Any, pl_module: Any, dm: ActiveLearningDataModule) -> Any:
        """As :meth:`ActiveLearning.select`; the last round asks only for the labels left in the budget."""
        units, budget = self._query_units, self.budget_labels
        if budget is not None and units is not None:
            self._query_units = max(1, min(units, budget - self.labels_spent))
        try:
            return super().select(trainer, pl_module, dm)
        finally:
            self._query_units = units

    @property
    def budget_labels(self) -> int | None:
        """The budget in labels (``None``: none)."""
        return next((c.budget for c in self.stopping if isinstance(c, _LabelBudget)), None)

    def _collect(self, trainer: Any, pl_module: Any, dm: ActiveLearningDataModule, next_round: int) -> bool:
        answers: Answers | None = broadcast(self.oracle.collect(next_round), trainer)
        if answers is None:
            return False
        if answers.labels is None:
            raise ValueError("oracle: ActiveRelabelling needs the answers' labels (use CrowdOracle or FileOracle)")
        labelled = set(dm.labelled_indices)
        workers = answers.workers or [None] * len(answers.indices)
        for index, label, worker in zip(answers.indices, answers.labels, workers):  # all checked before any change
            if dm.num_classes is not None and not 0 <= int(label) < dm.num_classes:
                raise ValueError(
                    f"labels: label {label!r} of index {int(index)} (worker {worker!r}) is out of range "
                    f"[0, {dm.num_classes})"
                )
        new: list[int] = []
        for index, label, worker in zip(answers.indices, answers.labels, workers):
            index = int(index)
            given = self.annotations.setdefault(index, [])
            name = worker if worker is not None else f"anonymous-{len(given)}"
            given[:] = [(w, lab) for w, lab in given if w != name]  # a worker's latest answer replaces theirs
            given.append((name, int(label)))
            self.labels_spent += 1
            if index in labelled:
                self.relabels += 1
            else:
                new.append(index)
        if new:
            dm.label(new, [item_consensus(self.annotations[i]) for i in new])
        relabelled = [int(i) for i in answers.indices if int(i) in labelled]
        # the consensus of relabelled items replaces the label the model trains on
        dm._overrides.update({i: item_consensus(self.annotations[i]) for i in relabelled})
        if relabelled and dm.labels_path is not None:
            dm.save_labels(dm.labels_path)
        self._save_annotations(dm)
        self.round, self.waiting, self.epochs_in_round = next_round, False, 0
        self.steps_at_round_start = trainer.global_step
        if self.reset_weights and self.initial_weights is not None:
            pl_module.load_state_dict(self.initial_weights)
            for optimizer in trainer.optimizers:
                optimizer.state = defaultdict(dict)
        return True

    @staticmethod
    def annotations_path(dm: ActiveLearningDataModule) -> Path | None:
        """Where every worker's answer is kept: ``<labels_path>.annotations.json`` (``None`` without a
        ``labels_path``). Rewritten atomically after each round's answers, so no label a person gave is lost on a
        crash, and read back by a fresh ``fit`` (no checkpoint) when the DataModule resumes its labels file."""
        return None if dm.labels_path is None else dm.labels_path.with_name(dm.labels_path.name + ".annotations.json")

    def _save_annotations(self, dm: ActiveLearningDataModule) -> None:
        path = self.annotations_path(dm)
        if path is not None:
            atomic_write_json(path, {str(k): [list(a) for a in v] for k, v in self.annotations.items()})

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        dm = self._datamodule(trainer)
        path = self.annotations_path(dm)
        if path is not None and path.exists() and self.labels_spent == 0 and dm.resume_labels:
            try:
                on_file = {int(k): [(str(w), int(y)) for w, y in v] for k, v in json.loads(path.read_text()).items()}
            except (ValueError, TypeError, AttributeError) as err:
                raise ValueError(
                    f"labels_path: {path} is not an annotations file written by ActiveRelabelling ({err})"
                ) from None
            for index, given in on_file.items():
                self.annotations[index] = given  # the file holds every answer collected so far
        super().on_fit_start(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["relabel"] = {
            "annotations": {str(k): [list(a) for a in v] for k, v in self.annotations.items()},
            "labels_spent": self.labels_spent,
            "relabels": self.relabels,
            "oracle": getattr(self.oracle, "state_dict", dict)(),
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        extra = state_dict.get("relabel", {})
        self.annotations.clear()
        self.annotations.update(
            {int(k): [(str(w), int(y)) for w, y in v] for k, v in extra.get("annotations", {}).items()}
        )
        self.labels_spent, self.relabels = int(extra.get("labels_spent", 0)), int(extra.get("relabels", 0))
        if extra.get("oracle") and hasattr(self.oracle, "load_state_dict"):
            self.oracle.load_state_dict(extra["oracle"])
