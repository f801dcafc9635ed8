"""SpectralLDA: topic recovery on synthetic LDA data, the scikit-learn shape, streaming, bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from trinity_lightning.data import DataFormatError
from trinity_lightning.topics import (
    SpectralLDA,
    coherence_npmi,
    coherence_umass,
    cp_als,
    perplexity,
    project_simplex,
    read_bow,
    read_ldac,
    recovery_l1,
    synthetic_lda,
    tensor_power_method,
    texts_to_counts,
    variational_em,
)


@pytest.fixture(scope="module")
def corpus():
    return synthetic_lda(n_docs=3000, n_words=100, n_topics=5, seed=0)


@pytest.mark.parametrize(("decomposition", "threshold"), [("power", 0.15), ("als", 0.25)])
def test_recovers_synthetic_topics(corpus, decomposition, threshold):
    lda = SpectralLDA(5, alpha0=1.0, decomposition=decomposition, random_state=0).fit(corpus.counts)
    err = recovery_l1(corpus.topics, lda.components_)
    assert err < threshold
    np.testing.assert_allclose(lda.components_.sum(1), 1.0, atol=1e-9)
    assert (lda.components_ >= 0).all()
    assert lda.alpha_.shape == (5,) and np.all(np.diff(lda.alpha_) <= 0)
    assert abs(lda.alpha_.sum() - 1.0) < 0.5  # alpha0 = 1, estimated from the eigenvalues


def test_randomized_whitening_matches_exact_basis(corpus):
    """p < V (range finder, two passes) and p = V (identity basis) give the same topics to a small tolerance."""
    X = corpus.counts
    a = SpectralLDA(5, oversample=10, random_state=0).fit(X).components_
    b = SpectralLDA(5, oversample=100, random_state=0).fit(X).components_
    assert recovery_l1(a, b) < 0.02


def test_sklearn_shape_and_transform(corpus):
    lda = SpectralLDA(5, random_state=0)
    theta = lda.fit_transform(corpus.counts[:1000])
    assert theta.shape == (1000, 5)
    np.testing.assert_allclose(theta.sum(1), 1.0, atol=1e-9)
    assert lda.n_features_in_ == 100 and lda.n_docs_ == 1000
    assert torch.allclose(lda.topics_, torch.from_numpy(lda.components_))
    with pytest.raises(ValueError, match="fitted on 100"):
        lda.transform(np.ones((2, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        SpectralLDA(3).transform(corpus.counts)


def test_streaming_equals_in_memory(corpus):
    X = corpus.counts
    ref = SpectralLDA(5, batch_size=1000, random_state=0).fit(X).components_
    chunks = lambda: (X[i : i + 700] for i in range(0, X.shape[0], 700))  # noqa: E731
    got = SpectralLDA(5, random_state=0).fit(chunks).components_
    np.testing.assert_allclose(got, ref, atol=1e-8)
    with pytest.raises(ValueError, match="one-shot iterator"):
        SpectralLDA(5).fit(chunks())


def test_power_method_and_als_on_orthogonal_tensor():
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=g))
    lam = torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    T = torch.einsum("i,ia,ib,ic->abc", lam, Q.T, Q.T, Q.T)
    for fn in (tensor_power_method, cp_als):
        got_lam, vecs = fn(T, 6)
        np.testing.assert_allclose(sorted(got_lam.tolist()), sorted(lam.tolist()), atol=1e-6)
        assert torch.allclose((vecs @ Q).abs().max(dim=1).values, torch.ones(6, dtype=torch.float64), atol=1e-6)


def test_project_simplex():
    X = torch.tensor([[0.6, 0.6, -0.2], [2.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64)
    out = project_simplex(X)
    assert torch.allclose(out, torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], dtype=torch.float64))


def test_metrics_on_known_topics(corpus):
    X = corpus.counts
    assert recovery_l1(corpus.topics, corpus.topics[::-1]) == 0.0
    true_npmi = coherence_npmi(corpus.topics, X).mean()
    rand = np.random.default_rng(0).dirichlet(np.ones(100), size=5)
    assert true_npmi > coherence_npmi(rand, X).mean() + 0.1
    assert coherence_umass(corpus.topics, X).mean() > coherence_umass(rand, X).mean()
    assert perplexity(corpus.topics, corpus.alpha, X[:300]) < perplexity(rand, corpus.alpha, X[:300])


def test_variational_em_refinement_does_not_hurt(corpus):
    lda = SpectralLDA(5, random_state=0).fit(corpus.counts)
    refined = variational_em(corpus.counts, lda.topics_, lda.alpha_, n_sweeps=3)
    assert recovery_l1(corpus.topics, refined) <= recovery_l1(corpus.topics, lda.components_) + 0.01
    lda2 = SpectralLDA(5, refine_sweeps=1, random_state=0).fit(corpus.counts[:500])
    assert lda2.timings_["refinement"] > 0


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_counts():
    with pytest.raises(ValueError, match="non-negative"):
        SpectralLDA(2).fit(np.array([[1, -1, 3], [2, 2, 2]]))
    with pytest.raises(ValueError, match="integers"):
        SpectralLDA(2).fit(np.array([[0.5, 1, 3], [2, 2, 2]]))
    with pytest.raises(ValueError, match="2-D"):
        SpectralLDA(2).fit(np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="finite"):
        SpectralLDA(2).fit(np.array([[np.nan, 1, 3]]))


def test_k_larger_than_vocabulary_or_rank():
    X = synthetic_lda(n_docs=300, n_words=8, n_topics=2, seed=0).counts
    with pytest.raises(ValueError, match="larger than the vocabulary"):
        SpectralLDA(9).fit(X)
    # a rank-one corpus: every document is the same word pair
    Y = sp.csr_matrix(np.tile([3.0, 3.0, 0.0, 0.0, 0.0], (200, 1)))
    with pytest.raises(ValueError, match="whitening rank"):
        SpectralLDA(3).fit(Y)


def test_empty_and_short_documents():
    X = synthetic_lda(n_docs=400, n_words=30, n_topics=2, seed=0).counts.toarray()
    X[0] = 0
    X[1] = 0
    X[1, 0] = 1
    with pytest.warns(UserWarning, match="1 empty documents and 1 with fewer than 3 words"):
        SpectralLDA(2).fit(X)
    with pytest.raises(ValueError, match="too small for the third moment: 1 documents"):
        SpectralLDA(2).fit(np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [1, 1, 1, 0]]))


def test_readers_and_malformed_lines(tmp_path):
    ok = tmp_path / "c.ldac.gz"
    with gzip.open(ok, "wt") as fh:
        fh.write("2 0:1 2:3\n1 1:2\n")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    corpus = read_ldac(ok, vocab)
    assert corpus.counts.toarray().tolist() == [[1, 0, 3], [0, 2, 0]] and corpus.vocab == ["a", "b", "c"]
    bad = tmp_path / "bad.ldac"
    bad.write_text("2 0:1 2:3\n2 1:2 x\n")
    with pytest.raises(DataFormatError, match=r"bad.ldac, line 2"):
        read_ldac(bad)
    wrong_n = tmp_path / "n.ldac"
    wrong_n.write_text("1 0:1\n3 1:2\n")
    with pytest.raises(DataFormatError, match=r"line 2.*starts with 3 terms"):
        read_ldac(wrong_n)
    neg = tmp_path / "neg.ldac"
    neg.write_text("1 0:-1\n")
    with pytest.raises(DataFormatError, match=r"line 1.*non-negative"):
        read_ldac(neg)
    bow = tmp_path / "docword.txt"
    bow.write_text("2\n3\n2\n1 1 2\n2 x 1\n")
    with pytest.raises(DataFormatError, match=r"docword\.txt, line 5"):
        read_bow(bow)


def test_texts_filters_and_empty_vocabulary():
    texts = ["the cat sat on the mat", "the dog sat", "a cat and a dog", "stocks fell sharply"]
    c = texts_to_counts(texts, min_df=2)
    assert c.vocab == ["cat", "dog", "sat"]
    assert texts_to_counts(texts, stop_words=(), max_df=0.5, max_features=2).vocab == ["cat", "the"]
    with pytest.raises(ValueError, match="empty vocabulary after filtering 4 documents"):
        texts_to_counts(texts, min_df=4)


def test_hf_dataset_text_column():
    datasets = pytest.importorskip("datasets")
    from trinity_lightning.topics import read_hf_texts

    ds = datasets.Dataset.from_dict({"body": ["red apples fall", "green apples grow"]})
    assert read_hf_texts(ds, text_column="body", stop_words=()).vocab == ["apples", "fall", "green", "grow", "red"]
    with pytest.raises(ValueError, match="text_column='text' is not a column"):
        read_hf_texts(ds)
