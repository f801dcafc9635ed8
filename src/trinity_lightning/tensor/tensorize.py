"""``tensorize`` / ``detensorize`` a whole model, its report, and checkpoint structure helpers."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from trinity_lightning.tensor._backend import pytorch_backend
from trinity_lightning.tensor.attention import (
    PACKED,
    PROJECTIONS,
    TensorizedMultiheadAttention,
)
from trinity_lightning.tensor.heads import TensorRegressionLayer
from trinity_lightning.tensor.layers import (
    LINEAR_DEFAULT_IMPLEMENTATION,
    TENSORIZED_LAYERS,
    TensorizedConv,
    TensorizedLinear,
    build_from_spec,
)
from trinity_lightning.tensor.ranks import Rank
from trinity_lightning.tensor.selection import check_arguments, plan_tensorize

SPEC_KEY = "trinity_tensorized"
"""Checkpoint key holding ``{layer name: spec}`` (written by the ``Tensorize`` callback)."""


@dataclass
class LayerReport:
    """One tensorized layer: what it was, what it became, and how well the factorization fits."""

    name: str
    layer_type: str
    shape: tuple[int, ...]
    factorization: str
    rank: Any
    params_before: int
    params_after: int
    reconstruction_error: float
    seconds: float

    @property
    def compression(self) -> float:
        return self.params_before / max(1, self.params_after)


@dataclass
class TensorizeReport:
    """What :func:`tensorize` did: one :class:`LayerReport` per layer plus the whole-model parameter counts.

    ``print(report)`` renders a rich table; :meth:`table` returns it; :meth:`to_dict` gives plain types.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> report = tensorize(model, "tucker", rank=0.5)
        >>> report.model_params_before > report.model_params_after
        True
    """

    layers: list[LayerReport] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    model_params_before: int = 0
    model_params_after: int = 0
    effective_ranks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Filled by ``Tensorize(rank_regularization=...)`` after ``fit``: per layer, the rank components still on."""

    @property
    def params_before(self) -> int:
        """Parameters of the tensorized layers before (weights and biases)."""
        return sum(r.params_before for r in self.layers)

    @property
    def params_after(self) -> int:
        """Parameters of the tensorized layers after."""
        return sum(r.params_after for r in self.layers)

    def table(self) -> Any:
        """A ``rich.table.Table`` with one row per layer and a total row."""
        from rich.table import Table

        caption = None
        if self.skipped:
            left = ", ".join(f"{name} ({reason})" for name, reason in self.skipped.items())
            caption = f"left dense: {left}"
        table = Table(title="tensorize", show_footer=False, caption=caption, caption_justify="left")
        for col in (
            "layer",
            "type",
            "shape",
            "factorization",
            "rank",
            "params before",
            "params after",
            "x",
            "rel. error",
        ):
            table.add_column(
                col, justify="right" if col in ("params before", "params after", "x", "rel. error") else "left"
            )
        for r in self.layers:
            table.add_row(
                r.name,
                r.layer_type,
                "x".join(map(str, r.shape)),
                r.factorization,
                str(r.rank),
                f"{r.params_before:,}",
                f"{r.params_after:,}",
                f"{r.compression:.1f}",
                f"{r.reconstruction_error:.3f}",
            )
        table.add_row(
            "total (layers)",
            "",
            "",
            "",
            "",
            f"{self.params_before:,}",
            f"{self.params_after:,}",
            f"{self.params_before / max(1, self.params_after):.1f}",
            "",
            style="bold",
        )
        table.add_row(
            "total (model)",
            "",
            "",
            "",
            "",
            f"{self.model_params_before:,}",
            f"{self.model_params_after:,}",
            f"{self.model_params_before / max(1, self.model_params_after):.1f}",
            "",
            style="bold",
        )
        return table

    def __str__(self) -> str:
        from rich.console import Console

        buffer = io.StringIO()
        Console(file=buffer, width=140, force_terminal=False, color_system=None).print(self.table())
        return buffer.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """Plain-types form (for logs and JSON)."""
        return {
            "layers": [asdict(r) for r in self.layers],
            "skipped": dict(self.skipped),
            "model_params_before": self.model_params_before,
            "model_params_after": self.model_params_after,
            "effective_ranks": {name: list(ranks) for name, ranks in self.effective_ranks.items()},
        }


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _progress_enabled(progress: bool) -> bool:
    from lightning_utilities.core.rank_zero import rank_zero_only

    return progress and getattr(rank_zero_only, "rank", 0) == 0


