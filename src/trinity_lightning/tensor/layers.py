"""Factorized drop-in replacements for ``nn.Linear`` and ``nn.Conv{1,2,3}d``, built on tltorch.

:class:`TensorizedLinear` and :class:`TensorizedConv` are tltorch's ``FactorizedLinear`` / ``FactorizedConv`` plus
what a model conversion needs: ``from_dense`` (explicit, checked ranks; every conv hyper-parameter carried over,
where tltorch's ``from_conv`` keeps only the first stride), ``to_dense`` for export, a plain-types ``spec`` so a
checkpoint can rebuild the structure, a forward that runs under TensorLy's PyTorch backend without changing the
global one, and a clear error when a dense checkpoint is loaded into them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from trinity_lightning.tensor._backend import import_tltorch, pytorch_backend
from trinity_lightning.tensor.ranks import Rank, normalize_factorization, resolve_rank

tltorch = import_tltorch()
from tltorch.factorized_layers.factorized_convolution import (  # noqa: E402
    kernel_shape_to_factorization_shape,
    kernel_to_tensor,
    tensor_to_kernel,
)
from tltorch.utils import FactorList, get_tensorized_shape  # noqa: E402

from trinity_lightning.tensor.cp_init import cp_als  # noqa: E402

_CONVS: dict[int, Any] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
# With decomposition_kwargs, CP goes to TensorLy's parafac: 50 sweeps from an SVD start are within ~1% of the
# 100-sweep default's reconstruction error on trained CNN kernels. Without, cp_init.cp_als (much faster).
_DEFAULT_DECOMPOSITION: dict[str, dict[str, Any]] = {"cp": {"n_iter_max": 50, "init": "svd"}, "tucker": {}, "tt": {}}


@contextlib.contextmanager
def _rank_above_mode_size_is_expected() -> Iterator[None]:
    """Silence TensorLy's "SVD with n_eigenvecs=R larger than min(matrix.shape)" during a decomposition.

    A CP rank (or a TT rank) may exceed the size of some mode of the weight, e.g. CP rank 59 on a 3x3 kernel's
    spatial modes; TensorLy's SVD start then fills the missing components at random and warns once per mode, three
    warnings per layer that the user can do nothing about. Every other warning still shows.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Trying to compute SVD with n_eigenvecs=", category=UserWarning)
        yield


@torch.no_grad()
def _init_factorized(
    factorized: Any,
    dense: torch.Tensor,
    fact: str,
    decomposition_kwargs: dict[str, Any] | None,
    matrix: bool = False,
) -> None:
    """Initialize a tltorch factorized weight from ``dense`` (a kernel tensor, or a matrix with ``matrix=True``).

    CP without ``decomposition_kwargs`` uses :func:`~trinity_lightning.tensor.cp_init.cp_als` (a slice-SVD start
    and a few sweeps, 10-30x faster than TensorLy's ``parafac`` at the same error); any ``decomposition_kwargs``
    (e.g. ``{"n_iter_max": 100}``) select TensorLy's ``parafac`` / ``tucker`` / ``tensor_train`` as before.
    """
    if fact == "cp" and not decomposition_kwargs:
        tensor = dense.reshape(factorized.tensor_shape) if matrix else dense
        weights, factors = cp_als(tensor, int(factorized.rank))
        factorized.weights = nn.Parameter(weights.contiguous())
        factorized.factors = FactorList([nn.Parameter(f.contiguous()) for f in factors])
        return
    kwargs = {**_DEFAULT_DECOMPOSITION[fact], **(decomposition_kwargs or {})}
    with _rank_above_mode_size_is_expected():
        if matrix:
            factorized.init_from_matrix(dense, **kwargs)
        else:
            factorized.init_from_tensor(dense, **kwargs)


class UnsupportedLayerError(TypeError):
    """A layer that ``tensorize`` cannot factorize (named in the message, with how to exclude it)."""


