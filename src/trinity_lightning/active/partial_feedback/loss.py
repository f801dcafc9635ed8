"""The partial-label loss: put probability mass anywhere inside the candidate set."""

from __future__ import annotations

import torch
from torch import nn

_REDUCTIONS = ("mean", "sum", "none")


def partial_label_loss(logits: torch.Tensor, candidates: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""``-log sum_{y in candidates} p(y | x)``, computed as ``logsumexp(all) - logsumexp(candidates)``.

    Works for any classifier's logits. With one candidate it equals cross-entropy; an example whose
    candidates are all classes (nothing known yet) or none (contradictory answers) contributes exactly 0
    and is left out of the mean.

    Args:
        logits: ``(N, C)`` unnormalized scores.
        candidates: ``(N, C)`` boolean (or 0/1) mask of the classes still possible.
        reduction: ``"mean"`` (over informative examples; 0 when there are none), ``"sum"`` or ``"none"``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> cands = torch.tensor([[True, True, False], [True, True, True]])
        >>> partial_label_loss(logits, cands, reduction="none")
        tensor([0.1126, 0.0000])
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
    if logits.ndim != 2:
        raise ValueError(f"logits: expected shape (N, C), got {tuple(logits.shape)}")
    if candidates.shape != logits.shape:
        raise ValueError(f"candidates: expected shape {tuple(logits.shape)} like logits, got {tuple(candidates.shape)}")
    mask = candidates.bool()
    count = mask.sum(dim=1)
    informative = (count > 0) & (count < logits.shape[1])
    # -inf outside the candidates; rows without information get the full set so nothing is -inf there
    safe = mask | ~informative[:, None]
    inside = torch.logsumexp(logits.masked_fill(~safe, float("-inf")), dim=1)
    loss = (torch.logsumexp(logits, dim=1) - inside) * informative.to(logits.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / informative.sum().clamp_min(1).to(logits.dtype)


class PartialLabelLoss(nn.Module):
    """Module form of :func:`partial_label_loss` (for ``criterion=`` style models).

    Example:
        >>> PartialLabelLoss()(torch.zeros(2, 4), torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0]]))
        tensor(1.0397)
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return partial_label_loss(logits, candidates, self.reduction)
