from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trinity_lightning.tensor import TensorContractionLayer, TensorHeadCNN, TensorRegressionLayer
from trinity_lightning.tensor._backend import import_tltorch, pytorch_backend


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
def test_trl_from_linear_at_full_rank_equals_flatten_linear(factorization):
    torch.manual_seed(0)
    dense, x = nn.Linear(4 * 3 * 3, 5), torch.randn(6, 4, 3, 3)
    trl = TensorRegressionLayer.from_linear(dense, (4, 3, 3), factorization, "full")
    tol = 5e-2 if factorization == "cp" else 1e-4
    assert torch.allclose(trl(x), dense(x.flatten(1)), atol=tol, rtol=0)


@pytest.mark.parametrize("factorization", ["cp", "tucker", "tt"])
@pytest.mark.parametrize("fraction", [0.05, 0.2])
def test_trl_budget_and_linear_like_init(factorization, fraction):
    torch.manual_seed(0)
    x = torch.randn(256, 32, 4, 4)
    with torch.no_grad():
        dense_std = float(nn.Linear(512, 10)(x.flatten(1)).std())
    trl = TensorRegressionLayer((32, 4, 4), 10, factorization, fraction)
    assert trl.n_parameters <= fraction * 512 * 10 + 10
    assert 0.5 * dense_std < float(trl(x).std()) < 2.0 * dense_std
    if factorization == "tucker":
        assert trl.rank[-1] == 10  # output mode kept at full rank


def test_tltorch_default_trl_init_is_far_off_scale():
    # why our TRL re-initializes: tltorch's full-weight std of 1 gives logits ~sqrt(fan_in) times too large
    tltorch = import_tltorch()
    torch.manual_seed(0)
    x = torch.randn(256, 32, 4, 4)
    with pytorch_backend():
        raw = tltorch.TRL((32, 4, 4), 10, factorization="tucker", rank=0.2)(x)
    assert float(raw.std()) > 10 * float(TensorRegressionLayer((32, 4, 4), 10, "tucker", 0.2)(x).std())


def test_tcl_shapes_bias_and_errors():
    tcl = TensorContractionLayer((8, 4, 4), (4, 2, 2), bias=True)
    assert tcl(torch.randn(3, 8, 4, 4)).shape == (3, 4, 2, 2)
    assert sum(p.numel() for p in tcl.parameters()) == 4 * 8 + 2 * 4 + 2 * 4 + 4 * 2 * 2
    with pytest.raises(ValueError, match=r"larger than the input \(8, 4, 4\) at mode\(s\) \[1\]"):
        TensorContractionLayer((8, 4, 4), (4, 5, 2))
    with pytest.raises(ValueError, match="one per input mode"):
        TensorContractionLayer((8, 4, 4), (4, 2))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        TensorContractionLayer((8, 4, 4), 1.5)


def test_tensor_head_cnn_learns_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(digits.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    torch.manual_seed(0)
    net = TensorHeadCNN(
        1, 10, channels=(16, 32), image_size=8, head="tcl+trl", factorization="tucker", rank=0.5, tcl_shape=(16, 2, 2)
    )
    dense_head = 32 * 2 * 2 * 10 + 10
    assert net.head_parameters < dense_head
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    train, test = slice(0, 1400), slice(1400, None)
    for _ in range(2):
        for i in range(0, 1400, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[train][i : i + 64]), y[train][i : i + 64]).backward()
            opt.step()
    net.eval()
    accuracy = float((net(x[test]).argmax(1) == y[test]).float().mean())
    assert accuracy > 0.8, accuracy
    assert math.isfinite(accuracy)


def test_bad_head_name():
    with pytest.raises(ValueError, match=r"head: expected one of \['dense', 'trl', 'tcl\+trl'\]"):
        TensorHeadCNN(head="gap")
