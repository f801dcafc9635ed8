"""Rank regularization of tensorized layers: tltorch's tensor lasso, collected per step and folded in at the end.

tltorch 0.5 (``tltorch.tensor_hooks``) gives each Tucker / TT factorized tensor one learnable weight per rank
component (``lasso_weights``, ones at the start), multiplies the factors by them in a forward hook, and adds up
their absolute values as the forward runs; a weight driven to (below a threshold) zero switches its rank component
off. :class:`RankLasso` attaches that hook to every layer :func:`~trinity_lightning.tensor.tensorize` made, returns
the penalty of the forward passes since :meth:`RankLasso.reset` (``penalty x mean |lasso weight|``: exactly
``penalty`` right after attaching) and :func:`fold_rank_lasso` multiplies the weights into the factors when
training is done (the model then computes the same function without hooks, so export and ``detensorize`` see it).

Supported: Tucker (convolution kernels and the tensorized matrices of linear layers) and TT convolution kernels.
Not supported, with a ``ValueError`` naming the argument: CP (tltorch's CP lasso never multiplies its weights into
the forward pass, so it penalizes numbers that do not act on the model) and the block-TT matrices of TT linear
layers (tltorch has no lasso for them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trinity_lightning.tensor._backend import import_tltorch
from trinity_lightning.tensor.layers import TENSORIZED_LAYERS

tltorch = import_tltorch()
from tltorch.factorized_tensors import CPTensor, TTTensor, TuckerTensor  # noqa: E402
from tltorch.factorized_tensors.tensorized_matrices import BlockTT, TuckerTensorized  # noqa: E402
from tltorch.tensor_hooks._tensor_lasso import TensorLasso, TTLasso, TuckerLasso  # noqa: E402

LASSO_KEY = "lasso_weights"
"""Attribute (and state-dict key part) of a factorized weight that holds its lasso weights."""

UNSUPPORTED_CP = (
    "tltorch 0.5's CP lasso never multiplies its weights into the forward pass (it only adds their L1 norm, scaled "
    "by the penalty twice), so it would not regularize the rank"
)


class _TuckerLasso(TuckerLasso, factorization=TuckerTensorized):  # type: ignore[misc, call-arg]
    """tltorch's Tucker lasso, also for the Tucker-factorized matrices of our linear layers.

    tltorch's hook rebuilds a plain ``TuckerTensor``, which has no ``to_matrix``, so a ``TensorizedLinear`` would
    fail in its forward; here a tensorized input gives a ``TuckerTensorized`` of the same shape back.
    """

    def apply_lasso(self, tucker_tensor: Any, lasso_weights: Any) -> Any:
        factors = [factor * w for factor, w in zip(tucker_tensor.factors, lasso_weights)]
        if isinstance(tucker_tensor, TuckerTensorized):
            return TuckerTensorized(
                tucker_tensor.core, factors, tucker_tensor.tensorized_shape, rank=tucker_tensor.rank
            )
        return TuckerTensor(tucker_tensor.core, factors)


def _check_weight(name: str, weight: nn.Module, argument: str) -> None:
    if isinstance(weight, CPTensor):
        raise ValueError(
            f"{argument}: layer {name!r} is CP-factorized; {UNSUPPORTED_CP}. Use factorization='tucker' or 'tt', "
            f"or {argument}=0"
        )
    if isinstance(weight, BlockTT):
        raise ValueError(
            f"{argument}: layer {name!r} is a TT linear layer (a block tensor-train matrix), for which tltorch 0.5 "
            f"has no tensor lasso. Pass exclude=[{name!r}] (or exclude=[torch.nn.Linear]) to keep it dense, use "
            f"factorization='tucker', or {argument}=0"
        )
    if not isinstance(weight, (TuckerTensor, TTTensor)):
        raise ValueError(f"{argument}: layer {name!r} has a {type(weight).__name__} weight, which has no tensor lasso")


def _effective(weights: Any, threshold: float) -> list[torch.Tensor]:
    """What the hook multiplies in: the lasso weights clamped to [-1, 1], those <= threshold set to 0."""
    out = []
    for w in weights:
        w = torch.clamp(w.detach(), -1, 1)
        out.append(F.threshold(w, threshold, 0.0) if threshold else w)
    return out


class RankLasso:
    """tltorch's tensor lasso (rank regularization) on every tensorized layer of a model.

    Call :meth:`attach` once after :func:`~trinity_lightning.tensor.tensorize`, :meth:`reset` before each training
    forward pass, add :meth:`penalty` to the loss, and :func:`fold_rank_lasso` when done. The ``Tensorize``
    callback does all of it with ``rank_regularization=...``.

    Args:
        penalty: weight of the penalty in the loss (> 0). The penalty is ``penalty`` times the mean absolute lasso
            weight of the layers run since :meth:`reset` (1 when attached, 0 when every rank component is off).
        threshold: lasso weights at or below it are set to 0 (their rank component is switched off).

    Example:
        >>> from trinity_lightning.models import SmallCNN
        >>> from trinity_lightning.tensor import tensorize
        >>> net = SmallCNN(1, 10, channels=(8,), image_size=8)
        >>> _ = tensorize(net, "tucker", rank=0.5)
        >>> lasso = RankLasso(penalty=0.01)
        >>> lasso.attach(net)
        ['features.0', 'head.2']
        >>> lasso.reset()
        >>> loss = net(torch.randn(2, 1, 8, 8)).square().mean() + lasso.penalty()
        >>> round(float(lasso.penalty().detach()), 6)
        0.01
        >>> fold_rank_lasso(net)  # effective rank of each layer (all components still on)
        {'features.0': (1, 1, 3, 3), 'head.2': (2, 5, 4, 9)}
    """

    def __init__(self, penalty: float, threshold: float = 1e-6) -> None:
        if not penalty > 0 or penalty != penalty or penalty == float("inf"):
            raise ValueError(f"penalty: expected a finite penalty > 0, got {penalty}")
        if threshold < 0:
            raise ValueError(f"threshold: expected a threshold >= 0, got {threshold}")
        self.penalty_weight = float(penalty)
        self.threshold = float(threshold)
        # one hook object per factorization; each accumulates |w| and the number of weights of the layers it ran on
        self._hooks: dict[str, TensorLasso] = {
            "tucker": _TuckerLasso(penalty=penalty, threshold=threshold),
            "tt": TTLasso(penalty=penalty, threshold=threshold),
        }

    def attach(self, model: nn.Module, argument: str = "penalty") -> list[str]:
        """Attach the lasso to every tensorized layer of ``model`` (idempotent); returns their names.

        Layers that already have lasso weights (e.g. just loaded from a checkpoint) keep them. The hook runs before
        any tensor-dropout hook. Raises ``ValueError`` (naming ``argument``) for CP layers and TT linear layers.
        """
        layers = [(name, m) for name, m in model.named_modules() if isinstance(m, TENSORIZED_LAYERS)]
        for name, module in layers:
            _check_weight(name, module.weight, argument)
        for _, module in layers:
            weight = module.weight
            hook = self._hooks["tucker" if isinstance(weight, TuckerTensor) else "tt"]
            for key, old in list(weight._forward_hooks.items()):
                if isinstance(old, TensorLasso):
                    del weight._forward_hooks[key]
            if not hasattr(weight, LASSO_KEY):
                hook.apply(weight)  # creates the lasso weights (ones) and registers the hook last
                for key, old in list(weight._forward_hooks.items()):
                    if old is hook:
                        del weight._forward_hooks[key]
                # tltorch creates TT lasso weights on the CPU in float32 whatever the factors are
                reference = weight.core if isinstance(weight, TuckerTensor) else weight.factors[0]
                getattr(weight, LASSO_KEY).to(device=reference.device, dtype=reference.dtype)
            weight.register_forward_hook(hook, prepend=True)
        return [name for name, _ in layers]

    def reset(self) -> None:
        """Forget the penalty accumulated so far (call before each training forward pass)."""
        for hook in self._hooks.values():
            hook.reset()

    def penalty(self) -> torch.Tensor:
        """``penalty x mean |lasso weight|`` over the layer calls since :meth:`reset` (0 if none ran)."""
        total: Any = 0.0
        count = 0
        for hook in self._hooks.values():
            if hook.n_element:
                total = total + hook._loss
                count += hook.n_element
        if not count:
            return torch.zeros(())
        return self.penalty_weight * total / count  # type: ignore[no-any-return]


def effective_ranks(model: nn.Module, threshold: float = 1e-6) -> dict[str, tuple[int, ...]]:
    """Per tensorized layer with lasso weights, the number of rank components still on in each mode.

    Args:
        model: the model whose tensorized layers carry a lasso.
        threshold: lasso weights at or below it count as 0 (as in the hook).

    Example:
        >>> effective_ranks(torch.nn.Linear(2, 2))
        {}
    """
    ranks: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_modules():
        weights = getattr(module, "weight", None)
        if isinstance(module, TENSORIZED_LAYERS) and hasattr(weights, LASSO_KEY):
            ranks[name] = tuple(int((w != 0).sum()) for w in _effective(getattr(weights, LASSO_KEY), threshold))
    return ranks


def _fold_into(weight: Any, values: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for factor, w in zip(weight.factors, values):
            factor.mul_(w.to(device=factor.device, dtype=factor.dtype))  # Tucker (r,) / TT (1, 1, r): broadcasts


def fold_rank_lasso(model: nn.Module, threshold: float = 1e-6) -> dict[str, tuple[int, ...]]:
    """Multiply each layer's lasso weights into its factors and remove the lasso (same function, no hooks).

    Returns the effective ranks (see :func:`effective_ranks`) of the layers folded. Components whose lasso weight
    is 0 become zero columns (Tucker) / slices (TT); the parameter count does not change.

    Args:
        model: the model whose tensorized layers carry a lasso (see :meth:`RankLasso.attach`).
        threshold: lasso weights at or below it count as 0 (as in the hook).

    Example:
        >>> fold_rank_lasso(torch.nn.Linear(2, 2))
        {}
    """
    ranks = effective_ranks(model, threshold)
    for name in ranks:
        weight: Any = model.get_submodule(name).weight
        _fold_into(weight, _effective(getattr(weight, LASSO_KEY), threshold))
        for key, hook in list(weight._forward_hooks.items()):
            if isinstance(hook, TensorLasso):
                del weight._forward_hooks[key]
        delattr(weight, LASSO_KEY)
    return ranks


def fold_lasso_state(state: Mapping[str, Any], threshold: float = 1e-6) -> tuple[dict[str, Any], list[str]]:
    """A copy of a state dict with its lasso weights multiplied into the factors (and removed); and the layers.

    A checkpoint saved during rank-regularized training then loads into a plain tensorized model that computes the
    same function (:func:`~trinity_lightning.tensor.load_tensorized` and the ``Tensorize`` callback without
    ``rank_regularization`` use it).

    Example:
        >>> state = {"l.weight.factors.factor_0": torch.ones(2, 2),
        ...          "l.weight.lasso_weights.param_0": torch.tensor([1.0, 0.0])}
        >>> folded, names = fold_lasso_state(state)
        >>> folded["l.weight.factors.factor_0"].tolist(), names
        ([[1.0, 0.0], [1.0, 0.0]], ['l'])
    """
    marker = f".weight.{LASSO_KEY}."
    folded = {k: v for k, v in state.items() if marker not in k}
    names = sorted({k.split(marker)[0] for k in state if marker in k})
    for name in names:
        prefix = name + marker
        keys = sorted((k for k in state if k.startswith(prefix)), key=lambda k: int(k.rsplit("_", 1)[-1]))
        for i, w in enumerate(_effective([state[k] for k in keys], threshold)):
            key = f"{name}.weight.factors.factor_{i}"
            folded[key] = folded[key] * w.to(device=folded[key].device, dtype=folded[key].dtype)
    return folded, names
