"""Label and annotator quality with several annotators per item: CROWDLAB (Goh, Tkachenko and Mueller,
"CROWDLAB: Supervised learning to infer consensus labels and quality scores for data with multiple annotators",
2022. arXiv:2210.06812), vectorized in torch, and a simpler blend for any fitted aggregator.

* :func:`label_quality` returns what cleanlab's ``get_label_quality_multiannotator`` returns (with
  ``consensus_method="best_quality"``, ``quality_method="crowdlab"``), as DataFrames indexed by your own item and
  annotator ids: per item ``consensus_label``, ``consensus_quality_score``, ``annotator_agreement``,
  ``num_annotations``; per annotator ``annotator_quality``, ``agreement_with_consensus``, ``worst_class``,
  ``num_examples_labeled``; per annotation its ``label_quality``. Given a model's predicted probabilities the
  numbers equal cleanlab 2.9's to 1e-10 (``tests/crowd/test_quality_crowdlab.py``). Without a model, an
  annotation-only aggregator's posterior (Dawid-Skene by default) or the label frequencies take the model's place.
* :func:`crowdlab_consensus` is the estimator behind it (and behind ActiveLab's scores,
  :mod:`trinity_lightning.active.relabel`); :func:`majority_vote`, :func:`best_temperature` and
  :func:`temperature_scale` are its parts.
* :func:`consensus_quality` and :func:`annotator_quality` score any fitted aggregator: an item's consensus
  distribution is the aggregator's posterior, blended with the model's prediction when one is given
  (``(1 - model_weight) * posterior + model_weight * model``); its quality is the blended probability of the
  consensus label. An annotator's quality is the average, over their labels, of that blended probability of the
  label they gave, next to their plain agreement with the consensus.

Everything here runs without Lightning (``trinity crowd quality`` starts fast).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd.base import Aggregator
from trinity_lightning.crowd.table import AnnotationTable, as_table

__all__ = [
    "CrowdlabResult",
    "LabelQuality",
    "annotator_quality",
    "annotators_path",
    "best_temperature",
    "consensus_quality",
    "crowdlab_consensus",
    "label_quality",
    "majority_vote",
    "temperature_scale",
]

_CLIP = 1e-6  # cleanlab's CLIPPING_LOWER_BOUND
_SMALL = 1e-30  # cleanlab's SMALL_CONST
_COARSE_TEMPERATURES = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)
_FINE = 4


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
class CrowdlabResult:
    """What :func:`crowdlab_consensus` estimates: consensus labels and their quality, the weights, the
    temperature of the model's probabilities and CROWDLAB's posterior (its ``post_pred_probs``)."""

    consensus: torch.Tensor
    quality: torch.Tensor
    model_weight: float
    annotator_weight: torch.Tensor
    temperature: float
    item_weight: torch.Tensor  # sum of the weights of each item's annotators
    posterior: torch.Tensor  # (N, K): the model's probabilities blended with the weighted labels


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
) -> CrowdlabResult:
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
        quality = probs[torch.arange(n), consensus]
        return CrowdlabResult(consensus, quality, 1.0, ones, 1.0, per_item.clone(), probs)
    temperature = best_temperature(counts, probs, compat) if calibrate else 1.0
    if calibrate:
        probs = temperature_scale(probs, temperature)
    vote = majority_vote(items, workers, labels, n, k, probs)
    post, *_ = _stats(items, workers, labels, counts, probs, vote, m)
    top = post == post.amax(dim=1, keepdim=True)
    consensus = torch.where(top.sum(dim=1) == 1, post.argmax(dim=1), vote)
    post, model_weight, weight, item_weight = _stats(items, workers, labels, counts, probs, consensus, m)
    quality = post[torch.arange(n), consensus]
    return CrowdlabResult(consensus, quality, model_weight, weight, temperature, item_weight, post)


def _long_form(labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, int]:
    """``(items, workers, labels, N, M)`` from an ``(N, M)`` matrix whose missing entries are NaN or negative."""
    matrix = torch.as_tensor(np.array(labels, dtype=np.float64) if not isinstance(labels, torch.Tensor) else labels)
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
    probs = torch.as_tensor(np.array(value, dtype=np.float64) if not isinstance(value, torch.Tensor) else value)
    probs = probs.to(torch.float64)
    if probs.ndim != 2 or (k is not None and probs.shape[1] != k):
        expected = "(N, K)" if k is None else f"(N, {k})"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(probs.shape)}")
    if not torch.isfinite(probs).all() or (probs < 0).any():
        raise ValueError(f"{name}: probabilities must be finite and non-negative (pass softmax outputs)")
    return probs


def _per_worker_mean(table: AnnotationTable, values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of one float64 value per annotation over each worker's annotations (those in ``keep``; NaN where a
    worker has none)."""
    weight = torch.ones_like(values) if keep is None else keep.to(torch.float64)
    total = torch.zeros(table.num_workers, dtype=torch.float64).index_add_(0, table.workers, values * weight)
    count = torch.zeros(table.num_workers, dtype=torch.float64).index_add_(0, table.workers, weight)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))


