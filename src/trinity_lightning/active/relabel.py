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
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_warn

from trinity_lightning.active.batch import PoolQueryStrategy
from trinity_lightning.active.callback import ActiveLearning
from trinity_lightning.active.datamodule import ActiveLearningDataModule
from trinity_lightning.active.strategies import LOGITS, QueryStrategy, register_heuristic
from trinity_lightning.crowd.quality import (  # CROWDLAB's estimator lives with the crowd quality tables
    CrowdlabResult,
    LabelQuality,
    _long_form,
    _probs,
    best_temperature,
    crowdlab_consensus,
    label_quality,
    majority_vote,
    temperature_scale,
)
from trinity_lightning.data.atomic import atomic_write_json
from trinity_lightning.rounds.inference import barrier, broadcast
from trinity_lightning.rounds.oracle import Answers, Oracle, Query
from trinity_lightning.rounds.schedule import StoppingCriterion

ActiveLabResult = CrowdlabResult  # the name before it moved to trinity_lightning.crowd.quality

Annotations = dict[int, list[tuple[str, int]]]
"""Labels per item (dataset index): ``[(worker, class id), ...]`` in the order they came."""

__all__ = [
    "ActiveLab",
    "ActiveLabResult",
    "ActiveRelabelling",
    "CrowdOracle",
    "activelab_scores",
    "activelab_select",
    "best_temperature",
    "crowdlab_consensus",
    "majority_vote",
    "temperature_scale",
]


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
        self.last_rows: list[int] = []  # the candidates of the latest select (dataset indices) ...
        self.last_probs: torch.Tensor | None = None  # ... and the model's probabilities of them

    def select(
        self, pool: dict[str, torch.Tensor], k: int, labelled: dict[str, torch.Tensor] | None = None
    ) -> list[int]:
        probs = torch.softmax(pool[LOGITS].to(torch.float64), dim=1)
        rows = list(range(len(probs))) if self.candidates is None else self.candidates
        if len(rows) != len(probs):
            raise ValueError(f"candidates: {len(rows)} candidates for {len(probs)} rows of logits")
        self.last_rows, self.last_probs = [int(r) for r in rows], probs.detach().cpu()
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


_ANONYMOUS = "anonymous-"  # the name of an answer without a worker: anonymous-1, anonymous-2, ...