class _LayerProgress:
    """Lines on stderr (rank 0): each layer when its decomposition starts and when it is done, then the total time.

    A line per layer rather than a live bar: the decompositions are long (CP on a ResNet conv takes minutes) and
    a log file or a notebook shows each line as it comes; rich styles it on a terminal.
    """

    def __init__(self, enabled: bool, factorization: str, total: int) -> None:
        self.factorization, self.total = factorization, total
        self.console: Any = None
        if enabled and total:
            from rich.console import Console

            self.console = Console(stderr=True, highlight=False)
        self.start = time.perf_counter()

    def layer(self, index: int, name: str, layer_type: str, shape: Sequence[int], rank: Any) -> None:
        if self.console is not None:
            self.console.print(
                f"tensorize {self.factorization}: layer {index}/{self.total} {name!r} {layer_type} "
                f"{'x'.join(map(str, shape))} rank {rank} ...",
                markup=False,
            )

    def finished(self, index: int, name: str, seconds: float, error: float) -> None:
        if self.console is not None:
            self.console.print(
                f"tensorize {self.factorization}: layer {index}/{self.total} {name!r} done in {seconds:.1f} s "
                f"(rel. error {error:.3f})",
                markup=False,
            )

    def done(self) -> None:
        if self.console is not None:
            seconds = time.perf_counter() - self.start
            self.console.print(f"tensorize {self.factorization}: done: {self.total} layers in {seconds:.1f} s")


