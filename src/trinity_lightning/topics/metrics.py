"""Topic-model metrics and a synthetic LDA corpus with known topics.

* :func:`coherence_umass` and :func:`coherence_npmi`: coherence of each topic's top words over a reference corpus,
  with *documents* as the co-occurrence contexts (bag-of-words corpora carry no word order).
* :func:`perplexity`: held-out perplexity by document completion: each held-out document's counts are split in two
  halves (seeded, token by token); ``θ`` is inferred on the first half by :func:`~.spectral.infer_doc_topics` and
  the second half is scored, ``exp(−Σ log p(w) / #tokens)`` with ``p(w) = Σ_k θ_k β_kw``.
* :func:`recovery_l1`: mean ℓ1 distance between true and estimated topics after Hungarian matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment

from trinity_lightning.topics.readers import as_counts

__all__ = [
    "SyntheticLDA",
    "coherence_npmi",
    "coherence_umass",
    "perplexity",
    "recovery_l1",
    "sample_lda_counts",
    "synthetic_lda",
    "top_words",
]


def _np(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def top_words(topics: Any, n: int = 10) -> np.ndarray:
    """Indices of each topic's ``n`` most probable words (k × n), most probable first.

    Example:
        >>> top_words(np.array([[0.1, 0.7, 0.2]]), 2).tolist()
        [[1, 2]]
    """
    t = _np(topics)
    return np.argsort(-t, axis=1, kind="stable")[:, :n]


def _doc_freqs(reference: Any, words: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Document frequencies of ``words`` (k × n) and of their pairs (k × n × n)."""
    X = as_counts(reference, "reference")
    flat = np.unique(words)
    B = (X[:, flat] > 0).astype(np.float64)
    co = np.asarray((B.T @ B).todense())
    pos = np.searchsorted(flat, words)
    single = np.diag(co)[pos]
    pair = co[pos[:, :, None], pos[:, None, :]]
    return single, pair, int(X.shape[0])


def coherence_umass(topics: Any, reference: Any, n: int = 10) -> np.ndarray:
    """UMass coherence of each topic (Mimno et al. 2011), mean over pairs of its top-``n`` words.

    ``C = mean_{i>j} log((D(w_i, w_j) + 1) / D(w_j))`` with ``w_j`` the more probable word; ``D`` counts documents
    of ``reference`` (counts, documents × vocabulary).

    Example:
        >>> X = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
        >>> coherence_umass(np.array([[0.5, 0.4, 0.1]]), X, n=2).round(3).tolist()
        [0.405]
    """
    words = top_words(topics, n)
    single, pair, _ = _doc_freqs(reference, words)
    i, j = np.tril_indices(words.shape[1], k=-1)
    with np.errstate(divide="ignore"):
        scores = np.log((pair[:, i, j] + 1) / np.maximum(single[:, j], 1))
    return scores.mean(axis=1)


def coherence_npmi(topics: Any, reference: Any, n: int = 10) -> np.ndarray:
    """NPMI coherence of each topic (Bouma 2009; Lau et al. 2014), mean over pairs of its top-``n`` words.

    ``NPMI = log(P(w_i, w_j) / (P(w_i)P(w_j))) / −log P(w_i, w_j)`` with probabilities from document frequencies in
    ``reference``; a pair that never co-occurs scores −1.

    Example:
        >>> X = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
        >>> coherence_npmi(np.array([[0.5, 0.4, 0.1]]), X, n=2).round(3).tolist()
        [1.0]
    """
    words = top_words(topics, n)
    single, pair, N = _doc_freqs(reference, words)
    i, j = np.triu_indices(words.shape[1], k=1)
    pij = pair[:, i, j] / N
    pi, pj = single[:, i] / N, single[:, j] / N
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(pij / (pi * pj))
        npmi = np.where(pij >= 1.0, 1.0, pmi / -np.log(pij))
    npmi = np.where(pij > 0, npmi, -1.0)
    return npmi.mean(axis=1)


