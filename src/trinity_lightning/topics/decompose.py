"""Decomposing the whitened third moment ``T = Σ λ_i v_i^{⊗3}`` (k × k × k, orthogonally decomposable).

* :func:`tensor_power_method`: the robust tensor power method (Anandkumar et al. 2014, Alg. 1), all restarts of
  one component iterated at once as one batched contraction, then deflation.
* :func:`cp_als`: CP decomposition by alternating least squares through TensorLy (``tensorly.decomposition.parafac``)
  on the NumPy backend, inside :func:`tensorly.backend_context` so the caller's global backend is left alone.
* :func:`project_simplex`: Euclidean projection of rows onto the probability simplex (un-whitened topics).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["cp_als", "project_simplex", "tensor_power_method"]


def _apply(T: Tensor, V: Tensor) -> Tensor:
    """``T(I, v, v)`` for each row ``v`` of ``V`` (r × k) -> r × k."""
    return torch.einsum("ijl,rj,rl->ri", T, V, V)


def tensor_power_method(
    T: Tensor, k: int, n_restarts: int = 10, n_iter: int = 100, tol: float = 1e-10, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Robust tensor power method with deflation: eigenvalues ``λ`` (k) and unit eigenvectors (k × k, rows).

    For each component, ``n_restarts`` random unit vectors are iterated together (``v ← T(I, v, v)/‖·‖``, one
    batched einsum per step, stopping early once all moved by less than ``tol``); the one with the largest
    ``T(v, v, v)`` is refined, kept, and deflated from ``T``.

    Example:
        >>> Q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        >>> T = torch.einsum("i,ia,ib,ic->abc", torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64), Q.T, Q.T, Q.T)
        >>> lam, vecs = tensor_power_method(T, 4)
        >>> [round(x, 6) for x in lam.tolist()]
        [4.0, 3.0, 2.0, 1.0]
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    T = T.clone()
    lams, vecs = [], []
    for _ in range(k):
        V = torch.randn(n_restarts, T.shape[0], generator=g, dtype=T.dtype).to(T.device)
        V = V / V.norm(dim=1, keepdim=True)
        for _ in range(n_iter):
            new = _apply(T, V)
            new = new / new.norm(dim=1, keepdim=True).clamp(min=1e-300)
            moved = (new - V).norm(dim=1).max()
            V = new
            if moved < tol:
                break
        values = torch.einsum("ri,ri->r", _apply(T, V), V)
        v = V[int(values.argmax())][None]
        for _ in range(n_iter):
            new = _apply(T, v)
            new = new / new.norm(dim=1, keepdim=True).clamp(min=1e-300)
            moved = (new - v).norm()
            v = new
            if moved < tol:
                break
        v = v[0]
        lam = torch.einsum("ijl,i,j,l->", T, v, v, v)
        T = T - lam * torch.einsum("i,j,l->ijl", v, v, v)
        lams.append(lam)
        vecs.append(v)
    return torch.stack(lams), torch.stack(vecs)


def cp_als(T: Tensor, k: int, n_iter: int = 200, tol: float = 1e-10, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Rank-``k`` CP decomposition of the symmetric ``T`` by ALS (TensorLy): ``λ`` (k) and unit vectors (k × k).

    The three factor matrices of a symmetric tensor agree up to sign; each component's vector is the first
    factor's column with the sign that makes ``T(v, v, v)`` positive, and ``λ = T(v, v, v)``.

    Example:
        >>> Q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
        >>> T = torch.einsum("i,ia,ib,ic->abc", torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64), Q.T, Q.T, Q.T)
        >>> lam, _ = cp_als(T, 3)
        >>> sorted(round(x, 4) for x in lam.tolist())
        [1.0, 2.0, 3.0]
    """
    import tensorly as tl
    from tensorly.decomposition import parafac

    with tl.backend_context("numpy"):
        cp = parafac(
            T.detach().cpu().numpy(),
            rank=k,
            n_iter_max=n_iter,
            tol=tol,
            init="svd",
            random_state=np.random.RandomState(seed),
            normalize_factors=True,
        )
    A = torch.from_numpy(np.asarray(cp.factors[0])).to(T.device, T.dtype).T  # k × k, rows = components
    A = A / A.norm(dim=1, keepdim=True).clamp(min=1e-300)
    lam = torch.einsum("ijl,ri,rj,rl->r", T, A, A, A)
    sign = torch.where(lam < 0, -1.0, 1.0).to(T.dtype)
    A = A * sign[:, None]
    lam = lam * sign
    order = torch.argsort(lam, descending=True)
    return lam[order], A[order]


def project_simplex(X: Tensor) -> Tensor:
    """Euclidean projection of each row of ``X`` onto the probability simplex (Duchi et al. 2008), vectorized.

    Example:
        >>> project_simplex(torch.tensor([[0.6, 0.6, -0.2]])).tolist()
        [[0.5, 0.5, 0.0]]
    """
    n = X.shape[1]
    u, _ = torch.sort(X, dim=1, descending=True)
    css = u.cumsum(dim=1) - 1
    ind = torch.arange(1, n + 1, device=X.device, dtype=X.dtype)
    cond = u - css / ind > 0
    rho = cond.sum(dim=1, keepdim=True) - 1  # the condition holds on a prefix
    theta = css.gather(1, rho) / (rho + 1).to(X.dtype)
    return (X - theta).clamp(min=0)