def tensorize(
    model: nn.Module,
    factorization: str = "tucker",
    rank: Rank = 0.25,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    implementation: str = "auto",
    min_params: int = 0,
    linear_order: int = 3,
    decomposition_kwargs: Mapping[str, Any] | None = None,
    skip_unsupported: bool = False,
    progress: bool = True,
) -> TensorizeReport:
    """Replace ``nn.Linear`` / ``nn.Conv{1,2,3}d`` layers in place by factorized layers of the trained weights.

    Each layer is decomposed (CP, Tucker or tensor-train) so the network computes nearly the same function
    before any fine-tuning (exactly at ``rank="full"``). The projections of ``nn.MultiheadAttention`` (and so of
    ``nn.TransformerEncoderLayer`` and ViTs) are factorized too: the attention becomes a
    :class:`~trinity_lightning.tensor.attention.TensorizedMultiheadAttention`. Every argument and every selected
    layer's rank is checked before any layer changes.

    Args:
        model: the model to change in place (any ``nn.Module``, a LightningModule too).
        factorization: ``"cp"``, ``"tucker"`` (Tucker-2 on conv channels, spatial modes kept) or ``"tt"``.
        rank: per layer, a float in (0, 1] (fraction of that layer's dense weights), ``"full"``, or explicit
            ranks (see :func:`~trinity_lightning.tensor.ranks.resolve_rank`).
        include: layer names (glob patterns such as ``"features.*"``, or a prefix) or module types to tensorize;
            default all. Attention projections are named ``<attention>.in_proj`` / ``<attention>.out_proj``.
        exclude: names/patterns/types to leave dense (takes precedence over ``include``).
        implementation: ``"auto"`` (convolutions ``"factorized"``, linear layers ``"reconstructed"``: the fastest
            on CPU, see :data:`~trinity_lightning.tensor.layers.LINEAR_DEFAULT_IMPLEMENTATION`), ``"factorized"``
            or ``"reconstructed"`` for all layers.
        min_params: leave layers with fewer weight parameters dense (listed in ``report.skipped``).
        linear_order: how many factors each of a linear layer's in/out sizes is split into.
        decomposition_kwargs: passed on to TensorLy's decomposition.
        skip_unsupported: leave layers that cannot be factorized (grouped/depthwise convolutions, embeddings, ...)
            dense and list them in ``report.skipped``, instead of raising.
        progress: print on stderr when each layer starts and is done (time, error), and the total (global rank 0 only).

    Returns:
        A :class:`TensorizeReport` (``print(report)`` shows a table).

    Raises:
        UnsupportedLayerError: selected layers with a weight matrix/kernel that cannot be factorized (e.g. an
            ``nn.Embedding`` or a depthwise conv); one message names them all with exclude patterns for them.
        ValueError: a bad argument (named), or a rank larger than a layer's full rank (the layer named).

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> net = SmallCNN(1, 10, channels=(8, 16), image_size=8)
        >>> report = tensorize(net, "tucker", rank=0.5, exclude=["head.*"])
        >>> [r.name for r in report.layers]
        ['features.0', 'features.4']
        >>> type(net.features[4]).__name__
        'TensorizedConv'
    """
    args = check_arguments(
        factorization, rank, include, exclude, implementation, min_params, skip_unsupported, progress, linear_order
    )
    fact = args["factorization"]
    if decomposition_kwargs is not None and not isinstance(decomposition_kwargs, Mapping):
        raise ValueError(f"decomposition_kwargs: expected a mapping, got {decomposition_kwargs!r}")
    conv_impl = "factorized" if implementation == "auto" else implementation
    linear_impl = LINEAR_DEFAULT_IMPLEMENTATION if implementation == "auto" else implementation
    report = TensorizeReport(model_params_before=_n_params(model))
    plan, report.skipped = plan_tensorize(
        model, fact, args["rank"], args["include"], args["exclude"], min_params, skip_unsupported, linear_order
    )
    attention: dict[str, dict[str, TensorizedLinear]] = {}
    steps = _LayerProgress(_progress_enabled(progress), fact, len(plan))
    for index, (name, module, resolved) in enumerate(plan, start=1):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        in_attention = isinstance(parent, nn.MultiheadAttention) and child in PROJECTIONS
        layer_type = f"MultiheadAttention.{child}" if in_attention else type(module).__name__
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
        steps.layer(index, name, layer_type, tuple(weight.shape), resolved)
        start = time.perf_counter()
        kwargs = dict(decomposition_kwargs or {})
        if isinstance(module, nn.Linear):
            new: nn.Module = TensorizedLinear.from_dense(
                module, fact, resolved, linear_impl, name=name, order=linear_order, decomposition_kwargs=kwargs
            )
            with torch.no_grad():
                approx = new.reconstruct_weight()  # type: ignore[operator]
        else:
            new = TensorizedConv.from_dense(module, fact, resolved, conv_impl, name=name, decomposition_kwargs=kwargs)
            with torch.no_grad():
                approx = new.reconstruct_kernel()  # type: ignore[operator]
        with torch.no_grad():
            dense_w = weight.detach()
            error = float((approx - dense_w).norm() / dense_w.norm().clamp_min(1e-12))
        seconds = time.perf_counter() - start
        steps.finished(index, name, seconds, error)
        spec = new.spec()  # type: ignore[operator]
        rank_shown = tuple(spec["rank"]) if isinstance(spec["rank"], list) else spec["rank"]
        params_before = weight.numel() if child in PACKED and in_attention else _n_params(module)
        report.layers.append(
            LayerReport(
                name,
                layer_type,
                tuple(weight.shape),
                fact,
                rank_shown,
                params_before,
                _n_params(new),
                error,
                seconds,
            )
        )
        if in_attention:
            attention.setdefault(parent_name, {})[child] = new  # type: ignore[assignment]
        else:
            _set_module(model, name, new)
    for name, projections in attention.items():
        dense = model.get_submodule(name)
        _set_module(model, name, TensorizedMultiheadAttention.from_projections(dense, projections))  # type: ignore[arg-type]
    steps.done()
    report.model_params_after = _n_params(model)
    return report