def _dense_checkpoint_error(module: nn.Module, prefix: str, key: str, shape: tuple[int, ...]) -> ValueError:
    name = prefix.rstrip(".") or "<root>"
    return ValueError(
        f"layer {name!r} is tensorized ({module.spec()['factorization']}, rank {module.spec()['rank']}) but the "  # type: ignore[operator]
        f"state dict holds a dense weight {key!r} of shape {shape}: this checkpoint was saved before "
        "tensorization. Load it into the dense model first and then call tensorize(model, ...) (or let the "
        "Tensorize callback do it), or call detensorize(model) before loading it."
    )


def _check_dense_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str) -> None:
    key = prefix + "weight"
    value = state_dict.get(key)
    if isinstance(value, torch.Tensor):
        raise _dense_checkpoint_error(module, prefix, key, tuple(value.shape))


def _conv_geometry(conv: nn.Module, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(kernel_size, explicit padding)`` of a convolution that can be factorized; else UnsupportedLayerError."""
    where = f"layer {name!r}" if name else "this layer"
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or isinstance(conv, nn.modules.conv._ConvTransposeNd):
        raise UnsupportedLayerError(f"{where} is a {type(conv).__name__}; only nn.Conv1d/2d/3d can be factorized")
    if conv.groups != 1:
        raise UnsupportedLayerError(
            f"{where} is a grouped/depthwise {type(conv).__name__} (groups={conv.groups}), "
            "which factorized convolutions do not support"
        )
    if conv.padding_mode != "zeros":
        raise UnsupportedLayerError(f"{where} uses padding_mode={conv.padding_mode!r}; only 'zeros' is supported")
    kernel_size = tuple(int(k) for k in conv.weight.shape[2:])
    padding = conv.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0,) * len(kernel_size)
        elif all(k % 2 == 1 for k in kernel_size) and all(s == 1 for s in conv.stride):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, kernel_size))
        else:
            raise UnsupportedLayerError(f"{where} uses padding='same' with an even kernel or a stride")
    return kernel_size, tuple(padding)


class TensorizedConv(tltorch.FactorizedConv):  # type: ignore[misc, name-defined]
    """An N-d convolution whose kernel is a CP, Tucker or TT factorized tensor (tltorch ``FactorizedConv``).

    Build it with :meth:`from_dense`. Tucker keeps the spatial modes at full rank (Tucker-2 on the channels), the
    usual choice for 3x3 kernels; CP and TT factorize every mode.

    Example:
        >>> conv = nn.Conv2d(4, 8, 3, padding=1)
        >>> tconv = TensorizedConv.from_dense(conv, "tucker", "full")
        >>> x = torch.randn(2, 4, 6, 6)
        >>> bool(torch.allclose(tconv(x), conv(x), atol=1e-4))
        True
    """

    dense_config: dict[str, Any]
    factorization_name: str

    @classmethod
    def from_dense(
        cls,
        conv: nn.Module,
        factorization: str = "tucker",
        rank: Rank = 0.25,
        implementation: str = "factorized",
        decompose: bool = True,
        name: str = "",
        decomposition_kwargs: dict[str, Any] | None = None,
    ) -> TensorizedConv:
        """Factorize a trained ``nn.Conv{1,2,3}d``.

        Args:
            conv: the dense convolution.
            factorization: ``"cp"``, ``"tucker"`` or ``"tt"``.
            rank: see :func:`~trinity_lightning.tensor.ranks.resolve_rank`.
            implementation: ``"factorized"`` (contract the input with each factor: fewer FLOPs at low rank) or
                ``"reconstructed"`` (rebuild the kernel, one dense conv).
            decompose: initialize by decomposing the dense kernel (``False``: random factors, e.g. before loading
                a state dict).
            name: layer name for error messages.
            decomposition_kwargs: passed to TensorLy's ``parafac`` / ``tucker`` / ``tensor_train``.
        """
        fact = normalize_factorization(factorization)
        kernel_size, padding = _conv_geometry(conv, name)
        assert isinstance(conv, nn.modules.conv._ConvNd)  # checked by _conv_geometry
        resolved = cls.resolve_rank_for(conv, fact, rank, name=name)
        out_channels, in_channels = conv.weight.shape[:2]
        order = len(kernel_size)
        weight = conv.weight
        with pytorch_backend():
            layer = cls(
                in_channels,
                out_channels,
                tuple(kernel_size),
                order=order,
                stride=tuple(conv.stride),
                padding=tuple(padding),
                dilation=tuple(conv.dilation),
                bias=conv.bias is not None,
                factorization=fact,
                rank=resolved,
                implementation=implementation,
            )
            layer = layer.to(device=weight.device, dtype=weight.dtype)
            if decompose:
                _init_factorized(layer.weight, kernel_to_tensor(fact, weight.detach()), fact, decomposition_kwargs)
                if conv.bias is not None:
                    layer.bias.data.copy_(conv.bias.detach())
            else:
                layer.reset_parameters()
        layer.forward_fun = tltorch.functional.convolution._get_factorized_conv(layer.weight, implementation)
        layer.factorization_name = fact
        layer.dense_config = {
            "kind": f"conv{order}d",
            "in_channels": in_channels,
            "out_channels": out_channels,
            "kernel_size": list(kernel_size),
            "stride": list(conv.stride),
            "padding": list(padding),
            "dilation": list(conv.dilation),
            "bias": conv.bias is not None,
        }
        layer._resolved_rank = resolved
        return layer

    @staticmethod
    def resolve_rank_for(conv: nn.Module, factorization: str, rank: Rank, name: str = "") -> int | tuple[int, ...]:
        """The explicit rank :meth:`from_dense` would use for ``conv`` (checks the layer; decomposes nothing)."""
        fact = normalize_factorization(factorization)
        kernel_size, _ = _conv_geometry(conv, name)
        weight: torch.Tensor = conv.weight  # type: ignore[assignment]
        kernel_shape = tuple(int(s) for s in weight.shape[:2]) + kernel_size
        fact_shape = tuple(kernel_shape_to_factorization_shape(fact, kernel_shape))
        fixed = tuple(range(2, 2 + len(kernel_size))) if fact == "tucker" else ()
        return resolve_rank(fact_shape, fact, rank, fixed_modes=fixed, layer=name)

    def spec(self) -> dict[str, Any]:
        """Plain-types description (factorization, explicit rank, implementation) to rebuild this layer."""
        rank = self._resolved_rank
        return {
            "kind": self.dense_config["kind"],
            "factorization": self.factorization_name,
            "rank": list(rank) if isinstance(rank, tuple) else rank,
            "implementation": self.implementation,
        }

    def forward(self, x: torch.Tensor, indices: int = 0) -> torch.Tensor:
        with pytorch_backend():
            return super().forward(x, indices)  # type: ignore[no-any-return]

    def reconstruct_kernel(self) -> torch.Tensor:
        """The dense kernel ``(out, in, *kernel_size)`` this layer represents."""
        with pytorch_backend():
            kernel: torch.Tensor = tensor_to_kernel(self.factorization_name, self.weight.to_tensor())
        return kernel

    def to_dense(self) -> nn.Module:
        """An equivalent ``nn.Conv{1,2,3}d`` (for export)."""
        cfg = self.dense_config
        conv_cls = _CONVS[len(cfg["kernel_size"])]
        kernel = self.reconstruct_kernel().detach()
        conv = conv_cls(
            cfg["in_channels"],
            cfg["out_channels"],
            tuple(cfg["kernel_size"]),
            stride=tuple(cfg["stride"]),
            padding=tuple(cfg["padding"]),
            dilation=tuple(cfg["dilation"]),
            bias=cfg["bias"],
            device=kernel.device,
            dtype=kernel.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(kernel)
            if cfg["bias"]:
                conv.bias.copy_(self.bias.detach())
        return conv

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        _check_dense_keys(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


_LINEAR_FACTORIZATION = {"cp": "cp", "tucker": "tucker", "tt": "blocktt"}
LINEAR_DEFAULT_IMPLEMENTATION = "reconstructed"
"""Linear layers rebuild their (small) weight matrix and call ``F.linear``: tltorch's factorized contraction is far
slower on CPU. 2048 -> 10 at rank 0.1, batch 256, one thread: Tucker 3,020 ms factorized vs 1.6 ms reconstructed,
CP 1,401 vs 1.4 ms, TT 5.8 vs 2.4 ms (dense: 0.4 ms). Convolutions are the other way round (Tucker 55 ms factorized
vs 64 ms reconstructed for a 64 -> 128 3x3 conv on 256x8x8; dense 98 ms)."""


def _linear_geometry(
    linear: nn.Module, factorization: str, order: int, name: str
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(in factors, out factors, shape of the factorized tensor)`` of a linear layer's weight."""
    if not isinstance(linear, nn.Linear):
        raise UnsupportedLayerError(f"layer {name!r} is a {type(linear).__name__}, not an nn.Linear")
    out_features, in_features = linear.weight.shape
    in_t, out_t = get_tensorized_shape(in_features, out_features, order=order, min_dim=2, verbose=False)
    in_t, out_t = tuple(int(s) for s in in_t), tuple(int(s) for s in out_t)
    if factorization == "tt" and len(in_t) != len(out_t):
        in_t, out_t = (in_features,), (out_features,)
    shape = tuple(o * i for o, i in zip(out_t, in_t)) if factorization == "tt" else out_t + in_t
    return in_t, out_t, shape


class TensorizedLinear(tltorch.FactorizedLinear):  # type: ignore[misc, name-defined]
    """A linear layer whose weight matrix is reshaped into a higher-order tensor and factorized (tltorch).

    ``in_features`` and ``out_features`` are each split into up to ``order`` factors (tltorch's
    ``get_tensorized_shape``); the weight becomes a tensor of shape ``(*out_factors, *in_factors)`` held as CP,
    Tucker or a block tensor-train (TT-matrix). A prime size stays one mode (a plain low-rank matrix).

    Example:
        >>> linear = nn.Linear(64, 10)
        >>> tlin = TensorizedLinear.from_dense(linear, "tucker", "full")
        >>> x = torch.randn(3, 64)
        >>> bool(torch.allclose(tlin(x), linear(x), atol=1e-4))
        True
    """

    dense_config: dict[str, Any]
    factorization_name: str

    @classmethod
    def from_dense(
        cls,
        linear: nn.Linear,
        factorization: str = "tucker",
        rank: Rank = 0.25,
        implementation: str = LINEAR_DEFAULT_IMPLEMENTATION,
        decompose: bool = True,
        name: str = "",
        order: int = 3,
        decomposition_kwargs: dict[str, Any] | None = None,
    ) -> TensorizedLinear:
        """Factorize a trained ``nn.Linear`` (arguments as in :meth:`TensorizedConv.from_dense`).

        Args:
            linear: the dense layer.
            factorization: ``"cp"``, ``"tucker"`` or ``"tt"`` (a block TT-matrix).
            rank: see :func:`~trinity_lightning.tensor.ranks.resolve_rank`.
            implementation: ``"reconstructed"`` (default, see :data:`LINEAR_DEFAULT_IMPLEMENTATION`) or
                ``"factorized"``.
            decompose: initialize from the dense weight.
            name: layer name for error messages.
            order: number of factors each of in/out features is split into.
            decomposition_kwargs: passed to the TensorLy decomposition.
        """
        fact = normalize_factorization(factorization)
        in_t, out_t, _ = _linear_geometry(linear, fact, order, name)
        resolved = cls.resolve_rank_for(linear, fact, rank, name=name, order=order)
        out_features, in_features = linear.weight.shape
        weight = linear.weight
        with pytorch_backend():
            layer = cls(
                in_t,
                out_t,
                bias=linear.bias is not None,
                factorization=_LINEAR_FACTORIZATION[fact],
                rank=resolved,
                implementation=implementation,
                device=weight.device,
                dtype=weight.dtype,
            )
            if decompose:
                _init_factorized(layer.weight, weight.detach(), fact, decomposition_kwargs, matrix=True)
                if linear.bias is not None:
                    layer.bias.data.copy_(linear.bias.detach())
        layer.factorization_name = fact
        layer.dense_config = {
            "kind": "linear",
            "in_features": in_features,
            "out_features": out_features,
            "bias": linear.bias is not None,
            "order": order,
        }
        layer._resolved_rank = resolved
        return layer

    @staticmethod
    def resolve_rank_for(
        linear: nn.Module, factorization: str, rank: Rank, name: str = "", order: int = 3
    ) -> int | tuple[int, ...]:
        """The explicit rank :meth:`from_dense` would use for ``linear`` (checks the layer; decomposes nothing)."""
        fact = normalize_factorization(factorization)
        _, out_t, shape = _linear_geometry(linear, fact, order, name)
        # Tucker keeps the output modes at full rank: TensorLy's proportional ranks put rank 1 on the small output
        # modes (a 10-class head tensorized to (2, 5) got ranks (1, 1, ...), i.e. rank-1 logits, and a CIFAR CNN
        # tensorized that way could not be fine-tuned past 37%).
        fixed = tuple(range(len(out_t))) if fact == "tucker" else ()
        return resolve_rank(shape, fact, rank, fixed_modes=fixed, layer=name)

    def spec(self) -> dict[str, Any]:
        """Plain-types description (factorization, explicit rank, implementation, order) to rebuild this layer."""
        rank = self._resolved_rank
        return {
            "kind": "linear",
            "factorization": self.factorization_name,
            "rank": list(rank) if isinstance(rank, tuple) else rank,
            "implementation": self.implementation,
            "order": self.dense_config["order"],
        }

    def forward(self, x: torch.Tensor, indices: int = 0) -> torch.Tensor:
        with pytorch_backend():
            return super().forward(x, indices)  # type: ignore[no-any-return]

    def dense_weight(self) -> torch.Tensor:
        """The dense weight as the forward pass sees it: through the weight's hooks (rank lasso), with gradients.

        For modules that read a projection weight themselves (:class:`~trinity_lightning.tensor.attention.
        TensorizedMultiheadAttention`).
        """
        with pytorch_backend():
            weight: torch.Tensor = self.weight().to_matrix().reshape(self.dense_config["out_features"], -1)
        return weight

    def reconstruct_weight(self) -> torch.Tensor:
        """The dense ``(out_features, in_features)`` weight this layer represents."""
        with pytorch_backend():
            weight: torch.Tensor = self.weight.to_matrix().reshape(self.dense_config["out_features"], -1)
        return weight

    def to_dense(self) -> nn.Linear:
        """An equivalent ``nn.Linear`` (for export)."""
        cfg = self.dense_config
        weight = self.reconstruct_weight().detach()
        linear = nn.Linear(
            cfg["in_features"], cfg["out_features"], bias=cfg["bias"], device=weight.device, dtype=weight.dtype
        )
        with torch.no_grad():
            linear.weight.copy_(weight)
            if cfg["bias"]:
                linear.bias.copy_(self.bias.detach())
        return linear

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        _check_dense_keys(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


TENSORIZED_LAYERS = (TensorizedConv, TensorizedLinear)
"""The factorized layer classes (what rank regularization, specs and ``detensorize`` look for)."""


def build_from_spec(dense: nn.Module, spec: dict[str, Any], name: str = "") -> nn.Module:
    """Rebuild a tensorized layer's structure (random factors) from a dense layer and a :meth:`spec` dict."""
    rank = spec["rank"]
    rank = tuple(rank) if isinstance(rank, list) else rank
    if spec["kind"] == "linear":
        if not isinstance(dense, nn.Linear):
            raise ValueError(
                f"layer {name!r}: the checkpoint tensorized an nn.Linear here but the model has a "
                f"{type(dense).__name__}"
            )
        return TensorizedLinear.from_dense(
            dense,
            spec["factorization"],
            rank,
            spec["implementation"],
            decompose=False,
            name=name,
            order=spec.get("order", 3),
        )
    expected = _CONVS.get(int(spec["kind"][4]) if spec["kind"].startswith("conv") else 0)
    if expected is None or type(dense) is not expected:
        raise ValueError(
            f"layer {name!r}: the checkpoint tensorized a {spec['kind']} here but the model has a "
            f"{type(dense).__name__}"
        )
    return TensorizedConv.from_dense(
        dense, spec["factorization"], rank, spec["implementation"], decompose=False, name=name
    )