def _agreement(table: AnnotationTable, consensus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(agrees, per item, per worker)``: 1.0 for each annotation equal to its item's consensus, the fraction of
    each item's annotations that agree and the fraction of each worker's."""
    agree = (table.labels == consensus[table.items]).to(torch.float64)
    per_item = torch.zeros(table.num_items, dtype=torch.float64).index_add_(0, table.items, agree)
    return agree, per_item / table.annotations_per_item().to(torch.float64), _per_worker_mean(table, agree)


def _blend(aggregator: Aggregator, model_probas: Any, model_weight: float) -> torch.Tensor:
    post = aggregator.probas_.detach().to("cpu", torch.float64)
    if model_probas is None:
        return post
    if not 0 <= model_weight <= 1:
        raise ValueError(f"model_weight: expected a number in [0, 1], got {model_weight}")
    model = torch.as_tensor(np.asarray(model_probas), dtype=torch.float64)
    if model.shape != post.shape:
        raise ValueError(
            f"model_probas: expected shape {tuple(post.shape)} (items in table_.item_ids order, one column per "
            f"class), got {tuple(model.shape)}"
        )
    if not torch.isfinite(model).all() or (model < 0).any():
        raise ValueError("model_probas: probabilities must be finite and non-negative (pass softmax outputs)")
    model = model / model.sum(dim=1, keepdim=True).clamp_min(1e-300)
    return (1 - model_weight) * post + model_weight * model


def consensus_quality(aggregator: Aggregator, model_probas: Any = None, model_weight: float = 0.5) -> pd.DataFrame:
    """One row per item, least trustworthy consensus first: ``item``, ``consensus``, ``quality``, ``agreement``
    (fraction of the item's annotators who gave the consensus label) and ``annotations``.

    Example:
        >>> from trinity_lightning.crowd import DawidSkene
        >>> frame = {"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c"] * 2, "label": [0, 0, 1, 1, 1, 1]}
        >>> table = consensus_quality(DawidSkene().fit(frame))
        >>> table["item"].tolist(), [round(a, 2) for a in table["agreement"]]
        ([1, 2], [0.67, 1.0])
    """
    aggregator._check_fitted()
    table = aggregator.table_
    blend = _blend(aggregator, model_probas, model_weight)
    consensus = blend.argmax(dim=1)
    _, agreement, _ = _agreement(table, consensus)
    per_item = table.annotations_per_item()
    frame = pd.DataFrame(
        {
            "item": table.item_ids,
            "consensus": table.decode_labels(consensus),
            "quality": blend[torch.arange(table.num_items), consensus].numpy(),
            "agreement": agreement.numpy(),
            "annotations": per_item.numpy().astype(np.int64),
        }
    )
    return frame.sort_values(["quality", "agreement"], kind="stable", ignore_index=True)


def annotator_quality(aggregator: Aggregator, model_probas: Any = None, model_weight: float = 0.5) -> pd.DataFrame:
    """One row per annotator, least reliable first: ``worker``, ``quality`` (mean consensus probability of the labels
    they gave), ``agreement`` (fraction equal to the consensus label) and ``annotations``.

    Example:
        >>> from trinity_lightning.crowd import DawidSkene
        >>> frame = {"task": [1, 1, 1, 2, 2, 2], "worker": ["a", "b", "c"] * 2, "label": [0, 0, 1, 1, 1, 1]}
        >>> annotator_quality(DawidSkene().fit(frame))["worker"].tolist()[0]
        'c'
    """
    aggregator._check_fitted()
    table = aggregator.table_
    blend = _blend(aggregator, model_probas, model_weight)
    consensus = blend.argmax(dim=1)
    _, _, agreement = _agreement(table, consensus)
    quality = _per_worker_mean(table, blend[table.items, table.labels])
    count = table.annotations_per_worker()
    frame = pd.DataFrame(
        {
            "worker": table.worker_ids,
            "quality": quality.numpy(),
            "agreement": agreement.numpy(),
            "annotations": count.numpy().astype(np.int64),
        }
    )
    return frame.sort_values(["quality", "annotations"], ascending=[True, False], kind="stable", ignore_index=True)


# ---------------------------------------------------------------------------------------------- CROWDLAB tables
@dataclass
class LabelQuality:
    """CROWDLAB's tables, what cleanlab's ``get_label_quality_multiannotator`` returns, indexed by your ids.

    Every table is a :class:`pandas.DataFrame`: sort it by any column (``.sort_values("consensus_quality_score")``
    lists the items to review first). ``result["label_quality"]`` also works, as with cleanlab's dict.

    Attributes:
        label_quality: one row per item (index: your item ids, name ``item``, in the annotation table's order):
            ``consensus_label`` (your class values), ``consensus_quality_score`` (CROWDLAB's probability that the
            consensus is right), ``annotator_agreement`` (fraction of the item's annotators who gave it) and
            ``num_annotations``.
        annotator_stats: one row per annotator (index: your annotator ids, name ``worker``), lowest
            ``annotator_quality`` first (cleanlab's order): ``annotator_quality`` (their labels' mean quality
            blended with their agreement with the consensus on items others labelled too, weighted by how much the
            model is trusted; NaN for an annotator who shares no item with another, as cleanlab),
            ``agreement_with_consensus``, ``worst_class`` (the class they give that agrees least with the consensus)
            and ``num_examples_labeled``.
        annotation_quality: one row per annotation, in the annotation table's order: ``item``, ``worker``,
            ``label`` and ``label_quality`` (CROWDLAB's probability of that label; cleanlab's
            ``detailed_label_quality`` in long form, see :meth:`detailed_label_quality`).
        model_weight: the weight of the model (or of its stand-in) against the annotators.
        annotator_weight: each annotator's weight (a Series indexed by annotator id).
        temperature: the temperature the probabilities were scaled by (1.0 unless ``calibrate``).
        probabilities_from: what played the model: ``"pred_probs"``, an aggregator's class name, or
            ``"label_frequencies"``.
    """

    label_quality: pd.DataFrame
    annotator_stats: pd.DataFrame
    annotation_quality: pd.DataFrame
    model_weight: float
    annotator_weight: pd.Series
    temperature: float
    probabilities_from: str

    def detailed_label_quality(self) -> pd.DataFrame:
        """cleanlab's ``detailed_label_quality``: items x ``quality_annotator_<id>`` columns, NaN where an annotator
        gave no label (dense: ``num_items * num_annotators`` cells)."""
        frame = self.annotation_quality.pivot(index="item", columns="worker", values="label_quality")
        frame = frame.reindex(index=self.label_quality.index, columns=self.annotator_weight.index)
        frame.columns = [f"quality_annotator_{w}" for w in frame.columns]
        frame.columns.name = None
        return frame

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the item table to ``path`` and the annotator table beside it (:func:`annotators_path`), each CSV
        atomically (temp file, fsync, rename: a reader never sees half a file). Returns both paths.

        Example:
            >>> import tempfile, pathlib
            >>> out = pathlib.Path(tempfile.mkdtemp()) / "quality.csv"
            >>> answers = {"task": [1, 1, 2, 2], "worker": ["a", "b", "a", "b"], "label": [0, 1, 1, 1]}
            >>> [p.name for p in label_quality(answers, [[0.4, 0.6], [0.2, 0.8]]).save(out)]
            ['quality.csv', 'quality.annotators.csv']
            >>> out.read_text().splitlines()[0]
            'item,consensus_label,consensus_quality_score,annotator_agreement,num_annotations'
        """
        from trinity_lightning.data.atomic import atomic_open

        items, workers = Path(path), annotators_path(path)
        with atomic_open(items) as handle:
            self.label_quality.to_csv(handle)
        with atomic_open(workers) as handle:
            self.annotator_stats.to_csv(handle)
        return items, workers

    def __getitem__(self, key: str) -> Any:
        if key == "detailed_label_quality":
            return self.detailed_label_quality()
        if key in ("label_quality", "annotator_stats", "model_weight", "annotator_weight"):
            return getattr(self, key)
        raise KeyError(
            f"{key!r}: expected one of 'label_quality', 'annotator_stats', 'detailed_label_quality', "
            "'model_weight', 'annotator_weight'"
        )


def annotators_path(path: str | Path) -> Path:
    """Where :meth:`LabelQuality.save` puts the annotator table: ``quality.csv`` -> ``quality.annotators.csv``.

    Example:
        >>> annotators_path("out/labels.csv.quality.csv").as_posix()
        'out/labels.csv.quality.annotators.csv'
    """
    path = Path(path)
    return path.with_name(f"{path.stem}.annotators{path.suffix or '.csv'}")


def _wide_table(labels: Any, num_classes: int | None) -> tuple[AnnotationTable, np.ndarray]:
    """A table from cleanlab's ``(N, M)`` layout (a DataFrame: its index and columns name the items and the
    annotators) and each table item's row in it."""
    rows: pd.Index
    columns: pd.Index
    values: np.ndarray
    if isinstance(labels, pd.DataFrame):
        rows, columns = labels.index, labels.columns
        values = labels.replace({pd.NA: np.nan}).astype(float).to_numpy()
    else:
        values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels, float)
        rows, columns = pd.RangeIndex(len(values)), pd.RangeIndex(values.shape[1] if values.ndim == 2 else 0)
    items, workers, classes, _, _ = _long_form(values)
    if not len(classes):
        raise ValueError("annotations: no labels in the (items, annotators) matrix")
    k = num_classes if num_classes is not None else int(classes.max()) + 1
    frame = pd.DataFrame({"item": rows[items.numpy()], "worker": columns[workers.numpy()], "label": classes.numpy()})
    table = AnnotationTable.read(frame, item="item", classes=list(range(k)), items=list(rows), description="<matrix>")
    return table, rows.get_indexer(table.item_ids)


def _model_probabilities(table: AnnotationTable, pred_probs: Any, rows: np.ndarray | None) -> torch.Tensor:
    """The ``(num_items, K)`` probabilities in table order: a DataFrame is looked up by item id, an array is in
    table order (``rows``: the table's rows of a wide matrix)."""
    if isinstance(pred_probs, pd.DataFrame) and rows is None:
        missing = table.item_ids[pred_probs.index.get_indexer(table.item_ids) < 0]
        if len(missing):
            raise ValueError(f"pred_probs: no row for items {list(missing[:5])} (the DataFrame is indexed by item id)")
        pred_probs = pred_probs.loc[table.item_ids].to_numpy(dtype=np.float64)
    probs = _probs(pred_probs, "pred_probs")
    if rows is not None:
        probs = probs[torch.from_numpy(rows)]
    if probs.shape != (table.num_items, table.num_classes):
        raise ValueError(
            f"pred_probs: expected shape ({table.num_items}, {table.num_classes}) (one row per item in the "
            f"annotation table's item order, table.item_ids, one column per class in {table.classes[:10]}), "
            f"got {tuple(probs.shape)}"
        )
    return probs


def _stand_in(table: AnnotationTable, aggregator: str | Aggregator | None) -> tuple[torch.Tensor, str]:
    """What plays the model without one: an aggregator's posterior, or the label frequencies."""
    if aggregator is None:
        counts = _counts(table.items, table.labels, table.num_items, table.num_classes)
        return counts / counts.sum(dim=1, keepdim=True), "label_frequencies"
    if isinstance(aggregator, str):
        from trinity_lightning.crowd.registry import get_aggregator

        aggregator = get_aggregator(aggregator, _argument="aggregator")
    if not isinstance(aggregator, Aggregator):
        raise TypeError(f"aggregator: expected a name, an Aggregator or None, got {type(aggregator).__name__}")
    aggregator.fit(table)
    return aggregator.probas_.detach().to("cpu", torch.float64), type(aggregator).__name__


def _worst_class(table: AnnotationTable, agree: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Each worker's class (among those they gave) that agrees least with the consensus; ties: the class they gave
    most, then the one whose items have the best mean consensus quality, then the smallest (cleanlab's rules)."""
    k = table.num_classes
    cell = table.workers * k + table.labels

    def per_cell(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(table.num_workers * k, dtype=torch.float64).index_add_(0, cell, values)
        return out.view(table.num_workers, k)

    count = per_cell(torch.ones_like(agree))
    given = count > 0
    accuracy = (per_cell(agree) / count.clamp_min(1)).masked_fill(~given, math.inf)
    candidates = accuracy == accuracy.amin(dim=1, keepdim=True)
    for score in (count, per_cell(quality[table.items]) / count.clamp_min(1)):
        masked = score.masked_fill(~candidates, -math.inf)
        candidates &= masked == masked.amax(dim=1, keepdim=True)
    return candidates.to(torch.int8).argmax(dim=1)


def label_quality(
    annotations: Any,
    pred_probs: Any = None,
    *,
    aggregator: str | Aggregator | None = "dawid_skene",
    calibrate: bool = False,
    compat: bool = False,
    num_classes: int | None = None,
    layout: Literal["long", "wide"] = "long",
    **read_kwargs: Any,
) -> LabelQuality:
    """CROWDLAB's consensus labels, their quality and each annotator's quality, as sortable DataFrames.

    The consensus and the scores are CROWDLAB's (:func:`crowdlab_consensus`): each item's posterior blends the
    model's predicted probabilities (weight: how much better than the most-common-class guess the model agrees
    with the majority vote) with the item's labels, each weighted by its annotator's agreement with the others.

    Without a model (``pred_probs=None``) something else plays the model, and the scores are then a statement
    about the labels alone, estimated in-sample: the posterior of ``aggregator`` (default Dawid-Skene, fitted on
    these annotations; its confusion matrices make a single label from a weak annotator count for less), or with
    ``aggregator=None`` each item's label frequencies (the majority vote's view; a lone label then scores high).
    cleanlab itself needs ``pred_probs``.

    Args:
        annotations: a long table (``item``/``worker``/``label`` columns, anything
            :meth:`AnnotationTable.read <trinity_lightning.crowd.table.AnnotationTable.read>` reads, with
            ``**read_kwargs`` such as ``item="task"``), an :class:`AnnotationTable`, a fitted :class:`Aggregator`
            (its table; without ``pred_probs`` its posterior plays the model), or cleanlab's ``(N, M)`` layout: a
            numpy array or tensor of class ids with NaN (or a negative number) where an annotator gave no label,
            or, with ``layout="wide"``, such a DataFrame (index: item ids, columns: annotator ids).
        pred_probs: the model's ``(num_items, K)`` predicted probabilities (out-of-sample ideally): an array in the
            table's item order (``table.item_ids``; a wide matrix: its row order) with one column per class in
            ``table.classes`` order, or a DataFrame indexed by item id.
        aggregator: without ``pred_probs``: the registered name or instance whose posterior plays the model, or
            ``None`` for the label frequencies.
        calibrate: temperature-scale the probabilities to the labels first (cleanlab's ``calibrate_probs``).
        compat: with ``calibrate``, pick the temperature exactly as cleanlab 2.x (see :func:`best_temperature`).
        num_classes: classes of a wide matrix (default: ``pred_probs``' columns, else the largest label + 1).
        layout: ``"wide"`` reads a DataFrame ``annotations`` in cleanlab's layout (arrays always are).
        **read_kwargs: passed to :meth:`AnnotationTable.read` (``item=``, ``worker=``, ``label=``, ``classes=``).

    Returns:
        a :class:`LabelQuality` (``.label_quality``, ``.annotator_stats``, ``.annotation_quality``, ...).

    Last exact ties of the majority vote go to the smallest class (cleanlab draws at random); an item's consensus is
    then the same on every run. When every item has a single label there is no agreement to learn from: each
    consensus is its label, scored by the model's probability, and every annotator quality is NaN.

    Example:
        >>> answers = {"task": [1, 1, 1, 2, 2, 2, 3, 3, 3], "worker": ["a", "b", "spam"] * 3,
        ...            "label": ["cat", "cat", "dog", "dog", "dog", "cat", "cat", "cat", "dog"]}
        >>> model = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]            # columns: the classes, sorted ("cat", "dog")
        >>> result = label_quality(answers, model)
        >>> result.label_quality["consensus_label"].tolist()
        ['cat', 'dog', 'cat']
        >>> result.annotator_stats.index[0]                          # lowest quality first
        'spam'
        >>> result.label_quality.sort_values("consensus_quality_score").index.tolist()  # review the first first
        [3, 2, 1]
    """
    if layout not in ("long", "wide"):
        raise ValueError(f"layout: expected 'long' or 'wide', got {layout!r}")
    stand_in: tuple[torch.Tensor, str] | None = None
    rows: np.ndarray | None = None
    if isinstance(annotations, Aggregator):
        annotations._check_fitted()
        if annotations.empty_:
            raise ValueError("annotations: the aggregator was fitted on an empty table")
        table = annotations.table_
        stand_in = annotations.probas_.detach().to("cpu", torch.float64), type(annotations).__name__
    elif layout == "wide" or isinstance(annotations, (np.ndarray, torch.Tensor)):
        if read_kwargs:
            raise ValueError(f"{', '.join(read_kwargs)}: not used with cleanlab's (items, annotators) layout")
        if num_classes is None and pred_probs is not None:
            num_classes = int(np.shape(pred_probs)[1])
        table, rows = _wide_table(annotations, num_classes)
    else:
        table = as_table(annotations, **read_kwargs)
    if table.num_classes < 2:
        raise ValueError(f"classes: CROWDLAB needs at least 2 classes, the table has {table.classes}")
    if pred_probs is not None:
        probs, source = _model_probabilities(table, pred_probs, rows), "pred_probs"
    else:
        probs, source = stand_in if stand_in is not None else _stand_in(table, aggregator)
    result = crowdlab_consensus(
        table.items, table.workers, table.labels, probs, table.num_workers, calibrate=calibrate, compat=compat
    )
    post, consensus = result.posterior, result.consensus
    agree, item_agreement, worker_agreement = _agreement(table, consensus)
    per_item = table.annotations_per_item()
    given = post[table.items, table.labels]  # each label's quality
    # the annotator's labels' quality, blended with their agreement with the consensus where others labelled too
    shared = per_item[table.items] != 1
    agreement_shared = _per_worker_mean(table, agree, keep=shared)
    pooled = float(result.annotator_weight.sum()) * float(per_item.to(torch.float64).mean()) / table.num_workers
    w = result.model_weight / (result.model_weight + pooled)
    quality = w * _per_worker_mean(table, given) + (1 - w) * agreement_shared
    worst = _worst_class(table, agree, result.quality)
    items = pd.Index(table.item_ids, name="item")
    workers = pd.Index(table.worker_ids, name="worker")
    label_table = pd.DataFrame(
        {
            "consensus_label": table.decode_labels(consensus),
            "consensus_quality_score": result.quality.numpy(),
            "annotator_agreement": item_agreement.numpy(),
            "num_annotations": per_item.numpy().astype(np.int64),
        },
        index=items,
    )
    annotator_table = pd.DataFrame(
        {
            "annotator_quality": quality.numpy(),
            "agreement_with_consensus": worker_agreement.numpy(),
            "worst_class": table.decode_labels(worst),
            "num_examples_labeled": table.annotations_per_worker().numpy().astype(np.int64),
        },
        index=workers,
    )
    annotation_table = pd.DataFrame(
        {
            "item": table.item_ids[table.items.numpy()],
            "worker": table.worker_ids[table.workers.numpy()],
            "label": table.decode_labels(table.labels),
            "label_quality": given.numpy(),
        }
    )
    return LabelQuality(
        label_quality=label_table,
        annotator_stats=annotator_table.sort_values(["annotator_quality", "agreement_with_consensus"], kind="stable"),
        annotation_quality=annotation_table,
        model_weight=float(result.model_weight),
        annotator_weight=pd.Series(result.annotator_weight.numpy(), index=workers, name="annotator_weight"),
        temperature=float(result.temperature),
        probabilities_from=source,
    )
