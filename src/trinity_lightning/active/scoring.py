"""Pool scoring: stream a pool loader through a model, score each batch, keep a running top-k.

Memory is bounded by the batch size plus ``k`` candidates, never by the pool size. Model outputs are
taken, in order of preference, from:

* ``model.pool_logits(batch)`` -> ``logits`` or ``(logits, mask)`` (a tagger returns its decoded
  token logits and padding mask), else ``model(x)`` with ``x`` the batch's first element;
* for stochastic strategies, ``model.mc_logits(batch, n_samples)`` -> ``(S, N, ...)`` logits (and mask);
  else, when the network reads as ``features -> head`` or as an ``nn.Sequential``, the part before the
  first dropout runs **once** per batch and only the rest is sampled ``n_samples`` times in one batched
  call (this is what makes BALD cheap: the deterministic trunk is the expensive part); else the whole
  network runs on the input replicated ``n_samples`` times in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from trinity_lightning.active.strategies import QueryStrategy
from trinity_lightning.rounds.inference import Selection, TopK, batch_input, batch_size, merge_selections, predict_pool

__all__ = [
    "Selection",
    "TopK",
    "batch_input",
    "mc_logits",
    "merge_selections",
    "model_logits",
    "score_forward",
    "score_pool",
    "select_by_budget",
]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _split(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(out, (tuple, list)):
        return out[0], out[1]
    return out, None


def model_logits(model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Deterministic logits (and padding mask) of a batch."""
    pool_logits = getattr(model, "pool_logits", None)
    if callable(pool_logits):
        return _split(pool_logits(batch))
    return _split(model(batch_input(batch)))


def _network(model: nn.Module) -> nn.Module:
    inner = getattr(model, "model", None)
    return inner if isinstance(inner, nn.Module) else model


def _first_dropout(modules: Sequence[nn.Module]) -> int | None:
    for i, module in enumerate(modules):
        if isinstance(module, _DROPOUT):
            return i
        if any(isinstance(m, _DROPOUT) for m in module.modules()):
            return None  # dropout nested inside: cannot split here
    return None


def find_mc_split(model: nn.Module) -> tuple[Callable[[Any], Any], nn.Module] | None:
    """Split a network into (deterministic trunk, stochastic rest) at its first dropout, if it can.

    Handles an ``nn.Sequential`` and a module with ``features`` and ``head`` children (``head`` an
    ``nn.Sequential``, ``features`` free of dropout) whose forward is ``head(features(x))``.
    """
    net = _network(model)
    if isinstance(net, nn.Sequential):
        cut = _first_dropout(list(net))
        if cut is None:
            return None
        return nn.Sequential(*list(net)[:cut]), nn.Sequential(*list(net)[cut:])
    features, head = getattr(net, "features", None), getattr(net, "head", None)
    if (
        isinstance(features, nn.Module)
        and isinstance(head, nn.Sequential)
        and not any(isinstance(m, _DROPOUT) for m in features.modules())
    ):
        cut = _first_dropout(list(head))
        if cut is None:
            return None
        pre = nn.Sequential(*list(head)[:cut])
        return (lambda x: pre(features(x))), nn.Sequential(*list(head)[cut:])
    return None


class _DropoutOn:
    """Put only the dropout layers of a module in training mode (batch norm stays in eval)."""

    def __init__(self, module: nn.Module, argument: str = "strategy") -> None:
        self.layers = [m for m in module.modules() if isinstance(m, _DROPOUT) or "Dropout" in type(m).__name__]
        if not self.layers:
            raise ValueError(
                f"{argument}: a stochastic strategy (MC dropout) needs dropout layers, but "
                f"{type(module).__name__} has none; add nn.Dropout or pick another strategy"
            )
        self.argument = argument

    def __enter__(self) -> None:
        self.before = [m.training for m in self.layers]
        for m in self.layers:
            m.train()

    def __exit__(self, *exc: object) -> None:
        for m, mode in zip(self.layers, self.before):
            m.train(mode)


def mc_logits(model: nn.Module, batch: Any, n_samples: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n_samples`` MC-dropout logits ``(S, N, ...)`` of a batch (see the module docstring for the paths)."""
    custom = getattr(model, "mc_logits", None)
    if callable(custom):
        return _split(custom(batch, n_samples))
    split = find_mc_split(model)
    with _DropoutOn(model):
        x = batch_input(batch)
        if split is not None:
            trunk, rest = split
            features = trunk(x)
            repeated = features.repeat(n_samples, *([1] * (features.ndim - 1)))
            out = rest(repeated)
        else:
            out = model(x.repeat(n_samples, *([1] * (x.ndim - 1))))
    logits, mask = _split(out)
    return logits.reshape(n_samples, -1, *logits.shape[1:]), mask


def score_forward(strategy: QueryStrategy) -> Callable[[nn.Module, Any], torch.Tensor]:
    """The ``forward`` that :func:`~trinity_lightning.rounds.predict_pool` runs for a query heuristic: one score
    per item (no forward pass at all for model-free heuristics such as ``random``)."""

    def forward(model: nn.Module, batch: Any) -> torch.Tensor:
        if not strategy.needs_model:
            logits, mask = torch.zeros(batch_size(batch), 1), None
        elif strategy.stochastic:
            logits, mask = mc_logits(model, batch, strategy.n_samples)
        else:
            logits, mask = model_logits(model, batch)
        return strategy.score(logits, mask)

    return forward


def score_pool(
    model: nn.Module,
    loader: Iterable[Any],
    strategy: QueryStrategy,
    k: int,
    indices: Sequence[int],
    to_device: Callable[[Any], Any] | None = None,
    forward_context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> Selection:
    """Score every batch of ``loader`` (whose items are ``indices``, in order) and keep the top ``k``.

    A thin wrapper of :func:`~trinity_lightning.rounds.predict_pool` on one process (the callback calls
    ``predict_pool`` itself, with the trainer, to shard the pool across ranks).

    Args:
        model: the network (``eval()`` is set for the call and restored afterwards).
        loader: batches of the pool, in the order of ``indices``.
        strategy: the query heuristic.
        k: how many candidates to keep.
        indices: dataset index of each item of ``loader``.
        to_device: moves a batch to the model's device (default: the model's device).
        forward_context: a context for each forward pass (e.g. a Lightning precision plugin's).

    Example:
        >>> from trinity_lightning.active.strategies import Entropy
        >>> net = nn.Linear(3, 2)
        >>> loader = [torch.randn(4, 3), torch.randn(4, 3)]
        >>> len(score_pool(net, loader, Entropy(), k=3, indices=range(100, 108)).indices)
        3
    """
    result = predict_pool(
        model,
        indices,
        loader,
        score_forward(strategy),
        top_k=k,
        shard=False,
        to_device=to_device,
        forward_context=forward_context,
    )
    assert isinstance(result, Selection)
    return result


def select_by_budget(selection: Selection, costs: Sequence[int], budget: int) -> Selection:
    """Take candidates best-first until their summed cost reaches ``budget``.

    The last one taken may overshoot the budget by less than its own cost, so each round adds at least
    ``budget`` (no sliver rounds of one short sentence at the end of a campaign).

    Example:
        >>> select_by_budget(Selection([5, 6, 7], [0.9, 0.8, 0.7]), costs=[4, 3, 1], budget=6).indices
        [5, 6]
    """
    chosen: list[int] = []
    scores: list[float] = []
    spent = 0
    for index, score, cost in zip(selection.indices, selection.scores, costs):
        chosen.append(index)
        scores.append(score)
        spent += int(cost)
        if spent >= budget:
            break
    return Selection(chosen, scores)