def detensorize(model: nn.Module, heads: bool = True) -> list[str]:
    """Replace every tensorized layer (and TRL head) in place by an equivalent dense one, for export.

    :class:`TensorizedConv` / :class:`TensorizedLinear` become ``nn.Conv*d`` / ``nn.Linear`` with the reconstructed
    weight, a :class:`TensorizedMultiheadAttention` an ``nn.MultiheadAttention``; a :class:`TensorRegressionLayer`
    with a vector output becomes ``nn.Sequential(nn.Flatten(),
    nn.Linear)`` unless ``heads=False``. Tensor contraction layers stay (they are not a factorized dense layer).
    Returns the names changed.

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> net = SmallCNN(1, 10, channels=(8,), image_size=8)
        >>> _ = tensorize(net, "tt", rank="full")
        >>> detensorize(net)
        ['features.0', 'head.2']
        >>> type(net.features[0]).__name__
        'Conv2d'
    """
    changed: list[str] = []
    for name, module in list(model.named_modules()):
        if any(name.startswith(done + ".") for done in changed):
            continue  # inside an attention module converted as a whole
        if isinstance(module, (*TENSORIZED_LAYERS, TensorizedMultiheadAttention)):
            _set_module(model, name, module.to_dense())
            changed.append(name)
        elif heads and isinstance(module, TensorRegressionLayer) and len(module.output_shape) == 1:
            with torch.no_grad(), pytorch_backend():
                weight = module.trl.weight.to_tensor().reshape(-1, module.output_shape[0]).t()
            linear = nn.Linear(
                weight.shape[1], weight.shape[0], bias=module.bias is not None, device=weight.device, dtype=weight.dtype
            )
            with torch.no_grad():
                linear.weight.copy_(weight)
                if module.bias is not None:
                    linear.bias.copy_(module.bias)
            _set_module(model, name, nn.Sequential(nn.Flatten(), linear))
            changed.append(name)
    return changed


def tensorized_spec(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{layer name: spec}`` of the model's tensorized layers (plain types; what a checkpoint stores).

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> net = SmallCNN(1, 10, channels=(8,), image_size=8)
        >>> _ = tensorize(net, "cp", rank=4, include=["features.0"])
        >>> tensorized_spec(net)
        {'features.0': {'kind': 'conv2d', 'factorization': 'cp', 'rank': 4, 'implementation': 'factorized'}}
    """
    spec: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if isinstance(module, (*TENSORIZED_LAYERS, TensorizedMultiheadAttention)) and not any(
            name.startswith(done + ".") for done in spec
        ):
            spec[name] = module.spec()
    return spec


def apply_tensorized_spec(model: nn.Module, spec: Mapping[str, Mapping[str, Any]], replace: bool = False) -> list[str]:
    """Recreate the tensorized structure described by ``spec`` on a dense model (factors random, to be loaded).

    Layers already tensorized with the same spec are left alone; one tensorized differently raises, or is rebuilt
    when ``replace=True``. Returns the names rebuilt.
    """
    rebuilt: list[str] = []
    for name, layer_spec in spec.items():
        try:
            current = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(
                f"the checkpoint tensorized layer {name!r}, which this model does not have; build the "
                "same architecture the checkpoint was trained with"
            ) from err
        if isinstance(current, (*TENSORIZED_LAYERS, TensorizedMultiheadAttention)):
            if current.spec() != dict(layer_spec) and replace:
                current = current.to_dense()
            elif current.spec() != dict(layer_spec):
                raise ValueError(
                    f"layer {name!r} is tensorized as {current.spec()} but the checkpoint has "
                    f"{dict(layer_spec)}; load into a dense model instead"
                )
            else:
                continue
        if layer_spec.get("kind") == "multihead_attention":
            if not isinstance(current, nn.MultiheadAttention):
                raise ValueError(
                    f"layer {name!r}: the checkpoint tensorized an nn.MultiheadAttention here but the model has a "
                    f"{type(current).__name__}"
                )
            new: nn.Module = TensorizedMultiheadAttention.from_spec(current, layer_spec, name=name)
        else:
            new = build_from_spec(current, dict(layer_spec), name=name)
        _set_module(model, name, new)
        rebuilt.append(name)
    return rebuilt
