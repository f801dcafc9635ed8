"""Signum: SGD on the sign of the momentum (``momentum=0`` gives signSGD), with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["Signum"]


class Signum(Optimizer):
    r"""Sign momentum (Bernstein et al., ICML 2018): :math:`m \leftarrow \beta m + (1-\beta) g`,
    :math:`x \leftarrow x - \eta\,(\mathrm{sign}(m) + \lambda x)`.

    Tune it like Adam (``lr`` around 1e-4 to 1e-3), not like SGD. Weight decay is decoupled (AdamW style): it is
    multiplied by ``lr`` and not passed through the sign. Locally ``sign(0) = 0``; the 1-bit rule for zeros and
    ties only applies to what is communicated (see :mod:`trinity_lightning.distributed.packing`).

    With the majority-vote hook the momentum lives in the hook (each worker keeps its own) and the optimizer
    must use ``momentum=0``: the gradients it sees are already the voted signs. ``SignSGDStrategy`` moves a
    Signum's momentum into the hook for you.

    Args:
        params: parameters or parameter groups.
        lr: step size.
        momentum: :math:`\beta` in ``[0, 1)``.
        weight_decay: decoupled weight decay :math:`\lambda \geq 0`.

    Raises:
        RuntimeError: on sparse gradients (``step``).

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
        >>> opt = Signum([w], lr=0.1, momentum=0.0)
        >>> w.grad = torch.tensor([2.0, -3.0, 0.0]); _ = opt.step()
        >>> w.detach().tolist()
        [0.8999999761581421, -0.8999999761581421, 0.5]
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 1e-4, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> None:
        if not lr > 0.0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1), got {momentum}")
        if not weight_decay >= 0.0:
            raise ValueError(f"weight_decay: expected a non-negative value, got {weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Apply one update; ``closure`` re-evaluates the loss (returned) as in ``torch.optim``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, beta, decay = group["lr"], group["momentum"], group["weight_decay"]
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError(
                        f"Signum does not support sparse gradients (parameter of shape "
                        f"{tuple(param.shape)}); use dense gradients, e.g. nn.Embedding(sparse=False)"
                    )
                direction = grad
                if beta > 0:
                    state = self.state[param]
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = torch.zeros_like(param)
                    buffer.mul_(beta).add_(grad, alpha=1.0 - beta)
                    direction = buffer
                if decay:
                    param.mul_(1.0 - lr * decay)
                param.add_(torch.sign(direction), alpha=-lr)
        return loss