def perplexity(
    topics: Any, alpha: Any, heldout: Any, seed: int = 0, n_iter: int = 100, batch_size: int = 4096
) -> float:
    """Held-out perplexity by document completion (see the module docstring); lower is better.

    Documents with fewer than 2 words are skipped.

    Example:
        >>> topics = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
        >>> X = np.array([[6, 6, 0, 0], [0, 0, 6, 6]])
        >>> round(perplexity(topics, [0.1, 0.1], X), 1)  # 2 equally likely words per document
        2.1
    """
    from trinity_lightning.topics.spectral import infer_doc_topics

    X = as_counts(heldout, "heldout")
    X = X[np.asarray(X.sum(axis=1)).ravel() >= 2]
    rng = np.random.default_rng(seed)
    first = X.copy()
    first.data = rng.binomial(X.data.astype(np.int64), 0.5).astype(np.float64)
    second = X - first
    first.eliminate_zeros()
    gamma = infer_doc_topics(first, topics, alpha, n_iter=n_iter, batch_size=batch_size)
    theta = (gamma / gamma.sum(dim=1, keepdim=True)).numpy()
    beta = _np(topics).astype(np.float64)
    second = sp.csr_matrix(second)
    second.eliminate_zeros()
    rows = np.repeat(np.arange(second.shape[0]), np.diff(second.indptr))
    p = np.einsum("nk,nk->n", theta[rows], beta[:, second.indices].T)
    ll = float((second.data * np.log(np.maximum(p, 1e-300))).sum())
    return float(np.exp(-ll / second.data.sum()))


def recovery_l1(true_topics: Any, topics: Any) -> float:
    """Mean ℓ1 distance between true and estimated topics (rows), matched by the Hungarian algorithm (0 to 2).

    Example:
        >>> round(recovery_l1(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.1, 0.9], [1.0, 0.0]])), 6)
        0.1
    """
    a, b = _np(true_topics).astype(np.float64), _np(topics).astype(np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"topics have {b.shape[1]} words, the true topics {a.shape[1]}")
    cost = np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2)
    r, c = linear_sum_assignment(cost)
    return float(cost[r, c].sum() / a.shape[0])


@dataclass
class SyntheticLDA:
    """A corpus drawn from LDA: counts (CSR), the true topics (k × V), ``α`` (k) and the document-topic mix."""

    counts: sp.csr_matrix
    topics: np.ndarray
    alpha: np.ndarray
    theta: np.ndarray


def sample_lda_counts(
    rng: np.random.Generator, theta: np.ndarray, topics: np.ndarray, lengths: np.ndarray
) -> sp.csr_matrix:
    """Counts of documents drawn token by token: ``z ~ θ_d``, ``w ~ β_z`` (inverse-CDF sampling, vectorized)."""
    n, V = theta.shape[0], topics.shape[1]
    doc = np.repeat(np.arange(n), lengths)
    cdf_theta = np.cumsum(theta, axis=1)
    z = (rng.random(doc.size)[:, None] * cdf_theta[doc, -1:] > cdf_theta[doc]).sum(axis=1)
    z = np.minimum(z, topics.shape[0] - 1)
    cdf_topics = np.cumsum(topics, axis=1)
    u = rng.random(doc.size)
    w = np.empty(doc.size, dtype=np.int64)
    for j in range(topics.shape[0]):
        mask = z == j
        w[mask] = np.searchsorted(cdf_topics[j], u[mask] * cdf_topics[j, -1], side="right")
    w = np.minimum(w, V - 1)
    return sp.csr_matrix((np.ones(doc.size), (doc, w)), shape=(n, V))


def synthetic_lda(
    n_docs: int = 20_000,
    n_words: int = 1_000,
    n_topics: int = 20,
    alpha0: float = 1.0,
    doc_length: tuple[int, int] = (50, 100),
    topic_concentration: float = 0.1,
    seed: int = 0,
) -> SyntheticLDA:
    """Draw an LDA corpus: topics ~ Dirichlet(``topic_concentration``) over ``n_words``, ``θ_d`` ~ Dirichlet(α₀/k),
    document lengths uniform in ``doc_length``, then each token's topic and word (:func:`sample_lda_counts`).

    Example:
        >>> d = synthetic_lda(n_docs=10, n_words=30, n_topics=3, seed=0)
        >>> d.counts.shape, d.topics.shape, np.allclose(d.topics.sum(1), 1)
        ((10, 30), (3, 30), True)
    """
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(n_words, topic_concentration), size=n_topics)
    alpha = np.full(n_topics, alpha0 / n_topics)
    theta = rng.dirichlet(alpha, size=n_docs)
    lengths = rng.integers(doc_length[0], doc_length[1] + 1, size=n_docs)
    chunks = [
        sample_lda_counts(rng, theta[i : i + 20_000], topics, lengths[i : i + 20_000]) for i in range(0, n_docs, 20_000)
    ]
    return SyntheticLDA(sp.vstack(chunks, format="csr"), topics, alpha, theta)
