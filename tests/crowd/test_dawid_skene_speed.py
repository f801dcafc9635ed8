"""The E-step keeps posteriors out of the subnormal range (they made the float32 fit ~2x slower on CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trinity_lightning.crowd import DawidSkene, OneCoinDawidSkene, random_confusions, simulate_annotations
from trinity_lightning.crowd import dawid_skene as ds_module


@pytest.fixture
def confident_table():
    """10 classes, 10 good workers per item: most wrong classes end far below float32's smallest normal."""
    truth = torch.from_numpy(np.random.default_rng(0).integers(0, 10, 400))
    return simulate_annotations(truth, random_confusions(30, 10, seed=0), labels_per_item=10, seed=0)


@pytest.mark.parametrize("cls", [DawidSkene, OneCoinDawidSkene])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_posteriors_have_no_subnormals_and_equal_the_unfloored_fit(confident_table, monkeypatch, cls, dtype):
    fitted = cls(dtype=dtype, tol=0.0, n_iter=8).fit(confident_table)
    tiny = torch.finfo(dtype).tiny
    assert float(fitted.probas_.min()) >= tiny  # every posterior is 0-free and normal
    monkeypatch.setattr(ds_module, "_log_floor", lambda dtype, num_classes: -float("inf"))  # the old E-step
    reference = cls(dtype=dtype, tol=0.0, n_iter=8).fit(confident_table)
    if dtype == torch.float32 and cls is DawidSkene:  # the case the floor is for: the old fit went subnormal
        assert float(reference.probas_.min()) < tiny
    torch.testing.assert_close(fitted.probas_, reference.probas_, atol=1e-30, rtol=0)
    torch.testing.assert_close(fitted.errors_, reference.errors_, atol=1e-12, rtol=0)
    assert fitted.log_likelihood_ == reference.log_likelihood_


def test_log_floor_stays_normal_after_normalising():
    for dtype in (torch.float32, torch.float64):
        for classes in (2, 10, 1000):
            floor = ds_module._log_floor(dtype, classes)
            value = torch.tensor(floor, dtype=dtype).exp() / classes
            assert float(value) >= torch.finfo(dtype).tiny


def test_cpu_incidence_products_equal_the_dense_matrix_with_int32_indices():
    from trinity_lightning.crowd._incidence import Incidence

    g = torch.Generator().manual_seed(0)
    n, W, K, N = 40, 7, 4, 300  # repeated (item, worker, label) triples: counted twice, as keep_all asks
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
