"""``tensorize`` / ``detensorize`` a whole model, its report, and checkpoint structure helpers."""

from __future__ import annotations

import fnmatch
import io
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trinity_lightning.tensor._backend import pytorch_backend
from trinity_lightning.tensor.heads import TensorRegressionLayer
from trinity_lightning.tensor.layers import (
    LINEAR_DEFAULT_IMPLEMENTATION,
    TensorizedConv,
    TensorizedLinear,
    UnsupportedLayerError,
    build_from_spec,
)
from trinity_lightning.tensor.ranks import Rank, normalize_factorization

SPEC_KEY = "trinity_tensorized"
"""Checkpoint key holding ``{layer name: spec}`` (written by the ``Tensorize`` callback)."""

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_TENSORIZED = (TensorizedConv, TensorizedLinear)


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

        table = Table(title="tensorize", show_footer=False)
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


def _matches(name: str, module: nn.Module, patterns: Iterable[str | type]) -> bool:
    for pattern in patterns:
        if isinstance(pattern, type):
            if isinstance(module, pattern):
                return True
        elif fnmatch.fnmatchcase(name, pattern) or name == pattern or name.startswith(pattern + "."):
            return True
    return False


def _is_weight_layer(module: nn.Module) -> bool:
    weight = module._parameters.get("weight")
    return isinstance(weight, torch.Tensor) and weight.ndim >= 2


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _unsupported_reason(module: nn.Module) -> str | None:
    if type(module) not in _SUPPORTED and not isinstance(module, _SUPPORTED):
        return f"{type(module).__name__} is not an nn.Linear or nn.Conv1d/2d/3d"
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups != 1:
            return f"grouped/depthwise {type(module).__name__} (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"{type(module).__name__} with padding_mode={module.padding_mode!r}"
    return None


def select_layers(
    model: nn.Module,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    min_params: int = 0,
) -> tuple[list[tuple[str, nn.Module]], dict[str, str]]:
    """The ``(name, layer)`` pairs :func:`tensorize` would factorize, and the ones skipped by ``min_params``.

    Raises :class:`UnsupportedLayerError` for a selected layer that cannot be factorized.

    Example:
        >>> [name for name, _ in select_layers(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))[0]]
        ['0']
    """
    chosen: list[tuple[str, nn.Module]] = []
    skipped: dict[str, str] = {}
    for name, module in model.named_modules():
        if not name or not _is_weight_layer(module):
            continue
        if include is not None and not _matches(name, module, include):
            continue
        if _matches(name, module, exclude):
            continue
        reason = _unsupported_reason(module)
        if reason is not None:
            raise UnsupportedLayerError(
                f"layer {name!r} cannot be tensorized: {reason}. Pass exclude=[{name!r}] (or "
                f"exclude=[{type(module).__name__}]) to leave it dense, or narrow include=..."
            )
        n_weight = module.weight.numel()
        if n_weight < min_params:
            skipped[name] = f"{n_weight} weight parameters < min_params={min_params}"
            continue
        chosen.append((name, module))
    return chosen, skipped


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
) -> TensorizeReport:
    """Replace ``nn.Linear`` / ``nn.Conv{1,2,3}d`` layers in place by factorized layers of the trained weights.

    Each layer is decomposed (CP, Tucker or tensor-train) so the network computes nearly the same function
    before any fine-tuning (exactly at ``rank="full"``).

    Args:
        model: the model to change in place (any ``nn.Module``, a LightningModule too).
        factorization: ``"cp"``, ``"tucker"`` (Tucker-2 on conv channels, spatial modes kept) or ``"tt"``.
        rank: per layer, a float in (0, 1] (fraction of that layer's dense weights), ``"full"``, or explicit
            ranks (see :func:`~trinity_lightning.tensor.ranks.resolve_rank`).
        include: layer names (glob patterns such as ``"features.*"``, or a prefix) or module types to tensorize;
            default all.
        exclude: names/patterns/types to leave dense (takes precedence over ``include``).
        implementation: ``"auto"`` (convolutions ``"factorized"``, linear layers ``"reconstructed"``: the fastest
            on CPU, see :data:`~trinity_lightning.tensor.layers.LINEAR_DEFAULT_IMPLEMENTATION`), ``"factorized"``
            or ``"reconstructed"`` for all layers.
        min_params: leave layers with fewer weight parameters dense (listed in ``report.skipped``).
        linear_order: how many factors each of a linear layer's in/out sizes is split into.
        decomposition_kwargs: passed on to TensorLy's decomposition.

    Returns:
        A :class:`TensorizeReport` (``print(report)`` shows a table).

    Raises:
        UnsupportedLayerError: a selected layer with a weight matrix/kernel cannot be factorized (e.g. an
            ``nn.Embedding`` or a grouped conv); the message names it and how to exclude it.
        ValueError: bad ``factorization`` or ``rank`` (e.g. larger than a layer's full rank).

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> net = SmallCNN(1, 10, channels=(8, 16), image_size=8)
        >>> report = tensorize(net, "tucker", rank=0.5, exclude=["head.*"])
        >>> [r.name for r in report.layers]
        ['features.0', 'features.4']
        >>> type(net.features[4]).__name__
        'TensorizedConv'
    """
    fact = normalize_factorization(factorization)
    if implementation not in ("auto", "factorized", "reconstructed"):
        raise ValueError(f"implementation: expected 'auto', 'factorized' or 'reconstructed', got {implementation!r}")
    conv_impl = "factorized" if implementation == "auto" else implementation
    linear_impl = LINEAR_DEFAULT_IMPLEMENTATION if implementation == "auto" else implementation
    report = TensorizeReport(model_params_before=_n_params(model))
    chosen, report.skipped = select_layers(model, include, exclude, min_params)
    for name, module in chosen:
        start = time.perf_counter()
        kwargs = dict(decomposition_kwargs or {})
        if isinstance(module, nn.Linear):
            new: nn.Module = TensorizedLinear.from_dense(
                module, fact, rank, linear_impl, name=name, order=linear_order, decomposition_kwargs=kwargs
            )
            with torch.no_grad():
                approx = new.reconstruct_weight()  # type: ignore[operator]
        else:
            new = TensorizedConv.from_dense(module, fact, rank, conv_impl, name=name, decomposition_kwargs=kwargs)
            with torch.no_grad():
                approx = new.reconstruct_kernel()  # type: ignore[operator]
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
        with torch.no_grad():
            dense_w = weight.detach()
            error = float((approx - dense_w).norm() / dense_w.norm().clamp_min(1e-12))
        spec = new.spec()  # type: ignore[operator]
        rank_shown = tuple(spec["rank"]) if isinstance(spec["rank"], list) else spec["rank"]
        report.layers.append(
            LayerReport(
                name,
                type(module).__name__,
                tuple(weight.shape),
                fact,
                rank_shown,
                _n_params(module),
                _n_params(new),
                error,
                time.perf_counter() - start,
            )
        )
        _set_module(model, name, new)
    report.model_params_after = _n_params(model)
    return report


