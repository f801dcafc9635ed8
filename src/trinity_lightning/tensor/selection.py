"""Which layers ``tensorize`` factorizes, with which ranks: argument checks, layer selection, the plan.

Everything here looks at the model without changing it, so a ``Tensorize`` callback can check its arguments when it
is built and the model's layers and ranks at ``setup``, long before the tensorization epoch.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from trinity_lightning.tensor.attention import dense_projections
from trinity_lightning.tensor.layers import TensorizedConv, TensorizedLinear, UnsupportedLayerError
from trinity_lightning.tensor.ranks import Rank, check_rank, normalize_factorization

_SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _matches(name: str, modules: Sequence[nn.Module], patterns: Iterable[str | type]) -> bool:
    """``name`` matches a glob/prefix pattern, or one of ``modules`` (the layer, its attention) a type pattern."""
    for pattern in patterns:
        if isinstance(pattern, type):
            if any(isinstance(module, pattern) for module in modules):
                return True
        elif fnmatch.fnmatchcase(name, pattern) or name == pattern or name.startswith(pattern + "."):
            return True
    return False


def _is_weight_layer(module: nn.Module) -> bool:
    weight = module._parameters.get("weight")
    return isinstance(weight, torch.Tensor) and weight.ndim >= 2


def _unsupported_reason(module: nn.Module) -> str | None:
    if type(module) not in _SUPPORTED and not isinstance(module, _SUPPORTED):
        return f"{type(module).__name__} is not an nn.Linear or nn.Conv1d/2d/3d"
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups != 1:
            return f"grouped/depthwise {type(module).__name__} (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"{type(module).__name__} with padding_mode={module.padding_mode!r}"
    return None


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module, tuple[nn.Module, ...]]]:
    """``(name, layer, modules a type pattern is matched against)`` for every layer with a weight matrix/kernel.

    An ``nn.MultiheadAttention`` contributes its projections (``<name>.in_proj`` or ``.q_proj``/``.k_proj``/
    ``.v_proj``, and ``<name>.out_proj``) as ``nn.Linear`` views; a type pattern matches them as ``nn.Linear`` and
    as the attention module.
    """
    found: list[tuple[str, nn.Module, tuple[nn.Module, ...]]] = []
    attention: set[str] = set()
    for name, module in model.named_modules():
        if name and isinstance(module, nn.MultiheadAttention):
            attention.add(name)
            for projection, view in dense_projections(module).items():
                found.append((f"{name}.{projection}", view, (view, module)))
            continue
        if not name or name.rpartition(".")[0] in attention or not _is_weight_layer(module):
            continue
        found.append((name, module, (module,)))
    return found


def _exclude_hint(unsupported: Sequence[str], keep: Sequence[str]) -> list[str]:
    """Exclude patterns that match every name in ``unsupported`` and none in ``keep``.

    Each pattern replaces some numbered parts of a name by ``*``: the one matching the most unsupported layers, then
    with the fewest ``*`` (a name stays as it is when no such pattern is safe).

    Example:
        >>> _exclude_hint(["blocks.0.conv.3", "blocks.1.conv.3"], ["blocks.0.conv.0", "head"])
        ['blocks.*.conv.3']
    """
    patterns: list[str] = []
    for name in unsupported:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            continue
        parts = name.split(".")
        numbered = [k for k, part in enumerate(parts) if part.isdigit()][:8]
        best, best_score = name, (-1, 0)
        for size in range(1, len(numbered) + 1):
            for chosen in itertools.combinations(numbered, size):
                general = ".".join("*" if k in chosen else part for k, part in enumerate(parts))
                if any(fnmatch.fnmatchcase(k, general) for k in keep):
                    continue
                score = (sum(fnmatch.fnmatchcase(u, general) for u in unsupported), -size)
                if score > best_score:
                    best, best_score = general, score
        patterns.append(best if best_score[0] > 1 else name)
    return patterns


def select_layers(
    model: nn.Module,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    min_params: int = 0,
    skip_unsupported: bool = False,
) -> tuple[list[tuple[str, nn.Module]], dict[str, str]]:
    """The ``(name, layer)`` pairs :func:`tensorize` would factorize, and the ones it leaves dense with the reason.

    Attention projections appear as ``<attention>.in_proj`` / ``.out_proj`` with ``nn.Linear`` views of their weights.

    Raises:
        UnsupportedLayerError: selected layers that cannot be factorized (all named in one message, with exclude
            patterns that leave exactly them dense), unless ``skip_unsupported``.

    Example:
        >>> [name for name, _ in select_layers(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))[0]]
        ['0']
    """
    chosen: list[tuple[str, nn.Module]] = []
    skipped: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    for name, module, typed in _candidates(model):
        if include is not None and not _matches(name, typed, include):
            continue
        if _matches(name, typed, exclude):
            continue
        reason = _unsupported_reason(module)
        if reason is not None:
            unsupported[name] = reason
            continue
        n_weight = module.weight.numel()  # type: ignore[operator]
        if n_weight < min_params:
            skipped[name] = f"{n_weight} weight parameters < min_params={min_params}"
            continue
        chosen.append((name, module))
    if unsupported and not skip_unsupported:
        hint = _exclude_hint(list(unsupported), [name for name, _ in chosen])
        listed = "\n".join(f"  {name!r}: {reason}" for name, reason in unsupported.items())
        count = f"{len(unsupported)} layer{'s' if len(unsupported) > 1 else ''}"
        raise UnsupportedLayerError(
            f"{count} cannot be tensorized:\n{listed}\nPass exclude={hint} to leave "
            f"{'them' if len(unsupported) > 1 else 'it'} dense, skip_unsupported=True to leave every unsupported "
            "layer dense (listed in report.skipped), or narrow include=..."
        )
    skipped.update({name: f"unsupported: {reason}" for name, reason in unsupported.items()})
    return chosen, skipped


def _check_flag(value: object, argument: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{argument}: expected True or False, got {value!r}")
    return value


def _check_count(value: object, argument: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{argument}: expected an int >= {minimum}, got {value!r}")
    return value


def _check_patterns(value: object, argument: str) -> list[str | type]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(
            f"{argument}: expected a list of layer names, patterns or types (e.g. [{value!r}]), got {value!r}"
        )
    for item in value:
        if not isinstance(item, (str, type)):
            raise ValueError(f"{argument}: expected layer names, patterns or module types, got {item!r}")
    return list(value)


def _check_implementation(value: object) -> str:
    if value not in ("auto", "factorized", "reconstructed"):
        raise ValueError(f"implementation: expected 'auto', 'factorized' or 'reconstructed', got {value!r}")
    return str(value)


def check_arguments(
    factorization: str = "tucker",
    rank: Rank = 0.25,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    implementation: str = "auto",
    min_params: int = 0,
    skip_unsupported: bool = False,
    progress: bool = True,
    linear_order: int = 3,
) -> dict[str, Any]:
    """Validate :func:`tensorize`'s model-independent arguments; return them normalized (``ValueError`` names one).

    Example:
        >>> check_arguments("TT", rank=[1, 4, 1], exclude=("head",))["factorization"]
        'tt'
    """
    fact = normalize_factorization(factorization)
    return {
        "factorization": fact,
        "rank": check_rank(rank, fact),
        "include": None if include is None else _check_patterns(include, "include"),
        "exclude": _check_patterns(exclude, "exclude"),
        "implementation": _check_implementation(implementation),
        "min_params": _check_count(min_params, "min_params"),
        "skip_unsupported": _check_flag(skip_unsupported, "skip_unsupported"),
        "progress": _check_flag(progress, "progress"),
        "linear_order": _check_count(linear_order, "linear_order", minimum=1),
    }


def plan_tensorize(
    model: nn.Module,
    factorization: str = "tucker",
    rank: Rank = 0.25,
    include: Sequence[str | type] | None = None,
    exclude: Sequence[str | type] = (),
    min_params: int = 0,
    skip_unsupported: bool = False,
    linear_order: int = 3,
) -> tuple[list[tuple[str, nn.Module, int | tuple[int, ...]]], dict[str, str]]:
    """What :func:`tensorize` would do, checked against the model without changing it or decomposing anything.

    Returns ``([(name, dense layer, explicit rank), ...], skipped)``; raises what :func:`tensorize` would raise
    (an unsupported layer, a rank above a layer's full rank), so a ``Tensorize`` callback can fail at ``setup``
    instead of at its tensorization epoch.

    Example:
        >>> plan, _ = plan_tensorize(nn.Sequential(nn.Conv2d(8, 16, 3)), "tucker", rank=0.5)
        >>> [(name, rank) for name, _, rank in plan]
        [('0', (9, 4, 3, 3))]
    """
    fact = normalize_factorization(factorization)
    chosen, skipped = select_layers(model, include, exclude, min_params, skip_unsupported)
    plan: list[tuple[str, nn.Module, int | tuple[int, ...]]] = []
    for name, module in chosen:
        if isinstance(module, nn.Linear):
            resolved = TensorizedLinear.resolve_rank_for(module, fact, rank, name=name, order=linear_order)
        else:
            resolved = TensorizedConv.resolve_rank_for(module, fact, rank, name=name)
        plan.append((name, module, resolved))
    return plan, skipped
