"""Fast CP initialisation: a structured start and a few alternating-least-squares sweeps, in plain torch.

TensorLy's ``parafac`` (what tltorch's ``from_conv`` / ``from_linear`` run, 100 sweeps from an SVD start) spends
most of its time forming Khatri-Rao products as large as the whole kernel for every mode and re-reading the
kernel once per mode. :func:`cp_als` does two things differently:

* **Start.** For a convolution kernel ``(out, in, *spatial)`` (few spatial positions), the start is the best CP
  whose spatial factors are one-hot: an SVD of the ``out x in`` slice at each spatial position, keeping the
  ``rank`` largest singular triplets over all positions. It is already within a few percent of a converged CP at
  the ranks tensorization uses, so a few sweeps finish the job. Other tensors start from the leading left
  singular vectors of each unfolding (TensorLy's ``"svd"`` start), padded with small random columns.
* **Sweeps.** The modes are split into two contiguous groups (the split that keeps both groups' sizes
  smallest); one matrix product of the kernel with the Khatri-Rao product of a group's factors serves every
  mode of the other group, so a sweep reads the kernel twice whatever its order, and no Khatri-Rao product is
  larger than a group times the rank.

Example:
    >>> import torch
    >>> kernel = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    >>> weights, factors = cp_als(kernel, rank=20, n_sweeps=5)
    >>> [tuple(f.shape) for f in factors]
    [(16, 20), (8, 20), (3, 20), (3, 20)]
    >>> bool(cp_relative_error(kernel, weights, factors) < 0.8)
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["DEFAULT_SWEEPS", "cp_als", "cp_relative_error", "slice_svd_start", "unfolding_svd_start"]

DEFAULT_SWEEPS = 25
"""Sweeps after the start: within 5% of the reconstruction error of TensorLy's 100 sweeps on ResNet-18 kernels
(``benchmarks/results/cp_tensorize.json``)."""


def _khatri_rao(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Column-wise Kronecker product, rows in C order of the factors' row indices: ``(prod I_k, R)``."""
    out = factors[0]
    rank = out.shape[1]
    for factor in factors[1:]:
        out = (out.unsqueeze(1) * factor.unsqueeze(0)).reshape(-1, rank)
    return out


def slice_svd_start(tensor: torch.Tensor, rank: int) -> list[torch.Tensor]:
    """The best CP of ``tensor`` (``(out, in, *spatial)``) whose spatial factors are one-hot vectors.

    Each spatial position's ``out x in`` slice is decomposed by SVD and the ``rank`` largest singular triplets over
    all positions are kept (components beyond the slices' total rank start as small random columns).

    Example:
        >>> factors = slice_svd_start(torch.randn(4, 3, 2, 2), rank=5)
        >>> [tuple(f.shape) for f in factors]
        [(4, 5), (3, 5), (2, 5), (2, 5)]
    """
    if tensor.dim() < 3:
        raise ValueError(
            f"tensor: expected (out, in, *spatial) with at least one spatial mode, got {tuple(tensor.shape)}"
        )
    out_size, in_size = tensor.shape[:2]
    spatial = tuple(tensor.shape[2:])
    positions = math.prod(spatial)
    slices = tensor.reshape(out_size, in_size, positions).permute(2, 0, 1)
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)
    per_slice = s.shape[1]
    kept = min(rank, s.numel())
    take = torch.topk(s.reshape(-1), kept).indices
    where, component = take // per_slice, take % per_slice
    left = u[where, :, component].T * s[where, component]
    right = vh[where, component, :].T
    factors = [left, right]
    coordinates = torch.unravel_index(where, spatial)
    columns = torch.arange(kept, device=tensor.device)
    for axis, size in enumerate(spatial):
        onehot = torch.zeros(size, kept, dtype=tensor.dtype, device=tensor.device)
        onehot[coordinates[axis], columns] = 1.0
        factors.append(onehot)
    if kept < rank:
        scale = 1e-3 * float(tensor.abs().mean())
        factors = [
            torch.cat([f, scale * torch.randn(f.shape[0], rank - kept, dtype=f.dtype, device=f.device)], 1)
            for f in factors
        ]
    return factors