def detensorize(model: nn.Module, heads: bool = True) -> list[str]:
    """Replace every tensorized layer (and TRL head) in place by an equivalent dense one, for export.

    :class:`TensorizedConv` / :class:`TensorizedLinear` become ``nn.Conv*d`` / ``nn.Linear`` with the reconstructed
    weight; a :class:`TensorRegressionLayer` with a vector output becomes ``nn.Sequential(nn.Flatten(),
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
        if isinstance(module, _TENSORIZED):
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
    return {name: module.spec() for name, module in model.named_modules() if isinstance(module, _TENSORIZED)}


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
        if isinstance(current, _TENSORIZED):
            if current.spec() != dict(layer_spec) and replace:
                current = current.to_dense()
            elif current.spec() != dict(layer_spec):
                raise ValueError(
                    f"layer {name!r} is tensorized as {current.spec()} but the checkpoint has "
                    f"{dict(layer_spec)}; load into a dense model instead"
                )
            else:
                continue
        _set_module(model, name, build_from_spec(current, dict(layer_spec), name=name))
        rebuilt.append(name)
    return rebuilt


def load_tensorized(model: nn.Module, checkpoint: str | Path | Mapping[str, Any], strict: bool = True) -> nn.Module:
    """Load a checkpoint saved after tensorization into a fresh (dense) model, rebuilding the structure first.

    Accepts a Lightning checkpoint (path or dict, with ``state_dict`` and the spec under :data:`SPEC_KEY`) or a
    plain ``{"state_dict": ..., SPEC_KEY: ...}`` dict. ``model`` is the module the state dict belongs to (the
    LightningModule for a Lightning checkpoint). A checkpoint without a spec loads as a dense one. ``strict`` is
    passed to ``load_state_dict``. The lasso weights of a rank-regularized run (``Tensorize(rank_regularization=
    ...)``) are multiplied into the loaded factors, so the model computes what the trained one did.

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> net = SmallCNN(1, 10, channels=(8,), image_size=8)
        >>> _ = tensorize(net, "tucker", rank=0.5)
        >>> ckpt = {"state_dict": net.state_dict(), SPEC_KEY: tensorized_spec(net)}
        >>> fresh = load_tensorized(SmallCNN(1, 10, channels=(8,), image_size=8), ckpt)
        >>> bool(torch.equal(fresh(torch.ones(1, 1, 8, 8)), net(torch.ones(1, 1, 8, 8))))
        True
    """
    loaded: Mapping[str, Any] = (
        torch.load(checkpoint, map_location="cpu", weights_only=False)
        if isinstance(checkpoint, (str, Path))
        else checkpoint
    )
    state = loaded.get("state_dict", loaded)
    spec = loaded.get(SPEC_KEY)
    if spec:
        apply_tensorized_spec(model, spec)
    from trinity_lightning.tensor.regularization import LASSO_KEY, fold_lasso_state

    if not any(hasattr(m, LASSO_KEY) for m in model.modules()):
        state, _ = fold_lasso_state(state)  # lasso weights of a rank-regularized run go into the factors
    model.load_state_dict(state, strict=strict)  # type: ignore[arg-type]
    return model
