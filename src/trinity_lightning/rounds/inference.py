"""Pool inference: the one way the round engine runs a model over a pool of examples.

:func:`predict_pool` puts the model in eval mode (restored afterwards, also on error), runs under
``torch.inference_mode``, moves every batch with the trainer's ``batch_to_device`` and runs each forward pass
in the precision plugin's ``forward_context`` (autocast under ``16-mixed``/``bf16-mixed``). Under DDP every
rank scores its own shard of the pool (positions ``rank::world``) and the results are gathered, so every rank
ends with the same answer: the full per-example outputs in pool order, or a streaming global top-``k``
(memory bounded by a batch plus ``k`` candidates, never the pool).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "Selection",
    "TopK",
    "barrier",
    "batch_input",
    "batch_size",
    "broadcast",
    "distributed_world",
    "gather",
    "merge_selections",
    "predict_pool",
    "softmax_forward",
    "subset_loader",
]


@dataclass
class Selection:
    """Chosen dataset indices with their scores, best first."""

    indices: list[int]
    scores: list[float]


class TopK:
    """Running top-``k`` of ``(score, index)`` pairs; ties go to the lower index (deterministic).

    Example:
        >>> top = TopK(2)
        >>> top.update(torch.tensor([0.1, 0.9]), torch.tensor([10, 11]))
        >>> top.update(torch.tensor([0.5, 0.9]), torch.tensor([12, 13]))
        >>> top.result().indices
        [11, 13]
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k: expected a positive number of examples to keep, got {k}")
        self.k = k
        self.scores: torch.Tensor | None = None
        self.indices: torch.Tensor | None = None

    def update(self, scores: torch.Tensor, indices: torch.Tensor) -> None:
        scores, indices = scores.detach().float().reshape(-1), indices.reshape(-1).to(scores.device)
        if self.scores is not None and self.indices is not None:
            scores = torch.cat([self.scores.to(scores.device), scores])
            indices = torch.cat([self.indices.to(scores.device), indices])
        by_index = torch.argsort(indices)  # ties by ascending index: sort by index, then stable by score
        scores, indices = scores[by_index], indices[by_index]
        order = torch.sort(scores, descending=True, stable=True).indices[: self.k]
        self.scores, self.indices = scores[order], indices[order]

    def result(self) -> Selection:
        if self.scores is None or self.indices is None:
            return Selection([], [])
        return Selection(self.indices.cpu().tolist(), self.scores.cpu().tolist())


def merge_selections(parts: Iterable[Selection], k: int) -> Selection:
    """Merge per-rank top-k selections into one global top-k (same tie rule as :class:`TopK`).

    Example:
        >>> merge_selections([Selection([1, 3], [0.9, 0.2]), Selection([2], [0.5])], 2).indices
        [1, 2]
    """
    top = TopK(k)
    for part in parts:
        if part.indices:
            top.update(torch.tensor(part.scores), torch.tensor(part.indices))
    return top.result()


def batch_input(batch: Any) -> Any:
    """The model input of a batch: first element of a tuple/list, ``input``/``x`` of a dict, or the batch.

    Example:
        >>> batch_input((torch.ones(2, 3), torch.zeros(2))).shape
        torch.Size([2, 3])
    """
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("input", "inputs", "x", "image", "pixel_values", "features"):
            if key in batch:
                return batch[key]
        raise KeyError(
            f"batch: a dict batch needs an 'input' or 'x' key, or the model must define "
            f"pool_logits(batch); keys are {sorted(batch)}"
        )
    return batch


def batch_size(batch: Any) -> int:
    """Number of examples in a batch (length of its input)."""
    x = batch_input(batch) if not isinstance(batch, dict) else next(iter(batch.values()))
    return len(x)


def softmax_forward(model: nn.Module, batch: Any) -> torch.Tensor:
    """Default ``forward`` of :func:`predict_pool`: ``softmax(model(x))`` in float32, ``(N, C)``."""
    out = model(batch_input(batch))
    logits = out[0] if isinstance(out, (tuple, list)) else out
    return torch.softmax(logits.float(), dim=-1)


