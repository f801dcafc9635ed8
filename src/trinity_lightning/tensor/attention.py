"""``nn.MultiheadAttention`` with factorized projections (what ``tensorize`` makes of an attention layer).

``nn.MultiheadAttention`` does not call its projections as modules: it reads ``in_proj_weight`` (or
``q/k/v_proj_weight``) and ``out_proj.weight`` and hands the tensors to ``F.multi_head_attention_forward``. Replacing
``out_proj`` by a factorized linear layer therefore "worked" until the first forward pass, which met a tltorch
factorized tensor outside TensorLy's PyTorch backend, and ``in_proj_weight`` (a bare parameter) was never factorized.
:class:`TensorizedMultiheadAttention` holds each projection as a :class:`~trinity_lightning.tensor.layers.
TensorizedLinear`, rebuilds the dense projection weights under the PyTorch backend (through the weights' hooks, so
rank regularization applies) and runs PyTorch's own attention forward on them, so every option of the original
module (masks, ``batch_first``, ``need_weights``, the inference fast path) behaves as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from trinity_lightning.tensor.layers import TensorizedLinear, build_from_spec

PACKED = {"in_proj": "in_proj_weight", "q_proj": "q_proj_weight", "k_proj": "k_proj_weight", "v_proj": "v_proj_weight"}
"""Input projections of ``nn.MultiheadAttention``: our submodule name -> the parameter PyTorch reads."""
PROJECTIONS = (*PACKED, "out_proj")


def _projection_weight(parameter: str, projection: str) -> Any:
    """A property for ``in_proj_weight`` & co.: the dense parameter, or the factorized projection's dense weight."""

    def get(self: nn.Module) -> torch.Tensor | None:
        params = self.__dict__["_parameters"]
        if parameter in params:
            return params[parameter]  # type: ignore[no-any-return]
        factorized = self.__dict__["_modules"].get(projection)
        if factorized is None:
            raise AttributeError(parameter)
        return factorized.dense_weight()  # type: ignore[no-any-return]

    return property(get, doc=f"``{parameter}`` as a dense tensor (rebuilt from ``{projection}`` when factorized).")


def dense_projections(attention: nn.MultiheadAttention) -> dict[str, nn.Linear]:
    """The projections of ``attention`` that are still dense, as ``nn.Linear`` views sharing its parameters.

    Keys are ``in_proj`` (packed ``3 E x E`` query/key/value weight) or ``q_proj``/``k_proj``/``v_proj`` (different
    key/value sizes), and ``out_proj``. The input projections' biases stay on the attention module.

    Example:
        >>> views = dense_projections(nn.MultiheadAttention(8, 2))
        >>> {name: tuple(linear.weight.shape) for name, linear in views.items()}
        {'in_proj': (24, 8), 'out_proj': (8, 8)}
    """
    views: dict[str, nn.Linear] = {}
    for projection, parameter in PACKED.items():
        weight = attention._parameters.get(parameter)
        if weight is not None:
            view = nn.Linear(weight.shape[1], weight.shape[0], bias=False, device="meta")
            view.weight = weight  # shared, not copied
            views[projection] = view
    out = attention._modules.get("out_proj")
    if isinstance(out, nn.Linear):
        views["out_proj"] = out
    return views


class TensorizedMultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` whose projections are factorized (:class:`TensorizedLinear` submodules).

    Built by :func:`~trinity_lightning.tensor.tensorize` (or :meth:`from_projections`); ``isinstance(m,
    nn.MultiheadAttention)`` still holds, and ``in_proj_weight`` / ``out_proj.weight`` read as before (dense
    tensors rebuilt from the factors). A projection left dense (``exclude=["*.out_proj"]``) stays as it was.

    Example:
        >>> from trinity_lightning.tensor import tensorize
        >>> layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
        >>> [r.name for r in tensorize(layer, "tucker", rank=0.5).layers]
        ['self_attn.in_proj', 'self_attn.out_proj', 'linear1', 'linear2']
        >>> type(layer.self_attn).__name__, layer(torch.randn(2, 3, 16)).shape
        ('TensorizedMultiheadAttention', torch.Size([2, 3, 16]))
    """

    in_proj_weight = _projection_weight("in_proj_weight", "in_proj")  # type: ignore[assignment]
    q_proj_weight = _projection_weight("q_proj_weight", "q_proj")  # type: ignore[assignment]
    k_proj_weight = _projection_weight("k_proj_weight", "k_proj")  # type: ignore[assignment]
    v_proj_weight = _projection_weight("v_proj_weight", "v_proj")  # type: ignore[assignment]

    @classmethod
    def from_projections(
        cls, attention: nn.MultiheadAttention, projections: Mapping[str, TensorizedLinear]
    ) -> TensorizedMultiheadAttention:
        """A copy of ``attention`` with the given projections factorized (names as in :func:`dense_projections`).

        The other parameters (biases, ``bias_k``/``bias_v``, dense projections) are the same objects, so an
        optimizer rebuilt mid-training keeps their state.
        """
        unknown = sorted(set(projections) - set(PROJECTIONS))
        if unknown:
            raise ValueError(f"projections: unknown {unknown}; expected some of {list(PROJECTIONS)}")
        new = cls(
            attention.embed_dim,
            attention.num_heads,
            dropout=attention.dropout,
            bias=attention.in_proj_bias is not None,
            add_bias_kv=attention.bias_k is not None,
            add_zero_attn=attention.add_zero_attn,
            kdim=attention.kdim,
            vdim=attention.vdim,
            batch_first=attention.batch_first,
            device="meta",
        )
        new._parameters = dict(attention._parameters)  # type: ignore[assignment]
        new._modules = dict(attention._modules)  # type: ignore[assignment]
        new.train(attention.training)
        for projection, layer in projections.items():
            if projection in PACKED:
                del new._parameters[PACKED[projection]]
            new._modules[projection] = layer
        return new

    @classmethod
    def from_spec(
        cls, attention: nn.MultiheadAttention, spec: Mapping[str, Any], name: str = ""
    ) -> TensorizedMultiheadAttention:
        """Rebuild the structure :meth:`spec` describes on a dense ``attention`` (random factors, to be loaded)."""
        dense = dense_projections(attention)
        missing = sorted(set(spec["projections"]) - set(dense))
        if missing:
            raise ValueError(f"layer {name!r}: the checkpoint factorized projection(s) {missing}, which it lacks")
        built = {
            projection: build_from_spec(dense[projection], dict(layer_spec), name=f"{name}.{projection}")
            for projection, layer_spec in spec["projections"].items()
        }
        return cls.from_projections(attention, built)  # type: ignore[arg-type]

    def spec(self) -> dict[str, Any]:
        """Plain-types description: ``{"kind": "multihead_attention", "projections": {name: linear spec}}``."""
        projections = {
            name: module.spec() for name, module in self._modules.items() if isinstance(module, TensorizedLinear)
        }
        return {"kind": "multihead_attention", "projections": projections}

    def dense_state(self) -> dict[str, torch.Tensor]:
        """The parameters of an equivalent ``nn.MultiheadAttention`` (factorized projections rebuilt, with grad)."""
        state: dict[str, torch.Tensor] = {name: p for name, p in self._parameters.items() if p is not None}
        for projection, parameter in PACKED.items():
            module = self._modules.get(projection)
            if isinstance(module, TensorizedLinear):
                state[parameter] = module.dense_weight()
        out: Any = self._modules["out_proj"]
        state["out_proj.weight"] = out.dense_weight() if isinstance(out, TensorizedLinear) else out.weight
        if out.bias is not None:
            state["out_proj.bias"] = out.bias
        return state

    def _dense_template(self) -> nn.MultiheadAttention:
        """A plain ``nn.MultiheadAttention`` on the meta device (no memory) whose forward runs on our tensors."""
        template = self.__dict__.get("_template")
        if template is None:
            template = self.__dict__["_template"] = nn.MultiheadAttention(
                self.embed_dim,
                self.num_heads,
                dropout=self.dropout,
                bias=self._parameters.get("in_proj_bias") is not None,
                add_bias_kv=self._parameters.get("bias_k") is not None,
                add_zero_attn=self.add_zero_attn,
                kdim=self.kdim,
                vdim=self.vdim,
                batch_first=self.batch_first,
                device="meta",
            )
        return template  # type: ignore[no-any-return]

    def forward(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:  # type: ignore[override]
        template = self._dense_template()
        template.train(self.training)
        out: tuple[torch.Tensor, torch.Tensor | None] = torch.func.functional_call(
            template, self.dense_state(), args, kwargs, strict=True
        )
        return out

    def to_dense(self) -> nn.MultiheadAttention:
        """An equivalent ``nn.MultiheadAttention`` (for export)."""
        state = {name: tensor.detach() for name, tensor in self.dense_state().items()}
        reference = state["out_proj.weight"]
        dense = nn.MultiheadAttention(
            self.embed_dim,
            self.num_heads,
            dropout=self.dropout,
            bias="in_proj_bias" in state,
            add_bias_kv="bias_k" in state,
            add_zero_attn=self.add_zero_attn,
            kdim=self.kdim,
            vdim=self.vdim,
            batch_first=self.batch_first,
            device=reference.device,
            dtype=reference.dtype,
        )
        dense.load_state_dict(state)
        return dense.train(self.training)