def unfolding_svd_start(tensor: torch.Tensor, rank: int, seed: int = 0) -> list[torch.Tensor]:
    """TensorLy's ``"svd"`` start: the leading left singular vectors of each unfolding, padded at random.

    Example:
        >>> [tuple(f.shape) for f in unfolding_svd_start(torch.randn(4, 3, 5), rank=6)]
        [(4, 6), (3, 6), (5, 6)]
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    factors = []
    for mode, size in enumerate(tensor.shape):
        unfolded = tensor.movedim(mode, 0).reshape(size, -1)
        u, s, _ = torch.linalg.svd(unfolded, full_matrices=False)
        k = min(rank, u.shape[1])
        factor = u[:, :k]
        if mode == 0:
            factor = factor * s[:k]
        if k < rank:
            extra = torch.randn(size, rank - k, generator=generator, dtype=tensor.dtype).to(tensor.device)
            factor = torch.cat([factor, extra * float(s[-1] if mode == 0 else 1.0) / math.sqrt(size)], 1)
        factors.append(factor)
    return factors


def _best_split(shape: Sequence[int]) -> int:
    """``m`` such that modes ``[:m]`` and ``[m:]`` have the smallest larger size (ties: the earlier split)."""
    best, best_size = 1, math.inf
    for m in range(1, len(shape)):
        size = max(math.prod(shape[:m]), math.prod(shape[m:]))
        if size < best_size:
            best, best_size = m, size
    return best


def _group_mttkrp(
    partial: torch.Tensor, shape: Sequence[int], factors: Sequence[torch.Tensor], mode: int
) -> torch.Tensor:
    """MTTKRP of ``mode`` inside a group from ``partial`` (``(prod shape, R)``: the kernel times the other group)."""
    if len(shape) == 1:
        return partial
    rank = partial.shape[1]
    others = [f for j, f in enumerate(factors) if j != mode]
    moved = partial.reshape(*shape, rank).movedim(mode, 0).reshape(shape[mode], -1, rank)
    return (moved * _khatri_rao(others).unsqueeze(0)).sum(1)


def cp_als(
    tensor: torch.Tensor,
    rank: int,
    n_sweeps: int = DEFAULT_SWEEPS,
    start: Sequence[torch.Tensor] | None = None,
    l2_reg: float = 1e-7,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """CP decomposition ``tensor ~ sum_r weights[r] * outer(factors[0][:, r], factors[1][:, r], ...)`` by ALS.

    Args:
        tensor: the dense tensor (a conv kernel ``(out, in, *spatial)`` gets :func:`slice_svd_start`; any
            other order-2+ tensor :func:`unfolding_svd_start`).
        rank: number of components.
        n_sweeps: ALS sweeps after the start (0: the start itself).
        start: explicit starting factors (one ``(size, rank)`` matrix per mode).
        l2_reg: ridge added to each normal equation, relative to its mean diagonal.

    Returns:
        ``(weights, factors)`` as TensorLy's ``parafac`` returns them (weights all ones; computed in float64 for
        float32/float16 input, returned in the input's dtype).

    Example:
        >>> w, f = cp_als(torch.randn(6, 5, 3, 3), rank=4, n_sweeps=2)
        >>> w.shape, len(f)
        (torch.Size([4]), 4)
    """
    if tensor.dim() < 2:
        raise ValueError(f"tensor: expected at least 2 modes, got shape {tuple(tensor.shape)}")
    if rank < 1:
        raise ValueError(f"rank: expected a positive number of components, got {rank}")
    if n_sweeps < 0:
        raise ValueError(f"n_sweeps: expected a non-negative number, got {n_sweeps}")
    dtype = tensor.dtype
    work = tensor.detach().to(torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype)
    shape = tuple(work.shape)
    if start is not None:
        factors = [f.detach().to(work.dtype).clone() for f in start]
        if [tuple(f.shape) for f in factors] != [(s, rank) for s in shape]:
            raise ValueError(f"start: expected factors of shapes {[(s, rank) for s in shape]}")
    elif work.dim() >= 3 and math.prod(shape[2:]) <= 64:
        factors = slice_svd_start(work, rank)
    else:
        factors = unfolding_svd_start(work, rank)
    m = _best_split(shape)
    left, right = shape[:m], shape[m:]
    matrix = work.reshape(math.prod(left), math.prod(right))
    grams = [f.T @ f for f in factors]
    eye = torch.eye(rank, dtype=work.dtype, device=work.device)

    def solve(mode: int, mttkrp: torch.Tensor) -> None:
        gram = torch.ones_like(eye)
        for j, g in enumerate(grams):
            if j != mode:
                gram = gram * g
        gram = gram + eye * (l2_reg * float(gram.diagonal().mean()) + 1e-12)
        factors[mode] = torch.linalg.solve(gram, mttkrp.T).T
        grams[mode] = factors[mode].T @ factors[mode]

    for _ in range(n_sweeps):
        partial = matrix @ _khatri_rao(factors[m:])  # (prod left, R): serves every left mode
        for mode in range(m):
            solve(mode, _group_mttkrp(partial, left, factors[:m], mode))
        partial = matrix.T @ _khatri_rao(factors[:m])  # (prod right, R): serves every right mode
        for mode in range(m, len(shape)):
            solve(mode, _group_mttkrp(partial, right, factors[m:], mode - m))
    weights = torch.ones(rank, dtype=dtype, device=tensor.device)
    return weights, [f.to(dtype) for f in factors]


def cp_relative_error(tensor: torch.Tensor, weights: torch.Tensor, factors: Sequence[torch.Tensor]) -> float:
    """``||tensor - cp(weights, factors)|| / ||tensor||``.

    Example:
        >>> t = torch.ones(2, 3, 4)
        >>> cp_relative_error(t, torch.ones(1), [torch.ones(2, 1), torch.ones(3, 1), torch.ones(4, 1)])
        0.0
    """
    rank = weights.shape[0]
    columns = [factors[0] * weights, *factors[1:]]
    rebuilt = (columns[0] @ _khatri_rao(columns[1:]).T).reshape(tensor.shape)
    return float((tensor - rebuilt).norm() / tensor.norm()) if rank else 1.0
