"""Pool scoring: stream a pool loader through a model, score each batch, keep a running top-k.

Memory is bounded by the batch size plus ``k`` candidates, never by the pool size. Model outputs are
taken, in order of preference, from:

* ``model.pool_logits(batch)`` -> ``logits`` or ``(logits, mask)`` (a tagger returns its decoded
  token logits and padding mask), else ``model(x)`` with ``x`` the batch's first element;
* for stochastic strategies, ``model.mc_logits(batch, n_samples)`` -> ``(S, N, ...)`` logits (and mask);
  else, when the network reads as ``features -> head`` or as an ``nn.Sequential``, the part before the
  first dropout runs **once** per batch and only the rest is sampled ``n_samples`` times (this is what makes
  BALD cheap: the deterministic trunk is the expensive part); else the whole network is sampled (BALD for any
  architecture, e.g. dropout on the input). Either way the samples run in inference mode, in calls of about
  :data:`ROWS_PER_CALL` rows (the batch replicated) with conv weights in channels-last format on CPU
  (:func:`sampled_passes`); ``torch.autocast(dtype=torch.bfloat16)`` (the trainer's ``bf16-mixed``) also
  applies: ``benchmarks/active_vs_baal.py`` reports its speed and its top-k agreement with float32;
* for heuristics that need embeddings (``"embeddings"`` in ``requires``): ``model.pool_embeddings(batch)`` ->
  ``(N, D)``, else the *input* of the layer named by the heuristic's or the module's ``embedding_layer``
  attribute (a ``get_submodule`` path, e.g. ``"model.head.2"`` for the last linear layer of a
  :class:`~trinity_lightning.models.Classifier` around a :class:`~trinity_lightning.models.SmallCNN`), captured
  during the logits pass (one forward for both); else a ``ValueError`` naming the hook to add.

The engine computes only what a heuristic asks for (:meth:`QueryStrategy.required_outputs`). Per-example
heuristics stream (:func:`score_forward` + a running top-k); batch-aware ones
(:class:`~trinity_lightning.active.batch.PoolQueryStrategy`) get the outputs of every candidate, gathered in pool
order under DDP, and the labelled set's when they require ``"labelled"`` (:func:`select_pool`).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import nn

from trinity_lightning.active.strategies import EMBEDDINGS, LABELLED, LOGITS, MC_LOGITS, QueryStrategy
from trinity_lightning.rounds.inference import Selection, TopK, batch_input, batch_size, merge_selections, predict_pool

__all__ = [
    "Selection",
    "TopK",
    "batch_input",
    "check_outputs",
    "embeddings_and_logits",
    "is_pool_strategy",
    "mc_logits",
    "merge_selections",
    "model_logits",
    "outputs_forward",
    "pool_outputs",
    "sampled_passes",
    "score_forward",
    "score_pool",
    "select_by_budget",
    "select_pool",
]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def is_dropout(module: nn.Module) -> bool:
    """A dropout layer: a torch dropout class, or a leaf module whose class name says Dropout (baal's, HF's).

    A container is never one, whatever its name: switching a model class called ``InputDropoutCNN`` to training
    mode for MC dropout would also put its batch norm in training mode (batch statistics, running stats changed).

    Example:
        >>> is_dropout(nn.Dropout(0.1)), is_dropout(nn.Sequential(nn.Dropout(0.1)))
        (True, False)
    """
    if isinstance(module, _DROPOUT):
        return True
    return "Dropout" in type(module).__name__ and next(module.children(), None) is None


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
        if not cut:  # no dropout, or dropout on the input: nothing deterministic to run once
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
        self.layers = [m for m in module.modules() if is_dropout(m)]
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


class _ConsistentMasks:
    """Consistent MC dropout (Kirsch et al. 2019): sample ``s`` of *every* example uses the same dropout masks,
    drawn from ``seed``, so the ``S`` samples are ``S`` networks. Joint heuristics need it: BatchBALD's joint
    entropy and EPIG's pool-target dependence are computed across examples sample by sample; with masks drawn
    per example, two copies of an image look independent and BatchBALD picks both. Applies to ``nn.Dropout``
    and the channel dropouts on an input whose first dimension is ``S * N`` (samples first, as the replicated
    batch is laid out); any other input keeps the layer's own dropout."""

    def __init__(self, layers: Sequence[nn.Module], n_samples: int, seed: int) -> None:
        self.layers = [m for m in layers if type(m) in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)]
        self.n_samples, self.seed = n_samples, seed
        self.start, self.count = 0, n_samples  # the samples the current call carries (see ``select``)

    def select(self, start: int, count: int) -> None:
        """The next forward call carries samples ``start .. start + count - 1`` (``sampled_passes`` splits the
        ``S`` samples over calls of about ``ROWS_PER_CALL`` rows): those samples' masks, so a sample sees the same
        network whichever call it lands in."""
        self.start, self.count = start, count

    def _forward(self, layer: nn.Module, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        original, p, s = layer.forward, float(layer.p), self.n_samples  # type: ignore[arg-type]
        channel = not isinstance(layer, nn.Dropout)

        def forward(x: torch.Tensor) -> torch.Tensor:
            start, count = self.start, self.count
            if not layer.training or p == 0.0 or x.shape[0] % count or (channel and x.ndim < 3):
                return original(x)
            shape = (s, 1, *(x.shape[1:2] + (1,) * (x.ndim - 2) if channel else x.shape[1:]))
            g = torch.Generator().manual_seed(self.seed * 1009 + index)
            keep = (torch.rand(shape, generator=g)[start : start + count] >= p).to(x.device, x.dtype) / (1.0 - p)
            return (x.reshape(count, -1, *x.shape[1:]) * keep).reshape(x.shape)

        return forward

    def __enter__(self) -> None:
        for i, layer in enumerate(self.layers):
            layer.forward = self._forward(layer, i)  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        for layer in self.layers:
            del layer.forward


def mc_logits(
    model: nn.Module, batch: Any, n_samples: int, seed: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n_samples`` MC-dropout logits ``(S, N, ...)`` of a batch (see the module docstring for the paths).

    The dropout masks are *consistent*: sample ``s`` of every example in the batch sees the same network, and
    every call with the same ``seed`` draws the same ``S`` networks (one pool pass passes one seed to all its
    batches; ``None``: a fresh seed from torch's global generator). A module's own ``mc_logits`` is used as is
    (given ``seed=`` when it takes one, as the Hugging Face adapters do).

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2))
        >>> x = torch.randn(1, 3).repeat(4, 1)                  # one input four times
        >>> out = mc_logits(net, x, n_samples=6, seed=0)[0]      # (6, 4, 2)
        >>> torch.allclose(out, out[:, :1].expand_as(out))        # each sample: the same network for all four
        True
        >>> torch.allclose(mc_logits(net, x[:2], n_samples=6, seed=0)[0], out[:, :2])  # and across batches
        True
    """
    custom = getattr(model, "mc_logits", None)
    if callable(custom):
        if seed is not None and "seed" in inspect.signature(custom).parameters:  # it keeps its masks consistent too
            return _split(custom(batch, n_samples, seed=seed))
        return _split(custom(batch, n_samples))
    split = find_mc_split(model)
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
    dropout = _DropoutOn(model)
    masks = _ConsistentMasks(dropout.layers, n_samples, seed)
    with dropout, masks:
        x = batch_input(batch)
        if split is None:
            return sampled_passes(model, x, n_samples, on_call=masks.select)
        trunk, rest = split
        return sampled_passes(rest, trunk(x), n_samples, on_call=masks.select)


ROWS_PER_CALL = 256
"""Rows (items x samples) per forward call when the whole network is sampled (no trunk to share): as many samples
of a batch go into one call as make about this many rows, at least one. Bigger calls only add memory traffic:
measured on the input-dropout SmallCNN (``benchmarks/active_vs_baal.py``, 1 CPU thread), 2560 rows in one call took
1.7-2.9x the CPU time of ten calls of 256 (its activations, 100 KB a row, no longer fit the caches)."""


_NO_CHANNELS_LAST: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # models whose forward failed in channels-last


def _channels_last_parameters(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """Channels-last copies of the 4-D (conv) weights, for images on CPU; ``None`` when there are none (or the
    model's forward cannot take that layout, e.g. a ``.view`` after a convolution)."""
    if x.ndim != 4 or x.device.type != "cpu" or model in _NO_CHANNELS_LAST:
        return None
    params = {
        name: p.contiguous(memory_format=torch.channels_last) for name, p in model.named_parameters() if p.ndim == 4
    }
    return params or None


def sampled_passes(
    model: nn.Module, x: torch.Tensor, n_samples: int, on_call: Callable[[int, int], None] | None = None
) -> tuple[torch.Tensor, Any]:
    """``n_samples`` stochastic passes of ``model`` (its dropout already on) over ``x``: logits ``(S, N, ...)``
    and the padding mask of the first pass, if the model returns one.

    The batch is replicated into calls of about :data:`ROWS_PER_CALL` rows; images on CPU go through the conv
    weights and the input in channels-last memory format (oneDNN's fast layout; with the row limit, measured 1.8x
    less CPU time than one NCHW call on the input-dropout SmallCNN). The model is not modified: the channels-last
    weights enter through :func:`torch.func.functional_call`; a forward that cannot take that layout (a
    ``.view`` after a convolution) is rerun in the model's own layout, and that model is not tried again.
    With one sample per call (batches of
    ``ROWS_PER_CALL`` items or more) this is exactly ``n_samples`` separate forward passes: the same random
    masks as a loop over the samples. ``on_call(start, count)`` is told which samples each call carries before
    it runs (:func:`mc_logits` uses it to keep every sample's dropout masks the same in whichever call it lands).

    Example:
        >>> net = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 2)).train()
        >>> logits, mask = sampled_passes(net, torch.randn(4, 3), 5)
        >>> logits.shape, mask
        (torch.Size([5, 4, 2]), None)
    """
    n = len(x)
    per_call = max(1, -(-ROWS_PER_CALL // max(n, 1)))
    params = _channels_last_parameters(model, x)
    pieces: list[torch.Tensor] = []
    mask: Any = None
    for start in range(0, n_samples, per_call):
        count = min(per_call, n_samples - start)
        if on_call is not None:
            on_call(start, count)
        inputs = x if count == 1 else x.repeat(count, *([1] * (x.ndim - 1)))
        out = None
        if params is not None:
            try:
                cl_inputs = inputs.contiguous(memory_format=torch.channels_last)
                out = torch.func.functional_call(model, params, (cl_inputs,), strict=False)
            except RuntimeError:  # e.g. "view size is not compatible with input tensor's size and stride"
                _NO_CHANNELS_LAST.add(model)  # not tried again for this model; its own layout from here on
                params = None
        if out is None:
            out = model(inputs)
        logits, piece_mask = _split(out)
        pieces.append(logits)
        if mask is None and piece_mask is not None:
            mask = piece_mask[:n]
    logits = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    return logits.reshape(n_samples, n, *logits.shape[1:]).contiguous(), mask


def is_pool_strategy(strategy: QueryStrategy) -> bool:
    """Whether ``strategy`` chooses the batch jointly (has ``select(pool, k, labelled)``)."""
    return callable(getattr(strategy, "select", None))


def _embedding_layer(model: nn.Module, strategy: QueryStrategy | None) -> str | None:
    layer = getattr(strategy, "embedding_layer", None) or getattr(model, "embedding_layer", None)
    return layer if isinstance(layer, str) else None


def check_outputs(model: nn.Module, strategy: QueryStrategy, argument: str = "strategy") -> None:
    """Refuse early (with the hook to add) a heuristic whose outputs ``model`` cannot give.

    Example:
        >>> from trinity_lightning.active.batch import Coreset
        >>> check_outputs(nn.Linear(3, 2), Coreset())
        Traceback (most recent call last):
        ...
        ValueError: strategy: Coreset needs embeddings, but Linear has no pool_embeddings(batch) method ...
    """
    required = strategy.required_outputs()
    name = type(strategy).__name__
    if EMBEDDINGS in required and not callable(getattr(model, "pool_embeddings", None)):
        layer = _embedding_layer(model, strategy)
        if layer is None:
            raise ValueError(
                f"{argument}: {name} needs embeddings, but {type(model).__name__} has no pool_embeddings(batch) "
                "method and no embedding_layer; add `def pool_embeddings(self, batch): return <(N, D) features of "
                'batch>` to the module, or set `embedding_layer = "<name of the layer whose input is the '
                'embedding>"` (e.g. the last nn.Linear)'
            )
        try:
            model.get_submodule(layer)
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n][:20]
            raise ValueError(
                f"embedding_layer: {type(model).__name__} has no layer {layer!r}; its layers include {names}"
            ) from None
    if (
        MC_LOGITS in required
        and not callable(getattr(model, "mc_logits", None))
        and find_mc_split(model) is None
        and not any(is_dropout(m) for m in model.modules())
    ):
        raise ValueError(
            f"{argument}: {name} samples MC dropout, but {type(model).__name__} has no dropout layer and no "
            "mc_logits(batch, n_samples) method (an ensemble has one); add nn.Dropout or pick another heuristic"
        )


def embeddings_and_logits(
    model: nn.Module, batch: Any, strategy: QueryStrategy | None = None, need_logits: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """``(embeddings (N, D), logits or None, mask or None)`` of a batch (see the module docstring for the paths)."""
    hook = getattr(model, "pool_embeddings", None)
    if callable(hook):
        emb = hook(batch)
        logits, mask = model_logits(model, batch) if need_logits else (None, None)
        return emb.float().flatten(1), logits, mask
    if strategy is not None:
        check_outputs(model, strategy)
    layer = _embedding_layer(model, strategy)
    if layer is None:
        raise ValueError(
            f"strategy: embeddings asked of {type(model).__name__}, which has no pool_embeddings(batch) method and "
            "no embedding_layer attribute"
        )
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(layer).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        logits, mask = model_logits(model, batch)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"embedding_layer: the layer {layer!r} did not run in {type(model).__name__}'s forward")
    return captured[-1].float().flatten(1), logits, mask


def pool_outputs(
    model: nn.Module, batch: Any, strategy: QueryStrategy, mc_seed: int | None = None
) -> dict[str, torch.Tensor]:
    """The outputs ``strategy`` requires for one batch, in the heuristics' shapes (``mc_logits`` ``(S, N, ...)``;
    ``"mask"`` added for token outputs). Only what is required is computed. ``mc_seed``: the dropout masks'
    seed (:func:`mc_logits`), the same for every batch of one pool pass."""
    required = strategy.required_outputs()
    out: dict[str, torch.Tensor] = {}
    mask: torch.Tensor | None = None
    if EMBEDDINGS in required:
        emb, logits, mask = embeddings_and_logits(model, batch, strategy, need_logits=LOGITS in required)
        out[EMBEDDINGS] = emb
        if logits is not None:
            out[LOGITS] = logits
    elif LOGITS in required:
        out[LOGITS], mask = model_logits(model, batch)
    if MC_LOGITS in required:
        out[MC_LOGITS], mc_mask = mc_logits(model, batch, strategy.n_samples, mc_seed)
        mask = mask if mask is not None else mc_mask
    if mask is not None:
        out["mask"] = mask
    return out


def score_forward(strategy: QueryStrategy, mc_seed: int | None = None) -> Callable[[nn.Module, Any], torch.Tensor]:
    """The ``forward`` that :func:`~trinity_lightning.rounds.predict_pool` runs for a per-example query heuristic:
    one score per item (no forward pass at all for model-free heuristics such as ``random``)."""

    def forward(model: nn.Module, batch: Any) -> torch.Tensor:
        if not strategy.required_outputs():
            return strategy.score(torch.zeros(batch_size(batch), 1), None)
        return strategy.score_outputs(pool_outputs(model, batch, strategy, mc_seed))

    return forward


def outputs_forward(
    strategy: QueryStrategy, labelled: bool = False, mc_seed: int | None = None
) -> Callable[[nn.Module, Any], Any]:
    """The ``forward`` collecting a batch-aware heuristic's outputs, one row per item (``mc_logits`` as
    ``(N, S, C)``; :func:`select_pool` moves the samples back in front). ``labelled``: only the outputs the
    labelled set needs (the embeddings)."""

    def forward(model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        out = pool_outputs(model, batch, strategy, mc_seed)
        if labelled:
            out = {key: value for key, value in out.items() if key == EMBEDDINGS}
        if "mask" in out:
            raise ValueError(
                f"strategy: {type(strategy).__name__} chooses whole batches and supports classification outputs "
                "(N, C) only, not token outputs with a padding mask"
            )
        if MC_LOGITS in out:
            out[MC_LOGITS] = out[MC_LOGITS].movedim(0, 1)
        return out

    return forward


def _restore(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if MC_LOGITS in outputs:
        outputs = dict(outputs)
        outputs[MC_LOGITS] = outputs[MC_LOGITS].movedim(1, 0)
    return outputs


def select_pool(
    model: nn.Module,
    indices: Sequence[int],
    loader: Callable[[list[int]], Iterable[Any]] | Iterable[Any],
    strategy: QueryStrategy,
    k: int,
    *,
    labelled_indices: Sequence[int] | None = None,
    labelled_loader: Callable[[list[int]], Iterable[Any]] | Iterable[Any] | None = None,
    trainer: Any = None,
    shard: bool = True,
    to_device: Callable[[Any], Any] | None = None,
    forward_context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> Selection:
    """Choose ``k`` of the pool items ``indices`` with any heuristic: the streaming top-``k`` of a per-example
    heuristic, or one :meth:`~trinity_lightning.active.batch.PoolQueryStrategy.select` call on the outputs of
    every candidate (and of the labelled set when it requires ``"labelled"``).

    Args:
        model: the network (eval mode and inference mode for the call).
        indices: the candidates (dataset indices) in the loader's order.
        loader: ``indices -> batches`` (e.g. ``datamodule.pool_dataloader``) or a ready iterable (one process).
        strategy: the heuristic.
        k: the query size; larger than the number of candidates is an error.
        labelled_indices: the labelled set (for heuristics that require ``"labelled"``).
        labelled_loader: batches of the labelled set (default: ``loader`` when it is callable).
        trainer, shard, to_device, forward_context: as in :func:`~trinity_lightning.rounds.predict_pool`.

    Returns:
        The chosen indices, best (first chosen) first; a batch-aware heuristic's scores are its rank
        (``k, k - 1, ...``).

    Example:
        >>> from trinity_lightning.active.batch import BatchBALD
        >>> net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 4))
        >>> data = torch.randn(30, 3)
        >>> pool_loader = lambda idx: [data[idx[i : i + 8]] for i in range(0, len(idx), 8)]
        >>> len(select_pool(net, range(30), pool_loader, BatchBALD(n_samples=4), k=5).indices)
        5
    """
    order = [int(i) for i in indices]
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"query_size: expected a positive number of examples, got {k!r}")
    if k > len(order):
        raise ValueError(f"query_size: {k} examples asked but the pool holds only {len(order)}")
    check_outputs(model, strategy)
    common = {"trainer": trainer, "shard": shard, "to_device": to_device, "forward_context": forward_context}
    seed = _mc_seed(strategy)  # one set of dropout masks for the whole pool (consistent MC dropout)
    if not is_pool_strategy(strategy):
        result = predict_pool(model, order, loader, score_forward(strategy, seed), top_k=k, **common)
        assert isinstance(result, Selection)
        return result
    pool = _restore(predict_pool(model, order, loader, outputs_forward(strategy, mc_seed=seed), **common))
    labelled: dict[str, torch.Tensor] | None = None
    if LABELLED in strategy.required_outputs() and labelled_indices:
        source = labelled_loader if labelled_loader is not None else loader
        if not callable(source):
            raise ValueError("labelled_loader: pass the labelled set's batches (or a callable loader)")
        labelled = predict_pool(model, list(labelled_indices), source, outputs_forward(strategy, True, seed), **common)
    positions = strategy.select(pool, k, labelled)  # type: ignore[attr-defined]
    if len(set(positions)) != len(positions):
        raise RuntimeError(f"{type(strategy).__name__}.select returned a position twice: {positions}")
    return Selection([order[p] for p in positions], [float(k - r) for r in range(len(positions))])


def _mc_seed(strategy: QueryStrategy) -> int:
    """The dropout masks' seed of one pool pass: the round's seed of a heuristic that keeps one (``begin``; the
    same on every rank), else one draw from torch's global generator."""
    generator = getattr(strategy, "_generator", None)
    if isinstance(generator, torch.Generator):
        return int(generator.initial_seed() % (2**31 - 1))
    return int(torch.randint(0, 2**31 - 1, (1,)))


def score_pool(
    model: nn.Module,
    loader: Iterable[Any],
    strategy: QueryStrategy,
    k: int,
    indices: Sequence[int],
    to_device: Callable[[Any], Any] | None = None,
    forward_context: Callable[[], AbstractContextManager[Any]] | None = None,
    labelled_indices: Sequence[int] | None = None,
    labelled_loader: Iterable[Any] | None = None,
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
        labelled_indices, labelled_loader: the labelled set, for batch-aware heuristics that require it
            (:func:`select_pool`).

    Example:
        >>> from trinity_lightning.active.strategies import Entropy
        >>> net = nn.Linear(3, 2)
        >>> loader = [torch.randn(4, 3), torch.randn(4, 3)]
        >>> len(score_pool(net, loader, Entropy(), k=3, indices=range(100, 108)).indices)
        3
    """
    return select_pool(
        model,
        indices,
        loader,
        strategy,
        min(k, len(indices)),
        labelled_indices=labelled_indices,
        labelled_loader=labelled_loader,
        shard=False,
        to_device=to_device,
        forward_context=forward_context,
    )


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
