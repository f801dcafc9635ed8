"""The NRM's training losses as plain functions: max-min cross-entropy, reconstruction, rendering path normalization.

Example:
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    >>> round(max_min_cross_entropy(logits, logits, torch.tensor([0, 1]), 1.0, 0.0).item(), 4)
    0.2201
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def max_min_cross_entropy(
    logits_max: torch.Tensor,
    logits_min: torch.Tensor | None,
    target: torch.Tensor,
    alpha_max: float = 1.0,
    alpha_min: float = 1.0,
) -> torch.Tensor:
    """``alpha_max * CE(max logits) + alpha_min * CE(min logits)``.

    The Max term maximizes the posterior of the correct label under the Max network (the best latent
    configuration per class); the Min term is the same loss on the Min network (the worst configuration per
    class), so descending it lowers the posteriors of the incorrect labels even on their least favourable
    rendering paths. With ``logits_min=None`` or ``alpha_min=0`` this is ordinary cross-entropy.

    Args:
        logits_max: ``(N, K)`` scores of the Max network.
        logits_min: ``(N, K)`` scores of the Min network, or ``None``.
        target: ``(N,)`` class ids.
        alpha_max: weight of the Max term (>= 0).
        alpha_min: weight of the Min term (>= 0).

    Example:
        >>> z = torch.tensor([[1.0, -1.0]])
        >>> round(max_min_cross_entropy(z, -z, torch.tensor([0]), alpha_max=1.0, alpha_min=0.5).item(), 4)
        1.1904
    """
    if alpha_max < 0 or alpha_min < 0:
        raise ValueError(f"alpha_max, alpha_min: expected non-negative weights, got {alpha_max}, {alpha_min}")
    loss = alpha_max * F.cross_entropy(logits_max, target)
    if logits_min is not None and alpha_min > 0:
        loss = loss + alpha_min * F.cross_entropy(logits_min, target)
    return loss


def reconstruction_loss(rendered: torch.Tensor, images: torch.Tensor, fit_scale: bool = True) -> torch.Tensor:
    """Per-example mean squared error between the input and the rendered images, shape ``(N,)``.

    It is ``-log p(x | y, z)`` of the NRM's Gaussian pixel noise up to constants. In the NRM the class score is
    ``<mu(y, z), x> / sigma^2 + prior terms``, so the network's rendering (its transposed Jacobian applied to the
    class) is ``mu / sigma^2``: the image itself is the rendering times the noise variance. With
    ``fit_scale=True`` that one scalar is set to its least-squares value for the batch,
    ``sigma^2 = <x, r> / <r, r>`` (at least 0), which makes the loss independent of the rendering's overall scale,
    so that it does not fight the classifier over the size of the logits.

    Args:
        rendered: ``(N, C, H, W)`` rendered images ``r``.
        images: ``(N, C, H, W)`` inputs ``x``.
        fit_scale: multiply ``r`` by the batch's least-squares ``sigma^2`` first.

    Example:
        >>> x = torch.ones(2, 1, 2, 2)
        >>> reconstruction_loss(0.5 * x, x).tolist(), reconstruction_loss(0.5 * x, x, fit_scale=False).tolist()
        ([0.0, 0.0], [0.25, 0.25])
    """
    if rendered.shape != images.shape:
        raise ValueError(f"rendered: shape {tuple(rendered.shape)} differs from images {tuple(images.shape)}")
    if fit_scale:
        gain = ((rendered * images).sum() / rendered.pow(2).sum().clamp_min(1e-12)).clamp_min(0.0)
        rendered = gain * rendered
    return (rendered - images).pow(2).flatten(1).mean(dim=1)


def rendering_path_normalization(
    rendered: Sequence[torch.Tensor], rendered_prior: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Rendering path normalization (RPN), per example, shape ``(N,)``.

    ``sum_l sum_{c,h,w} | b_l,c * (mu_l(y, z) - mu_l(y, z_0)) |``, where ``mu_l(y, z)`` is the signal rendered
    from class ``y`` at level ``l`` along the inferred path ``z`` (after that level's switches), ``z_0`` is the
    path the prior alone selects (the latents of a blank image) and ``b_l`` the level's bias, the prior's
    parameter. ``sum_l <b_l, mu_l(y, z)>`` is the log-prior term of path ``z`` in the class score, so RPN
    measures how far the inferred path's prior term departs, unit by unit, from the prior's own path; it bounds
    ``|log prior(y, z) - log prior(y, z_0)|`` in nats. It is
    zero when the biases are zero or the inferred switches equal the prior's, and positive otherwise. The
    biases are treated as constants (the penalty acts on the rendering), as in the authors' implementation.

    Args:
        rendered: per level, ``(N, C, H, W)`` rendered along the inferred path.
        rendered_prior: per level, the same rendered along the prior's path.
        biases: per level, ``(C,)`` biases.

    Example:
        >>> mu, mu_prior = [torch.ones(1, 2, 2, 2)], [torch.zeros(1, 2, 2, 2)]
        >>> rendering_path_normalization(mu, mu_prior, [torch.tensor([0.5, -1.0])]).tolist()
        [6.0]
    """
    if not (len(rendered) == len(rendered_prior) == len(biases)) or not rendered:
        raise ValueError(
            f"rendered, rendered_prior, biases: expected the same non-zero number of levels, got "
            f"{len(rendered)}, {len(rendered_prior)}, {len(biases)}"
        )
    total = torch.zeros(rendered[0].shape[0], device=rendered[0].device, dtype=rendered[0].dtype)
    for mu, mu_prior, bias in zip(rendered, rendered_prior, biases):
        weighted = bias.detach().view(1, -1, 1, 1) * (mu - mu_prior)
        total = total + weighted.abs().flatten(1).sum(dim=1)
    return total
