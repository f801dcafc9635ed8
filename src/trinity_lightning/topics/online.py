"""Online stochastic tensor decomposition: SGD on the whitened third moment, never forming it.

Huang, Niranjan, Hakeem & Anandkumar, "Online tensor methods for learning latent variable models", JMLR 2015.
With the whitening ``W`` (V × k) from the second moment, the whitened third moment ``T = M3(W, W, W)`` is
orthogonally decomposable, ``T = Σ λ_i u_i^{⊗3}``. Instead of building ``T`` (k³ numbers) and running the power
method, minimise

    L(v_1..v_k) = θ/2 ‖Σ_i v_i^{⊗3}‖²_F − ⟨Σ_i v_i^{⊗3}, T⟩

by stochastic gradient descent. The gradient in ``v_i`` is ``3θ Σ_j ⟨v_j, v_i⟩² v_j − 3 T(I, v_i, v_i)``; both
terms are k-vectors, and ``T(I, v, v)`` is estimated on each minibatch of documents from the whitened counts
``y_d = Wᵀ c_d`` and the whitened words ``W[w]`` only (the per-document unbiased third-moment estimate with its
diagonal corrections, :func:`whitened_contraction`). At a minimum ``v_i = (λ_i/θ)^{1/3} u_i``, so
``λ_i = θ ‖v_i‖³`` and ``u_i = v_i / ‖v_i‖``. Memory is O(V·k) for the whitening plus O(k²) for the iterate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from trinity_lightning.topics.moments import SparseBatch, Whitening, _weights

__all__ = ["online_tensor_decomposition", "whitened_contraction"]


def _e3_contraction(batch: SparseBatch, W: Tensor, V: Tensor) -> tuple[Tensor, Tensor]:
    """``Σ_d s₃ E3_d(I, v, v)`` in the whitened space for each row ``v`` of ``V`` (r × k), and the number of
    documents with ≥ 3 words; ``E3_d`` is the unbiased per-document estimate of ``E[x₁⊗x₂⊗x₃]``."""
    X, XT = batch.X(), batch.XT()
    _, _, s3 = _weights(batch.lengths())
    Y = X @ W  # n × k, y_d = Wᵀ c_d
    P = Y @ V.T  # n × r, ⟨y_d, v_i⟩
    Q = W @ V.T  # V × r, ⟨W[w], v_i⟩
    sP = s3[:, None] * P
    term1 = (sP * P).T @ Y  # Σ s₃ ⟨y,v⟩² y
    term2 = 2 * (Q * (XT @ sP)).T @ W  # Σ s₃ Σ_w c_w ⟨u_w,v⟩⟨y,v⟩ u_w, two placements
    term3 = (s3[:, None] * (X @ (Q * Q))).T @ Y  # Σ s₃ Σ_w c_w ⟨u_w,v⟩² y
    g3 = XT @ s3[:, None]  # V × 1
    term4 = 2 * (g3 * Q * Q).T @ W  # 2 Σ s₃ Σ_w c_w ⟨u_w,v⟩² u_w
    return term1 - term2 - term3 + term4, (batch.lengths() >= 3).sum()


def whitened_contraction(batch: SparseBatch, W: Tensor, m: Tensor, V: Tensor, alpha0: float) -> Tensor:
    """Minibatch estimate of ``T(I, v, v)`` (r × k) for each row ``v`` of ``V``, where ``T = M3(W, W, W)`` is the
    whitened LDA third moment, ``W`` the V × k whitening and ``m = Wᵀ M1`` (k, from the whole corpus).

    No k × k × k array is formed: the LDA corrections of ``M3`` are applied in the whitened space, where
    ``Wᵀ E2 W = I + α₀/(α₀+1) m mᵀ``.

    Example:
        >>> import scipy.sparse as sp
        >>> from trinity_lightning.topics.readers import csr_to_batch
        >>> b = csr_to_batch(sp.csr_matrix([[2.0, 1.0, 1.0], [0.0, 2.0, 3.0]]))
        >>> W, m = torch.eye(3, dtype=torch.float64)[:, :2], torch.zeros(2, dtype=torch.float64)
        >>> whitened_contraction(b, W, m, torch.eye(2, dtype=torch.float64), 1.0).shape
        torch.Size([2, 2])
    """
    e3, n3 = _e3_contraction(batch, W, V)
    out = e3 / n3.clamp(min=1)
    a3 = alpha0 / (alpha0 + 2)
    b3 = 2 * alpha0**2 / ((alpha0 + 1) * (alpha0 + 2))
    c2 = alpha0 / (alpha0 + 1)
    mv = V @ m  # r
    e2v = V + c2 * mv[:, None] * m[None, :]  # (Wᵀ E2 W) v
    vev = (V * V).sum(dim=1) + c2 * mv**2  # vᵀ (Wᵀ E2 W) v
    pair = 2 * mv[:, None] * e2v + vev[:, None] * m[None, :]
    return out - a3 * pair + b3 * (mv**2)[:, None] * m[None, :]


def _initial_vectors(first_epoch: Iterable[SparseBatch], W: Tensor, k: int, seed: int) -> Tensor:
    """``k`` unit starting vectors: whitened documents ``Wᵀc_d / ‖·‖`` of the first minibatches, chosen by
    successive projections (each the farthest from the span of those before, so two starts rarely sit on one
    topic). A whitened document is a positive mix of the whitened topics, so every start has a positive overlap
    with some eigenvector; a random Gaussian start does not, and a vector with ``T(v, v, v) < 0`` shrinks to
    the flat stationary point ``v = 0`` of the loss instead."""
    pool: list[Tensor] = []
    for batch in first_epoch:
        b = batch.to(W.device, W.dtype)
        Y = (b.X() @ W)[b.lengths() >= 3]
        pool.append(Y)
        if sum(len(y) for y in pool) >= 50 * k:
            break
    Y = torch.cat(pool) if pool else W.new_zeros(0, k)
    if len(Y) < k:
        raise ValueError(f"need at least n_components={k} documents with >= 3 words to start the SGD, got {len(Y)}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    Y = Y[torch.randperm(len(Y), generator=g).to(Y.device)]
    Y = Y / Y.norm(dim=1, keepdim=True).clamp(min=1e-300)
    R, chosen = Y.clone(), []
    for _ in range(k):  # successive projections: each start the document farthest from the span of the others
        i = int(R.norm(dim=1).argmax())
        chosen.append(i)
        r = R[i] / R[i].norm().clamp(min=1e-300)
        R = R - (R @ r)[:, None] * r[None, :]
    return Y[chosen]


def online_tensor_decomposition(
    batches: Callable[[int], Iterable[SparseBatch]],
    whitening: Whitening,
    m1: Tensor,
    k: int,
    alpha0: float,
    n_epochs: int = 10,
    learning_rate: float = 0.1,
    decay: float = 0.02,
    theta: float = 1.0,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Eigenvalues ``λ`` (k) and unit eigenvectors (k × k, rows) of the whitened third moment by SGD.

    ``batches(epoch)`` yields the minibatches of one pass (shuffled as the caller likes). Step ``t`` moves every
    ``v_i`` by ``−η_{t,i} (θ Σ_j ⟨v_j,v_i⟩² v_j − T̂_t(I, v_i, v_i))`` with
    ``η_{t,i} = learning_rate / ((1 + decay·t) · max(1, θ‖v_i‖⁴))`` (the second factor is the loss's curvature at
    a minimum, so one ``learning_rate`` suits small and large eigenvalues alike) and each move clipped to a quarter
    of ``max(‖v_i‖, 1)`` (a trust region against heavy-tailed minibatch estimates),
    from ``k`` whitened documents of the first minibatches (unit norm); ``T̂_t`` is the minibatch estimate of
    :func:`whitened_contraction`. The result is the average of the iterates over the last epoch (Polyak-Ruppert),
    which removes most of the minibatch noise of the last steps.

    Raises:
        FloatingPointError: the iterate became non-finite (step too large).

    Example:
        >>> import scipy.sparse as sp
        >>> from trinity_lightning.topics import synthetic_lda
        >>> from trinity_lightning.topics.moments import MomentSums, whitening_only
        >>> from trinity_lightning.topics.readers import iter_batches
        >>> data = synthetic_lda(n_docs=2000, n_words=30, n_topics=3, seed=0)
        >>> parts = list(iter_batches(sp.csr_matrix(data.counts), 200))
        >>> sums = MomentSums.empty(torch.eye(30, dtype=torch.float64), third=False)
        >>> for b in parts:
        ...     sums.add(b)
        >>> w = whitening_only(sums, 3, 1.0)
        >>> lam, vecs = online_tensor_decomposition(lambda e: parts, w, sums.m1_mean(), 3, 1.0, n_epochs=5)
        >>> lam.shape, vecs.shape
        (torch.Size([3]), torch.Size([3, 3]))
    """
    if n_epochs < 1:
        raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
    W = whitening.W
    m = W.T @ m1
    V = _initial_vectors(batches(0), W, k, seed)
    step = 0
    for epoch in range(n_epochs):
        avg, n_avg = torch.zeros_like(V), 0
        for batch in batches(epoch):
            b = batch.to(W.device, W.dtype)
            gram = (V @ V.T) ** 2
            grad = theta * gram @ V - whitened_contraction(b, W, m, V, alpha0)
            # per-vector step η_t / max(1, θ‖v_i‖⁴): the loss's curvature at a minimum is ~3θ‖v_i‖⁴, so the step is
            # stable whatever the eigenvalue (real corpora have eigenvalues many times those of synthetic ones)
            norms = V.norm(dim=1, keepdim=True)
            rate = (learning_rate / (1 + decay * step)) / (theta * norms**4).clamp(min=1.0)
            delta = rate * grad
            # trust region: no vector moves by more than a quarter of max(‖v_i‖, 1) in one step (a minibatch estimate
            # of the third moment is heavy-tailed on real text; unclipped, one bad batch sends a vector off to inf)
            room = 0.25 * norms.clamp(min=1.0)
            V = V - delta * (room / delta.norm(dim=1, keepdim=True).clamp(min=1e-300)).clamp(max=1.0)
            step += 1
            if not bool(torch.isfinite(V).all()):
                raise FloatingPointError(
                    f"the online tensor SGD diverged at step {step} (epoch {epoch}): lower learning_rate "
                    f"(now {learning_rate}) or raise the minibatch size"
                )
            avg += V
            n_avg += 1
    if n_avg == 0:
        raise ValueError("the minibatch source yielded no batches")
    V = avg / n_avg  # Polyak-Ruppert average over the last epoch
    norms = V.norm(dim=1)
    lam = theta * norms**3
    vecs = V / norms[:, None].clamp(min=1e-300)
    order = torch.argsort(lam, descending=True)
    return lam[order], vecs[order]
