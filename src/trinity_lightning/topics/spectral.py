"""``SpectralLDA``: latent Dirichlet allocation by the method of moments (whitening + tensor decomposition).

Anandkumar, Foster, Hsu, Kakade & Liu, "A Spectral Algorithm for Latent Dirichlet Allocation", NIPS 2012;
Anandkumar, Ge, Hsu, Kakade & Telgarsky, "Tensor Decompositions for Learning Latent Variable Models", JMLR 2014.

A fit is a few passes over the corpus, each a sum over batches of sparse counts (:mod:`.moments`):

1. ``n_sketch_passes`` range-finder passes: ``B ← orth(M2 · B)`` from a seeded Gaussian start (the randomized range
   finder with power iterations; no V × V matrix). Skipped when ``V ≤ n_components + oversample`` (``B = I``).
2. One pass for the second moment in the basis (p × p) and the third moment in the basis (p × p × p), from which
   the whitening ``W`` (V × k, ``Wᵀ M2 W = I``) and the whitened tensor ``T = M3(W, W, W)`` (k × k × k) follow.
3. ``T`` is decomposed by the robust tensor power method or by CP-ALS (TensorLy), or (``decomposition="online"``,
   :mod:`.online`) its eigenvectors are found by SGD on minibatches without forming ``T``, after a pass that gives
   the whitening alone; each eigenvector is un-whitened,
   ``μ_i ∝ λ_i (Wᵀ)⁺ v_i``, scaled to sum 1 and projected onto the simplex; ``α_i = 4α₀(α₀+1) / ((α₀+2)² λ_i²)``.

Inference (:meth:`SpectralLDA.transform`, :func:`infer_doc_topics`) is the variational E-step of LDA with the topics
held fixed (Blei, Ng & Jordan 2003): ``γ_d ← α + Σ_w c_dw φ_dw``, ``φ_dwk ∝ β_kw exp(ψ(γ_dk))``, vectorized over the
non-zeros; :func:`variational_em` alternates it with the topic update (the optional refinement).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from trinity_lightning.topics.decompose import cp_als, project_simplex, tensor_power_method
from trinity_lightning.topics.moments import MomentSums, SparseBatch, Whitening, next_basis, whiten, whitening_only
from trinity_lightning.topics.online import online_tensor_decomposition
from trinity_lightning.topics.readers import as_counts, csr_to_batch, iter_batches, warn_short_documents

__all__ = ["SpectralLDA", "infer_doc_topics", "topics_from_eigenpairs", "topics_from_moments", "variational_em"]

Source = Callable[[], Iterable[Any]]


def _initial_basis(n_features: int, p: int, seed: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if p >= n_features:
        return torch.eye(n_features, dtype=dtype, device=device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    omega = torch.randn(n_features, p, generator=g, dtype=dtype)
    return next_basis(omega.to(device))


def _check_third_moment_docs(n3: int, k: int) -> None:
    if n3 < k:
        raise ValueError(
            f"the corpus is too small for the third moment: {n3} documents have >= 3 words, need at least "
            f"n_components={k} (and many more for a useful estimate)"
        )
    if n3 < 10 * k:
        warnings.warn(
            f"only {n3} documents have >= 3 words for n_components={k}: the third moment will be noisy", stacklevel=4
        )


def topics_from_eigenpairs(w: Whitening, lam: Tensor, vecs: Tensor, alpha0: float) -> tuple[Tensor, Tensor, Tensor]:
    """Un-whiten the tensor eigenpairs (``λ`` (k), unit rows ``vecs`` (k × k)): topics (k × V, rows on the simplex),
    ``α`` and ``λ``, sorted by decreasing ``α``; ``μ_i ∝ λ_i (Wᵀ)⁺ v_i``, ``α_i = 4α₀(α₀+1) / ((α₀+2)² λ_i²)``."""
    mu = (w.unwhiten(vecs.T) * lam[None, :]).T  # k × V
    total = mu.sum(dim=1, keepdim=True)
    mu = mu / torch.where(total.abs() < 1e-300, torch.ones_like(total), total)
    topics = project_simplex(mu)
    lam_pos = lam.clamp(min=1e-12)
    alpha = 4 * alpha0 * (alpha0 + 1) / ((alpha0 + 2) ** 2 * lam_pos**2)
    order = torch.argsort(alpha, descending=True)
    return topics[order], alpha[order], lam[order]


def topics_from_moments(
    sums: MomentSums,
    k: int,
    alpha0: float,
    decomposition: Literal["power", "als"] = "power",
    n_restarts: int = 10,
    n_iter: int = 100,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Whitening]:
    """Topics (k × V, rows on the simplex), ``α`` (k), the tensor eigenvalues ``λ`` and the whitening, from a
    third-moment pass; topics are sorted by decreasing ``α``.

    Raises:
        ValueError: too few documents with three words, ``k`` above the whitening rank, an unknown decomposition.
    """
    if decomposition not in ("power", "als"):
        raise ValueError(f"decomposition={decomposition!r}: expected 'power' or 'als'")
    _check_third_moment_docs(int(sums.n3), k)
    w = whiten(sums, k, alpha0)
    if decomposition == "power":
        lam, vecs = tensor_power_method(w.tensor, k, n_restarts=n_restarts, n_iter=n_iter, seed=seed)
    else:
        lam, vecs = cp_als(w.tensor, k, n_iter=max(n_iter, 200), seed=seed)
    topics, alpha, lam = topics_from_eigenpairs(w, lam, vecs, alpha0)
    return topics, alpha, lam, w


class SpectralLDA:
    """LDA by the method of moments, with scikit-learn's shape (``fit`` / ``transform`` / ``fit_transform``).

    Args:
        n_components: number of topics ``k``.
        alpha0: the Dirichlet concentration ``α₀ = Σ α_i`` (a hyperparameter of the moments; default 1).
        decomposition: ``"power"`` (robust tensor power method), ``"als"`` (CP-ALS through TensorLy) or
            ``"online"`` (Huang et al. 2015: SGD on the whitened third moment, which is never formed; minibatches of
            ``online_batch_size`` documents, ``online_epochs`` passes; :mod:`trinity_lightning.topics.online`).
        oversample: extra directions of the whitening basis (``p = k + oversample``).
        n_sketch_passes: range-finder passes (1 = plain randomized range finder, 2 = one power iteration, ...).
        batch_size: documents per batch when accumulating moments.
        n_restarts: random starts per component (power method).
        n_iter: iterations per start (power method) / ALS sweeps.
        online_batch_size: documents per SGD step (``decomposition="online"``).
        online_epochs: SGD passes over the corpus (``decomposition="online"``).
        learning_rate: initial SGD step ``η₀``; step ``t`` uses ``η₀ / (1 + learning_rate_decay·t)``.
        learning_rate_decay: see ``learning_rate``.
        refine_sweeps: variational-EM sweeps started from the spectral topics (0 = pure spectral).
        inference_iters: E-step iterations of :meth:`transform`.
        device: torch device for the moments (``"cuda"`` works); dtype: their dtype (float64 by default).
        random_state: seed of the Gaussian range-finder start and the power-method restarts.

    Attributes:
        components_: topic-word probabilities (k × V NumPy array, rows sum to 1), sorted by decreasing ``alpha_``.
        topics_: the same as a tensor.
        alpha_: estimated Dirichlet parameters (k).
        eigenvalues_: the whitened tensor's eigenvalues ``λ``.
        n_features_in_, n_docs_: vocabulary size and number of documents seen.
        timings_: seconds spent in moments, decomposition and refinement.

    Example:
        >>> from trinity_lightning.topics import synthetic_lda, recovery_l1
        >>> data = synthetic_lda(n_docs=3000, n_words=50, n_topics=4, seed=0)
        >>> lda = SpectralLDA(4, alpha0=float(data.alpha.sum()), random_state=0)
        >>> theta = lda.fit_transform(data.counts)
        >>> theta.shape, recovery_l1(data.topics, lda.components_) < 0.3
        ((3000, 4), True)
    """

    def __init__(
        self,
        n_components: int = 10,
        *,
        alpha0: float = 1.0,
        decomposition: Literal["power", "als", "online"] = "power",
        oversample: int = 10,
        n_sketch_passes: int = 2,
        batch_size: int = 4096,
        n_restarts: int = 10,
        n_iter: int = 100,
        online_batch_size: int = 256,
        online_epochs: int = 10,
        learning_rate: float = 0.1,
        learning_rate_decay: float = 0.02,
        refine_sweeps: int = 0,
        inference_iters: int = 50,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
        random_state: int = 0,
    ) -> None:
        if n_components < 1:
            raise ValueError(f"n_components must be >= 1, got {n_components}")
        if alpha0 <= 0:
            raise ValueError(f"alpha0 must be > 0, got {alpha0}")
        if decomposition not in ("power", "als", "online"):
            raise ValueError(f"decomposition={decomposition!r}: expected 'power', 'als' or 'online'")
        if online_batch_size < 1 or online_epochs < 1 or learning_rate <= 0 or learning_rate_decay < 0:
            raise ValueError(
                "online_batch_size and online_epochs must be >= 1, learning_rate > 0 and learning_rate_decay >= 0; "
                f"got {online_batch_size}, {online_epochs}, {learning_rate}, {learning_rate_decay}"
            )
        if n_sketch_passes < 1:
            raise ValueError(f"n_sketch_passes must be >= 1, got {n_sketch_passes}")
        self.n_components = n_components
        self.alpha0 = alpha0
        self.decomposition = decomposition
        self.oversample = oversample
        self.n_sketch_passes = n_sketch_passes
        self.batch_size = batch_size
        self.n_restarts = n_restarts
        self.n_iter = n_iter
        self.online_batch_size = online_batch_size
        self.online_epochs = online_epochs
        self.learning_rate = learning_rate
        self.learning_rate_decay = learning_rate_decay
        self.refine_sweeps = refine_sweeps
        self.inference_iters = inference_iters
        self.device = torch.device(device)
        self.dtype = dtype
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def _source(self, X: Any) -> tuple[Source, int, sp.csr_matrix | None]:
        """A re-iterable source of SparseBatches, the vocabulary size and the in-memory matrix (if any)."""
        if callable(X) or (isinstance(X, Iterable) and not _is_matrix(X)):
            if not callable(X) and iter(X) is X:
                raise ValueError(
                    "X is a one-shot iterator; the fit makes several passes. Pass a callable returning a fresh "
                    "iterator of batches (e.g. lambda: read_batches(path)) or a re-iterable object"
                )
            factory: Callable[[], Iterable[Any]] = X if callable(X) else (lambda: X)
            first = next(iter(factory()), None)
            if first is None:
                raise ValueError("the streaming source yielded no batches")
            n_features = as_counts(first, "batch 0").shape[1]

            def stream() -> Iterator[SparseBatch]:
                for i, chunk in enumerate(factory()):
                    block = as_counts(chunk, f"batch {i}")
                    if block.shape[1] != n_features:
                        raise ValueError(f"batch {i} has {block.shape[1]} words, the first batch {n_features}")
                    yield csr_to_batch(block)

            return stream, n_features, None
        M = as_counts(X)
        warn_short_documents(M)
        batches = list(iter_batches(M, self.batch_size))  # converted once, reused by every pass
        return (lambda: iter(batches)), M.shape[1], M

    def _minibatches(self, X: Any, M: sp.csr_matrix | None) -> Callable[[int], Iterable[SparseBatch]]:
        """The SGD minibatches of one epoch (``online_batch_size`` documents each): in memory, converted once and
        visited in a seeded random order per epoch; streamed, each chunk split in order."""
        size = self.online_batch_size
        if M is not None:
            parts = list(iter_batches(M, size))
            gen = np.random.default_rng(self.random_state)
            return lambda epoch: [parts[i] for i in gen.permutation(len(parts))]
        factory: Callable[[], Iterable[Any]] = X if callable(X) else (lambda: X)

        def stream(epoch: int) -> Iterator[SparseBatch]:
            for i, chunk in enumerate(factory()):
                yield from iter_batches(as_counts(chunk, f"batch {i}"), size)

        return stream

    def _pass(self, source: Source, basis: Tensor, third: bool) -> MomentSums:
        sums = MomentSums.empty(basis, third=third)
        for batch in source():
            sums.add(batch)
        return sums

    def fit(self, X: Any, y: Any = None) -> SpectralLDA:
        """Fit the topics on counts ``X``: a SciPy sparse matrix / array / tensor / :class:`Corpus` (documents ×
        vocabulary), or, for a corpus that does not fit in memory (the streaming mode), a callable returning a fresh
        iterable of count batches (or a re-iterable object); memory is then O(V·p + p³), independent of the corpus.

        Raises:
            ValueError: bad counts (negative, non-integer, empty), ``n_components`` above the vocabulary or the
                whitening rank, a corpus too small for the third moment.
        """
        k = self.n_components
        t0 = time.perf_counter()
        source, V, M = self._source(X)
        if k > V:
            raise ValueError(f"n_components={k} is larger than the vocabulary ({V} words)")
        p = min(V, k + self.oversample)
        basis = _initial_basis(V, p, self.random_state, self.dtype, self.device)
        if p < V:
            for _ in range(self.n_sketch_passes):
                sums = self._pass(source, basis, third=False)
                if int(sums.n2) == 0:
                    raise ValueError("every document is empty or has a single word: the second moment is undefined")
                basis = next_basis(sums.sketch(self.alpha0))
        if self.decomposition == "online":
            sums = self._pass(source, basis, third=False)
            _check_third_moment_docs(int(sums.n3), k)
            w = whitening_only(sums, k, self.alpha0)
            t1 = time.perf_counter()
            lam, vecs = online_tensor_decomposition(
                self._minibatches(X, M),
                w,
                sums.m1_mean(),
                k,
                self.alpha0,
                n_epochs=self.online_epochs,
                learning_rate=self.learning_rate,
                decay=self.learning_rate_decay,
                seed=self.random_state,
            )
            topics, alpha, lam = topics_from_eigenpairs(w, lam, vecs, self.alpha0)
        else:
            sums = self._pass(source, basis, third=True)
            t1 = time.perf_counter()
            topics, alpha, lam, w = topics_from_moments(
                sums, k, self.alpha0, self.decomposition, self.n_restarts, self.n_iter, self.random_state
            )
        t2 = time.perf_counter()
        if self.refine_sweeps > 0:
            if M is None:
                raise ValueError("refine_sweeps > 0 needs the corpus in memory (a matrix, not a stream)")
            topics = variational_em(M, topics, alpha, n_sweeps=self.refine_sweeps, batch_size=self.batch_size)
        t3 = time.perf_counter()
        self.topics_ = topics
        self.components_ = topics.detach().cpu().numpy()
        self.alpha_ = alpha.detach().cpu().numpy()
        self.eigenvalues_ = lam.detach().cpu().numpy()
        self.whitening_ = w
        self.n_features_in_ = V
        self.n_docs_ = int(sums.n1)
        self.timings_ = {"moments": t1 - t0, "decomposition": t2 - t1, "refinement": t3 - t2}
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Document-topic proportions (documents × k, rows sum to 1) by the variational E-step with fixed topics."""
        self._check_fitted()
        M = as_counts(X)
        if M.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {M.shape[1]} words; the model was fitted on {self.n_features_in_}")
        gamma = infer_doc_topics(M, self.topics_, torch.as_tensor(self.alpha_), n_iter=self.inference_iters)
        return (gamma / gamma.sum(dim=1, keepdim=True)).cpu().numpy()

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    def _check_fitted(self) -> None:
        if not hasattr(self, "topics_"):
            raise RuntimeError("this SpectralLDA is not fitted yet; call fit(X) first")


