"""The online stochastic tensor decomposition (Huang et al. 2015): SGD on the whitened third moment, implicit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from trinity_lightning.topics import (
    MomentSums,
    SpectralLDA,
    online_tensor_decomposition,
    recovery_l1,
    synthetic_lda,
    whiten,
    whitened_contraction,
    whitening_only,
)
from trinity_lightning.topics.readers import csr_to_batch, iter_batches


@pytest.fixture(scope="module")
def corpus():
    return synthetic_lda(n_docs=3000, n_words=100, n_topics=5, seed=0)


def test_implicit_contraction_equals_the_formed_tensor(corpus):
    """T(I, v, v) from the documents alone equals the contraction of the k × k × k whitened tensor (1e-10)."""
    X = sp.csr_matrix(corpus.counts)
    sums = MomentSums.empty(torch.eye(100, dtype=torch.float64), third=True)
    for b in iter_batches(X, 700):
        sums.add(b)
    w = whiten(sums, 5, 1.0)
    V = torch.randn(7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = torch.einsum("ijl,rj,rl->ri", w.tensor, V, V)
    got = whitened_contraction(csr_to_batch(X), w.W, w.W.T @ sums.m1_mean(), V, 1.0)
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)
    w2 = whitening_only(sums, 5, 1.0)  # the same whitening without the tensor
    torch.testing.assert_close(w2.W, w.W)
    assert w2.tensor.numel() == 0


def test_online_recovers_planted_topics(corpus):
    """Planted topics (V = 100, k = 5, 3,000 documents): Hungarian-matched mean L1 below 0.06 (batch: 0.040)."""
    lda = SpectralLDA(5, decomposition="online", random_state=0).fit(corpus.counts)
    err = recovery_l1(corpus.topics, lda.components_)
    assert err < 0.06
    np.testing.assert_allclose(lda.components_.sum(1), 1.0, atol=1e-9)
    assert lda.alpha_.shape == (5,) and np.all(np.diff(lda.alpha_) <= 0)
    assert abs(lda.alpha_.sum() - 1.0) < 0.5


def test_online_matches_batch_power_method(corpus):
    """Online SGD and the batch power method on the formed tensor find the same topics (matched L1 < 0.02)."""
    batch = SpectralLDA(5, random_state=0).fit(corpus.counts)
    online = SpectralLDA(5, decomposition="online", random_state=0).fit(corpus.counts)
    assert recovery_l1(batch.components_, online.components_) < 0.02
    np.testing.assert_allclose(np.sort(online.alpha_), np.sort(batch.alpha_), rtol=0.25)


def test_online_streaming_source(corpus):
    X = corpus.counts
    chunks = lambda: (X[i : i + 1000] for i in range(0, X.shape[0], 1000))  # noqa: E731
    lda = SpectralLDA(5, decomposition="online", random_state=0).fit(chunks)
    assert recovery_l1(corpus.topics, lda.components_) < 0.06


def test_online_bad_settings(corpus):
    with pytest.raises(ValueError, match="online_batch_size"):
        SpectralLDA(5, decomposition="online", online_epochs=0)
    with pytest.raises(ValueError, match="expected 'power', 'als' or 'online'"):
        SpectralLDA(5, decomposition="sgd")  # type: ignore[arg-type]
    SpectralLDA(5, decomposition="online", learning_rate=50.0).fit(corpus.counts)  # the trust region holds it
    sums = MomentSums.empty(torch.eye(100, dtype=torch.float64), third=False)
    parts = list(iter_batches(sp.csr_matrix(corpus.counts), 500))
    for b in parts:
        sums.add(b)
    with pytest.raises(ValueError, match="n_epochs"):
        online_tensor_decomposition(lambda e: parts, whitening_only(sums, 5, 1.0), sums.m1_mean(), 5, 1.0, n_epochs=0)
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        online_tensor_decomposition(
            lambda e: parts, whitening_only(sums, 5, 1.0), sums.m1_mean(), 5, 1.0, learning_rate=float("inf")
        )