def _anonymous(given: Sequence[tuple[str, int]]) -> str:
    """``anonymous-j`` for the j-th answer without a worker to an item, the ids the labelling store and
    ``CrowdFileOracle`` give (never one an earlier answer of the item has: it never replaces one)."""
    used = {w for w, _ in given}
    j = 1 + sum(w.startswith(_ANONYMOUS) and w[len(_ANONYMOUS) :].isdigit() for w in used)
    while f"{_ANONYMOUS}{j}" in used:
        j += 1
    return f"{_ANONYMOUS}{j}"


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

    def _ask(self, trainer: Any, dm: ActiveLearningDataModule, round_: int, indices: Sequence[int]) -> None:
        """As :meth:`ActiveLearning._ask`, a relabel marked as such: a :class:`Query` with ``relabel=True`` and
        ``answered_by`` (the workers who labelled the item already), so a file or web oracle asks someone else."""
        labelled = set(dm.labelled_indices)
        render = getattr(self.oracle, "render", None)  # file oracles show the example; others need none
        kind = "tags" if getattr(dm, "tag_names", None) else "class"
        items: list[Query | int] = []
        for index in (int(i) for i in indices):
            given = self.annotations.get(index)
            if not given or index not in labelled:
                items.append(index)
                continue
            example = render(dm, index) if render is not None else None
            named = [w for w, _ in given if not w.startswith(_ANONYMOUS)]
            items.append(Query(index, kind, example, relabel=True, answered_by=named))
        if trainer.is_global_zero:
            self.oracle.query(round_, items, dm)
        barrier(trainer, "active-query")
        if not trainer.is_global_zero:
            self.oracle.query(round_, items, dm)

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
        # every person's answer (several per item from e.g. CrowdFileOracle), else the one answer per item
        per_item = answers.annotations or [[(w, lab)] for w, lab in zip(workers, answers.labels, strict=True)]
        for index, pairs in zip(answers.indices, per_item, strict=True):  # all checked before any change
            for worker, label in pairs:
                if dm.num_classes is not None and not 0 <= int(label) < dm.num_classes:
                    raise ValueError(
                        f"labels: label {label!r} of index {int(index)} (worker {worker!r}) is out of range "
                        f"[0, {dm.num_classes})"
                    )
        new: list[int] = []
        for index, pairs in zip(answers.indices, per_item, strict=True):
            index = int(index)
            given = self.annotations.setdefault(index, [])
            for worker, label in pairs:
                name = worker if worker is not None else _anonymous(given)
                given[:] = [(w, lab) for w, lab in given if w != name]  # a worker's latest answer replaces only theirs
                given.append((name, int(label)))
                self.labels_spent += 1
                if index in labelled:
                    self.relabels += 1
            if index not in labelled:
                new.append(index)
        if new:
            dm.label(new, [item_consensus(self.annotations[i]) for i in new])
        relabelled = [int(i) for i in answers.indices if int(i) in labelled]
        # the consensus of relabelled items replaces the label the model trains on
        dm._overrides.update({i: item_consensus(self.annotations[i]) for i in relabelled})
        if relabelled and dm.labels_path is not None:
            dm.save_labels(dm.labels_path)
        self._save_annotations(dm)
        self._save_quality(trainer, dm)
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

    @staticmethod
    def quality_path(dm: ActiveLearningDataModule) -> Path | None:
        """Where CROWDLAB's tables (:meth:`label_quality`) are written after each round's answers:
        ``<labels_path>.quality.csv`` (items) and ``<labels_path>.quality.annotators.csv`` (``None`` without a
        ``labels_path``)."""
        return None if dm.labels_path is None else dm.labels_path.with_name(dm.labels_path.name + ".quality.csv")

    def label_quality(self, **kwargs: Any) -> LabelQuality:
        """CROWDLAB's quality tables (:func:`~trinity_lightning.crowd.quality.label_quality`) of every answer
        collected so far (:attr:`annotations`), with the model's probabilities from the latest round's scoring as
        ``pred_probs``: per item (dataset index) the consensus label and ``consensus_quality_score``, per worker
        ``annotator_quality``, ``agreement_with_consensus`` and ``worst_class``. Items the latest round did not
        score (none, unless :attr:`annotations` was edited since) are left out.

        Example:
            >>> ActiveRelabelling(query_size=2).label_quality()
            Traceback (most recent call last):
            ...
            RuntimeError: ActiveRelabelling.label_quality: no round has scored the items yet (no model predictions)
        """
        assert isinstance(self.strategy, ActiveLab)
        probs = self.strategy.last_probs
        if probs is None:
            raise RuntimeError(
                "ActiveRelabelling.label_quality: no round has scored the items yet (no model predictions)"
            )
        row = {item: p for p, item in enumerate(self.strategy.last_rows)}
        items = [i for i in sorted(self.annotations) if self.annotations[i] and i in row]
        if not items:
            raise RuntimeError("ActiveRelabelling.label_quality: no labelled item was scored by the latest round")
        frame = pd.DataFrame(
            [(i, w, int(y)) for i in items for w, y in self.annotations[i]], columns=["item", "worker", "label"]
        )
        model = pd.DataFrame(probs[[row[i] for i in items]].numpy(), index=items)
        return label_quality(frame, model, item="item", classes=list(range(probs.shape[1])), **kwargs)

    def _save_quality(self, trainer: Any, dm: ActiveLearningDataModule) -> None:
        path = self.quality_path(dm)
        if path is None or not trainer.is_global_zero or not isinstance(self.strategy, ActiveLab):
            return
        if self.strategy.last_probs is None:
            return
        try:
            tables = self.label_quality()
        except (RuntimeError, ValueError) as err:  # a report must not stop the campaign
            rank_zero_warn(f"ActiveRelabelling: quality tables not written to {path}: {err}", category=UserWarning)
            return
        tables.save(path)

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