def _is_matrix(X: Any) -> bool:
    return sp.issparse(X) or isinstance(X, (np.ndarray, torch.Tensor)) or hasattr(X, "counts")


def _e_step(
    batch: SparseBatch, beta: Tensor, alpha: Tensor, n_iter: int, tol: float = 1e-4, gamma0: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Variational E-step on one batch: ``γ`` (n × k), ``exp E[log θ]`` (n × k) and ``c_dw / norm_dw`` (nnz),
    ``norm_dw = Σ_k exp(E[log θ_dk]) β_kw``; sparse products only (a sampled dense-dense product for ``norm``)."""
    X = batch.X()
    k = beta.shape[0]
    beta_t = beta.T.contiguous()
    gamma = alpha[None, :] + (batch.lengths() / k)[:, None] if gamma0 is None else gamma0

    def ratio_of(e: Tensor) -> Tensor:
        norm = torch.sparse.sampled_addmm(X, e, beta, beta=0.0).values()
        return batch.vals / norm.clamp(min=1e-100)

    for _ in range(n_iter):
        e = (torch.special.digamma(gamma) - torch.special.digamma(gamma.sum(dim=1, keepdim=True))).exp()
        new = alpha[None, :] + e * (batch.X(ratio_of(e)) @ beta_t)
        change = (new - gamma).abs().mean()
        gamma = new
        if change < tol:
            break
    e = (torch.special.digamma(gamma) - torch.special.digamma(gamma.sum(dim=1, keepdim=True))).exp()
    return gamma, e, ratio_of(e)


def infer_doc_topics(
    X: Any, topics: Tensor | np.ndarray, alpha: Tensor | np.ndarray, n_iter: int = 50, batch_size: int = 4096
) -> Tensor:
    """Variational posterior Dirichlet parameters ``γ`` (documents × k) of each document, topics held fixed.

    This is the documented inference step behind :meth:`SpectralLDA.transform` and :func:`perplexity`.

    Example:
        >>> topics = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.1, 0.9]], dtype=torch.float64)
        >>> g = infer_doc_topics(np.array([[5, 0, 0], [0, 0, 5]]), topics, torch.tensor([0.1, 0.1]))
        >>> (g.argmax(dim=1)).tolist()
        [0, 1]
    """
    M = as_counts(X)
    beta = torch.as_tensor(topics, dtype=torch.float64)
    a = torch.as_tensor(alpha, dtype=torch.float64).to(beta.device)
    out = [_e_step(b.to(beta.device, torch.float64), beta, a, n_iter)[0] for b in iter_batches(M, batch_size)]
    return torch.cat(out)


def variational_em(
    X: Any,
    topics: Tensor | np.ndarray,
    alpha: Tensor | np.ndarray,
    n_sweeps: int = 3,
    e_step_iters: int = 10,
    eta: float = 0.01,
    batch_size: int = 4096,
) -> Tensor:
    """Refine topics by ``n_sweeps`` sweeps of batch variational EM started from ``topics`` (k × V).

    Each sweep runs the E-step on every document (warm-started from the previous sweep's ``γ``, at most
    ``e_step_iters`` iterations) and sets ``β_k ∝ η + Σ_d Σ_w c_dw φ_dwk``; ``α`` stays fixed.

    Example:
        >>> from trinity_lightning.topics import synthetic_lda
        >>> data = synthetic_lda(n_docs=500, n_words=30, n_topics=3, seed=1)
        >>> variational_em(data.counts, data.topics, data.alpha, n_sweeps=1).shape
        torch.Size([3, 30])
    """
    M = as_counts(X)
    beta = torch.as_tensor(topics, dtype=torch.float64).clone()
    a = torch.as_tensor(alpha, dtype=torch.float64).to(beta.device)
    batches = [b.to(beta.device, torch.float64) for b in iter_batches(M, batch_size)]
    gammas: list[Tensor | None] = [None] * len(batches)
    for _ in range(n_sweeps):
        stats = torch.zeros_like(beta.T)
        for i, b in enumerate(batches):
            gammas[i], e, ratio = _e_step(b, beta, a, e_step_iters, gamma0=gammas[i])
            stats += b.XT(ratio) @ e
        new = beta * stats.T + eta
        beta = new / new.sum(dim=1, keepdim=True)
    return beta
