"""Per-item consensus quality and per-annotator quality tables in the spirit of CROWDLAB (Goh, Tkachenko and
Mueller, "CROWDLAB: Supervised learning to infer consensus labels and quality scores for data with multiple
annotators", 2022. arXiv:2210.06812), from any fitted aggregator and, optionally, a model's predicted
probabilities.

An item's consensus distribution is the aggregator's posterior, blended with the model's prediction when one is
given (``(1 - model_weight) * posterior + model_weight * model``); its quality is the blended probability of the
consensus label. An annotator's quality is the average, over their labels, of that blended probability of the
label they gave, next to their plain agreement with the consensus.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from trinity_lightning.crowd.base import Aggregator


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
    agree = (table.labels == consensus[table.items]).to(torch.float64)
    per_item = table.annotations_per_item().to(torch.float64)
    agreement = torch.zeros(table.num_items, dtype=torch.float64).index_add_(0, table.items, agree) / per_item
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
    given = blend[table.items, table.labels]
    agree = (table.labels == consensus[table.items]).to(torch.float64)
    count = table.annotations_per_worker().to(torch.float64)
    quality = torch.zeros(table.num_workers, dtype=torch.float64).index_add_(0, table.workers, given) / count
    agreement = torch.zeros(table.num_workers, dtype=torch.float64).index_add_(0, table.workers, agree) / count
    frame = pd.DataFrame(
        {
            "worker": table.worker_ids,
            "quality": quality.numpy(),
            "agreement": agreement.numpy(),
            "annotations": count.numpy().astype(np.int64),
        }
    )
    return frame.sort_values(["quality", "annotations"], ascending=[True, False], kind="stable", ignore_index=True)
