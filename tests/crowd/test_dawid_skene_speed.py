"""Dawid-Skene speed work: no subnormal posteriors (they made the float32 fit ~2x slower on CPU), and the CPU
incidence operator (SciPy-built transpose, int32 indices) equal to the dense matrix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trinity_lightning.crowd import DawidSkene, OneCoinDawidSkene, random_confusions, simulate_annotations
from trinity_lightning.crowd import dawid_skene as ds_module


def _plain_normalise_(log_post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The E-step before: ``exp`` straight into the subnormal range."""
    top = log_post.amax(dim=1, keepdim=True)
    log_post -= top
    log_post.exp_()
    total = log_post.sum(dim=1, keepdim=True)
    log_post /= total
    return top, total


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalise_zeroes_only_what_exp_sends_below_the_normal_range(dtype):
    g = torch.Generator().manual_seed(0)
    values = -torch.rand(500, 10, generator=g, dtype=dtype) * (300 if dtype == torch.float32 else 2000)
    ours, plain = values.clone(), values.clone()
    top, total = ds_module._normalise_(ours)
    plain_top, plain_total = _plain_normalise_(plain)
    tiny = torch.finfo(dtype).tiny
    shifted = values - values.amax(dim=1, keepdim=True)
    underflow = shifted < np.log(tiny) + 2
    assert underflow.any()  # the case is exercised
    assert torch.equal(top, plain_top)
    torch.testing.assert_close(total, plain_total, atol=10 * tiny, rtol=0)
    assert torch.equal(ours[~underflow], plain[~underflow])  # bit for bit elsewhere
    assert (ours[underflow] == 0).all()
    assert float(plain[underflow].max()) < np.exp(2) * tiny  # what they were: subnormal, 0 or below e^2 tiny


@pytest.fixture
def confident_table():
    """10 classes, 10 good workers per item: most wrong classes end far below float32's smallest normal."""
    truth = torch.from_numpy(np.random.default_rng(0).integers(0, 10, 400))
    return simulate_annotations(truth, random_confusions(30, 10, seed=0), labels_per_item=10, seed=0)


@pytest.mark.parametrize("cls", [DawidSkene, OneCoinDawidSkene])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fit_equals_the_fit_with_plain_exp(confident_table, monkeypatch, cls, dtype):
    fitted = cls(dtype=dtype, tol=0.0, n_iter=8).fit(confident_table)
    monkeypatch.setattr(ds_module, "_normalise_", _plain_normalise_)
    reference = cls(dtype=dtype, tol=0.0, n_iter=8).fit(confident_table)
    tiny = torch.finfo(dtype).tiny
    if dtype == torch.float32 and cls is DawidSkene:  # the case this is for: the plain fit went subnormal
        assert bool(((reference.probas_ > 0) & (reference.probas_ < tiny)).any())
    torch.testing.assert_close(fitted.probas_, reference.probas_, atol=1e-30, rtol=0)
    torch.testing.assert_close(fitted.errors_, reference.errors_, atol=1e-12, rtol=0)
    assert fitted.log_likelihood_ == pytest.approx(reference.log_likelihood_, rel=1e-12)


@pytest.mark.parametrize(("n", "W"), [(40, 7), (5, 40)])  # fewer / more observed pairs than items (votes' two paths)
def test_cpu_incidence_products_equal_the_dense_matrix_with_int32_indices(n, W):
    from trinity_lightning.crowd._incidence import Incidence

    g = torch.Generator().manual_seed(0)
    K, N = 4, 300  # repeated (item, worker, label) triples: counted twice, as keep_all asks
    items, workers, labels = (torch.randint(0, m, (N,), generator=g) for m in (n, W, K))
    items[0] = n - 1  # not sorted by item: the operator sorts
    inc = Incidence(items, workers, labels, n, W, K, torch.float64)
    assert inc._a.crow_indices().dtype == torch.int32 and inc._at.col_indices().dtype == torch.int32
    pair_row = torch.cumsum(inc.observed.flatten(), 0)[workers * K + labels] - 1
    dense = torch.zeros(n, inc.rows, dtype=torch.float64).index_put_(
        (items, pair_row), torch.ones(N, dtype=torch.float64), accumulate=True
    )
    values = torch.randn(inc.rows, K, dtype=torch.float64, generator=g)
    post = torch.rand(n, K, dtype=torch.float64, generator=g)
    torch.testing.assert_close(inc.gather_sum(values), dense @ values, atol=1e-12, rtol=0)
    torch.testing.assert_close(inc.scatter(post), dense.T @ post, atol=1e-12, rtol=0)
    expected_votes = torch.zeros(n, K, dtype=torch.float64).index_put_(
        (items, labels), torch.ones(N, dtype=torch.float64), accumulate=True
    )
    assert torch.equal(inc.votes(), expected_votes)
    assert torch.equal(inc.per_item, torch.bincount(items, minlength=n).double())