# ----------------------------------------------------------------------------------------- collectives
def distributed_world(trainer: Any = None) -> tuple[int, int]:
    """``(rank, world size)`` of an initialized process group (``(0, 1)`` outside one)."""
    if trainer is not None:
        rank, world = int(trainer.global_rank), int(trainer.world_size)
        if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            return rank, world
        return 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather(obj: Any, trainer: Any = None) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` on one process)."""
    _, world = distributed_world(trainer)
    if world == 1:
        return [obj]
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, obj)
    return parts


def broadcast(obj: Any, trainer: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    _, world = distributed_world(trainer)
    if world == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def barrier(trainer: Any = None, name: str = "trinity-round") -> None:
    """Wait for every rank (no-op on one process)."""
    _, world = distributed_world(trainer)
    if world == 1:
        return
    if trainer is not None:
        trainer.strategy.barrier(name)
    else:
        torch.distributed.barrier()


# ---------------------------------------------------------------------------------------------- pools
def subset_loader(loader: Any) -> Callable[[list[int]], Any]:
    """``positions -> loader`` over those positions of ``loader``'s dataset, with its batch size, collate
    function and workers: what :func:`predict_pool` needs to shard a ready DataLoader across ranks.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> build = subset_loader(DataLoader(list(range(10)), batch_size=4))
        >>> [b.tolist() for b in build([1, 3, 5])]
        [[1, 3, 5]]
    """
    from torch.utils.data import DataLoader, Subset

    def build(positions: list[int]) -> Any:
        return DataLoader(
            Subset(loader.dataset, positions),
            batch_size=loader.batch_size,
            collate_fn=loader.collate_fn,
            num_workers=loader.num_workers,
            generator=torch.Generator().manual_seed(0),  # no draw from the global generator
        )

    return build


def _default_to_device(model: nn.Module) -> Callable[[Any], Any]:
    from lightning.fabric.utilities.apply_func import move_data_to_device

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    return lambda batch: move_data_to_device(batch, device)


def predict_pool(
    model: nn.Module,
    indices: Sequence[int],
    loader: Callable[[list[int]], Iterable[Any]] | Iterable[Any],
    forward: Callable[[nn.Module, Any], Any] | None = None,
    *,
    trainer: Any = None,
    top_k: int | None = None,
    shard: bool = True,
    to_device: Callable[[Any], Any] | None = None,
    forward_context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> Any:
    """Run ``model`` over the pool items ``indices``: full outputs in pool order, or a global top-``k``.

    Args:
        model: the network (a LightningModule or any ``nn.Module``); put in eval mode for the call and
            restored to its previous mode afterwards, also when a batch fails.
        indices: dataset indices of the items to run, in the order wanted for the output.
        loader: ``indices -> batches of those items in that order`` (e.g. ``datamodule.pool_dataloader``);
            a ready iterable is accepted when nothing is sharded (one process, or ``shard=False``).
        forward: ``(model, batch) -> (N, ...)`` per-item outputs (probabilities, scores, logits), or a dict of
            such tensors (each assembled in pool order; the dict comes back); default :func:`softmax_forward`.
            With ``top_k`` it must return one score per item, ``(N,)``.
        trainer: a Lightning ``Trainer``: its ``batch_to_device``, its precision plugin's ``forward_context``
            and its ranks are used (under DDP each rank runs positions ``rank::world`` and results are gathered).
        top_k: keep only the ``top_k`` best-scored items (streaming) and return a :class:`Selection`.
        shard: split the pool across ranks (``False``: every rank runs everything).
        to_device: overrides the trainer's device transfer (default: the model's device).
        forward_context: overrides the trainer's precision context.

    Returns:
        ``(len(indices), ...)`` CPU tensor (row ``i`` belongs to ``indices[i]``), or a :class:`Selection`
        (best first, ties by lower index) with ``top_k``. Every rank gets the same result.

    Example:
        >>> net = nn.Linear(3, 2)
        >>> data = torch.randn(10, 3)
        >>> pool_loader = lambda idx: [data[idx[i : i + 4]] for i in range(0, len(idx), 4)]
        >>> predict_pool(net, [1, 4, 7], pool_loader).shape
        torch.Size([3, 2])
        >>> score = lambda model, x: -model(x)[:, 0]
        >>> len(predict_pool(net, range(10), pool_loader, score, top_k=3).indices)
        3
    """
    forward = forward or softmax_forward
    order = [int(i) for i in indices]
    rank, world = distributed_world(trainer) if shard else (0, 1)
    positions = list(range(rank, len(order), world))
    mine = [order[p] for p in positions]
    if callable(loader):
        batches: Iterable[Any] = loader(mine) if mine else []
    elif world > 1:
        raise ValueError("loader: pass a callable (indices -> loader) to shard a pool across ranks")
    else:
        batches = loader
    if to_device is None:
        to_device = trainer.strategy.batch_to_device if trainer is not None else _default_to_device(model)
    if forward_context is None:
        forward_context = trainer.precision_plugin.forward_context if trainer is not None else nullcontext
    index_tensor = torch.as_tensor(mine, dtype=torch.long)
    top = TopK(top_k) if top_k is not None else None
    outputs: list[Any] = []
    seen = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                batch = to_device(batch)
                with forward_context():
                    out = forward(model, batch)
                count = len(next(iter(out.values()))) if isinstance(out, dict) else len(out)
                if seen + count > len(mine):
                    raise ValueError(f"indices: the loader yields more items than the {len(mine)} indices")
                if top is not None:
                    top.update(out, index_tensor[seen : seen + count])
                elif isinstance(out, dict):
                    outputs.append({key: value.detach().float().cpu() for key, value in out.items()})
                else:
                    outputs.append(out.detach().float().cpu())
                seen += count
    finally:
        model.train(was_training)
    if seen != len(mine):
        raise ValueError(f"indices: the loader yielded {seen} items for {len(mine)} indices")
    if top is not None:
        local = top.result()
        return merge_selections(gather(local, trainer), top.k) if world > 1 else local
    if outputs and isinstance(outputs[0], dict):
        return {key: _assemble([o[key] for o in outputs], len(order), world, trainer) for key in outputs[0]}
    return _assemble(outputs, len(order), world, trainer)


def _assemble(outputs: list[Any], total: int, world: int, trainer: Any) -> torch.Tensor:
    """This rank's batches concatenated, then every rank's shard interleaved back into pool order."""
    local_out = torch.cat(outputs) if outputs else None
    if world == 1:
        return local_out if local_out is not None else torch.zeros(0)
    parts = gather(local_out, trainer)
    shaped = next((p for p in parts if p is not None), None)
    if shaped is None:
        return torch.zeros(0)
    full = torch.empty(total, *shaped.shape[1:], dtype=shaped.dtype)
    for r, part in enumerate(parts):
        if part is not None:
            full[r::world] = part
    return full
